//! Noticing any change to the locks, for `status --watch`: inotify on the
//! local store's folders, an etcd watch on the store's whole prefix. Each is
//! a [`crate::store::Watch`] whose `wait` returns `Released` on a change.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::etcd::Client;
use crate::store::Watch;
use crate::wait::{Woke, poll_any};

/// Every entry created, removed, renamed or rewritten in `folders` (the
/// lock folder, the queue folders, the state file's folder). A folder that
/// appears later (a queue folder) is watched from the next wait on.
pub struct FolderChanges {
    inotify: Option<Inotify>,
    folders: Vec<PathBuf>,
}

const EVENTS: AddWatchFlags = AddWatchFlags::IN_CREATE
    .union(AddWatchFlags::IN_DELETE)
    .union(AddWatchFlags::IN_MOVED_FROM)
    .union(AddWatchFlags::IN_MOVED_TO)
    .union(AddWatchFlags::IN_CLOSE_WRITE)
    .union(AddWatchFlags::IN_ATTRIB);

/// Without inotify: a look this often.
const FALLBACK: Duration = Duration::from_millis(250);

impl FolderChanges {
    pub fn new(folders: Vec<PathBuf>) -> FolderChanges {
        let w = FolderChanges {
            inotify: Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).ok(),
            folders,
        };
        w.add_watches();
        w
    }

    fn add_watches(&self) {
        if let Some(i) = &self.inotify {
            for f in &self.folders {
                // Watching a folder twice gives the same watch: harmless.
                let _ = i.add_watch(f, EVENTS | AddWatchFlags::IN_DONT_FOLLOW);
            }
        }
    }
}

impl Watch for FolderChanges {
    fn gone(&self) -> bool {
        false
    }

    fn wait(&self, until: Instant, extra: Option<BorrowedFd<'_>>) -> io::Result<Woke> {
        self.add_watches();
        let Some(i) = &self.inotify else {
            let mut fds = Vec::new();
            fds.extend(extra);
            let until = until.min(Instant::now() + FALLBACK);
            return Ok(match poll_any(&fds, until)? {
                Some(_) => Woke::Extra,
                None => Woke::Released,
            });
        };
        let mut fds = Vec::with_capacity(2);
        fds.extend(extra);
        fds.push(i.as_fd());
        Ok(match poll_any(&fds, until)? {
            Some(0) if extra.is_some() => Woke::Extra,
            Some(_) => {
                while i.read_events().is_ok_and(|e| !e.is_empty()) {}
                Woke::Released
            }
            None => Woke::Timeout,
        })
    }
}

/// Every change under an etcd key prefix: a thread holds a watch on the
/// range and writes to a pipe; while etcd cannot be watched, a change is
/// reported every second so the view looks again.
pub struct EtcdChanges {
    read: OwnedFd,
    stop: Arc<AtomicBool>,
}

impl EtcdChanges {
    pub fn start(client: &Client, prefix: &str) -> io::Result<EtcdChanges> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
                .map_err(io::Error::from)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (client, key, flag) = (client.clone(), prefix.as_bytes().to_vec(), stop.clone());
        let keep_open = read.try_clone()?;
        std::thread::Builder::new()
            .name("etcd-changes".into())
            .spawn(move || {
                watch_prefix(&client, &key, &flag, write);
                drop(keep_open);
            })?;
        Ok(EtcdChanges { read, stop })
    }
}

impl Drop for EtcdChanges {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Watch for EtcdChanges {
    fn gone(&self) -> bool {
        false
    }

    fn wait(&self, until: Instant, extra: Option<BorrowedFd<'_>>) -> io::Result<Woke> {
        let mut fds = Vec::with_capacity(2);
        fds.extend(extra);
        fds.push(self.read.as_fd());
        Ok(match poll_any(&fds, until)? {
            Some(0) if extra.is_some() => Woke::Extra,
            Some(_) => {
                let mut buf = [0u8; 64];
                while matches!(nix::unistd::read(&self.read, &mut buf), Ok(n) if n > 0) {}
                Woke::Released
            }
            None => Woke::Timeout,
        })
    }
}

fn watch_prefix(client: &Client, key: &[u8], stop: &AtomicBool, write: OwnedFd) {
    let mut pipe = std::fs::File::from(write);
    let mut end = key.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    let mut from = 0;
    while !stop.load(Ordering::Relaxed) {
        if from == 0 {
            match client.get(key, client.call_timeout()) {
                Ok(r) => from = r.revision + 1,
                Err(_) => {
                    let _ = pipe.write(&[1]);
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut w = match client.watch_range(key, Some(&end), from, deadline) {
            Ok(w) => w,
            Err(_) => {
                let _ = pipe.write(&[1]);
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        loop {
            match w.next_answer() {
                Ok(crate::etcd::client::WatchNext::Events { events, .. }) => {
                    for e in &events {
                        from = from.max(e.kv.mod_revision + 1);
                    }
                    if !events.is_empty() {
                        let _ = pipe.write(&[1]);
                    }
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                }
                Ok(crate::etcd::client::WatchNext::TimedOut) => break,
                Ok(crate::etcd::client::WatchNext::Cancelled { .. }) | Err(_) => {
                    from = 0;
                    let _ = pipe.write(&[1]);
                    break;
                }
            }
        }
    }
}
