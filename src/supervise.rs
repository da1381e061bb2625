//! Running a command under a held lock: signals blocked and read from a
//! signalfd, the child in our process group with PR_SET_PDEATHSIG, terminal
//! signals not delivered twice, others forwarded exactly once, and how the
//! child ended reported as a value. Nothing here prints.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::{Pid, getpgid, getpgrp, getpid};

/// Signals `run` relays to the command. TSTP/TTIN/TTOU/CONT are left alone
/// so Ctrl-Z stops wrapper and child together.
pub const FORWARDED: [Signal; 7] = [
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// The kernel's si_code for signals it generates itself (a terminal's
/// Ctrl-C, Ctrl-\ and resize go to the whole foreground group at once).
const SI_KERNEL: i32 = 0x80;

/// Work the supervising loop does beside relaying signals while the command
/// runs (keeping the lock visible): woken when `fd` is readable or `deadline`
/// passes. Never called once the command has been reaped.
pub trait Sidecar {
    /// The command was started with this pid.
    fn started(&mut self, _pid: i32) {}
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    fn deadline(&self) -> Option<std::time::Instant> {
        None
    }
    fn service(&mut self) {}
    /// This process was stopped and runs again (SIGCONT).
    fn resumed(&mut self) {}
}

/// A sidecar that does nothing (a run without a lock).
pub struct NoSidecar;
impl Sidecar for NoSidecar {}

/// How the command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildEnd {
    Exited(i32),
    Signaled(i32),
}

/// The signal handling `run` installs before anything else happens.
pub struct Signals {
    fd: SignalFd,
    /// What we blocked (and will unblock in the child).
    blocked: SigSet,
    /// A terminating signal already read (by [`Signals::interrupted`]) and
    /// not yet handed out by [`Signals::next_terminating`].
    pending: std::cell::Cell<Option<i32>>,
}

/// Whether `sig`'s disposition is SIG_IGN (inherited from `nohup` or `&`).
fn ignored_on_entry(sig: Signal) -> bool {
    let mut old: nix::libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: querying only (null new action), into a zeroed struct we own.
    let rc = unsafe { nix::libc::sigaction(sig as i32, std::ptr::null(), &mut old) };
    rc == 0 && old.sa_sigaction == nix::libc::SIG_IGN
}

impl Signals {
    /// Must run while the process has a single thread: resets an inherited
    /// SIGCHLD=SIG_IGN (which would lose the child's status), keeps signals
    /// that were ignored on entry ignored, blocks the rest of the forwarded
    /// set plus SIGCHLD and reads them from a signalfd.
    pub fn install() -> io::Result<Signals> {
        // SAFETY: setting a default disposition; no handler code runs.
        unsafe {
            nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigDfl)
                .map_err(io::Error::from)?;
        }
        let mut blocked = SigSet::empty();
        blocked.add(Signal::SIGCHLD);
        // Read, never forwarded: a holder stopped past its lease's TTL must
        // look at its lock the moment it runs again. (Blocking SIGCONT does
        // not stop it from continuing the process.)
        blocked.add(Signal::SIGCONT);
        for sig in FORWARDED {
            if !ignored_on_entry(sig) {
                blocked.add(sig);
            }
        }
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None).map_err(io::Error::from)?;
        let fd = SignalFd::with_flags(&blocked, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(io::Error::from)?;
        Ok(Signals {
            fd,
            blocked,
            pending: std::cell::Cell::new(None),
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The next pending signal, if any: (signal number, si_code, sender pid).
    pub fn next(&self) -> Option<(i32, i32, i32)> {
        match self.fd.read_signal() {
            Ok(Some(info)) => Some((info.ssi_signo as i32, info.ssi_code, info.ssi_pid as i32)),
            _ => None,
        }
    }

    /// The first pending signal that ends a wait for the lock: any but
    /// SIGCHLD and SIGWINCH (a terminal resized while waiting, whose default
    /// action is to be ignored, must not end the wait).
    pub fn next_terminating(&self) -> Option<i32> {
        if let Some(signo) = self.pending.take() {
            return Some(signo);
        }
        while let Some((signo, _, _)) = self.next() {
            if signo != Signal::SIGCHLD as i32
                && signo != Signal::SIGWINCH as i32
                && signo != Signal::SIGCONT as i32
            {
                return Some(signo);
            }
        }
        None
    }

    /// Whether a terminating signal has arrived (kept for
    /// [`Signals::next_terminating`]): for waits that cannot poll the fd.
    pub fn interrupted(&self) -> bool {
        if self.pending.get().is_none() {
            let next = self.next_terminating();
            self.pending.set(next);
        }
        self.pending.get().is_some()
    }

    /// Prepares `cmd` so the child starts with an empty signal mask, dies with
    /// SIGTERM if the wrapper dies (a SIGKILLed wrapper leaves no deploy
    /// running, and the deploy's own EXIT trap still runs), and never starts
    /// at all if the wrapper died between fork and prctl.
    pub fn prepare(&self, cmd: &mut Command) {
        let blocked = self.blocked;
        let wrapper = getpid();
        // SAFETY: only async-signal-safe calls (sigprocmask, prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&blocked), None)
                    .map_err(io::Error::from)?;
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(io::Error::from)?;
                if nix::unistd::getppid() != wrapper {
                    nix::libc::_exit(129);
                }
                Ok(())
            });
        }
    }

    /// Relays signals to `child` until it exits, and reports how it ended.
    /// A signal the terminal sent (si_code SI_KERNEL) already reached the
    /// child, and so did one the command itself (or a process it started)
    /// sent to our process group (`kill 0`): neither is sent again. Any
    /// other sender's is forwarded, including our parent's when it shares our
    /// group (a script's `kill $!`, a runner's terminate()): nothing tells a
    /// signal sent to the group from one sent to us alone, and dropping a
    /// signal that was meant for the deploy is worse than a repeat.
    pub fn supervise(&self, child: &mut Child, side: &mut dyn Sidecar) -> io::Result<ChildEnd> {
        let our_group = getpgrp();
        let child_pid = Pid::from_raw(child.id() as i32);
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(match (status.code(), status.signal()) {
                    (Some(c), _) => ChildEnd::Exited(c),
                    (None, Some(s)) => ChildEnd::Signaled(s),
                    (None, None) => ChildEnd::Exited(1),
                });
            }
            let deadline = side.deadline();
            // At most a second between looks at the child: SIGCHLD reaches
            // the signalfd only while no other thread takes it (in a test
            // binary, any thread that does not block it can), and a lost
            // one must not leave us waiting for ever.
            let left = deadline
                .map(|d| d.saturating_duration_since(std::time::Instant::now()))
                .unwrap_or(std::time::Duration::MAX)
                .min(std::time::Duration::from_secs(1));
            let ms = left.as_micros().div_ceil(1000) as i32;
            let timeout =
                nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX);
            let side_ready = {
                let mut fds = vec![nix::poll::PollFd::new(
                    self.fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                if let Some(fd) = side.fd() {
                    fds.push(nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN));
                }
                match nix::poll::poll(&mut fds, timeout) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(e.into()),
                }
                fds.get(1)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            let due = deadline.is_some_and(|d| std::time::Instant::now() >= d);
            if (side_ready || due) && child.try_wait()?.is_none() {
                side.service();
            }
            while let Some((signo, code, sender)) = self.next() {
                if signo == Signal::SIGCHLD as i32 {
                    continue;
                }
                if signo == Signal::SIGCONT as i32 {
                    if child.try_wait()?.is_none() {
                        side.resumed();
                    }
                    continue;
                }
                if code == SI_KERNEL {
                    continue;
                }
                if sender > 0
                    && getpgid(Some(Pid::from_raw(sender))).is_ok_and(|g| g == our_group)
                    && in_subtree(sender, child_pid.as_raw())
                {
                    continue;
                }
                // Never signal a reaped child: its pid may belong to someone else.
                if child.try_wait()?.is_some() {
                    break;
                }
                if let Ok(sig) = Signal::try_from(signo) {
                    let _ = kill(child_pid, sig);
                }
            }
        }
    }
}

/// Sends `sig` to `root` and every process descended from it (found through
/// /proc's parent pids), leaves first. The command shares deploy-lock's
/// process group (and maybe its caller's), so the group itself is never
/// signalled; a descendant that left the tree (reparented) is not reached.
pub fn signal_tree(root: i32, sig: Signal) {
    let mut parents = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok())
                && let Some(info) = crate::liveness::probe(pid)
            {
                parents.push((pid, info.ppid));
            }
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let p = tree[i];
        tree.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    for pid in tree.iter().rev() {
        let _ = kill(Pid::from_raw(*pid), sig);
    }
}

/// Whether `pid` is `root` or one of its descendants, following parent pids
/// up to init (a process whose parent died is not counted).
fn in_subtree(pid: i32, root: i32) -> bool {
    let mut p = pid;
    // A parent chain is far shorter than this; the bound only guards a loop.
    for _ in 0..4096 {
        if p == root {
            return true;
        }
        if p <= 1 {
            return false;
        }
        match crate::liveness::probe(p) {
            Some(info) => p = info.ppid,
            None => return false,
        }
    }
    false
}

/// Dies of signal `n` the way the child did: default disposition restored
/// and unblocked, core dumps off, then raised, so the calling shell sees a
/// real signal death. Returns only if the signal did not end the process
/// (the caller then exits 128+N).
pub fn die_of_signal(n: i32) {
    if let Ok(sig) = Signal::try_from(n) {
        let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
        // SAFETY: restoring the default disposition; no handler runs.
        unsafe {
            let _ = nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl);
        }
        let mut set = SigSet::empty();
        set.add(sig);
        let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
        let _ = nix::sys::signal::raise(sig);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_follows_parent_pids() {
        let me = std::process::id() as i32;
        let parent = nix::unistd::getppid().as_raw();
        assert_eq!(crate::liveness::probe(me).map(|p| p.ppid), Some(parent));
        assert!(in_subtree(me, me));
        assert!(in_subtree(me, parent));
        assert!(!in_subtree(parent, me));
        assert!(!in_subtree(1, me));
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id() as i32;
        c.wait().unwrap();
        assert!(!in_subtree(pid, me), "a reaped pid has no parent chain");
    }
}
