//! The modern wording: every error, warning and notice `deploy-lock` says in
//! its own words (the legacy texts live in `texts.rs`). One style for both
//! personas' own lines: `ERROR: ` and `WARNING: ` prefixes, the first line
//! red (or yellow), further lines plain.

use std::io::{self, Write};

use deploy_lock::Environment;
use deploy_lock::context::{ENV_PROJECT_ROOT, NoProjectRoot};
use deploy_lock::liveness::display_name;
use deploy_lock::lock::{BusyReason, LockError};
use deploy_lock::state::StateError;
use deploy_lock::status::{Inspection, Liveness, OUR_FILES};
use deploy_lock::store::{KeepEvent, RunHolder, Warning};
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
        Failure::Held(busy) => err
            .write_all(busy.block.as_bytes())
            .and_then(|()| lines(err, err_style, &busy_lines(busy, persona))),
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
        Failure::Setting(e) => vec![error(e)],
        Failure::NoCheckout(e) => vec![error(no_checkout(e))],
        Failure::Lock(e) => lock_error_lines(e),
        Failure::ServerHeld { env, remote } => vec![error(server_held(*env, remote))],
        Failure::ServerAnswer(e) => vec![error(format!("the server's status is not JSON ({e})"))],
        Failure::TimedOut {
            env,
            limit,
            phrase: Some(phrase),
        } => vec![error(format!(
            "gave up after {} waiting for the {env} lock ({phrase})",
            texts::span(limit.as_secs())
        ))],
        Failure::TimedOut { phrase: None, .. }
        | Failure::Cancelled
        | Failure::Interrupted(_)
        | Failure::LockLost
        | Failure::ServerExit(_) => Vec::new(),
        Failure::ChangedHands { env, now } => {
            let who = now
                .as_ref()
                .map(|h| deploy_lock::holder::describe(h))
                .unwrap_or_else(|| "an unknown holder".into());
            match persona {
                Persona::Unlock => vec![texts::changed_hands(&who)],
                Persona::DeployLock => {
                    let id = now
                        .as_ref()
                        .and_then(|h| h.lock_id.as_deref())
                        .unwrap_or("none");
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

/// One ERROR line, plus the guide's recovery steps for a state file that
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
        LockError::Store { detail } => detail.clone(),
        LockError::NotADirectory { path, what } => format!(
            "{} is {}, not a lock directory; deploy-lock never follows or removes it: \
             check what it is (ls -la {}) and remove it by hand",
            path.display(),
            non_directory(what),
            path.display()
        ),
        LockError::NotPermitted { path, owner_uid } => {
            let owner = user_name(*owner_uid);
            format!(
                "cannot remove {}: it belongs to {owner} and its folder only lets owners remove \
                 entries; ask {owner} (or root) to check it and remove it: sudo rm -rf {}",
                path.display(),
                path.display()
            )
        }
        LockError::OtherEnvironment {
            environment,
            holder,
        } => format!(
            "the state file's lock record belongs to a live {environment} deployment ({}); \
             one checkout records one lock at a time: wait for it to finish or deploy from another checkout",
            deploy_lock::holder::describe(holder)
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
                None => format!("{p}: {source}"),
            }
        }
        other => other.to_string(),
    }
}

fn server_held(env: Environment, remote: &Remote) -> String {
    let dir_flag = if remote.dir == remote::DEFAULT_REMOTE_DIR {
        String::new()
    } else {
        format!(" --remote-dir {}", remote::sh_quote(&remote.dir))
    };
    let t = &remote.target;
    format!(
        "a deployment holds the {env} lock on {t}: wait for it with deploy-lock {env} --remote {t}{dir_flag} --wait, or watch it with deploy-lock wait {env} --remote {t}{dir_flag}"
    )
}

/// A warning line on stderr (errors writing it are ignored: stderr is where
/// they would be reported).
pub fn warn(err: &mut dyn Write, style: Style, message: &str) {
    let _ = writeln!(err, "{}", style.yellow(&format!("WARNING: {message}")));
}

/// The engine's warnings, worded.
pub fn warning(w: &Warning) -> String {
    match w {
        Warning::Audit { log, error } => {
            let place = log
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "~/.togather/logs/deployments/locks.log".into());
            format!("could not append to the audit log {place}: {error}")
        }
        Warning::RecordProcess { error } => {
            format!("could not record the command's pid in the lock: {error}")
        }
        Warning::TakenByOther { env, holder } => {
            let who = holder
                .as_ref()
                .and_then(|h| h.locked_by.clone())
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
            prev.locked_by.as_deref().unwrap_or("an unknown holder"),
            prev.pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into()),
        ),
        None => format!("took over the {env} lock directory, which recorded no holder"),
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
                    .map(deploy_lock::holder::describe)
                    .unwrap_or_else(|| "someone else (no record)".into())
            ),
        ),
        KeepEvent::ForceUnlocked(a) => (
            true,
            format!(
                "WARNING: the {env} lock was force-unlocked by {} (pid {}) at {}; the command goes on, and no other deploy-lock run starts until it ends.",
                a.by, a.pid, a.at
            ),
        ),
        KeepEvent::Failed(msg) => (false, format!("WARNING: {msg}")),
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
                    "ERROR: lost the {env} lock while the command runs: {cause}; {what}; another deploy may start; exit {}",
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

/// "held by a deploy-lock run, pid N".
pub fn run_phrase(holder: Option<&RunHolder>) -> String {
    match holder {
        Some(h) => format!("held by a deploy-lock run, pid {}", h.pid),
        None => "held by a deploy-lock run".to_string(),
    }
}

/// What a busy lock is held by, for the progress line of `run --wait`.
pub fn holder_phrase(insp: &Inspection) -> String {
    match (&insp.liveness, &insp.holder) {
        (Liveness::Alive { pid, comm }, _) => {
            format!("held by {}, pid {pid}", display_name(*pid, comm))
        }
        (_, Some(h)) => format!(
            "held by {}",
            h.locked_by.as_deref().unwrap_or("an unknown holder")
        ),
        _ => "held".to_string(),
    }
}

pub fn other_environment_phrase(env: Environment, holder: &deploy_lock::status::Holder) -> String {
    format!(
        "the state file records a live {env} deployment: {}",
        deploy_lock::holder::describe(holder)
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

/// The status block (already rendered into the failure) and what to do.
fn busy_lines(b: &Busy, _persona: Persona) -> Vec<String> {
    let insp = &b.inspection;
    let env = b.env;
    let age = insp
        .age_seconds
        .map(|a| format!("{}m {}s", a / 60, a % 60))
        .unwrap_or_else(|| "unknown".into());
    let stale = texts::span(b.stale_after.as_secs());
    let lock = insp.lock_dir.display();
    // Another deploy-lock run's kernel lock: described by its directory's
    // live holder when there is one, else by the run itself (its directory
    // was removed while its command runs).
    let reason = match (b.reason, &insp.liveness) {
        (BusyReason::RunHeld, Liveness::Alive { .. }) => BusyReason::HolderAlive,
        (r, _) => r,
    };
    let lines: Vec<String> = match (reason, &insp.liveness) {
        (BusyReason::RunHeld, _) => vec![
            error(format!(
                "the {env} lock is {}; it frees when that process ends.",
                run_phrase(b.run_holder.as_ref())
            )),
            format!("  wait for it:          deploy-lock run --wait {env}"),
        ],
        (BusyReason::HolderAlive, Liveness::Alive { pid, comm }) => vec![
            error(format!(
                "the {env} lock is held by a running deployment: {} (pid {pid}), for {age}.",
                display_name(*pid, comm)
            )),
            "A live holder's lock is never taken over, whatever its age. Either:".into(),
            format!("  wait for it:          deploy-lock run --wait {env}"),
            format!("  watch it:             deploy-lock wait {env}"),
            format!("  or stop that process: kill {pid}"),
        ],
        (BusyReason::Obstructed, _) => vec![error(format!(
            "{lock} is {}, not a lock directory; deploy-lock never follows or removes it: check what it is (ls -la {lock}) and remove it by hand",
            insp.view
                .obstruction
                .as_ref()
                .map(non_directory)
                .unwrap_or_else(|| "not a directory".into()),
        ))],
        (BusyReason::ForeignContents, _) => vec![error(format!(
            "the {env} lock's holder is not running, but {lock} holds files deploy-lock did not put there ({}); a takeover would delete them, so it is refused: check them, then remove the directory by hand or with unlock.sh {env} --force",
            foreign_entries(insp)
        ))],
        (_, Liveness::OtherHost) => vec![
            error(format!(
                "the {env} lock is held from another host ({}) for {age}.",
                insp.holder
                    .as_ref()
                    .and_then(|h| h.hostname.clone())
                    .unwrap_or_default()
            )),
            format!("It is taken over automatically once older than {stale}. Either:"),
            format!("  wait for it:        deploy-lock run --wait {env}"),
            format!("  or, once you have checked that host: deploy-lock run --force {env}"),
        ],
        (BusyReason::Squatted { owner_uid }, _) => {
            let owner = user_name(owner_uid);
            vec![
                error(format!(
                    "{lock} belongs to {owner}, records no holder deploy-lock can check, and cannot be removed by you."
                )),
                format!("Ask {owner} (or root) to check it and remove it: sudo rm -rf {lock}"),
            ]
        }
        (_, Liveness::NoRecord) if insp.holder.is_none() => vec![
            error(format!(
                "the {env} lock's holder is unknown (no record says who holds it: maybe a legacy deploy.sh that has not written its record yet); the lock is {age} old."
            )),
            format!(
                "It is taken over automatically once older than {stale}; --force does not take an unknown holder's lock. Either:"
            ),
            format!("  wait for it:          deploy-lock run --wait {env}"),
            format!("  or, once you know nobody deploys: deploy-lock unlock {env}"),
        ],
        _ => vec![
            error(format!(
                "the {env} lock's holder is not running, but the lock is only {age} old."
            )),
            format!("It is taken over automatically once older than {stale}. Either:"),
            format!("  wait for that:        deploy-lock run --wait {env}"),
            format!("  or take it over now:  deploy-lock run --force {env}"),
        ],
    };
    lines
}

/// A user's name for messages, or `uid N` when the passwd database has none.
fn user_name(uid: u32) -> String {
    let uid = nix::unistd::Uid::from_raw(uid);
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {uid}"))
}
