//! Hooks (issue 22): a command named by `DEPLOY_LOCK_HOOK` (or the
//! checkout's deploy-lock.env) run on each lock event with the event's
//! audit line as JSON on stdin, detached so it can never delay the lock.
//!
//! How it stays out of the lock's way: the event is written to a memfd
//! first (never a pipe a hook might not read), and a runner (this program
//! again, `deploy-lock hook-run`, in a session of its own, stdout and
//! stderr on /dev/null so it holds no caller's pipe open) starts the hook
//! and bounds it with the timeout. Spawning the runner is one fork and exec;
//! nothing waits for it. A hook that fails or times out is a `hook_failed`
//! line in the audit log (the runner writes it), and a warning on stderr
//! from the process that fired it if that process is still running when
//! the hook has failed ([`failures_so_far`]).

use std::ffi::OsString;
use std::io::{Seek, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::context::Context;

/// The hook command, run with `sh -c`.
pub const ENV_HOOK: &str = "DEPLOY_LOCK_HOOK";
/// Seconds a hook may run before it is killed (default 10).
pub const ENV_HOOK_TIMEOUT: &str = "DEPLOY_LOCK_HOOK_TIMEOUT";
/// The checkout file's keys for hooks.
pub const VARIABLES: [&str; 2] = [ENV_HOOK, ENV_HOOK_TIMEOUT];
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The events a hook is run for (a takeover is an acquisition).
pub const EVENTS: [&str; 8] = [
    "acquire",
    "takeover",
    "release",
    "lost",
    "force_unlock",
    "freeze",
    "unfreeze",
    "release_skipped",
];

/// The configured hook: the command and its timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    pub command: String,
    pub timeout: Duration,
}

/// The hook of this process's context: the variable, else the checkout
/// file's line; read once (a process serves one checkout).
pub fn configured(ctx: &Context) -> Option<Hook> {
    static HOOK: OnceLock<Option<Hook>> = OnceLock::new();
    HOOK.get_or_init(|| {
        let file = crate::etcd::checkout_file::read_checkout_file(&ctx.project_root)
            .ok()
            .flatten();
        let get = |name: &str| -> Option<String> {
            std::env::var(name)
                .ok()
                .filter(|v| !v.is_empty())
                .or_else(|| file.as_ref()?.get(name).map(|e| e.value.clone()))
                .filter(|v| !v.trim().is_empty())
        };
        let command = get(ENV_HOOK)?;
        let timeout = get(ENV_HOOK_TIMEOUT)
            .and_then(|t| t.trim().parse::<f64>().ok())
            .filter(|t| t.is_finite() && *t > 0.0 && *t <= 86_400.0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs_f64);
        Some(Hook { command, timeout })
    })
    .clone()
}

/// Runners started by this process, with the event each serves.
static STARTED: Mutex<Vec<(i32, String)>> = Mutex::new(Vec::new());

/// Fires the hook for one audited event (`line`, the audit line as
/// written), if a hook is configured and the event is one hooks get. Never
/// fails: a hook that cannot even start is reported like one that failed.
pub fn fire(ctx: &Context, event: &str, line: &Value, log: Option<&Path>) {
    if !EVENTS.contains(&event) {
        return;
    }
    let Some(hook) = configured(ctx) else {
        return;
    };
    let Ok(stdin) = event_file(line) else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = Command::new(exe);
    cmd.arg0("deploy-lock")
        .arg("hook-run")
        .arg("--timeout")
        .arg(hook.timeout.as_secs_f64().to_string())
        .arg("--event")
        .arg(event)
        .arg("--environment")
        .arg(line["environment"].as_str().unwrap_or_default())
        .arg("--user")
        .arg(line["user"].as_str().unwrap_or_default())
        .arg("--state-file")
        .arg(&ctx.state_file)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(log) = log {
        cmd.arg("--log").arg(log);
    }
    cmd.arg("--").arg(&hook.command);
    // SAFETY: setsid is async-signal-safe. A session of its own: no
    // terminal signal meant for the run reaches the hook.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    if let Ok(child) = cmd.spawn() {
        STARTED
            .lock()
            .unwrap()
            .push((child.id() as i32, event.to_string()));
    }
}

/// The event, one JSON object and a newline, in an anonymous file at offset
/// 0: a hook that never reads its stdin blocks nobody.
fn event_file(line: &Value) -> std::io::Result<std::fs::File> {
    let name = c"deploy-lock-hook-event";
    // SAFETY: a plain syscall; the fd it returns is owned below.
    let fd = unsafe { nix::libc::memfd_create(name.as_ptr(), nix::libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut text = serde_json::to_string(line).expect("serialisable");
    text.push('\n');
    f.write_all(text.as_bytes())?;
    f.rewind()?;
    Ok(f)
}

/// The events whose hooks have failed by now (their runners ended with a
/// failure); runners still running are left alone, and reaped later.
pub fn failures_so_far() -> Vec<String> {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let mut started = STARTED.lock().unwrap();
    let mut failed = Vec::new();
    started.retain(|(pid, event)| {
        match waitpid(nix::unistd::Pid::from_raw(*pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => true,
            Ok(WaitStatus::Exited(_, 0)) => false,
            Ok(_) => {
                failed.push(event.clone());
                false
            }
            Err(_) => false,
        }
    });
    failed
}

/// What `hook-run` was asked to do.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub command: OsString,
    pub timeout: Duration,
    pub event: String,
    pub environment: String,
    pub user: String,
    pub log: Option<PathBuf>,
    pub state_file: PathBuf,
}

/// How a hook ended, when not well.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HookFailure {
    CannotStart(String),
    Exited(i32),
    Signaled(i32),
    TimedOut,
}

/// `deploy-lock hook-run`: runs the hook (`sh -c COMMAND`, its stdin ours,
/// in a process group of its own so a timeout ends all of it), waits at
/// most the timeout (then TERM, and KILL a second later), and on failure
/// appends `hook_failed` to the audit log. Err when it failed.
pub fn run(r: &Run) -> Result<(), HookFailure> {
    let failure = match Command::new("sh")
        .arg("-c")
        .arg(&r.command)
        .process_group(0)
        .spawn()
    {
        Err(e) => Some(HookFailure::CannotStart(e.to_string())),
        Ok(mut child) => {
            let deadline = Instant::now() + r.timeout;
            let pg = nix::unistd::Pid::from_raw(child.id() as i32);
            let failure;
            loop {
                match child.try_wait() {
                    Ok(Some(st)) => {
                        use std::os::unix::process::ExitStatusExt;
                        failure = match (st.code(), st.signal()) {
                            (Some(0), _) => None,
                            (Some(c), _) => Some(HookFailure::Exited(c)),
                            (None, Some(s)) => Some(HookFailure::Signaled(s)),
                            (None, None) => Some(HookFailure::Exited(-1)),
                        };
                        break;
                    }
                    Ok(None) if Instant::now() >= deadline => {
                        use nix::sys::signal::{Signal, killpg};
                        let _ = killpg(pg, Signal::SIGTERM);
                        let grace = Instant::now() + Duration::from_secs(1);
                        while Instant::now() < grace && matches!(child.try_wait(), Ok(None)) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        let _ = killpg(pg, Signal::SIGKILL);
                        let _ = child.wait();
                        failure = Some(HookFailure::TimedOut);
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                    Err(e) => {
                        failure = Some(HookFailure::CannotStart(e.to_string()));
                        break;
                    }
                }
            }
            failure
        }
    };
    let Some(failure) = failure else {
        return Ok(());
    };
    if let Some(log) = &r.log {
        let mut line = json!({
            "time": crate::times::utc_seconds(jiff::Timestamp::now()),
            "event": "hook_failed",
            "environment": r.environment,
            "user": r.user,
            "host": nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
            "pid": std::process::id(),
            "hook_event": r.event,
        });
        // (Not the command: a webhook URL in it may carry a token.)
        // A note, not `exit_status`: that is a run's command's.
        let what = match &failure {
            HookFailure::CannotStart(e) => format!("could not start: {e}"),
            HookFailure::Exited(c) => format!("exited {c}"),
            HookFailure::Signaled(s) => format!(
                "was killed by {}",
                nix::sys::signal::Signal::try_from(*s)
                    .map_or_else(|_| format!("signal {s}"), |g| g.as_str().to_string())
            ),
            HookFailure::TimedOut => format!(
                "timed out after {} s and was killed",
                r.timeout.as_secs_f64()
            ),
        };
        line["note"] = json!(format!("the {} hook {what}", r.event));
        let _ = crate::audit::append_line(log, &r.state_file, &line);
    }
    Err(failure)
}
