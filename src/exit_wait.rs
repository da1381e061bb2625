//! Waiting for a lock holder's process itself to end, not only its lock: the
//! legacy deploy.sh releases its lock while it still runs (and on TERM or INT
//! releases a second time), so a waiter that took the lock at once could lose
//! it to that second release. A pidfd says when the process is gone.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::liveness::{ProcInfo, ProcessIdentity};
use crate::status::{Holder, HolderSource, Inspection, Liveness};
use crate::wait::poll_any;

/// How long a waiter waits for a released holder's process to end before it
/// takes the lock anyway (a legacy deploy.sh ends 0.1-1 s after its release;
/// a process that lives on after a force-unlock must not block for ever).
pub const EXIT_GRACE: Duration = Duration::from_secs(30);

/// When the pidfd cannot be had (an old kernel), how often to look.
const FALLBACK_POLL: Duration = Duration::from_millis(20);

/// Why [`wait_for_exit`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// None of the processes runs any more.
    Exited,
    /// `until` passed with one still running.
    Timeout,
    /// The extra descriptor became readable (a signal).
    Extra,
}

/// The processes of a legacy holder (one the state file's record names: a
/// deploy.sh run directly) that runs on this host right now: what a waiter
/// that sees the lock released must outlast. A deploy-lock holder (its own
/// owner.json, or an etcd record) releases once, after its command ended,
/// so it is not waited for.
pub fn live_holder_processes(insp: &Inspection) -> Vec<ProcessIdentity> {
    if !matches!(insp.liveness, Liveness::Alive { .. }) || insp.network.is_some() {
        return Vec::new();
    }
    insp.holder
        .as_ref()
        .filter(|h| h.source == HolderSource::StateFile)
        .map(|h| {
            h.processes
                .iter()
                .filter(|p| p.alive().is_some())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// [`live_holder_processes`] of a holder named by the state file's record
/// (another environment's, say), which runs on this host right now.
pub fn live_record_holder_processes(h: &Holder) -> Vec<ProcessIdentity> {
    if h.source != HolderSource::StateFile {
        return Vec::new();
    }
    h.processes
        .iter()
        .filter(|p| p.alive().is_some())
        .cloned()
        .collect()
}

/// Whether one of `procs` still holds: `insp`'s holder, or the other
/// environment's lock that owns the checkout's state record.
pub fn held_by_any(insp: &Inspection, procs: &[ProcessIdentity]) -> bool {
    let named = |h: &Holder| {
        h.processes
            .iter()
            .any(|p| procs.iter().any(|q| q.pid == p.pid))
    };
    insp.holder.as_ref().is_some_and(named)
        || insp
            .other_environment
            .as_ref()
            .is_some_and(|o| named(&o.holder))
}

/// The processes of `procs` that still run (a zombie has ended).
pub fn still_running(procs: &[ProcessIdentity]) -> Vec<(ProcessIdentity, ProcInfo)> {
    procs
        .iter()
        .filter_map(|p| p.alive().map(|info| (p.clone(), info)))
        .collect()
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
    // or -1; the descriptor is owned by nobody else.
    let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor from the kernel, owned here alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Blocks until none of `procs` runs, `until` passes, or `extra` is
/// readable. Each process is checked for its identity (start time) after its
/// pidfd is opened, so a recycled pid is never waited for.
pub fn wait_for_exit(
    procs: &[ProcessIdentity],
    until: Instant,
    extra: Option<BorrowedFd<'_>>,
) -> io::Result<Exit> {
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut unwatched: Vec<ProcessIdentity> = Vec::new();
    for p in procs {
        match pidfd_open(p.pid) {
            Ok(fd) if p.alive().is_some() => fds.push(fd),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ESRCH) => {}
            Err(_) => unwatched.push(p.clone()),
        }
    }
    loop {
        unwatched.retain(|p| p.alive().is_some());
        if fds.is_empty() && unwatched.is_empty() {
            return Ok(Exit::Exited);
        }
        let now = Instant::now();
        if now >= until {
            return Ok(Exit::Timeout);
        }
        let mut step = until;
        if !unwatched.is_empty() {
            step = step.min(now + FALLBACK_POLL);
        }
        // `extra` first: a signal wins over an exit seen in the same poll.
        let mut polled: Vec<BorrowedFd<'_>> = Vec::with_capacity(fds.len() + 1);
        if let Some(e) = extra {
            polled.push(e);
        }
        polled.extend(fds.iter().map(|f| f.as_fd()));
        let ready = poll_any(&polled, step)?;
        match ready {
            Some(0) if extra.is_some() => return Ok(Exit::Extra),
            Some(i) => {
                fds.remove(i - usize::from(extra.is_some()));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_a_child_to_end_and_not_longer() {
        let mut child = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .unwrap();
        let id = ProcessIdentity::of_pid(child.id() as i32).unwrap();
        let reaper = std::thread::spawn(move || child.wait().unwrap());
        let got = wait_for_exit(
            std::slice::from_ref(&id),
            Instant::now() + Duration::from_secs(20),
            None,
        )
        .unwrap();
        assert_eq!(got, Exit::Exited);
        reaper.join().unwrap();
        assert!(still_running(&[id]).is_empty());
    }

    #[test]
    fn times_out_while_it_runs_and_ignores_a_recycled_pid() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let id = ProcessIdentity::of_pid(child.id() as i32).unwrap();
        let got = wait_for_exit(
            std::slice::from_ref(&id),
            Instant::now() + Duration::from_millis(50),
            None,
        )
        .unwrap();
        assert_eq!(got, Exit::Timeout);
        // Another start time: not the process recorded, never waited for.
        let other = ProcessIdentity {
            start_ticks: id.start_ticks.map(|t| t + 1),
            ..id.clone()
        };
        let got = wait_for_exit(&[other], Instant::now() + Duration::from_secs(20), None).unwrap();
        assert_eq!(got, Exit::Exited);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
