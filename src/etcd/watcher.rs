//! Waiting for an etcd lock's release the way the lock-store seam's `Watch`
//! does for the lock directory: `gone()` looks now, `wait()` blocks on a
//! pipe that a watch thread writes to on every deletion of the key, beside
//! an optional extra fd (run's signalfd), until a deadline.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{Client, EventKind, WatchNext};
use super::error::EtcdError;
pub use crate::wait::Woke;

/// How long one watch request stays open before it is renewed.
const WINDOW: Duration = Duration::from_secs(10);
/// Pause before watching again after a failure (etcd unreachable).
const RETRY: Duration = Duration::from_millis(200);
/// The longest a waiter trusts its watch alone: a watch stream to a member
/// that hangs (SIGSTOPped, a dark path) stays open and silent, so the key
/// itself is read this often, and that read moves on to a member that
/// answers (a waiter is in within a second of a release).
const LOOK_AGAIN: Duration = Duration::from_millis(400);

struct Shared {
    stop: AtomicBool,
    /// The last failure of the watch thread, cleared when it watches again.
    error: Mutex<Option<EtcdError>>,
}

/// Watches one lock key from the revision read when it was made, so a
/// release between that read and the first `wait` is not missed. An etcd
/// that cannot be read then is not an error: the watch thread keeps trying,
/// and `wait` looks at the key itself meanwhile.
pub struct EtcdWatcher {
    client: Client,
    key: Vec<u8>,
    shared: Arc<Shared>,
    read: OwnedFd,
}

impl EtcdWatcher {
    /// Fails only when no pipe or thread can be made (out of resources).
    pub(crate) fn start(client: &Client, key: &str, timeout: Duration) -> io::Result<Self> {
        let key = key.as_bytes().to_vec();
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(io::Error::from)?;
        let first_read = client.get(&key, timeout);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            error: Mutex::new(first_read.as_ref().err().cloned()),
        });
        {
            let (client, key, shared) = (client.clone(), key.clone(), shared.clone());
            let from = first_read.ok().map(|r| r.revision + 1);
            // The thread keeps a read end open: it outlives the watcher (it
            // may sit in a watch read until its window ends), and a write to
            // a pipe nobody can read raises SIGPIPE, which kills deploy-lock
            // (its SIGPIPE is the default) in the middle of a run.
            let keep_open = read.try_clone()?;
            // Not joined: it may sit in a watch read until its window ends.
            std::thread::Builder::new()
                .name("etcd-wait".into())
                .spawn(move || {
                    watch_deletions(&client, &key, from, &shared, write);
                    drop(keep_open);
                })?;
        }
        Ok(EtcdWatcher {
            client: client.clone(),
            key,
            shared,
            read,
        })
    }

    /// Whether the lock is free right now (false when etcd cannot say).
    pub fn gone(&self) -> bool {
        self.gone_within(self.client.call_timeout())
    }

    fn gone_within(&self, timeout: Duration) -> bool {
        !timeout.is_zero()
            && self
                .client
                .get(&self.key, timeout)
                .is_ok_and(|r| r.kv.is_none())
    }

    /// Why the watch is not watching, while etcd cannot be reached (the
    /// watch keeps trying; a release it missed is caught by `gone`).
    pub fn error(&self) -> Option<EtcdError> {
        self.shared.error.lock().unwrap().clone()
    }

    /// Blocks until the lock is released, `until` passes, or `extra` is
    /// readable. Returns at once when the lock is already free.
    pub fn wait(&self, until: Instant, extra: Option<BorrowedFd<'_>>) -> io::Result<Woke> {
        loop {
            // Bounded by `until`, so a silent etcd cannot stretch the wait.
            let left = until.saturating_duration_since(Instant::now());
            if self.gone_within(left.min(self.client.call_timeout())) {
                self.drain();
                return Ok(Woke::Released);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(Woke::Timeout);
            }
            // While etcd is away, look again now and then: the watch may
            // have missed a release that `gone` will see.
            let left = (until - now).min(LOOK_AGAIN);
            // `extra` first: a signal wins over a release seen in the same poll.
            let mut fds = Vec::with_capacity(2);
            if let Some(e) = extra {
                fds.push(e);
            }
            fds.push(self.read.as_fd());
            match crate::wait::poll_any(&fds, now + left)? {
                Some(0) if extra.is_some() => return Ok(Woke::Extra),
                Some(_) => {
                    self.drain();
                    return Ok(Woke::Released);
                }
                None => {}
            }
        }
    }

    fn drain(&self) {
        let mut buf = [0u8; 64];
        // Non-blocking: ends with EAGAIN once empty.
        while matches!(nix::unistd::read(&self.read, &mut buf), Ok(n) if n > 0) {}
    }
}

impl Drop for EtcdWatcher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn watch_deletions(
    client: &Client,
    key: &[u8],
    from: Option<i64>,
    shared: &Shared,
    write: OwnedFd,
) {
    let mut pipe = std::fs::File::from(write);
    let mut from = match from {
        Some(f) => f,
        // Not read at the start: read it now (a release missed meanwhile is
        // seen by `wait`'s own look at the key).
        None => loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            match client.get(key, client.call_timeout()) {
                Ok(r) => break r.revision + 1,
                Err(e) => {
                    *shared.error.lock().unwrap() = Some(e);
                    std::thread::sleep(RETRY);
                }
            }
        },
    };
    while !shared.stop.load(Ordering::Relaxed) {
        let mut w = match client.watch(key, from, Instant::now() + WINDOW) {
            Ok(w) => {
                *shared.error.lock().unwrap() = None;
                w
            }
            Err(e) => {
                *shared.error.lock().unwrap() = Some(e);
                std::thread::sleep(RETRY);
                continue;
            }
        };
        loop {
            match w.next_answer() {
                Ok(WatchNext::Events { events, .. }) => {
                    for e in events {
                        from = from.max(e.kv.mod_revision + 1);
                        if e.kind == EventKind::Delete {
                            // Full pipe: a wake-up is pending anyway.
                            let _ = pipe.write(&[1]);
                        }
                    }
                    if shared.stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
                Ok(WatchNext::TimedOut) => break,
                // Compacted past `from`: resume from now; `gone` covers the gap.
                Ok(WatchNext::Cancelled { compact_revision }) => {
                    from = from.max(compact_revision);
                    let _ = pipe.write(&[1]);
                    break;
                }
                Err(e) => {
                    *shared.error.lock().unwrap() = Some(e);
                    break;
                }
            }
        }
    }
}
