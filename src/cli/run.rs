//! `deploy-lock run` and the `deploy-lock ENV ...` shorthand: take the lock
//! (waiting or taking over a dead holder's as the rules allow), run the
//! command under it with signals relayed, release only what is ours, and end
//! the way the command ended.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use deploy_lock::liveness::ProcessIdentity;
use deploy_lock::lock::keeper::{KeepEvent, Keeper};
use deploy_lock::lock::runlock::{RunHolder, RunWaiter};
use deploy_lock::lock::{Acquire, BusyReason, HeldLock, LocalLock, LockError, Release};
use deploy_lock::status::{Inspection, Liveness};
use deploy_lock::supervise::{self, NoSidecar, Sidecar, Signals};
use deploy_lock::wait::{Watcher, Woke};
use deploy_lock::{Context, Environment};

use super::exit;
use super::ops;
use super::render;
use super::style::Style;
use super::texts;

/// What to run and how to get the lock for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPlan {
    pub env: Environment,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// None: fail with 75 when held. Some(limit): wait up to limit.
    pub wait: Option<Duration>,
    /// Take over a dead holder's lock before it is stale (never a live one).
    pub force: bool,
    /// Run without taking the local lock (deploy.sh --help, --remote).
    pub lockless: bool,
}

pub fn deploy_script(ctx: &Context) -> PathBuf {
    ctx.project_root.join("deploy/scripts/deploy.sh")
}

/// The plan for `deploy-lock ENV [DEPLOY_SH_ARGS...]`: deploy.sh gets every
/// argument unchanged. Because the legacy deploy.sh takes this same lock
/// itself unless given `--force` (which only skips its own lock), `--force`
/// is added when absent: deploy-lock already holds the lock for it. A
/// `--force` the user typed also lets deploy-lock take over a dead holder's
/// lock at any age (never a live one). `--help` needs no lock; `--remote`
/// deploys elsewhere, where the server's deploy.sh takes the server's lock.
pub fn shorthand_plan(ctx: &Context, env: Environment, deploy_args: Vec<OsString>) -> RunPlan {
    let has = |flag: &str| deploy_args.iter().any(|a| a == flag);
    let lockless = has("--help") || has("--remote");
    let force = has("--force");
    let mut args = vec![OsString::from(env.as_str())];
    if !force && !lockless {
        args.push("--force".into());
    }
    args.extend(deploy_args);
    RunPlan {
        env,
        program: deploy_script(ctx),
        args,
        wait: None,
        force,
        lockless,
    }
}

/// The plan for `deploy-lock run [--wait[=SECS]] [--force] ENV [-- CMD...]`.
pub fn run_plan(
    ctx: &Context,
    env: Environment,
    wait: Option<Duration>,
    force: bool,
    command: Vec<OsString>,
) -> RunPlan {
    let mut plan = shorthand_plan(ctx, env, Vec::new());
    plan.wait = wait;
    plan.force = force;
    if let Some((program, args)) = command.split_first() {
        plan.program = PathBuf::from(program);
        plan.args = args.to_vec();
    }
    plan
}

fn error(msg: &str) {
    eprintln!("{}", Style::for_stderr().red(&format!("ERROR: {msg}")));
}

/// Runs the plan; returns only with an exit code for deploy-lock's own
/// outcomes, otherwise ends the process the way the command ended.
pub fn run(ctx: &Context, plan: RunPlan) -> i32 {
    // First, before anything could start a thread.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            error(&format!("cannot set up signal handling: {e}"));
            return exit::IO_ERROR;
        }
    };
    if plan.program.components().count() > 1 && !plan.program.exists() {
        error(&format!(
            "{} does not exist; name the command to run: deploy-lock run {} -- COMMAND [ARGS...]",
            plan.program.display(),
            plan.env
        ));
        return 127;
    }
    if plan.lockless {
        return match spawn_and_supervise(&signals, &plan, &[], &mut NoSidecar) {
            Ok(end) => supervise::exit_like(end),
            Err(code) => code,
        };
    }
    // A signal while waiting for the guard ends the wait too.
    let interrupted = || signals.interrupted();
    let lock = LocalLock::new(ctx, plan.env).interruptible(&interrupted);
    let mut held = match acquire(ctx, &lock, &plan, &signals) {
        Ok(h) => h,
        Err(code) => return code,
    };
    if let Some(signo) = signals.next_terminating() {
        // Interrupted before the command started: it never starts.
        let _ = lock.release(*held);
        return 128 + signo;
    }
    let (lock_id, deployment_id) = (
        held.record.lock_id.clone(),
        held.record.deployment_id.clone(),
    );
    let prev = held.took_over.as_ref().and_then(|t| t.holder.as_ref());
    ops::warn_all(&lock);
    match (&held.took_over, prev) {
        (Some(_), Some(prev)) => eprintln!(
            "deploy-lock: took over the {} lock left by {} (pid {}, not running)",
            plan.env,
            prev.locked_by.as_deref().unwrap_or("an unknown holder"),
            prev.pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into()),
        ),
        (Some(_), None) => eprintln!(
            "deploy-lock: took over the {} lock directory, which recorded no holder",
            plan.env
        ),
        _ => {}
    }
    let under_lock = [
        ("DEPLOY_LOCK_HELD", lock_id.as_str()),
        ("DEPLOY_LOCK_DEPLOYMENT_ID", deployment_id.as_str()),
    ];
    let mut keep = Keep {
        keeper: Keeper::new(&lock),
        lock: &lock,
        held: &mut held,
        env: plan.env,
    };
    let ended = spawn_and_supervise(&signals, &plan, &under_lock, &mut keep);
    keep.last_look();
    // Only now, with the command reaped, is the lock let go.
    release(&lock, *held, plan.env);
    let _ = (std::io::stdout().flush(), std::io::stderr().flush());
    match ended {
        Ok(end) => supervise::exit_like(end),
        Err(code) => code,
    }
}

/// While the command runs: records its pid in the lock, keeps the lock
/// directory's heartbeat, restores what nobody announced removing, and says
/// what happened.
struct Keep<'l, 'c> {
    keeper: Keeper,
    lock: &'l LocalLock<'c>,
    held: &'l mut HeldLock,
    env: Environment,
}

impl Sidecar for Keep<'_, '_> {
    fn started(&mut self, pid: i32) {
        if let Some(id) = ProcessIdentity::of_pid(pid)
            && let Err(e) = self.lock.record_process(self.held, id)
        {
            ops::warn(&format!(
                "could not record the command's pid in the lock: {e}"
            ));
        }
    }
    fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.keeper.fd()
    }
    fn deadline(&self) -> Option<Instant> {
        self.keeper.deadline()
    }
    fn service(&mut self) {
        let events = self.keeper.service(self.lock, self.held);
        self.say(events);
    }
}

impl Keep<'_, '_> {
    /// After the command ended: an unlock announced too late to be seen.
    fn last_look(&mut self) {
        let events = self.keeper.last_look(self.lock, self.held);
        self.say(events.into_iter().collect());
    }

    fn say(&self, events: Vec<KeepEvent>) {
        let env = self.env;
        let loud = |s: &str| eprintln!("{}", Style::for_stderr().red(s));
        for ev in events {
            match ev {
                KeepEvent::Restored { directory, record } => {
                    let what = match (directory, record) {
                        (true, true) => "lock directory and state record",
                        (true, false) => "lock directory",
                        _ => "state record",
                    };
                    eprintln!(
                        "deploy-lock: the {env} {what} vanished while the command runs, removed by something other than a deploy-lock unlock (the legacy deploy.sh's exit trap does this); restored, same lock id"
                    );
                }
                KeepEvent::TakenBy { holder } => loud(&format!(
                    "deploy-lock: WARNING: the {env} lock was removed while the command runs and is now held by {}; not taken back. No other deploy-lock run starts until this one ends.",
                    holder
                        .as_ref()
                        .map(deploy_lock::holder::describe)
                        .unwrap_or_else(|| "someone else (no record)".into())
                )),
                KeepEvent::ForceUnlocked(a) => loud(&format!(
                    "deploy-lock: WARNING: the {env} lock was force-unlocked by {} (pid {}) at {}; the command goes on, and no other deploy-lock run starts until it ends.",
                    a.by, a.pid, a.at
                )),
                KeepEvent::Failed(msg) => ops::warn(&msg),
            }
        }
        ops::warn_all(self.lock);
    }
}

fn release(lock: &LocalLock<'_>, held: deploy_lock::lock::HeldLock, env: Environment) {
    match lock.release(held) {
        Ok(Release::Released | Release::AlreadyGone) => {}
        Ok(Release::TakenByOther { holder }) => {
            let who = holder
                .as_ref()
                .and_then(|h| h.locked_by.clone())
                .unwrap_or_else(|| "another holder".into());
            ops::warn(&format!(
                "the {env} lock is held by {who} now; left it alone"
            ));
        }
        Err(e) => {
            ops::report_error(&e);
        }
    }
    ops::warn_all(lock);
}

/// Spawns the command in our process group and relays signals until it
/// ends. Err carries deploy-lock's exit code when it could not start
/// (127 not found, 126 not executable, as a shell would).
fn spawn_and_supervise(
    signals: &Signals,
    plan: &RunPlan,
    env: &[(&str, &str)],
    side: &mut dyn Sidecar,
) -> Result<supervise::ChildEnd, i32> {
    let mut cmd = Command::new(&plan.program);
    cmd.args(&plan.args);
    // The command may want to know it runs under the lock (the demo deploy
    // says so instead of warning that --force skipped its own lock).
    cmd.envs(env.iter().copied());
    signals.prepare(&mut cmd);
    let mut child = cmd.spawn().map_err(|e| {
        error(&format!("cannot run {}: {e}", plan.program.display()));
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            126
        } else {
            127
        }
    })?;
    side.started(child.id() as i32);
    signals.supervise(&mut child, side).map_err(|e| {
        error(&format!("lost track of the command: {e}"));
        exit::IO_ERROR
    })
}

/// Takes the lock, or returns deploy-lock's exit code for why not.
fn acquire(
    ctx: &Context,
    lock: &LocalLock<'_>,
    plan: &RunPlan,
    signals: &Signals,
) -> Result<Box<deploy_lock::lock::HeldLock>, i32> {
    let me = ProcessIdentity::of_self().unwrap_or(ProcessIdentity {
        pid: std::process::id() as i32,
        ..Default::default()
    });
    let watcher = plan.wait.map(|_| Watcher::new(&lock.lock_dir()));
    let start = Instant::now();
    let tty = std::io::stderr().is_terminal();
    let mut ticks: u32 = 0;
    // Waiting on another deploy-lock run: a thread blocked in its flock.
    let mut run_waiter: Option<RunWaiter> = None;
    loop {
        let attempt = match run_waiter.take() {
            Some(w) => match w.take() {
                Some(Ok(run)) => Some(lock.try_acquire_with(run, plan.force, me.clone())),
                Some(Err(e)) => {
                    error(&format!("cannot wait for the {} lock: {e}", plan.env));
                    return Err(exit::IO_ERROR);
                }
                None => {
                    run_waiter = Some(w);
                    None
                }
            },
            None => Some(lock.try_acquire(plan.force, me.clone())),
        };
        // What we wait on when busy: our own lock directory, or, when the
        // checkout's one state record is another environment's live lock,
        // that environment's directory (its release frees the record), or
        // another deploy-lock run's kernel lock.
        let (phrase, other_watcher) = match attempt {
            None => (
                run_phrase(run_waiter.as_ref().and_then(RunWaiter::holder).as_ref()),
                None,
            ),
            Some(Ok(Acquire::Acquired(h))) => {
                if tty && ticks > 0 {
                    eprintln!();
                }
                return Ok(h);
            }
            Some(Ok(Acquire::Busy {
                reason,
                inspection,
                run_holder,
            })) => {
                if plan.wait.is_none() {
                    let run_holder = match reason {
                        BusyReason::RunHeld => run_holder.or_else(|| lock.run_holder()),
                        _ => run_holder,
                    };
                    report_busy(ctx, plan, reason, &inspection, run_holder.as_ref());
                    return Err(exit::LOCK_HELD);
                }
                if reason == BusyReason::RunHeld {
                    run_waiter = Some(lock.run_waiter().map_err(|e| ops::report_error(&e))?);
                    (run_phrase(run_holder.as_ref()), None)
                } else {
                    (holder_phrase(&inspection), None)
                }
            }
            Some(Err(LockError::OtherEnvironment {
                environment,
                holder,
            })) if plan.wait.is_some() && Environment::parse(&environment).is_some() => {
                let other = Environment::parse(&environment).expect("checked");
                (
                    format!("the state file records a live {environment} deployment: {holder}"),
                    Some(Watcher::new(&ctx.lock_dir(other))),
                )
            }
            Some(Err(LockError::Interrupted)) => {
                // A signal while waiting for the guard: nothing started.
                return Err(128 + signals.next_terminating().unwrap_or(2));
            }
            Some(Err(e)) => return Err(ops::report_error(&e)),
        };
        let (Some(limit), Some(own_watcher)) = (plan.wait, &watcher) else {
            unreachable!("only a --wait run gets here");
        };
        let watcher = other_watcher.as_ref().unwrap_or(own_watcher);
        let elapsed = start.elapsed();
        if elapsed >= limit {
            if tty && ticks > 0 {
                eprintln!();
            }
            error(&format!(
                "gave up after {} waiting for the {} lock ({phrase})",
                texts::span(limit.as_secs()),
                plan.env,
            ));
            return Err(exit::WAIT_TIMED_OUT);
        }
        if tty {
            eprint!(
                "\rWaiting for the {} lock ({phrase})... {}m {}s\x1b[K",
                plan.env,
                elapsed.as_secs() / 60,
                elapsed.as_secs() % 60
            );
        }
        ticks += 1;
        let next = start + ctx.settings.wait_interval.saturating_mul(ticks);
        let until = next.min(start + limit);
        let woke = match &run_waiter {
            // Index 0 is the signal fd, 1 the run lock's hand-over.
            Some(w) => deploy_lock::wait::poll_any(&[signals.fd(), w.fd()], until).map(|i| {
                if i == Some(0) {
                    Woke::Extra
                } else {
                    Woke::Released
                }
            }),
            None => watcher.wait(until, Some(signals.fd())),
        };
        match woke {
            Ok(Woke::Extra) => {
                if let Some(signo) = signals.next_terminating() {
                    if tty {
                        eprintln!();
                    }
                    return Err(128 + signo);
                }
            }
            Ok(Woke::Released | Woke::Timeout) => {}
            Err(e) => {
                error(&format!(
                    "cannot wait for {}: {e}",
                    lock.lock_dir().display()
                ));
                return Err(exit::IO_ERROR);
            }
        }
    }
}

/// "held by a deploy-lock run, pid N".
fn run_phrase(holder: Option<&RunHolder>) -> String {
    match holder {
        Some(h) => format!("held by a deploy-lock run, pid {}", h.pid),
        None => "held by a deploy-lock run".to_string(),
    }
}

fn foreign_entries(insp: &Inspection) -> String {
    let names = insp.dir.iter().flat_map(|d| d.entries.iter());
    names
        .map(|e| e.to_string_lossy().into_owned())
        .filter(|e| !deploy_lock::status::OUR_FILES.contains(&e.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The owner of a lock directory this user could not remove (another user's,
/// in a folder that only lets owners remove entries, like sticky /tmp), when
/// nothing recorded who holds it: a squatted lock.
fn squatter(insp: &Inspection) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    if insp.holder.is_some() || nix::unistd::geteuid().is_root() {
        return None;
    }
    let m = std::fs::symlink_metadata(&insp.lock_dir).ok()?;
    if m.uid() == nix::unistd::geteuid().as_raw() {
        return None;
    }
    let uid = nix::unistd::Uid::from_raw(m.uid());
    Some(
        nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map(|u| u.name)
            .unwrap_or_else(|| format!("uid {uid}")),
    )
}

fn holder_phrase(insp: &Inspection) -> String {
    match (&insp.liveness, &insp.holder) {
        (Liveness::Alive { pid, comm }, _) => format!(
            "held by {}, pid {pid}",
            deploy_lock::liveness::display_name(*pid, comm)
        ),
        (_, Some(h)) => format!(
            "held by {}",
            h.locked_by.as_deref().unwrap_or("an unknown holder")
        ),
        _ => "held".to_string(),
    }
}

/// The status block and what to do, on stderr (stdout is the command's).
fn report_busy(
    ctx: &Context,
    plan: &RunPlan,
    reason: BusyReason,
    insp: &Inspection,
    run_holder: Option<&RunHolder>,
) {
    let style = Style::for_stderr();
    let env = plan.env;
    let mut msg = render::status_block_modern(insp, ctx, style);
    let age = insp
        .age_seconds
        .map(|a| format!("{}m {}s", a / 60, a % 60))
        .unwrap_or_else(|| "unknown".into());
    let stale = texts::span(ctx.settings.stale_after.as_secs());
    // Another deploy-lock run's kernel lock: described by its directory's
    // live holder when there is one, else by the run itself (its directory
    // was removed while its command runs).
    let reason = match (reason, &insp.liveness) {
        (BusyReason::RunHeld, Liveness::Alive { .. }) => BusyReason::HolderAlive,
        (r, _) => r,
    };
    let lines: Vec<String> = match (reason, &insp.liveness) {
        (BusyReason::RunHeld, _) => vec![
            format!(
                "ERROR: the {env} lock is {}; it frees when that process ends.",
                run_phrase(run_holder)
            ),
            format!("  wait for it:          deploy-lock run --wait {env}"),
        ],
        (BusyReason::HolderAlive, Liveness::Alive { pid, comm }) => vec![
            format!(
                "ERROR: the {env} lock is held by a running deployment: {} (pid {pid}), for {age}.",
                deploy_lock::liveness::display_name(*pid, comm)
            ),
            "A live holder's lock is never taken over, whatever its age. Either:".into(),
            format!("  wait for it:          deploy-lock run --wait {env}"),
            format!("  watch it:             deploy-lock wait {env}"),
            format!("  or stop that process: kill {pid}"),
        ],
        (BusyReason::Obstructed, _) => vec![format!(
            "ERROR: {} is {}, not a lock directory; deploy-lock never follows or removes it: check what it is (ls -la {}) and remove it by hand",
            insp.lock_dir.display(),
            deploy_lock::fsops::describe_non_directory(&insp.lock_dir),
            insp.lock_dir.display()
        )],
        (BusyReason::ForeignContents, _) => vec![format!(
            "ERROR: the {env} lock's holder is not running, but {} holds files deploy-lock did not put there ({}); a takeover would delete them, so it is refused: check them, then remove the directory by hand or with unlock.sh {env} --force",
            insp.lock_dir.display(),
            foreign_entries(insp)
        )],
        (_, Liveness::OtherHost) => vec![
            format!(
                "ERROR: the {env} lock is held from another host ({}) for {age}.",
                insp.holder
                    .as_ref()
                    .and_then(|h| h.hostname.clone())
                    .unwrap_or_default()
            ),
            format!("It is taken over automatically once older than {stale}. Either:"),
            format!("  wait for it:        deploy-lock run --wait {env}"),
            format!("  or, once you have checked that host: deploy-lock run --force {env}"),
        ],
        _ if squatter(insp).is_some() => {
            let owner = squatter(insp).unwrap_or_default();
            vec![
                format!(
                    "ERROR: {} belongs to {owner}, records no holder deploy-lock can check, and cannot be removed by you.",
                    insp.lock_dir.display()
                ),
                format!(
                    "Ask {owner} (or root) to check it and remove it: sudo rm -rf {}",
                    insp.lock_dir.display()
                ),
            ]
        }
        (_, Liveness::NoRecord) if insp.holder.is_none() => vec![
            format!(
                "ERROR: the {env} lock's holder is unknown (no record says who holds it: maybe a legacy deploy.sh that has not written its record yet); the lock is {age} old."
            ),
            format!(
                "It is taken over automatically once older than {stale}; --force does not take an unknown holder's lock. Either:"
            ),
            format!("  wait for it:          deploy-lock run --wait {env}"),
            format!("  or, once you know nobody deploys: deploy-lock unlock {env}"),
        ],
        _ => vec![
            format!(
                "ERROR: the {env} lock's holder is not running, but the lock is only {age} old."
            ),
            format!("It is taken over automatically once older than {stale}. Either:"),
            format!("  wait for that:        deploy-lock run --wait {env}"),
            format!("  or take it over now:  deploy-lock run --force {env}"),
        ],
    };
    for (i, l) in lines.iter().enumerate() {
        msg.push_str(&if i == 0 { style.red(l) } else { l.clone() });
        msg.push('\n');
    }
    let _ = std::io::stderr().write_all(msg.as_bytes());
}
