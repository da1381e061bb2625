//! The audit trail: one JSON line per lock event, appended to the checkout's
//! log beside its state file, which every operator of the checkout shares.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::context::Context;
use crate::environment::Environment;
use crate::status::Holder;
use crate::times::utc_seconds;

/// The checkout's log, in the state file's folder (`deploy/config/`); keep it
/// out of git like the state file.
pub const LOG_NAME: &str = "deployment-audit.log";

/// Names another file for the checkout's log (a shared folder, say).
pub const ENV_AUDIT_LOG: &str = "DEPLOY_LOCK_AUDIT_LOG";

/// How this process's command ended, once it has: `run` sets it after
/// reaping the command and before releasing the lock, so the release event
/// says how the run ended (exit status, or the signal: a Ctrl-C is told
/// apart from an exit 3). One process runs at most one command, so a
/// process-wide cell; no store needs to carry it.
static COMMAND_END: OnceLock<Value> = OnceLock::new();

/// A copy of the trail beyond this checkout (the etcd backend's, under the
/// environment's prefix, so `log` shows the whole team across machines).
/// Events recorded by this process are queued for it and shipped in one
/// write by [`ship_copies`], once the lock operation is done: a copy never
/// delays or fails the lock.
pub trait Copies: Send {
    fn put(&self, events: &[(Environment, Value)]) -> Result<(), crate::store::StoreError>;
}

type CopyQueue = (Box<dyn Copies>, Vec<(Environment, Value)>);

static COPIES: std::sync::Mutex<Option<CopyQueue>> = std::sync::Mutex::new(None);

/// From now on, every event this process records is also queued for `to`.
pub fn copy_to(to: Box<dyn Copies>) {
    *COPIES.lock().unwrap() = Some((to, Vec::new()));
}

/// Ships the queued copies: how many went, or how many could not and why
/// (the caller warns; the events are in the local trail all the same).
pub fn ship_copies() -> Result<usize, (usize, crate::store::StoreError)> {
    let mut guard = COPIES.lock().unwrap();
    let Some((to, queue)) = guard.as_mut() else {
        return Ok(0);
    };
    let events = std::mem::take(queue);
    if events.is_empty() {
        return Ok(0);
    }
    to.put(&events)
        .map(|()| events.len())
        .map_err(|e| (events.len(), e))
}

/// The queued copies, for a store that ships them with a write of its own
/// (the etcd release's txn); [`requeue_copies`] gives back what it could
/// not ship.
pub fn take_copies() -> Vec<(Environment, Value)> {
    COPIES
        .lock()
        .unwrap()
        .as_mut()
        .map(|(_, q)| std::mem::take(q))
        .unwrap_or_default()
}

pub fn requeue_copies(mut events: Vec<(Environment, Value)>) {
    if let Some((_, q)) = COPIES.lock().unwrap().as_mut() {
        events.append(q);
        *q = events;
    }
}

/// Records how the command of this process's run ended.
pub fn command_ended(code: Option<i32>, signal: Option<i32>) {
    let _ = COMMAND_END.set(exit_fields(code, signal));
}

/// Set by a freeze's holder whose freeze was lifted by someone else
/// (`unfreeze`, `unlock`, a lost lease): that one audited the `unfreeze`, so
/// the holder's own release of what is left is a plain `release`. One
/// process holds at most one freeze, so a process-wide flag, as above.
static FREEZE_LIFTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records that this process's freeze was lifted by someone else.
pub fn freeze_lifted_elsewhere() {
    FREEZE_LIFTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Whether [`freeze_lifted_elsewhere`] was called.
pub fn was_freeze_lifted_elsewhere() -> bool {
    FREEZE_LIFTED.load(std::sync::atomic::Ordering::Relaxed)
}

/// Where this context's events go: `DEPLOY_LOCK_AUDIT_LOG`, else the
/// checkout's log beside the state file, else (no checkout: status and wait
/// outside one, which record nothing today) the user's own old log.
pub fn log_path(ctx: &Context) -> Option<PathBuf> {
    if let Some(p) = override_path() {
        return Some(p);
    }
    match ctx.no_checkout {
        None => Some(checkout_log(&ctx.state_file)),
        Some(_) => ctx.home.as_deref().map(log_path_in),
    }
}

/// `DEPLOY_LOCK_AUDIT_LOG` when set and not empty.
pub fn override_path() -> Option<PathBuf> {
    std::env::var_os(ENV_AUDIT_LOG)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The checkout log beside `state_file`.
pub fn checkout_log(state_file: &Path) -> PathBuf {
    state_file.with_file_name(LOG_NAME)
}

/// The old per-user audit log of the user whose home is `home`: still read
/// by `deploy-lock log`, written only where there is no checkout.
pub fn log_path_in(home: &Path) -> PathBuf {
    home.join(".togather/logs/deployments/locks.log")
}

/// Appends one line. The caller turns an error into a warning: an audit
/// failure never undoes or blocks the lock operation itself.
pub fn record(
    ctx: &Context,
    event: &str,
    env: Environment,
    holder: Option<&Holder>,
    extra: Value,
) -> io::Result<PathBuf> {
    let path =
        log_path(ctx).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "HOME is not set"));
    let who = Who::now(ctx);
    let mut line = json!({
        "time": utc_seconds(ctx.now()),
        "event": event,
        "environment": env.as_str(),
        "user": who.user,
        "host": ctx.host,
        "pid": std::process::id(),
        "holder": holder,
        "command": command_line(std::env::args_os()),
    });
    if let (Value::Object(l), Some(by)) = (&mut line, who.sudo_as) {
        l.insert("sudo".into(), json!(true));
        l.insert("effective_user".into(), json!(by));
    }
    if let (Value::Object(l), Value::Object(e)) = (&mut line, extra) {
        l.extend(e);
    }
    if let (Value::Object(l), true, Some(Value::Object(end))) =
        (&mut line, event.starts_with("release"), COMMAND_END.get())
    {
        l.extend(end.clone());
    }
    if let Some((_, queue)) = COPIES.lock().unwrap().as_mut() {
        queue.push((env, line.clone()));
    }
    let written = path.and_then(|path| {
        let mut text = serde_json::to_string(&line).expect("serialisable");
        text.push('\n');
        let mut f = if override_path().is_none() && ctx.no_checkout.is_some() {
            open_private(&path)?
        } else {
            open_shared(&path, &ctx.state_file)?
        };
        // O_APPEND and a single write keep concurrent lines whole.
        f.write_all(text.as_bytes())?;
        Ok(path)
    });
    // The hook gets the event whether or not the log took it (detached: it
    // costs this process one fork and exec, see `crate::hook`).
    crate::hook::fire(ctx, event, &line, written.as_deref().ok());
    written
}

/// Appends one line the caller built (a hook runner's `hook_failed`) to the
/// shared log at `path`, as [`record`] does.
pub fn append_line(path: &Path, state_file: &Path, line: &Value) -> io::Result<()> {
    let mut text = serde_json::to_string(line).expect("serialisable");
    text.push('\n');
    open_shared(path, state_file)?.write_all(text.as_bytes())
}

/// The event's `exit_status` or `signal` for a command that ended so.
pub fn exit_fields(code: Option<i32>, signal: Option<i32>) -> Value {
    match (code, signal) {
        (_, Some(n)) => {
            let name = nix::sys::signal::Signal::try_from(n)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {n}"));
            json!({ "signal": name, "signal_number": n })
        }
        (Some(c), None) => json!({ "exit_status": c }),
        (None, None) => json!({}),
    }
}

/// Who did it. Under sudo (root, with SUDO_USER set, as sudo sets it) the
/// person who typed the command, with root noted; an ordinary user cannot
/// claim another's name this way, since only root's SUDO_USER is believed.
struct Who {
    user: String,
    sudo_as: Option<String>,
}

impl Who {
    fn now(ctx: &Context) -> Who {
        let sudo_user = std::env::var("SUDO_USER").ok().filter(|u| !u.is_empty());
        match sudo_user {
            Some(u) if nix::unistd::geteuid().is_root() => Who {
                user: u,
                sudo_as: Some(ctx.user().to_string()),
            },
            _ => Who {
                user: ctx.user().to_string(),
                sudo_as: None,
            },
        }
    }
}

/// The command as typed: argv with argv[0] as invoked (so `unlock.sh` shows
/// as such), lossily decoded. A freeze's holder is this program re-run with
/// the person's words plus a last `--holder UNTIL` (see `cli::freeze`): its
/// lines show the person's command, not that internal pair.
fn command_line(args: impl Iterator<Item = OsString>) -> Vec<String> {
    let mut words: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let n = words.len();
    if n >= 3 && words[n - 2] == "--holder" {
        words.truncate(n - 2);
    }
    words
}

/// O_APPEND, never through a symlink, not inherited by the deploy command;
/// O_NONBLOCK so that a FIFO put there cannot hang the open (it changes
/// nothing for a regular file).
fn append_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.append(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC | nix::libc::O_NONBLOCK);
    o
}

/// Refuses anything but a regular file (a FIFO would block us; a device is
/// not a log).
fn regular(f: File, path: &Path) -> io::Result<File> {
    if f.metadata()?.file_type().is_file() {
        Ok(f)
    } else {
        Err(io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )))
    }
}

/// The shared log: opened for appending; created, when missing, with the
/// group and the read/write bits of the state file (or of its folder when
/// there is no state file yet), so whoever may change the lock may also
/// append to its log, whatever this user's umask.
fn open_shared(path: &Path, state_file: &Path) -> io::Result<File> {
    match append_options().open(path) {
        Ok(f) => return regular(f, path),
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    let like = std::fs::metadata(state_file)
        .or_else(|_| std::fs::metadata(path.parent().unwrap_or(Path::new("."))))?;
    let mode = like.mode() & 0o666;
    let f = match append_options().create_new(true).mode(0o600).open(path) {
        Ok(f) => f,
        // Someone else created it meanwhile: theirs is as good.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return regular(append_options().open(path)?, path);
        }
        Err(e) => return Err(e),
    };
    // The group first, then the mode (chown may clear set-id bits only).
    // Not being in that group is no error: the mode still applies.
    let _ = std::os::unix::fs::fchown(&f, None, Some(like.gid()));
    f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(f)
}

/// The old per-user log: its folders 0700 and the file 0600 whatever the
/// umask (they say where this user deployed), never through a symlink.
fn open_private(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        make_private_dirs(dir)?;
    }
    match append_options().create_new(true).mode(0o600).open(path) {
        Ok(f) => {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            Ok(f)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            regular(append_options().open(path)?, path)
        }
        Err(e) => Err(e),
    }
}

/// mkdir -p, each folder it creates set to 0700 (mkdir's mode is masked by
/// the umask, hence the chmod).
fn make_private_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        make_private_dirs(parent)?;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freeze_holders_line_shows_the_persons_command() {
        let argv = |w: &[&str]| w.iter().map(OsString::from).collect::<Vec<_>>().into_iter();
        assert_eq!(
            command_line(argv(&[
                "deploy-lock",
                "freeze",
                "production",
                "--reason",
                "x",
                "--holder",
                "never"
            ])),
            ["deploy-lock", "freeze", "production", "--reason", "x"]
        );
        assert_eq!(
            command_line(argv(&["unlock.sh", "staging"])),
            ["unlock.sh", "staging"]
        );
    }

    #[test]
    fn exit_fields_name_the_signal_or_the_status() {
        assert_eq!(exit_fields(Some(3), None), json!({ "exit_status": 3 }));
        assert_eq!(
            exit_fields(None, Some(2)),
            json!({ "signal": "SIGINT", "signal_number": 2 })
        );
        assert_eq!(exit_fields(None, None), json!({}));
    }

    #[test]
    fn the_shared_log_takes_the_state_files_group_and_mode_and_refuses_non_files() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("deployment-state.json");
        std::fs::write(&state, "{}").unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o664)).unwrap();
        let log = checkout_log(&state);
        // (The test's umask, usually 022, would clear the group's w.)
        drop(open_shared(&log, &state).unwrap());
        let m = std::fs::metadata(&log).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o664);
        assert_eq!(m.gid(), std::fs::metadata(&state).unwrap().gid());
        // A symlink is not followed; a FIFO is refused.
        std::fs::remove_file(&log).unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &log).unwrap();
        assert!(open_shared(&log, &state).is_err());
        assert!(!dir.path().join("elsewhere").exists());
        std::fs::remove_file(&log).unwrap();
        nix::unistd::mkfifo(&log, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        // Held open for reading too, so the open itself would succeed.
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&log)
            .unwrap();
        let e = open_shared(&log, &state).unwrap_err();
        assert!(e.to_string().ends_with("is not a regular file"), "{e}");
    }

    #[test]
    fn the_private_log_is_0600_in_0700_folders() {
        let home = tempfile::tempdir().unwrap();
        let log = log_path_in(home.path());
        drop(open_private(&log).unwrap());
        assert_eq!(std::fs::metadata(&log).unwrap().mode() & 0o7777, 0o600);
        for d in [".togather", ".togather/logs", ".togather/logs/deployments"] {
            let m = std::fs::metadata(home.path().join(d)).unwrap().mode();
            assert_eq!(m & 0o7777, 0o700, "{d}");
        }
    }
}
