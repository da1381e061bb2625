//! `deploy-lock freeze` and `unfreeze`: a freeze is the lock held by a
//! detached deploy-lock process (its own session, stdio on /dev/null) that
//! took it exactly as `run` does and keeps it with the store's keeper.
//!
//! `freeze ENV` starts that holder (this binary again, with the hidden
//! `--holder UNTIL`), relays what it says while it takes the lock (a
//! refusal, `--wait` progress), and returns once it holds the lock (it
//! writes `held LOCK_ID` on the pipe that is its stdout, then lets go of
//! the pipes) or with its exit status when it could not. The holder ends at
//! `--until`, on TERM/INT/HUP (releasing: audited `unfreeze`), or when the
//! lock is removed under it (`unfreeze`, `unlock`: they audit `unfreeze`).
//!
//! `unfreeze ENV` removes only a freeze, re-checked by the store right
//! before removal as `unlock --id` is: a store-side force-unlock works for a
//! holder on another host, a dead one, and one that does not answer
//! signals, which a signal to the holder would not.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use deploy_lock::freeze::{UntilError, parse_until};
use deploy_lock::status::{Freeze, Verdict};
use deploy_lock::store::{Expect, KeepEvent, LockStore, Unlock};
use deploy_lock::supervise::Signals;
use deploy_lock::times::utc_seconds;
use deploy_lock::{Context, Environment};

use super::failure::Failure;
use super::messages;
use super::ops::Io;
use super::request::FreezeRequest;
use super::run::{self, Locking, RunPlan};

/// The first line the holder writes once it holds the lock.
const HELD: &str = "held ";

/// Ok(None) once frozen; Ok(Some(code)) when the holder could not take the
/// lock and said why (its exit status, for ours).
pub fn freeze(
    ctx: &Context,
    store: &dyn LockStore,
    req: FreezeRequest,
    io: &mut Io<'_>,
) -> Result<Option<i32>, Failure> {
    if let Some(until) = req.holder.clone() {
        return hold(ctx, store, req, &until, io);
    }
    let until = match &req.until {
        None => None,
        Some(text) => Some(
            parse_until(text, ctx.now(), &deploy_lock::tz::system_time_zone()).map_err(|e| {
                Failure::Usage(match e {
                    UntilError::Unreadable => format!(
                        "invalid --until '{text}': give an RFC 3339 time (2026-02-03T18:00:00Z), HH:MM today, or a duration (2h, 90m, '1h 30m')"
                    ),
                    UntilError::Past(at) => format!(
                        "--until '{text}' is {}, which has passed; give a time to come",
                        utc_seconds(at)
                    ),
                })
            })?,
        ),
    };
    // Whole seconds, as the record keeps them: rounded up, so a freeze
    // never lifts before the time asked for.
    let until = until.map(|at| {
        let whole = jiff::Timestamp::from_second(at.as_second()).unwrap_or(at);
        if whole < at {
            whole + jiff::SignedDuration::from_secs(1)
        } else {
            whole
        }
    });
    store.check_usable()?;
    let exe = std::env::current_exe().map_err(|source| Failure::Io {
        what: "cannot find this program to start the freeze's holder".into(),
        source,
    })?;
    let mut cmd = Command::new(&exe);
    cmd.arg0("deploy-lock")
        .args(std::env::args_os().skip(1))
        .arg("--holder")
        .arg(until.map_or_else(|| "never".to_string(), utc_seconds))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls (setsid, prctl).
    unsafe {
        cmd.pre_exec(|| {
            // Its own session: no terminal's Ctrl-C or hangup reaches it.
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            // Until it holds the lock it is ours: if we die (Ctrl-C while
            // it waits), it must not freeze behind our back.
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                .map_err(std::io::Error::from)
        });
    }
    let mut child = cmd.spawn().map_err(|source| Failure::CannotRun {
        program: exe.clone(),
        source,
    })?;
    let said = relay(&mut child, io)?;
    match said.strip_prefix(HELD) {
        Some(id) => {
            let id = id.trim();
            let env = req.env;
            let end = match until {
                Some(at) => format!("until {}", utc_seconds(at)),
                None => "until unfrozen".to_string(),
            };
            writeln!(
                io.out,
                "The {env} lock is frozen {end}: {} (lock id {id}, holder pid {}).",
                messages::shown(&req.reason),
                child.id()
            )?;
            writeln!(io.out, "Lift it: deploy-lock unfreeze {env}")?;
            io.out.flush()?;
            Ok(None)
        }
        // It said why on stderr (relayed): its own exit status.
        None => {
            use std::os::unix::process::ExitStatusExt;
            let st = child.wait().map_err(|source| Failure::Io {
                what: "lost track of the freeze's holder".into(),
                source,
            })?;
            Ok(Some(
                st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0)),
            ))
        }
    }
}

/// Copies the holder's stderr to ours as it comes (a refusal, progress
/// lines) and collects its stdout, until it has closed both: once it holds
/// the lock (it points them at /dev/null), or when it ends.
fn relay(child: &mut std::process::Child, io: &mut Io<'_>) -> Result<String, Failure> {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let mut said = Vec::new();
    let mut buf = [0u8; 4096];
    let far = Instant::now() + Duration::from_secs(365 * 86_400);
    let io_err = |source| Failure::Io {
        what: "cannot read the freeze's holder".into(),
        source,
    };
    while out.is_some() || err.is_some() {
        let fds: Vec<_> = out
            .iter()
            .map(|o| o.as_fd())
            .chain(err.iter().map(|e| e.as_fd()))
            .collect();
        let Some(i) = deploy_lock::wait::poll_any(&fds, far).map_err(io_err)? else {
            continue;
        };
        if i == 0
            && let Some(o) = out.as_mut()
        {
            match o.read(&mut buf).map_err(io_err)? {
                0 => out = None,
                n => said.extend_from_slice(&buf[..n]),
            }
        } else if let Some(e) = err.as_mut() {
            match e.read(&mut buf).map_err(io_err)? {
                0 => err = None,
                n => {
                    io.err.write_all(&buf[..n])?;
                    io.err.flush()?;
                }
            }
        }
    }
    Ok(String::from_utf8_lossy(&said).into_owned())
}

/// The detached holder: take the lock as `run` does (refusal, `--wait`),
/// say so, let go of the pipes, keep it until the end, release it.
fn hold(
    ctx: &Context,
    store: &dyn LockStore,
    req: FreezeRequest,
    until: &str,
    io: &mut Io<'_>,
) -> Result<Option<i32>, Failure> {
    let until = match until {
        "never" => None,
        t => Some(deploy_lock::times::parse_time(t).ok_or_else(|| {
            Failure::Usage(format!("--holder '{t}': not a time (an internal flag)"))
        })?),
    };
    let signals = Signals::install().map_err(|source| Failure::Io {
        what: "cannot set up signal handling".into(),
        source,
    })?;
    store.check_usable()?;
    let plan = RunPlan {
        env: req.env,
        program: PathBuf::new(),
        args: Vec::new(),
        wait: req.wait.map(|w| w.unwrap_or(ctx.settings.wait_timeout)),
        force: false,
        locking: Locking::Local,
        typed: req.typed,
        deploy_sh: false,
        reason: Some(req.reason),
        freeze: Some(Freeze {
            until: until.map(utc_seconds),
        }),
    };
    let mut held = run::acquire(ctx, store, &plan, &signals, io)?;
    io.warn_all(&std::mem::take(&mut held.warnings));
    // Ours now, not our starter's: its end no longer ends us. A TERM that
    // came before this (it died meanwhile) is still pending and read below.
    let _ = nix::sys::prctl::set_pdeathsig(None);
    writeln!(io.out, "{HELD}{}", held.record.lock_id)?;
    io.out.flush()?;
    io.err.flush()?;
    detach_stdio();
    let end = until.map(|at| {
        let left = at.duration_since(jiff::Timestamp::now());
        Instant::now() + Duration::try_from(left).unwrap_or(Duration::ZERO)
    });
    {
        let mut keeping = store.keep(&mut held);
        'held: loop {
            let next = [keeping.deadline(), end]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            let mut fds = vec![signals.fd()];
            fds.extend(keeping.fd());
            let _ = deploy_lock::wait::poll_any(&fds, next);
            while let Some((signo, _, _)) = signals.next() {
                use nix::sys::signal::Signal;
                if signo == Signal::SIGCONT as i32 {
                    keeping.resumed();
                } else if signo != Signal::SIGCHLD as i32 && signo != Signal::SIGWINCH as i32 {
                    break 'held;
                }
            }
            for ev in keeping.service() {
                // Unfrozen (or unlocked) under us, taken, or lost: nothing
                // left to hold.
                if matches!(
                    ev,
                    KeepEvent::ForceUnlocked(_)
                        | KeepEvent::TakenBy { .. }
                        | KeepEvent::Lost { .. }
                ) {
                    deploy_lock::audit::freeze_lifted_elsewhere();
                    break 'held;
                }
            }
            if end.is_some_and(|e| Instant::now() >= e) {
                break;
            }
        }
    }
    // Nothing to say to: the pipes are /dev/null now.
    let _ = store.release(*held);
    Ok(None)
}

/// Points stdin, stdout and stderr at /dev/null: `freeze` reads its pipes
/// until both close, and a holder must never write to a terminal it left.
fn detach_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
}

/// Lifts a freeze: only a freeze (anything else is `unlock`'s), only the one
/// `--id` names if given, re-checked by the store right before removal.
pub fn unfreeze(
    ctx: &Context,
    store: &dyn LockStore,
    env: Environment,
    id: Option<&str>,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let insp = store.inspect(env)?;
    let freeze = insp
        .holder
        .as_ref()
        .filter(|h| insp.lock_dir_exists() && h.freeze.is_some());
    if freeze.is_none() && !insp.locked() {
        writeln!(
            io.out,
            "Nothing to unfreeze: the {env} lock is free; nothing changed."
        )?;
        io.out.flush()?;
        return Ok(());
    }
    let Some(holder) = freeze else {
        return Err(Failure::Usage(format!(
            "the {env} lock is not frozen (verdict: {}); nothing changed. A run's lock is lifted with `deploy-lock unlock {env}`",
            insp.verdict.as_str()
        )));
    };
    let current = holder.lock_id.clone().unwrap_or_default();
    if let Some(given) = id
        && given != current
    {
        return Err(Failure::WrongId {
            env,
            given: given.to_string(),
            current: Some(current),
        });
    }
    let dead = insp.verdict != Verdict::Frozen;
    let forced = store.force_unlock(env, Some(Expect::LockId(&current)))?;
    io.warn_all(&forced.warnings);
    match forced.outcome {
        Unlock::Done(_) => {
            // The holder (on this host) lets go of the rest, its run lock,
            // as it ends a moment later: wait for that, briefly, so a run
            // started right after "Unfrozen" is not refused.
            let until = Instant::now() + Duration::from_secs(5);
            let here = holder.hostname.as_deref() == Some(ctx.host.as_str());
            while here
                && Instant::now() < until
                && holder.processes.iter().any(|p| p.alive().is_some())
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            writeln!(
                io.out,
                "Unfrozen: the {env} lock is free (freeze {current} by {}{}).",
                messages::describe_holder(holder),
                if dead { ", whose holder had died" } else { "" }
            )?;
            io.out.flush()?;
            Ok(())
        }
        Unlock::ChangedHands { now } => Err(Failure::ChangedHands {
            env,
            now: now.map(Box::new),
        }),
    }
}
