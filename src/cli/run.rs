//! `deploy-lock run` and the `ENV` shorthand (the same request): one
//! [`RunPlan`] decides what runs and how the lock is had; then take the lock
//! (waiting or taking over a dead holder's as the rules allow), run the
//! command under it with signals relayed, release only what is ours, and end
//! the way the command ended.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use deploy_lock::exit_wait;
use deploy_lock::liveness::ProcessIdentity;
use deploy_lock::lock::LockError;
use deploy_lock::store::{Acquire, AcquireOptions, Held, Keeping, LockStore, Woke};
use deploy_lock::supervise::{ChildEnd, NoSidecar, Sidecar, Signals};
use deploy_lock::{Context, Environment};

use super::failure::{Busy, Failure};
use super::messages;
use super::ops::Io;
use super::remote::{self, Remote};
use super::request::{RunRequest, Typed};
use super::server;

/// How the lock is had for the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Locking {
    /// The local lock, taken before and released after the command.
    Local,
    /// No lock: deploy.sh --help.
    None,
    /// deploy.sh's own remote mode: the server's lock is checked first (and
    /// waited for with --wait); the server's deploy.sh takes it.
    Server(Remote),
}

/// What to run and how to get the lock for it, decided once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub env: Environment,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// None: fail with 75 when held. Some(limit): wait up to limit.
    pub wait: Option<Duration>,
    /// Take over a dead holder's lock before it is stale (never a live one).
    pub force: bool,
    pub locking: Locking,
    /// The words as typed, for the retry command of a refusal.
    pub typed: Typed,
    /// The command is the checkout's deploy.sh (no command after `--`).
    pub deploy_sh: bool,
    /// Why the lock is held, for everyone who looks: `--reason` (or
    /// DEPLOY_LOCK_REASON), else deploy.sh's own words (`--branch hotfix`,
    /// without the environment and the `--force` deploy-lock adds), else
    /// none. A command after `--` has no default: its words may hold secrets
    /// and the person can say why.
    pub reason: Option<String>,
    /// Set for a freeze's holder (`deploy-lock freeze`), which takes the
    /// lock through this same path with no command.
    pub freeze: Option<deploy_lock::status::Freeze>,
}

impl RunPlan {
    /// The one decision. Without a command, deploy.sh gets every deploy.sh
    /// word unchanged; because the legacy deploy.sh takes this same lock
    /// itself unless given `--force` (which only skips its own lock),
    /// `--force` is added when absent and the lock is ours: deploy-lock
    /// already holds it for it. `--help` needs no lock; `--remote` deploys
    /// elsewhere, where the server's deploy.sh takes the server's lock.
    pub fn decide(ctx: &Context, r: RunRequest, remote: Option<Remote>) -> RunPlan {
        let wait = r.wait.map(|w| w.unwrap_or(ctx.settings.wait_timeout));
        let typed = r.typed.clone();
        if !r.command.is_empty() {
            let mut command = r.command.into_iter();
            return RunPlan {
                env: r.env,
                program: PathBuf::from(command.next().expect("not empty")),
                args: command.collect(),
                wait,
                force: r.force,
                locking: Locking::Local,
                typed,
                deploy_sh: false,
                reason: r.reason.filter(|t| !t.is_empty()),
                freeze: None,
            };
        }
        let has = |flag: &str| r.deploy_args.iter().any(|a| a == flag);
        let locking = if has("--help") {
            Locking::None
        } else if let Some(remote) = remote {
            Locking::Server(remote)
        } else {
            Locking::Local
        };
        let reason = r.reason.filter(|t| !t.is_empty()).or_else(|| {
            let words: Vec<String> = r
                .deploy_args
                .iter()
                .filter(|w| *w != "--force")
                .map(|w| w.to_string_lossy().into_owned())
                .collect();
            (!words.is_empty()).then(|| cut_reason(words.join(" ")))
        });
        let mut args = vec![OsString::from(r.env.as_str())];
        if locking == Locking::Local && !has("--force") {
            args.push("--force".into());
        }
        args.extend(r.deploy_args);
        RunPlan {
            env: r.env,
            program: ctx.project_root.join("deploy/scripts/deploy.sh"),
            args,
            wait,
            force: r.force,
            locking,
            typed,
            deploy_sh: true,
            reason,
            freeze: None,
        }
    }

    /// Why deploy.sh must not run under this plan, checked before anything
    /// starts (exit 2):
    /// - deploy.sh takes its LAST word that is not an option (nor the value
    ///   of `--remote`, `--version` or `--branch`) as the environment, so a
    ///   second environment word would deploy one environment under
    ///   another's lock, with the `--force` we add and no lock of its own;
    /// - a `.deploy.conf.ENV` in the checkout naming an `SSH_HOST` makes
    ///   deploy.sh deploy to that server without `--remote`: deploy-lock
    ///   would hold this host's lock while the server's is not checked (and
    ///   the `--force` we add may reach the server's deploy.sh).
    pub fn refusal(&self, ctx: &Context) -> Option<String> {
        if !self.deploy_sh || self.locking == Locking::None {
            return None;
        }
        let words = deploy_sh_environment_words(&self.args);
        if words.len() != 1 || words[0] != self.env.as_str() {
            let env = self.env;
            // Quoted and escaped: a word is the user's, and may hold a newline.
            let extra: Vec<String> = words
                .iter()
                .filter(|w| *w != env.as_str())
                .map(|w| format!("{w:?}"))
                .collect();
            return Some(format!(
                "deploy.sh would get {} as its environment (it takes its last word that is not an option), but the lock is {env}'s; give exactly one environment: deploy-lock run {env} [DEPLOY_SH_ARGS...]",
                extra.join(", ")
            ));
        }
        if self.locking == Locking::Local
            && let Some((conf, host)) = remote_deploy_conf(&ctx.project_root, self.env)
        {
            return Some(format!(
                "{} names SSH_HOST={host}: deploy.sh would deploy {} to that server, whose lock deploy-lock does not take (it would hold only this host's); run deploy-lock run {} --remote USER@{host} to check the server's lock, or move the file aside to deploy here",
                conf.display(),
                self.env,
                self.env
            ));
        }
        None
    }
}

/// deploy.sh's words as a default reason, cut to the bound a given reason
/// must keep (they are not refused: nobody typed them as a reason).
fn cut_reason(words: String) -> String {
    let max = deploy_lock::status::MAX_REASON_CHARS;
    if words.chars().count() <= max {
        return words;
    }
    let mut cut: String = words.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// The words deploy.sh's argument loop takes as the environment (it keeps
/// the last one): every word that is not an option, except the value after
/// `--remote`, `--version` or `--branch`.
pub fn deploy_sh_environment_words(args: &[OsString]) -> Vec<String> {
    let mut words = Vec::new();
    let mut it = args.iter().map(|a| a.to_string_lossy());
    while let Some(a) = it.next() {
        match a.as_ref() {
            "--remote" | "--version" | "--branch" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            s => words.push(s.to_string()),
        }
    }
    words
}

/// `.deploy.conf.ENV` in the checkout with a non-empty `SSH_HOST=` line
/// (deploy.sh sources it): the file and the host.
pub fn remote_deploy_conf(root: &std::path::Path, env: Environment) -> Option<(PathBuf, String)> {
    let path = root.join(format!(".deploy.conf.{env}"));
    let text = std::fs::read_to_string(&path).ok()?;
    let host = text.lines().find_map(|l| {
        let l = l.trim().strip_prefix("export ").unwrap_or(l.trim());
        let v = l.strip_prefix("SSH_HOST=")?;
        let v = v.split('#').next().unwrap_or("").trim();
        let v = v.trim_matches(|c| c == '"' || c == '\'');
        (!v.is_empty()).then(|| v.to_string())
    })?;
    Some((path, host))
}

/// Runs the plan: Ok with how the command ended, or why it did not run.
pub fn run(
    ctx: &Context,
    store: &dyn LockStore,
    plan: RunPlan,
    io: &mut Io<'_>,
) -> Result<ChildEnd, Failure> {
    if let Some(why) = plan.refusal(ctx) {
        return Err(Failure::Usage(why));
    }
    // First, before anything could start a thread.
    let signals = Signals::install().map_err(|source| Failure::Io {
        what: "cannot set up signal handling".into(),
        source,
    })?;
    if plan.program.components().count() > 1 && !plan.program.exists() {
        return Err(Failure::NoDeployScript {
            path: plan.program.clone(),
            env: plan.env,
        });
    }
    match &plan.locking {
        Locking::None => return spawn_and_supervise(&signals, &plan, &[], &mut NoSidecar),
        Locking::Server(remote) => {
            server_lock_free(remote, plan.env, plan.wait, &plan.typed)?;
            return spawn_and_supervise(&signals, &plan, &[], &mut NoSidecar);
        }
        Locking::Local => {}
    }
    // A lock folder we cannot use is one clear error, not a busy lock.
    store.check_usable()?;
    let mut held = acquire(ctx, store, &plan, &signals, io)?;
    io.warn_all(&std::mem::take(&mut held.warnings));
    if let Some(signo) = signals.next_terminating() {
        // Interrupted before the command started: it never starts.
        let _ = store.release(*held);
        return Err(Failure::Interrupted(signo));
    }
    if held.took_over.is_some() {
        let prev = held.took_over.as_ref().and_then(|t| t.holder.as_ref());
        io.warn(&messages::took_over(plan.env, prev));
    }
    let (lock_id, deployment_id) = (
        held.record.lock_id.clone(),
        held.record.deployment_id.clone(),
    );
    let token = held.record.fencing_token.map(|t| t.to_string());
    let mut under_lock = vec![
        ("DEPLOY_LOCK_HELD", lock_id.as_str()),
        ("DEPLOY_LOCK_DEPLOYMENT_ID", deployment_id.as_str()),
    ];
    // A network store's fencing token, for `deploy-lock check ENV --token N`
    // or any system that refuses a stale holder's writes.
    if let Some(t) = &token {
        under_lock.push(("DEPLOY_LOCK_FENCING_TOKEN", t.as_str()));
    }
    let _ = io.out.flush();
    let (ended, lost) = {
        let mut keep = Keep {
            keeping: store.keep(&mut held),
            env: plan.env,
            err: &mut *io.err,
            style: io.err_style,
            pid: None,
            lost: None,
        };
        let ended = spawn_and_supervise(&signals, &plan, &under_lock, &mut keep);
        // An unlock announced too late for the loop to see.
        let late = keep.keeping.last_look();
        keep.say(late);
        keep.say_warnings();
        (ended, keep.lost)
    };
    // Only now, with the command reaped, is the lock let go; its release
    // event says how the command ended.
    match &ended {
        Ok(ChildEnd::Exited(code)) => deploy_lock::audit::command_ended(Some(*code), None),
        Ok(ChildEnd::Signaled(n)) => deploy_lock::audit::command_ended(None, Some(*n)),
        Err(_) => {}
    }
    match store.release(*held) {
        Ok(released) => io.warn_all(&released.warnings),
        // Secondary to how the command ended, which stays the exit status.
        Err(e) => messages::print_lines(io.err, io.err_style, &messages::lock_error_lines(&e)),
    }
    match (ended, lost) {
        // The run was not under the lock to its end: its own exit code.
        (Ok(_), Some(_)) => Err(Failure::LockLost),
        (ended, _) => ended,
    }
}

/// While the command runs: the store keeps the lock, and what it reports is
/// said on stderr as it happens.
struct Keep<'k> {
    keeping: Box<dyn Keeping + 'k>,
    env: Environment,
    err: &'k mut dyn std::io::Write,
    style: super::style::Style,
    /// The command, once started.
    pid: Option<i32>,
    /// Why the lock was lost, once it was.
    lost: Option<deploy_lock::etcd::LossCause>,
}

impl Keep<'_> {
    fn say(&mut self, events: Vec<deploy_lock::store::KeepEvent>) {
        use deploy_lock::store::{KeepEvent, Stop};
        for ev in events {
            let stop = match &ev {
                KeepEvent::Lost { cause, stop, .. } => {
                    self.lost.get_or_insert_with(|| cause.clone());
                    *stop
                }
                KeepEvent::Stop(s) => Some(*s),
                _ => None,
            };
            if let (Some(s), Some(pid)) = (stop, self.pid) {
                let sig = match s {
                    Stop::Term => nix::sys::signal::Signal::SIGTERM,
                    Stop::Kill => nix::sys::signal::Signal::SIGKILL,
                };
                deploy_lock::supervise::signal_tree(pid, sig);
            }
            let (loud, line) = messages::keep_event(self.env, &ev);
            let _ = if loud {
                std::io::Write::write_fmt(self.err, format_args!("{}\n", self.style.red(&line)))
            } else {
                std::io::Write::write_fmt(self.err, format_args!("{line}\n"))
            };
        }
    }

    fn say_warnings(&mut self) {
        for w in self.keeping.warnings() {
            messages::warn(self.err, self.style, &messages::warning(&w));
        }
    }
}

impl Sidecar for Keep<'_> {
    fn started(&mut self, pid: i32) {
        self.pid = Some(pid);
        if let Some(id) = ProcessIdentity::of_pid(pid) {
            self.keeping.started(id);
        }
        self.say_warnings();
    }
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.keeping.fd()
    }
    fn deadline(&self) -> Option<Instant> {
        self.keeping.deadline()
    }
    fn service(&mut self) {
        let events = self.keeping.service();
        self.say(events);
        self.say_warnings();
    }
    fn resumed(&mut self) {
        self.keeping.resumed();
        self.service();
    }
}

/// Spawns the command in our process group and relays signals until it
/// ends.
fn spawn_and_supervise(
    signals: &Signals,
    plan: &RunPlan,
    env: &[(&str, &str)],
    side: &mut dyn Sidecar,
) -> Result<ChildEnd, Failure> {
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args);
    // The command may want to know it runs under the lock (the demo deploy
    // says so instead of warning that --force skipped its own lock).
    cmd.envs(env.iter().copied());
    signals.prepare(&mut cmd);
    let mut child = cmd.spawn().map_err(|source| Failure::CannotRun {
        program: plan.program.clone(),
        source,
    })?;
    side.started(child.id() as i32);
    signals
        .supervise(&mut child, side)
        .map_err(|source| Failure::Io {
            what: "lost track of the command".into(),
            source,
        })
}

/// Takes the lock, or says why not.
pub(super) fn acquire(
    ctx: &Context,
    store: &dyn LockStore,
    plan: &RunPlan,
    signals: &Signals,
    io: &mut Io<'_>,
) -> Result<Box<Held>, Failure> {
    let me = ProcessIdentity::of_self().unwrap_or(ProcessIdentity {
        pid: std::process::id() as i32,
        ..Default::default()
    });
    // A signal while waiting for the store's guard ends the wait too.
    let interrupted = || signals.interrupted();
    let how = AcquireOptions {
        force: plan.force,
        process: me,
        interrupted: Some(&interrupted),
        waiting: plan.wait.is_some(),
        reason: plan.reason.as_deref(),
        freeze: plan.freeze.as_ref(),
    };
    let own_watch = plan.wait.map(|_| store.watch(plan.env));
    let start = Instant::now();
    let tty = io.err_tty;
    let mut ticks: u32 = 0;
    // Progress lines printed off a terminal (see below).
    let mut lines: u32 = 0;
    let mut store_trouble: Option<String> = None;
    // The processes of the same-host holder last seen holding the lock: once
    // it has released, the lock is taken only after they have ended (the
    // legacy deploy.sh releases while it still runs, and its TERM/INT trap
    // releases a second time, which would remove a lock taken meanwhile).
    let mut last_holder: Vec<ProcessIdentity> = Vec::new();
    loop {
        if !last_holder.is_empty() {
            let running: Vec<ProcessIdentity> = exit_wait::still_running(&last_holder)
                .into_iter()
                .map(|(p, _)| p)
                .collect();
            let released = store
                .inspect(plan.env)
                .is_ok_and(|insp| !exit_wait::held_by_any(&insp, &running));
            if running.is_empty() || released {
                last_holder.clear();
            }
            if released && !running.is_empty() {
                // Said only when it takes a while: a holder normally ends
                // within a moment of its release.
                let limit = start + plan.wait.unwrap_or_default();
                let quiet_until = (Instant::now() + Duration::from_millis(500)).min(limit);
                let mut until = quiet_until;
                loop {
                    match exit_wait::wait_for_exit(&running, until, Some(signals.fd())) {
                        Ok(exit_wait::Exit::Extra) => {
                            if let Some(signo) = signals.next_terminating() {
                                return Err(Failure::Interrupted(signo));
                            }
                        }
                        Ok(exit_wait::Exit::Timeout) if until == quiet_until => {
                            if tty && ticks > 0 {
                                let _ = writeln!(io.err);
                                ticks = 0;
                            }
                            io.warn(&messages::holder_still_ending(plan.env, &running));
                            until = (Instant::now() + exit_wait::EXIT_GRACE).min(limit);
                        }
                        Ok(_) => break,
                        Err(source) => {
                            return Err(Failure::Io {
                                what: "cannot wait for the previous holder's process".into(),
                                source,
                            });
                        }
                    }
                }
            }
        }
        // What we wait on when busy: our own lock, or, when the checkout's
        // one state record is another environment's live lock, that
        // environment's (its release frees the record).
        // Our place in the waiter queue, as this pass's look found it.
        let mut place: Option<String> = None;
        let (phrase, other_watch) = match store.acquire(plan.env, &how) {
            Ok(Acquire::Acquired(h)) => {
                if store_trouble.is_some() {
                    io.warn("the lock store answers again");
                }
                if tty && ticks > 0 {
                    let _ = writeln!(io.err);
                }
                return Ok(h);
            }
            Ok(Acquire::Busy {
                reason,
                inspection,
                run_holder,
            }) => {
                if store_trouble.take().is_some() {
                    io.warn("the lock store answers again");
                }
                let squatter = (reason == deploy_lock::lock::BusyReason::RunHeld
                    && run_holder.is_none())
                .then(|| deploy_lock::lock::run_file_squatted(&inspection))
                .flatten();
                if plan.wait.is_none() {
                    return Err(Failure::Held(Box::new(Busy {
                        env: plan.env,
                        reason,
                        squatter,
                        run_holder,
                        holder_is_callers: holder_is_callers(&inspection),
                        inspection,
                        stale_after: ctx.settings.stale_after,
                        typed: plan.typed.clone(),
                    })));
                }
                let live = exit_wait::live_holder_processes(&inspection);
                if !live.is_empty() {
                    last_holder = live;
                }
                let phrase = if let Some(sq) = &squatter {
                    messages::squatter_phrase(sq)
                } else if let deploy_lock::lock::BusyReason::Queued { .. } = reason {
                    "free, but others were in line first".to_string()
                } else if reason == deploy_lock::lock::BusyReason::RunHeld
                    && inspection.verdict != deploy_lock::status::Verdict::Frozen
                {
                    let phrase = messages::run_phrase(run_holder.as_ref());
                    messages::with_reason(phrase, &inspection)
                } else {
                    messages::holder_phrase(&inspection)
                };
                // Our place in the queue, as this look found it.
                place = messages::place_in_line(&inspection, &ctx.host);
                (phrase, None)
            }
            Err(LockError::OtherEnvironment {
                environment,
                holder,
            }) if plan.wait.is_some() => {
                // A legacy deploy.sh of that environment: outlasted too (its
                // second release rewrites the one state record).
                let live = exit_wait::live_record_holder_processes(&holder);
                if !live.is_empty() {
                    last_holder = live;
                }
                (
                    messages::other_environment_phrase(environment, &holder),
                    Some(store.watch(environment)),
                )
            }
            // A network store lost while waiting: retried until the wait's
            // limit, said once. Anything waiting cannot fix (a refused
            // login, no permission, not an etcd) ends the wait at once below.
            Err(LockError::Store(e)) if plan.wait.is_some() && e.retryable() => {
                let detail = e.to_string();
                if store_trouble.as_deref() != Some(detail.as_str()) {
                    if tty && ticks > 0 {
                        let _ = writeln!(io.err);
                    }
                    io.warn(&format!("{detail}; retrying until the wait's limit"));
                    store_trouble = Some(detail.clone());
                }
                (format!("the lock store is unreachable: {detail}"), None)
            }
            Err(LockError::Interrupted) => {
                // A signal while waiting for the guard: nothing started.
                return Err(Failure::Interrupted(
                    signals.next_terminating().unwrap_or(2),
                ));
            }
            Err(e) => return Err(Failure::Lock(e)),
        };
        let (Some(limit), Some(own)) = (plan.wait, &own_watch) else {
            unreachable!("only a --wait run gets here");
        };
        let watch = other_watch.as_ref().unwrap_or(own);
        let elapsed = start.elapsed();
        if elapsed >= limit {
            if tty && ticks > 0 {
                let _ = writeln!(io.err);
            }
            return Err(Failure::TimedOut {
                env: plan.env,
                limit,
                phrase: Some(phrase),
            });
        }
        // The progress line: rewritten in place on every pass on a
        // terminal; elsewhere (CI logs, a pipe) one line per --wait-interval,
        // the first at once, so a waiting job is never silent.
        // Our place in line leads the progress line (not the timeout's).
        let shown = match &place {
            Some(p) => format!("{p}; {phrase}"),
            None => phrase.clone(),
        };
        let progress = format!(
            "Waiting for the {} lock ({shown})... {}m {}s",
            plan.env,
            elapsed.as_secs() / 60,
            elapsed.as_secs() % 60
        );
        if tty {
            let _ = write!(io.err, "\r{progress}\x1b[K");
        } else if elapsed >= ctx.settings.wait_interval.saturating_mul(lines) {
            let _ = writeln!(io.err, "{progress}");
            // A pass that came late (a slow store) skips the lines it missed.
            let interval = ctx.settings.wait_interval.as_secs_f64();
            lines = (elapsed.as_secs_f64() / interval) as u32 + 1;
        }
        ticks += 1;
        // The next interval boundary after now: a pass woken early (a
        // release someone else won) keeps the progress on its beat.
        let beat = ctx.settings.wait_interval;
        let beats = (start.elapsed().as_secs_f64() / beat.as_secs_f64()) as u32 + 1;
        let mut next = start + beat.saturating_mul(beats);
        if store_trouble.is_some() {
            // Try again soon: the watch cannot be trusted to wake us.
            next = next.min(Instant::now() + Duration::from_millis(500));
        }
        match watch.wait(next.min(start + limit), Some(signals.fd())) {
            Ok(Woke::Extra) => {
                if let Some(signo) = signals.next_terminating() {
                    if tty {
                        let _ = writeln!(io.err);
                    }
                    return Err(Failure::Interrupted(signo));
                }
            }
            Ok(Woke::Released | Woke::Timeout) => {}
            Err(source) => {
                return Err(Failure::Io {
                    what: format!("cannot wait for {}", store.location(plan.env).display()),
                    source,
                });
            }
        }
    }
}

/// Whether the live holder runs on this host as the caller's own uid, and
/// the lock directory is the caller's too: only then may a refusal suggest
/// `kill PID` (a record planted by someone else may name any process of
/// ours; the process of a lock's real holder runs as the directory's owner).
fn holder_is_callers(insp: &deploy_lock::status::Inspection) -> bool {
    use std::os::unix::fs::MetadataExt;
    let deploy_lock::status::Liveness::Alive { pid, .. } = &insp.liveness else {
        return false;
    };
    let me = nix::unistd::geteuid().as_raw();
    let dir_owner = insp.dir.as_ref().map(|d| d.uid).or_else(|| {
        std::fs::symlink_metadata(&insp.lock_dir)
            .ok()
            .map(|m| m.uid())
    });
    // A network store's lock has no directory: its holder's own process.
    let dir_is_mine = insp.network.is_some() || dir_owner == Some(me);
    dir_is_mine && std::fs::metadata(format!("/proc/{pid}")).is_ok_and(|m| m.uid() == me)
}

/// Before deploy.sh's own remote mode: Ok once the server's lock is not held
/// by a live deployment (waiting for it with --wait). What the server prints
/// goes to stderr: stdout is deploy.sh's.
fn server_lock_free(
    remote: &Remote,
    env: Environment,
    wait: Option<Duration>,
    typed: &Typed,
) -> Result<(), Failure> {
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let status =
        |args: &[&str]| remote::capture(remote, &server::status_program(env), &strings(args));
    let look = || -> Result<Result<serde_json::Value, i32>, Failure> {
        let got = status(&["status", env.as_str(), "--json"])?;
        if got.code != 0 {
            return Ok(Err(got.code));
        }
        server::status_value(env, &got).map(Ok)
    };
    let held = |v: &serde_json::Value| v["verdict"] == "held";
    // The server's own exit code when its status could not be had.
    let server_code = Failure::ServerExit;
    if let Some(limit) = wait {
        let deadline = Instant::now() + limit;
        while held(&look()?.map_err(server_code)?) {
            let left = deadline.saturating_duration_since(Instant::now());
            let timeout = format!("--wait-timeout={}", left.as_secs_f64());
            let args = strings(&["wait", env.as_str(), timeout.as_str()]);
            let program = server::wait_program(env);
            match remote::run_to(remote, &program, &args, remote::Output::Stderr)? {
                0 => {}
                code => return Err(server_code(code)),
            }
        }
        return Ok(());
    }
    let v = look()?.map_err(server_code)?;
    if !held(&v) {
        return Ok(());
    }
    // Short, like a local refusal: the full status is `status --remote`'s.
    Err(Failure::ServerHeld {
        env,
        remote: remote.clone(),
        status: Box::new(v),
        typed: typed.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::modern;
    use crate::cli::request::{Operation, Request};

    fn plan(words: &[&str]) -> RunPlan {
        let mut args = modern::os(&["deploy-lock"]);
        args.extend(modern::os(words));
        let ctx = Context::new(Default::default(), "/co".into());
        match modern::parse(args).unwrap() {
            Request {
                op: Operation::Run(r),
                remote,
                ..
            } => RunPlan::decide(&ctx, r, remote),
            other => panic!("{other:?}"),
        }
    }

    /// Issue 11: `--remote=H` and `--remote H` give the same run: the
    /// server's lock checked, no local lock, no `--force` added.
    #[test]
    fn remote_runs_are_one_plan() {
        let a = plan(&["staging", "--remote=deploy@h", "--dry-run"]);
        let b = plan(&["staging", "--remote", "deploy@h", "--dry-run"]);
        assert_eq!(a, b);
        assert_eq!(
            a.args,
            modern::os(&["staging", "--remote", "deploy@h", "--dry-run"])
        );
        assert!(matches!(a.locking, Locking::Server(ref r) if r.target == "deploy@h"));
        let c = plan(&[
            "run",
            "--remote-dir",
            "/srv",
            "staging",
            "--remote=deploy@h",
        ]);
        assert!(matches!(c.locking, Locking::Server(ref r) if r.dir == "/srv"));
    }

    #[test]
    fn deploy_sh_gets_exactly_the_locked_environment() {
        let ctx = Context::new(Default::default(), "/nonexistent-co".into());
        assert_eq!(
            plan(&["staging", "--branch", "production"]).refusal(&ctx),
            None
        );
        assert_eq!(
            plan(&["staging", "--version", "abc", "--remote", "u@h"]).refusal(&ctx),
            None
        );
        for words in [
            &["staging", "production", "--skip-migrations"][..],
            &["staging", "--dry-run", "staging"],
            &["staging", "--branch", "x", "hotfix"],
        ] {
            let why = plan(words).refusal(&ctx).expect("refused");
            assert!(why.contains("give exactly one environment"), "{why}");
        }
        assert_eq!(
            deploy_sh_environment_words(&modern::os(&[
                "staging",
                "--force",
                "--remote",
                "production",
                "development"
            ])),
            ["staging", "development"]
        );
        // A command after -- is not deploy.sh.
        assert_eq!(
            plan(&["staging", "--", "echo", "production"]).refusal(&ctx),
            None
        );
    }

    #[test]
    fn a_deploy_conf_with_ssh_host_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let ctx = Context::new(Default::default(), t.path().to_path_buf());
        std::fs::write(
            t.path().join(".deploy.conf.staging"),
            "# x\nSSH_HOST=\"togather\"\n",
        )
        .unwrap();
        std::fs::write(t.path().join(".deploy.conf.production"), "SSH_HOST=\n").unwrap();
        let why = plan(&["staging"]).refusal(&ctx).expect("refused");
        assert!(why.contains("names SSH_HOST=togather"), "{why}");
        assert_eq!(plan(&["production"]).refusal(&ctx), None);
        assert_eq!(plan(&["staging", "--remote", "u@h"]).refusal(&ctx), None);
    }

    #[test]
    fn local_runs_add_force_once() {
        let p = plan(&["staging", "--dry-run"]);
        assert_eq!(p.locking, Locking::Local);
        assert_eq!(p.program, PathBuf::from("/co/deploy/scripts/deploy.sh"));
        assert_eq!(p.args, modern::os(&["staging", "--force", "--dry-run"]));
        let p = plan(&["staging", "--force"]);
        assert!(p.force);
        assert_eq!(p.args, modern::os(&["staging", "--force"]));
        let p = plan(&["staging", "--help"]);
        assert_eq!(p.locking, Locking::None);
        assert_eq!(p.args, modern::os(&["staging", "--help"]));
        let p = plan(&["run", "--wait=2", "staging", "--", "make", "x"]);
        assert_eq!(p.program, PathBuf::from("make"));
        assert_eq!(p.args, modern::os(&["x"]));
        assert_eq!(p.wait, Some(Duration::from_secs(2)));
    }
}
