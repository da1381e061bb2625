//! The modern wording: every error, warning and notice `deploy-lock` says in
//! its own words (the legacy texts live in `texts.rs`). One style for both
//! personas' own lines: `ERROR: ` and `WARNING: ` prefixes, the first line
//! red (or yellow), further lines plain.

use std::io::{self, Write};

use deploy_lock::Environment;
use deploy_lock::context::{ENV_PROJECT_ROOT, NoProjectRoot};
use deploy_lock::etcd::LossCause;
use deploy_lock::fsops::FolderProblem;
use deploy_lock::liveness::display_name;
use deploy_lock::lock::{BusyReason, LockError};
use deploy_lock::state::StateError;
use deploy_lock::status::{Inspection, Liveness, OUR_FILES};
use deploy_lock::store::{KeepEvent, KeepFailure, RunHolder, Warning};
use deploy_lock::view::NonDirectory;

use super::failure::{Busy, Failure, LegacyUsage};
use super::remote::{self, Remote};
use super::request::Persona;
use super::style::Style;
use super::texts;

/// Prints `failure` the way its persona does: the legacy usage refusals on
/// stdout, everything else on stderr. Write errors here have nowhere to go.
pub fn report(
    f: &Failure,
    persona: Persona,
    out: &mut dyn Write,
    out_style: Style,
    err: &mut dyn Write,
    err_style: Style,
) {
    if f.is_quiet() {
        return;
    }
    // Renumbered by --conflict-exit-code: worded as itself.
    if let Failure::Conflict { failure, .. } = f {
        return report(failure, persona, out, out_style, err, err_style);
    }
    let _ = match f {
        Failure::LegacyUsage(u) => legacy_usage(u, out, out_style).or_else(|e| {
            // The usage text could not be shown: say that instead.
            match e.kind() {
                io::ErrorKind::BrokenPipe => Ok(()),
                _ => lines(err, err_style, &failure_lines(&Failure::Output(e), persona)),
            }
        }),
        Failure::Clap(e) => {
            let text = e.render().to_string();
            // clap's `error:` in our one style.
            let text = match text.strip_prefix("error:") {
                Some(rest) => format!("ERROR:{rest}"),
                None => text,
            };
            err.write_all(text.as_bytes())
        }
        Failure::Held(busy) => lines(err, err_style, &busy_lines(busy)),
        _ => lines(err, err_style, &failure_lines(f, persona)),
    };
    let _ = err.flush();
}

fn legacy_usage(u: &LegacyUsage, out: &mut dyn Write, style: Style) -> io::Result<()> {
    match u {
        LegacyUsage::NoEnvironment { invoked } => out.write_all(texts::usage(invoked).as_bytes()),
        LegacyUsage::InvalidEnvironment(e) => lines(out, style, &texts::invalid_environment(e)),
        LegacyUsage::InvalidAction(a) => lines(out, style, &texts::invalid_action(a)),
    }?;
    out.flush()
}

/// Lines on stderr, the first red; write errors have nowhere to go.
pub fn print_lines(w: &mut dyn Write, style: Style, text: &[String]) {
    let _ = lines(w, style, text);
}

/// The first line red, the rest plain.
fn lines(w: &mut dyn Write, style: Style, lines: &[String]) -> io::Result<()> {
    for (i, l) in lines.iter().enumerate() {
        if i == 0 {
            writeln!(w, "{}", style.red(l))?;
        } else {
            writeln!(w, "{l}")?;
        }
    }
    Ok(())
}

fn error(msg: impl std::fmt::Display) -> String {
    format!("ERROR: {msg}")
}

/// The whole message for a failure, first line first.
pub fn failure_lines(f: &Failure, persona: Persona) -> Vec<String> {
    match f {
        Failure::Clap(e) => vec![e.to_string()],
        Failure::Usage(m) => vec![error(m)],
        Failure::LegacyUsage(_) | Failure::Held(_) => Vec::new(),
        Failure::Conflict { failure, .. } => failure_lines(failure, persona),
        Failure::Setting(e) => vec![error(e)],
        Failure::NoCheckout(e) => vec![error(no_checkout(e))],
        Failure::BadProjectRoot(e) => vec![error(format!(
            "{e}; name a checkout (the folder that holds deploy/), or leave it unset to use the checkout around the working directory"
        ))],
        Failure::Untrusted(e) => vec![error(e)],
        Failure::RunFileSquatted {
            env,
            run_file,
            holder,
        } => {
            let p = run_file.display().to_string();
            vec![
                error(format!(
                    "the {env} lock cannot be waited for: {p} is {}; the lock being released would not let a deploy start.",
                    squatter_phrase(holder)
                )),
                squatter_fix(&p, holder),
            ]
        }
        Failure::Lock(e) => lock_error_lines(e),
        Failure::ServerHeld {
            env,
            remote,
            status,
            typed,
        } => server_held(*env, remote, status, typed),
        Failure::State {
            env,
            error: e,
            live_lock,
        } => match persona {
            Persona::Unlock => lock_error_lines(e),
            Persona::DeployLock => state_error_lines(e, *env, *live_lock),
        },
        Failure::NotFree => Vec::new(),
        Failure::NoAnswer => vec![error(
            "no answer on stdin; pass --yes to confirm without a terminal",
        )],
        Failure::ServerAnswer(e) => vec![error(format!("the server's status is not JSON ({e})"))],
        Failure::TimedOut {
            env,
            limit,
            phrase: Some(phrase),
        } => vec![error(format!(
            "gave up after {} waiting for the {env} lock ({phrase})",
            texts::span_f(limit.as_secs_f64())
        ))],
        Failure::TimedOut { phrase: None, .. }
        | Failure::Cancelled
        | Failure::Interrupted(_)
        | Failure::LockLost
        | Failure::ServerExit(_) => Vec::new(),
        Failure::WrongId {
            env,
            given,
            current,
        } => vec![error(match current {
            Some(id) => format!(
                "{given} is not the {env} lock's id: its id is {id} (deploy-lock status {env} shows who holds it); nothing changed"
            ),
            None => format!(
                "{given} is not the {env} lock's id: no record names an id for it (deploy-lock status {env} shows what holds it; unlock without --id asks before removing it); nothing changed"
            ),
        })],
        Failure::ChangedHands { env, now } => {
            let who = now
                .as_ref()
                .map(|h| describe_holder(h))
                .unwrap_or_else(|| "an unknown holder".into());
            match persona {
                Persona::Unlock => vec![texts::changed_hands(&who)],
                Persona::DeployLock => {
                    let id = now
                        .as_ref()
                        .and_then(|h| shown_opt(h.lock_id.as_deref()))
                        .unwrap_or_else(|| "none".into());
                    vec![error(format!(
                        "the {env} lock changed hands since it was shown: it is held by {who} now (lock id {id}); nothing changed"
                    ))]
                }
            }
        }
        Failure::NotHolder { env, token } => vec![error(format!(
            "fencing token {token} no longer holds the {env} lock: stop before anything irreversible"
        ))],
        Failure::WaitForDead { env, pid } => {
            let pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
            vec![error(format!(
                "the {env} lock's holder{pid} is not running, so waiting would never end; clear it with `deploy-lock unlock {env}`, or take it over with `deploy-lock run --force {env}`"
            ))]
        }
        Failure::Remote(e) => vec![error(e)],
        Failure::Io { what, source } => vec![error(format!("{what}: {source}"))],
        Failure::Output(e) => vec![error(format!("cannot write to standard output: {e}"))],
        Failure::CannotRun { program, source } => {
            vec![error(format!("cannot run {}: {source}", program.display()))]
        }
        Failure::NoDeployScript { path, env } => vec![error(format!(
            "{} does not exist; name the command to run: deploy-lock run {env} -- COMMAND [ARGS...]",
            path.display()
        ))],
        Failure::ArgsAndCommand { words } => {
            let words: Vec<String> = words
                .iter()
                .map(|w| w.to_string_lossy().into_owned())
                .collect();
            let _ = persona;
            vec![error(format!(
                "deploy.sh's arguments ({}) and a command after -- cannot be given together: the words before -- go to deploy.sh, the command after -- replaces it",
                words.join(" ")
            ))]
        }
    }
}

fn no_checkout(e: &NoProjectRoot) -> String {
    format!(
        "{e}; run from inside the checkout, or pass --project-root DIR (or set {ENV_PROJECT_ROOT})"
    )
}

/// One ERROR line, plus the legacy persona's recovery steps for a state file that
/// cannot be parsed.
pub fn lock_error_lines(err: &LockError) -> Vec<String> {
    let mut out = vec![error(lock_error(err))];
    if let LockError::State(e) = err
        && !matches!(e, StateError::Io { .. })
    {
        let broken = match e {
            StateError::Shape {
                only_lock: true, ..
            } => texts::Broken::LockNotObject,
            StateError::Shape { .. } => texts::Broken::NotObject,
            _ => texts::Broken::NotJson,
        };
        out.extend(texts::state_recovery(e.path(), broken));
    }
    out
}

/// The modern error for a state file that is not usable, with recovery
/// steps that work on a file that is not JSON (jq cannot read it): an
/// editor, or `unlock --reset-state`, which keeps the file as a backup.
///
/// `--reset-state` removes the lock directory, so it is not offered while
/// that directory exists with a holder that may still run (`live_lock`).
pub fn state_error_lines(
    err: &LockError,
    env: Option<Environment>,
    live_lock: bool,
) -> Vec<String> {
    let env = env.map(|e| e.as_str()).unwrap_or("ENV");
    let LockError::State(e) = err else {
        return lock_error_lines(err);
    };
    if matches!(e, StateError::Io { .. }) {
        return lock_error_lines(err);
    }
    let p = e.path().display();
    let at = match e {
        StateError::Parse { line, .. } => format!(" +{line}"),
        _ => String::new(),
    };
    if live_lock {
        return vec![
            error(lock_error(err)),
            format!(
                "The {env} lock is held and its holder may still run (the file may be mid-write, or was damaged): do not reset it now."
            ),
            "To recover once that deploy has ended:".into(),
            format!("  repair it by hand:   cp {p} {p}.backup && ${{EDITOR:-vi}}{at} {p}"),
        ];
    }
    vec![
        error(lock_error(err)),
        "To recover, either:".into(),
        format!("  repair it by hand:   cp {p} {p}.backup && ${{EDITOR:-vi}}{at} {p}"),
        format!(
            "  or start afresh:     deploy-lock unlock {env} --reset-state   (keeps the file beside it as a backup, releases the lock)"
        ),
    ]
}

/// What is wrong with the lock folder, and the fix; never an internal
/// file's name.
fn lock_folder(path: &std::path::Path, problem: &FolderProblem) -> String {
    let p = path.display();
    let point = "or point DEPLOY_LOCK_DIR (or --lock-dir) at the folder that holds the locks";
    match problem {
        FolderProblem::Missing => format!(
            "the lock folder {p} does not exist, so no lock can be taken or seen there; create it (mkdir -p {p}, writable by everyone who deploys), {point}"
        ),
        FolderProblem::NotADirectory(what) => {
            format!("the lock folder {p} is {what}, not a folder; {point}")
        }
        FolderProblem::NotWritable { uid, gid, mode } => {
            let owner = user_name(*uid);
            let group =
                deploy_lock::accounts::group_name(*gid).unwrap_or_else(|| format!("gid {gid}"));
            format!(
                "the lock folder {p} is not writable by you ({}): it is owned by {owner}:{group} with mode {mode:04o}; ask {owner} to let you write there (e.g. chgrp a group you are in, chmod g+w), {point}",
                user_name(nix::unistd::geteuid().as_raw())
            )
        }
        FolderProblem::Unreadable(e) => {
            format!("the lock folder {p} cannot be checked ({e}); {point}")
        }
    }
}

/// "a symbolic link to /x", "a regular file", ...
pub fn non_directory(what: &NonDirectory) -> String {
    match what {
        NonDirectory::Symlink(Some(t)) => format!("a symbolic link to {}", t.display()),
        NonDirectory::Symlink(None) => "a symbolic link".into(),
        NonDirectory::File => "a regular file".into(),
        NonDirectory::Other => "not a directory".into(),
        NonDirectory::Unreadable(e) => format!("unreadable ({e})"),
    }
}

/// What the engine's error means, with what to do about it.
pub fn lock_error(err: &LockError) -> String {
    match err {
        LockError::Store(e) => e.to_string(),
        LockError::NotADirectory { path, what } => format!(
            "{} is {}, not a lock directory; deploy-lock never follows or removes it: \
             check what it is (ls -la {}) and remove it by hand",
            path.display(),
            non_directory(what),
            path.display()
        ),
        LockError::NotPermitted { path, owner_uid } => {
            let owner = user_name(*owner_uid);
            // Root clears it through deploy-lock, so the audit trail says
            // who (SUDO_USER) did; `rm -rf` would leave no trace.
            let env = Environment::ALL
                .into_iter()
                .find(|e| path.file_name() == Some(e.lock_dir_name().as_ref()))
                .map_or("ENV", |e| e.as_str());
            format!(
                "cannot remove {}: it belongs to {owner} and its folder only lets owners remove \
                 entries; ask {owner} to check it, or clear it as root, audited under your name: \
                 sudo deploy-lock unlock {env}",
                path.display(),
            )
        }
        LockError::LockFolder { path, problem } => lock_folder(path, problem),
        LockError::OtherEnvironment {
            environment,
            holder,
        } => format!(
            "the state file's lock record belongs to a live {environment} deployment ({}); \
             one checkout records one lock at a time: wait for it to finish or deploy from another checkout",
            describe_holder(holder)
        ),
        LockError::Io { path, source } => {
            let problem = source
                .get_ref()
                .and_then(|e| e.downcast_ref::<deploy_lock::fsops::GuardProblem>());
            let p = path.display();
            match problem {
                Some(g @ deploy_lock::fsops::GuardProblem::NotRegular { .. }) => {
                    format!("{p}: {g}; check what it is (ls -la {p}) and remove it")
                }
                Some(g @ deploy_lock::fsops::GuardProblem::HeldTooLong { .. }) => format!(
                    "{p}: {g} (deploy-lock holds it for milliseconds); find the holder with: fuser -v {p}"
                ),
                Some(deploy_lock::fsops::GuardProblem::Unopenable {
                    what,
                    uid,
                    mode,
                    error,
                }) => {
                    let owner = user_name(*uid);
                    let who = if *uid == 0 {
                        "root".to_string()
                    } else {
                        format!("{owner} (or root)")
                    };
                    format!(
                        "{p} cannot be opened ({error}): it is {what} owned by {owner} with mode \
                         {mode:04o}; ask {who} to remove it while no deploy runs \
                         (sudo rm -rf {p}): deploy-lock re-creates it as a regular file with mode 0644"
                    )
                }
                None => format!("{p}: {source}"),
            }
        }
        other => other.to_string(),
    }
}

/// The refusal of `deploy-lock ENV --remote` while the server's lock is
/// held: at most 6 lines, as a local refusal, from the server's status.
fn server_held(
    env: Environment,
    remote: &Remote,
    status: &serde_json::Value,
    typed: &super::request::Typed,
) -> Vec<String> {
    let dir_flag = if remote.dir == remote::DEFAULT_REMOTE_DIR {
        String::new()
    } else {
        format!(" --remote-dir {}", remote::sh_quote(&remote.dir))
    };
    let t = &remote.target;
    let h = &status["holder"];
    // A remote host's answer: through the sanitiser like any outside text.
    let text = |v: &serde_json::Value| deploy_lock::sanitize::text_opt(v.as_str());
    let who = text(&h["locked_by"]).unwrap_or_else(|| "an unknown holder".into());
    let since = match (text(&h["locked_at"]), status["age_seconds"].as_i64()) {
        (Some(at), Some(a)) => format!(" since {at} ({} ago)", age(a)),
        (Some(at), None) => format!(" since {at}"),
        (None, Some(a)) => format!(" for {}", age(a)),
        (None, None) => String::new(),
    };
    let running = match (status["holder_alive"].as_bool(), h["pid"].as_i64()) {
        (Some(true), Some(pid)) => format!(
            "Running there: {} (pid {pid}); a running holder's lock is never taken over.",
            text(&h["process_name"]).unwrap_or_else(|| "its process".into())
        ),
        _ => "Whether it still runs cannot be checked from here; it is held until it is released or stale.".into(),
    };
    vec![
        error(format!("the {env} lock on {t} is held by {who}{since}.")),
        running,
        format!("  wait for it:      {}", typed.with("--wait")),
        format!("  details:          deploy-lock status {env} --remote {t}{dir_flag}"),
    ]
}

/// A warning line on stderr (errors writing it are ignored: stderr is where
/// they would be reported).
pub fn warn(err: &mut dyn Write, style: Style, message: &str) {
    let _ = writeln!(err, "{}", style.yellow(&format!("WARNING: {message}")));
}

/// The etcd copy of this run's audit events could not be written.
pub fn audit_copy_failed(n: usize, e: &deploy_lock::store::StoreError) -> String {
    let events = if n == 1 { "event" } else { "events" };
    format!("could not copy {n} audit {events} to etcd ({e}); this checkout's audit log has them")
}

/// `log` could not read the team's events from etcd.
pub fn team_log_unreadable(e: &deploy_lock::etcd::EtcdError) -> String {
    format!(
        "could not read the other machines' audit events from etcd ({e}); showing this checkout's log only"
    )
}

/// The engine's warnings, worded.
pub fn warning(w: &Warning) -> String {
    match w {
        Warning::Audit { log, error } => {
            let place = log
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "(none: no checkout and HOME is not set)".into());
            format!("could not append to the audit log {place}: {error}")
        }
        Warning::RecordProcess { error } => {
            format!(
                "could not record the command's pid in the lock: {}",
                error.0
            )
        }
        Warning::TakenByOther { env, holder } => {
            let who = holder
                .as_ref()
                .and_then(|h| shown_opt(h.locked_by.as_deref()))
                .unwrap_or_else(|| "another holder".into());
            format!("the {env} lock is held by {who} now; left it alone")
        }
        Warning::Announce { path, error } => format!(
            "could not announce the unlock to its holder ({}: {error}); it may restore its lock",
            path.display()
        ),
    }
}

/// `--remote` with local settings: they are not sent.
pub fn remote_settings_ignored(target: &str) -> String {
    format!(
        "--lock-dir, --project-root, --stale-secs and --wait-* apply to local locks; \
         {target} uses its own settings (set DEPLOY_LOCK_* there, or pass them with ssh's SendEnv)"
    )
}

/// The notice when `run` took over a dead holder's lock.
pub fn took_over(env: Environment, prev: Option<&deploy_lock::status::Holder>) -> String {
    match prev {
        Some(prev) => format!(
            "took over the {env} lock left by {} (pid {}, not running)",
            shown_opt(prev.locked_by.as_deref()).unwrap_or_else(|| "an unknown holder".into()),
            prev.pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into()),
        ),
        None => format!("took over the {env} lock directory, which recorded no holder"),
    }
}

/// Why a network lock was lost, as the run's error line says it (the audit
/// line's `cause` is the same words, from the cause's Display, written by
/// the library).
pub fn loss_cause(cause: &LossCause) -> String {
    match cause {
        LossCause::LeaseGone => "the lock's lease expired or was revoked".into(),
        LossCause::KeyDeleted { revision } => {
            format!("the lock's key was deleted (revision {revision})")
        }
        LossCause::KeyReplaced { token, revision } => {
            format!("another holder took the lock (fencing token {token}, revision {revision})")
        }
        LossCause::NoKeepaliveAck { since, ttl } => format!(
            "no lease renewal acknowledged for {:.1} s of its {} s TTL (etcd unreachable \
             or this process was stopped)",
            since.as_secs_f64(),
            ttl.as_secs()
        ),
    }
}

/// What the keeper did while the command runs; `true` for the loud ones.
pub fn keep_event(env: Environment, ev: &KeepEvent) -> (bool, String) {
    match ev {
        KeepEvent::Restored { directory, record } => {
            let what = match (directory, record) {
                (true, true) => "lock directory and state record",
                (true, false) => "lock directory",
                _ => "state record",
            };
            (
                false,
                format!(
                    "WARNING: the {env} {what} vanished while the command runs, removed by something other than a deploy-lock unlock (the legacy deploy.sh's exit trap does this); restored, same lock id"
                ),
            )
        }
        KeepEvent::TakenBy { holder } => (
            true,
            format!(
                "WARNING: the {env} lock was removed while the command runs and is now held by {}; not taken back. No other deploy-lock run starts until this one ends.",
                holder
                    .as_ref()
                    .map(describe_holder)
                    .unwrap_or_else(|| "someone else (no record)".into())
            ),
        ),
        KeepEvent::ForceUnlocked(a) => (
            true,
            format!(
                "WARNING: the {env} lock was force-unlocked by {} (pid {}) at {}; the command goes on, and no other deploy-lock run starts until it ends.",
                shown(&a.by),
                a.pid,
                shown(&a.at)
            ),
        ),
        KeepEvent::Failed(KeepFailure::Heartbeat { path, error, .. }) => (
            false,
            format!("WARNING: could not refresh {}: {error}", path.display()),
        ),
        KeepEvent::Failed(KeepFailure::Restore { error }) => (
            false,
            format!("WARNING: could not restore the lock: {error}"),
        ),
        KeepEvent::Lost {
            cause,
            stop,
            kill_after,
        } => {
            let what = match (stop, kill_after) {
                (None, _) => "the command goes on (DEPLOY_LOCK_ON_LOST=warn)".to_string(),
                (Some(_), Some(g)) => format!(
                    "stopping the command: SIGTERM now, SIGKILL in {} s",
                    g.as_secs()
                ),
                (Some(_), None) => "stopping the command: SIGTERM now".to_string(),
            };
            (
                true,
                format!(
                    "ERROR: lost the {env} lock while the command runs: {}; {what}; another deploy may start; exit {}",
                    loss_cause(cause),
                    super::failure::LOST
                ),
            )
        }
        KeepEvent::Stop(_) => (
            true,
            format!("ERROR: the command outlived the grace after losing the {env} lock: SIGKILL"),
        ),
    }
}

/// `deploy@host, pid 123`: a holder as every message names it (worded here,
/// not in the library, which only returns the record).
pub fn describe_holder(h: &deploy_lock::status::Holder) -> String {
    let who = shown_opt(h.locked_by.as_deref()).unwrap_or_else(|| "unknown".into());
    match h.pid {
        Some(pid) => format!("{who}, pid {pid}"),
        None => who.to_string(),
    }
}

/// "held by a deploy-lock run, pid N".
pub fn run_phrase(holder: Option<&RunHolder>) -> String {
    match holder {
        // The command's pid, as status shows it; the wrapper named as such.
        Some(h) if h.command.is_some_and(|c| c != h.pid) => format!(
            "held by a deploy-lock run's command, pid {}, under deploy-lock pid {}",
            h.shown_pid(),
            h.pid
        ),
        Some(h) => format!("held by a deploy-lock run, pid {}", h.pid),
        None => "held by a deploy-lock run".to_string(),
    }
}

/// A run file another program holds an flock on: whose process it is.
pub fn squatter_phrase(sq: &deploy_lock::lock::runlock::FlockHolder) -> String {
    let user = sq.uid.map_or_else(|| "an unknown user".into(), user_name);
    format!(
        "locked by pid {} of {user}, which is not a deploy-lock run (the file belongs to {})",
        sq.pid,
        user_name(sq.file_uid)
    )
}

/// What to do about a squatted run file.
pub fn squatter_fix(run_file: &str, sq: &deploy_lock::lock::runlock::FlockHolder) -> String {
    let who = match sq.uid {
        Some(0) | None => "root".to_string(),
        Some(u) => format!("{} (or root)", user_name(u)),
    };
    format!(
        "No deploy-lock run can start until it lets go: ask {who} to stop pid {} (fuser -v {run_file} shows it).",
        sq.pid
    )
}

/// A lock's age in the modern persona: `3m 20s` under a day, `2d 7h` from a
/// day on (minutes alone stop reading well: `3333m 20s`). unlock.sh keeps
/// the legacy's minutes and seconds.
pub fn age(secs: i64) -> String {
    const DAY: i64 = 86_400;
    if secs >= DAY {
        format!("{}d {}h", secs / DAY, secs % DAY / 3600)
    } else {
        format!("{}m {}s", secs / 60, secs % 60)
    }
}

/// What a busy lock is held by, for the progress line of `run --wait`.
pub fn holder_phrase(insp: &Inspection) -> String {
    if let Some(f) = insp.network.as_ref().and_then(|n| n.foreign.as_ref()) {
        return format!("held by {}", foreign_value(f));
    }
    with_reason(holder_who(insp), insp)
}

/// A phrase about the lock's holder, with the reason it gave after it:
/// `held by alice; reason: hotfix #123`.
pub fn with_reason(phrase: String, insp: &Inspection) -> String {
    match holder_reason(insp) {
        Some(r) => format!("{phrase}; reason: {r}"),
        None => phrase,
    }
}

/// The reason the lock's holder gave (`run --reason`), sanitised for one
/// line; none for a free lock or a holder that gave none.
pub fn holder_reason(insp: &Inspection) -> Option<String> {
    if !insp.locked() {
        return None;
    }
    shown_opt(insp.holder.as_ref()?.reason.as_deref())
}

/// `frozen by alice@web1 until 2026-02-03T18:00:00Z` (or `until
/// unfrozen`): a live freeze's holder.
pub fn freeze_phrase(insp: &Inspection) -> String {
    let holder = insp.holder.as_ref();
    let who = holder
        .and_then(|h| shown_opt(h.locked_by.as_deref()))
        .unwrap_or_else(|| "an unknown user".into());
    match holder
        .and_then(|h| h.freeze.as_ref())
        .and_then(|f| f.until.as_deref())
    {
        Some(until) => format!("frozen by {who} until {}", shown(until)),
        None => format!("frozen by {who} until unfrozen"),
    }
}

fn holder_who(insp: &Inspection) -> String {
    if insp.verdict == deploy_lock::status::Verdict::Frozen {
        return freeze_phrase(insp);
    }
    match (&insp.liveness, &insp.holder) {
        (Liveness::Alive { pid, comm }, _) => {
            format!("held by {}, pid {pid}", display_name(*pid, comm))
        }
        (_, Some(h)) => format!(
            "held by {}",
            shown_opt(h.locked_by.as_deref()).unwrap_or_else(|| "an unknown holder".into())
        ),
        _ => "held".to_string(),
    }
}

/// A network lock key that deploy-lock did not write, or without a lease,
/// as what it is: `13 bytes that are not a deploy-lock record ("hello")`,
/// `a deploy-lock record without a lease`.
pub fn foreign_value(f: &deploy_lock::status::ForeignValue) -> String {
    use deploy_lock::status::ForeignValue;
    let more = if f.size > ForeignValue::HEAD {
        "..."
    } else {
        ""
    };
    let what = if f.is_record {
        "a deploy-lock record".to_string()
    } else {
        format!(
            "{} bytes that are not a deploy-lock record (\"{}\"{more})",
            f.size, f.head
        )
    };
    if f.has_lease {
        what
    } else {
        format!("{what} without a lease")
    }
}

/// What becomes of a foreign key: one with a lease goes with it; one
/// without never expires, and only `unlock` removes it.
pub fn foreign_fate(f: &deploy_lock::status::ForeignValue, env: Environment) -> String {
    if f.has_lease {
        format!(
            "it goes when its lease ends, or `deploy-lock unlock {env}` removes it after showing it"
        )
    } else {
        format!(
            "it never expires and nothing takes it over: `deploy-lock unlock {env}` removes it after showing it"
        )
    }
}

pub fn other_environment_phrase(env: Environment, holder: &deploy_lock::status::Holder) -> String {
    format!(
        "the state file records a live {env} deployment: {}",
        describe_holder(holder)
    )
}

fn foreign_entries(insp: &Inspection) -> String {
    let names = insp.dir.iter().flat_map(|d| d.entries.iter());
    names
        .map(|e| e.to_string_lossy().into_owned())
        .filter(|e| !OUR_FILES.contains(&e.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// For a lock whose owner.json someone other than the directory's owner
/// wrote (and which is therefore not believed): who owns what.
fn disowned_record(insp: &deploy_lock::status::Inspection) -> Option<String> {
    let d = insp.dir.as_ref()?;
    let by = d.disowned_record_uid?;
    Some(format!(
        "  note: {} belongs to {}, but its owner.json was written by {}, so it is not believed",
        insp.lock_dir.display(),
        user_name(d.uid),
        user_name(by)
    ))
}

/// A held lock's refusal: at most 6 lines saying who holds it, since when,
/// whether it runs, and the user's own command to retry with (`--wait`, or
/// `--force` where that would work). The full status block is `status`'s.
pub fn busy_lines(b: &Busy) -> Vec<String> {
    let insp = &b.inspection;
    let env = b.env;
    let age = insp
        .age_seconds
        .map(age)
        .unwrap_or_else(|| "unknown".into());
    let stale = texts::span(b.stale_after.as_secs());
    let lock = insp.lock_dir.display();
    let holder = insp.holder.as_ref();
    let who = holder
        .and_then(|h| shown_opt(h.locked_by.as_deref()))
        .unwrap_or_else(|| "an unknown holder".into());
    // The one age every message uses, as a time too.
    // From the inspection's own clock reading: read again here, a second
    // could tick between the age and this time.
    let since = match insp.age_seconds.and_then(|a| {
        insp.now
            .checked_sub(jiff::SignedDuration::from_secs(a))
            .ok()
    }) {
        Some(at) => format!("since {} ({age} ago)", deploy_lock::times::utc_seconds(at)),
        None => "for an unknown time".to_string(),
    };
    let wait = b.typed.with("--wait");
    let force = b.typed.with("--force");
    let details = format!("  details:          deploy-lock status {env}");
    // Another deploy-lock run's kernel lock: described by its directory's
    // live holder when there is one, else by the run itself (its directory
    // was removed while its command runs).
    let reason = match (b.reason, &insp.liveness) {
        (BusyReason::RunHeld, Liveness::Alive { .. }) => BusyReason::HolderAlive,
        (r, _) => r,
    };
    let foreign = insp.network.as_ref().and_then(|n| n.foreign.as_ref());
    let run_file = insp
        .lock_dir
        .with_file_name(env.run_file_name())
        .display()
        .to_string();
    let frozen = insp.verdict == deploy_lock::status::Verdict::Frozen
        || holder.is_some_and(|h| h.freeze.is_some()) && reason == BusyReason::HolderAlive;
    let mut lines: Vec<String> = match (reason, &insp.liveness) {
        // A freeze: its reason, who froze it, until when, the way out.
        _ if frozen => vec![
            error(format!("the {env} lock is {}, {since}.", freeze_phrase(insp))),
            format!("  wait for it:      {wait}"),
            format!("  lift it:          deploy-lock unfreeze {env}"),
            details,
        ],
        // One line: what the key holds and the one way out.
        _ if let Some(f) = foreign => vec![error(format!(
            "the {env} lock key {} holds {}; {}",
            insp.network.as_ref().map(|n| n.key.as_str()).unwrap_or(""),
            foreign_value(f),
            foreign_fate(f, env)
        ))],
        (BusyReason::RunHeld, _) if b.squatter.is_some() => {
            let sq = b.squatter.as_ref().expect("checked");
            vec![
                error(format!(
                    "the {env} lock cannot be taken: {run_file} is {}.",
                    squatter_phrase(sq)
                )),
                squatter_fix(&run_file, sq),
                format!("  wait for it:      {wait}"),
                details,
            ]
        }
        (BusyReason::RunHeld, _) => vec![
            error(format!(
                "the {env} lock is {}; it frees when that process ends.",
                run_phrase(b.run_holder.as_ref())
            )),
            format!("  wait for it:      {wait}"),
            details,
        ],
        (BusyReason::HolderAlive, Liveness::Alive { pid, comm }) => {
            let mut l = vec![
                error(format!("the {env} lock is held by {who} {since}.")),
                format!(
                    "Running on this host: {} (pid {pid}); a running holder's lock is never taken over.",
                    display_name(*pid, comm)
                ),
                format!("  wait for it:      {wait}"),
                details,
            ];
            if b.holder_is_callers {
                l.push(format!("  or stop it:       kill {pid}"));
            }
            l
        }
        (BusyReason::Obstructed, _) => vec![error(format!(
            "{lock} is {}, not a lock directory; deploy-lock never follows or removes it: check what it is (ls -la {lock}) and remove it by hand",
            insp.view
                .obstruction
                .as_ref()
                .map(non_directory)
                .unwrap_or_else(|| "not a directory".into()),
        ))],
        (BusyReason::Queued { ahead }, _) => vec![
            error(format!(
                "the {env} lock is free, but {ahead} {} in line for it; a deploy without --wait would jump the queue.",
                if ahead == 1 { "run waits" } else { "runs wait" }
            )),
            queue_line(&insp.waiters).unwrap_or_default(),
            format!("  join the queue:   {wait}"),
            details,
        ],
        (BusyReason::ForeignContents, _) => vec![error(format!(
            "the {env} lock's holder is not running, but {lock} holds files deploy-lock did not put there ({}); a takeover would delete them, so it is refused: check them, then remove the directory by hand or with unlock.sh {env} --force",
            foreign_entries(insp)
        ))],
        (_, Liveness::OtherHost) => {
            let host = holder
                .and_then(|h| shown_opt(h.hostname.as_deref()))
                .unwrap_or_default();
            vec![
                error(format!("the {env} lock is held by {who} {since}.")),
                format!(
                    "On another host ({host}): whether it runs cannot be checked from here. It is taken over automatically once older than {stale}."
                ),
                format!("  wait for it:      {wait}"),
                format!("  once {host} is checked: {force}"),
                details,
            ]
        }
        (BusyReason::Squatted { owner_uid }, _) => {
            let owner = user_name(owner_uid);
            vec![
                error(format!(
                    "{lock} belongs to {owner}, records no holder deploy-lock can check, and cannot be removed by you."
                )),
                format!(
                    "Ask {owner} to check it, or clear it as root, audited under your name: sudo deploy-lock unlock {env}"
                ),
            ]
        }
        (_, Liveness::NoRecord) if holder.is_none() => vec![
            error(format!(
                "the {env} lock's holder is unknown (no record says who holds it: maybe a legacy deploy.sh that has not written it yet); the lock is {age} old."
            )),
            format!(
                "It is taken over automatically once older than {stale}; --force does not take an unknown holder's lock."
            ),
            format!("  wait for it:      {wait}"),
            format!("  once you know nobody deploys: deploy-lock unlock {env}"),
            details,
        ]
        .into_iter()
        .chain(disowned_record(insp))
        .collect(),
        _ => {
            let pid = holder
                .and_then(|h| h.pid)
                .map(|p| format!("pid {p}"))
                .unwrap_or_else(|| "its process".into());
            vec![
                error(format!("the {env} lock is held by {who} {since}.")),
                format!(
                    "Not running ({pid} is gone), but the lock is younger than {stale}, after which it is taken over automatically."
                ),
                format!("  wait for that:    {wait}"),
                format!("  take it over now: {force}"),
                details,
            ]
        }
    };
    // Why the holder holds it, under the first line (a foreign key or a
    // squatter has no record to give one).
    if let Some(r) = holder_reason(insp)
        && foreign.is_none()
        && b.squatter.is_none()
    {
        lines.insert(1.min(lines.len()), format!("Reason: {r}"));
    }
    lines.truncate(6);
    lines
}

/// `2 waiting: alice (hotfix #123) since 10:02, bob since 10:03`: the
/// queue, first first, with each waiter's reason and the local time it
/// joined (its words sanitised). None when nobody waits.
pub fn queue_line(waiters: &[deploy_lock::status::Waiter]) -> Option<String> {
    if waiters.is_empty() {
        return None;
    }
    let each: Vec<String> = waiters
        .iter()
        .map(|w| {
            let mut s = shown(&w.user);
            if let Some(r) = shown_opt(w.reason.as_deref()) {
                s.push_str(&format!(" ({r})"));
            }
            if let Some(t) = clock_time(&w.since) {
                s.push_str(&format!(" since {t}"));
            }
            s
        })
        .collect();
    Some(format!("{} waiting: {}", waiters.len(), each.join(", ")))
}

/// `10:02`: a UTC time as the local wall clock shows it.
fn clock_time(utc: &str) -> Option<String> {
    let t = deploy_lock::times::parse_time(utc)?;
    let dt = deploy_lock::tz::system_time_zone().to_datetime(t);
    Some(format!("{:02}:{:02}", dt.hour(), dt.minute()))
}

/// `1st`, `2nd`, `3rd`, `4th`, `11th`, `21st`.
pub fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A waiter's place for its progress line: `2nd in line`, when the look
/// found this process (by pid, on this host) in a queue of more than one
/// (a lone waiter's line stays as it was).
pub fn place_in_line(insp: &Inspection, host: &str) -> Option<String> {
    if insp.waiters.len() < 2 {
        return None;
    }
    let me = std::process::id() as i32;
    let at = insp
        .waiters
        .iter()
        .position(|w| w.pid == me && w.host == host)?;
    Some(format!("{} in line", ordinal(at + 1)))
}

/// A user's name for messages, or `uid N` when the passwd database has none.
/// Outside text (a record, a remote answer) for a message: see
/// [`deploy_lock::sanitize`].
pub fn shown(s: &str) -> String {
    deploy_lock::sanitize::text(s).into_owned()
}

pub fn shown_opt(s: Option<&str>) -> Option<String> {
    deploy_lock::sanitize::text_opt(s)
}

pub fn user_name(uid: u32) -> String {
    deploy_lock::accounts::user_name(uid).unwrap_or_else(|| format!("uid {uid}"))
}

/// `log --since` with a value that is neither a duration nor a time.
pub fn bad_since(text: &str) -> String {
    format!(
        "invalid --since '{text}': give a duration back from now (90s, 30m, 2h, 1d, '1h 30m') or a UTC time (2026-02-03T20:00:00Z)"
    )
}

/// `log` with nothing to show (stderr; stdout stays empty for scripts).
pub fn no_events(paths: &[&std::path::Path]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    format!("no matching events in {}", names.join(" or "))
}

/// Why `wait` gave up, inside its timeout error.
pub fn still_held(env: Environment) -> String {
    format!("it is still held; if its deployment crashed: deploy-lock unlock {env}")
}

/// The force-unlock banner for a lock on a network store (etcd): the
/// legacy banner speaks of a lock directory and a state file, which a lease
/// lock has neither of, and a lease holder stops its command when it loses
/// the lock, which the person confirming must know.
/// A key without a lease (written by hand) is simply deleted.
pub fn force_warning_network(key: &str, has_lease: bool) -> Vec<String> {
    let first = if has_lease {
        format!("  1. Revoke the holder's lease, which deletes the lock key: {key}")
    } else {
        format!("  1. Delete the lock key, which has no lease: {key}")
    };
    vec![
        "⚠ FORCE UNLOCK - This is dangerous!".to_string(),
        String::new(),
        "This will:".to_string(),
        first,
        "  2. Make the holder stop its command: it loses the lock and, unless it runs with DEPLOY_LOCK_ON_LOST=warn, sends it SIGTERM".to_string(),
        String::new(),
        "Only do this if:".to_string(),
        "  - The deployment process crashed or hangs".to_string(),
        "  - You've verified no deployment should go on".to_string(),
        String::new(),
    ]
}

/// After a forced unlock on a network store: what happened to the key.
pub fn network_unlocked(removed: bool, has_lease: bool) -> &'static str {
    if removed && !has_lease {
        "✓ The lock key is deleted"
    } else if removed {
        "✓ Lease revoked; the lock key is gone"
    } else {
        "The lock key does not exist (already released)"
    }
}

/// `wait` and `unlock.sh --wait`, on stderr after the release: the holder's
/// process still runs (said, not waited for).
pub fn holder_still_running_after_release(
    env: Environment,
    running: &[(
        deploy_lock::liveness::ProcessIdentity,
        deploy_lock::liveness::ProcInfo,
    )],
) -> String {
    let who: Vec<String> = running
        .iter()
        .map(|(p, info)| {
            format!(
                "{} (pid {})",
                deploy_lock::liveness::display_name(p.pid, &info.ps_comm()),
                p.pid
            )
        })
        .collect();
    format!(
        "the {env} lock was released, but its holder {} still runs (a legacy deploy.sh releases before it exits, and again on TERM/INT); `deploy-lock run --wait {env}` waits for it to end before it takes the lock",
        who.join(", ")
    )
}

/// `run --wait`: the lock was released but its holder's process still runs
/// (the legacy deploy.sh releases before it ends): waited for first.
pub fn holder_still_ending(
    env: Environment,
    running: &[deploy_lock::liveness::ProcessIdentity],
) -> String {
    let pids: Vec<String> = running.iter().map(|p| p.pid.to_string()).collect();
    format!(
        "the {env} lock was released, but its holder's process {} still runs; waiting up to {} s for it to end before taking the lock (a legacy deploy.sh releases before it exits, and again on TERM/INT)",
        pids.join(", "),
        deploy_lock::exit_wait::EXIT_GRACE.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_is_worded_as_the_audit_line_words_it() {
        use std::time::Duration;
        for cause in [
            LossCause::LeaseGone,
            LossCause::KeyDeleted { revision: 7 },
            LossCause::KeyReplaced {
                token: 9,
                revision: 10,
            },
            LossCause::NoKeepaliveAck {
                since: Duration::from_millis(1500),
                ttl: Duration::from_secs(2),
            },
        ] {
            assert_eq!(loss_cause(&cause), cause.to_string());
        }
    }
    use std::path::PathBuf;

    /// The keeper's failures, worded here now, read as they did when the
    /// library wrote them.
    #[test]
    fn ages_from_a_day_on_are_days_and_hours() {
        assert_eq!(age(200), "3m 20s");
        assert_eq!(age(86_399), "1439m 59s");
        assert_eq!(age(86_400), "1d 0h");
        assert_eq!(age(2 * 86_400 + 7 * 3600 + 59 * 60), "2d 7h");
    }

    #[test]
    fn keeper_failures_read_as_before() {
        let dir = PathBuf::from("/locks/togather-deploy-staging.lock");
        let e = io::Error::from(io::ErrorKind::PermissionDenied);
        let ev = KeepEvent::Failed(KeepFailure::Heartbeat {
            path: dir.join(deploy_lock::status::LOCKED_AT_FILE),
            error: e.to_string(),
        });
        assert_eq!(
            keep_event(Environment::Staging, &ev),
            (
                false,
                format!(
                    "WARNING: could not refresh {}/locked_at: {e}",
                    dir.display()
                )
            )
        );
        let e = LockError::Interrupted;
        let ev = KeepEvent::Failed(KeepFailure::Restore {
            error: e.to_string(),
        });
        assert_eq!(
            keep_event(Environment::Staging, &ev),
            (false, format!("WARNING: could not restore the lock: {e}"))
        );
    }
}
