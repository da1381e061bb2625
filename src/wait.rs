//! Waiting for a lock directory to go away. The lock folder is watched with
//! inotify so a release is noticed in milliseconds; where inotify cannot be had
//! (exhausted watches, exotic file systems) a short stat poll stands in.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::fsops::{PathKind, path_kind};

/// How often the fallback looks when inotify is unavailable.
const FALLBACK_POLL: Duration = Duration::from_millis(20);

/// Why `Watcher::wait` returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Woke {
    /// The lock directory was removed (it may already be re-created by the
    /// next holder: a release happened either way).
    Released,
    /// `until` passed.
    Timeout,
    /// The extra descriptor became readable (a signal, for `run`).
    Extra,
}

pub struct Watcher {
    lock_dir: PathBuf,
    name: OsString,
    inotify: Option<Inotify>,
}

impl Watcher {
    /// Starts watching before the caller's first look, so a release between
    /// that look and the first wait is not missed.
    pub fn new(lock_dir: &Path) -> Watcher {
        let parent = lock_dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .ok()
            .filter(|i| {
                i.add_watch(
                    parent,
                    AddWatchFlags::IN_DELETE
                        | AddWatchFlags::IN_MOVED_FROM
                        | AddWatchFlags::IN_CREATE
                        | AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF,
                )
                .is_ok()
            });
        Watcher {
            lock_dir: lock_dir.to_path_buf(),
            name: lock_dir.file_name().unwrap_or_default().to_os_string(),
            inotify,
        }
    }

    pub fn uses_inotify(&self) -> bool {
        self.inotify.is_some()
    }

    /// Whether the lock directory is gone right now.
    pub fn gone(&self) -> bool {
        matches!(path_kind(&self.lock_dir), Ok(PathKind::Missing))
    }

    /// Blocks until the lock directory is gone, `until` passes, or `extra`
    /// is readable. Returns at once when the directory is already gone.
    pub fn wait(&self, until: Instant, extra: Option<BorrowedFd<'_>>) -> io::Result<Woke> {
        loop {
            if self.gone() {
                return Ok(Woke::Released);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(Woke::Timeout);
            }
            let mut left = until - now;
            if self.inotify.is_none() {
                left = left.min(FALLBACK_POLL);
            }
            // `extra` first: a signal wins over a release seen in the same poll.
            let mut fds = Vec::with_capacity(2);
            if let Some(e) = extra {
                fds.push(e);
            }
            if let Some(i) = &self.inotify {
                fds.push(i.as_fd());
            }
            let ready = poll_any(&fds, now + left)?;
            if extra.is_some() && ready == Some(0) {
                return Ok(Woke::Extra);
            }
            if let Some(i) = &self.inotify {
                let mut removed = false;
                while let Ok(events) = i.read_events() {
                    if events.is_empty() {
                        break;
                    }
                    removed |= events.iter().any(|e| {
                        e.name.as_deref() == Some(self.name.as_os_str())
                            && e.mask
                                .intersects(AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM)
                    });
                }
                if removed {
                    return Ok(Woke::Released);
                }
            }
        }
    }
}

/// Blocks until one of `fds` is readable (its index) or `until` passes
/// (None). A signal interrupting the poll just polls again.
pub fn poll_any(fds: &[BorrowedFd<'_>], until: Instant) -> io::Result<Option<usize>> {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let ms = left.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let mut polled: Vec<PollFd<'_>> = fds
            .iter()
            .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
            .collect();
        match poll(
            &mut polled,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Ok(None),
            Ok(_) => {
                return Ok(polled
                    .iter()
                    .position(|p| p.revents().is_some_and(|r| !r.is_empty())));
            }
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from_raw_os_error(e as i32)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_removal_from_another_thread_quickly() {
        let t = tempfile::tempdir().unwrap();
        let lock = t.path().join("x.lock");
        std::fs::create_dir(&lock).unwrap();
        let w = Watcher::new(&lock);
        assert!(w.uses_inotify());
        let l2 = lock.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            std::fs::remove_dir(&l2).unwrap();
        });
        let woke = w
            .wait(Instant::now() + Duration::from_secs(10), None)
            .unwrap();
        h.join().unwrap();
        assert_eq!(woke, Woke::Released);
    }

    #[test]
    fn times_out_while_held() {
        let t = tempfile::tempdir().unwrap();
        let lock = t.path().join("x.lock");
        std::fs::create_dir(&lock).unwrap();
        let w = Watcher::new(&lock);
        let woke = w
            .wait(Instant::now() + Duration::from_millis(30), None)
            .unwrap();
        assert_eq!(woke, Woke::Timeout);
    }
}
