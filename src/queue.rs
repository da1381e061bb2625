//! The local store's waiter queue: one file per `run --wait` in a folder
//! beside the lock directory, ordered by its name (a boot-clock ticket), alive
//! only while its process holds an flock on it.
//!
//! The folder sits in the shared, sticky lock folder (/tmp), so everything
//! here goes through one directory descriptor opened without following
//! symlinks, and a file another user plants can do no more than a lock they
//! hold would: it is shown (sanitised, under its owner's real name, never the
//! name it claims) and, while its process keeps the flock, it queues ahead of
//! later waiters. An entry whose name is not a ticket, or that is not a
//! regular file, is ignored and never removed.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use nix::fcntl::{AtFlags, OFlag, openat, renameat};
use nix::sys::stat::{Mode, fchmod, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use serde::{Deserialize, Serialize};

use crate::environment::Environment;
use crate::status::Waiter;

/// How much of a waiter file is read: a record is a few hundred bytes.
const MAX_RECORD: u64 = 4096;
/// How many entries are looked at: a queue longer than this is not a team's.
const MAX_ENTRIES: usize = 256;
/// The folder's mode: everyone who deploys queues there; sticky, so only a
/// file's owner removes it (and root, or whoever finds its process gone).
const FOLDER_MODE: u32 = 0o1777;

/// The queue folder of `env` inside the lock folder `root`.
pub fn folder(root: &Path, env: Environment) -> PathBuf {
    root.join(format!(".togather-deploy-{}.queue", env.as_str()))
}

/// What a waiter writes into its file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WaiterRecord {
    pub user: String,
    pub host: String,
    pub pid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it started waiting (UTC, the state file's format).
    pub since: String,
}

/// The ticket in a file name: 20 digits of boot-clock nanoseconds, `-`, the
/// pid (two waiters in one nanosecond still differ).
fn ticket_of(name: &OsStr) -> Option<u128> {
    let name = name.to_str()?;
    let (ns, pid) = name.split_once('-')?;
    if ns.len() != 20 || !ns.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let pid: u32 = pid.parse().ok().filter(|p: &u32| p.to_string() == pid)?;
    Some(ns.parse::<u128>().ok()? << 32 | u128::from(pid))
}

fn boot_nanos() -> io::Result<u128> {
    let t =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).map_err(io::Error::from)?;
    Ok(t.tv_sec() as u128 * 1_000_000_000 + t.tv_nsec() as u128)
}

fn nix_io(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// Opens the queue folder, creating it (mode 1777 set on its descriptor,
/// whatever the umask) when `create`. Never through a symlink; anything but
/// a directory is an error, and so is a directory of another user's that is
/// not sticky (its owner could remove everyone's entries).
fn open_folder(path: &Path, create: bool) -> io::Result<Option<OwnedFd>> {
    let open = || {
        openat(
            nix::fcntl::AT_FDCWD,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
    };
    let fd = match open() {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) if create => {
            match mkdirat(nix::fcntl::AT_FDCWD, path, Mode::from_bits_truncate(0o700)) {
                Ok(()) => {
                    let fd = open().map_err(nix_io)?;
                    fchmod(&fd, Mode::from_bits_truncate(FOLDER_MODE)).map_err(nix_io)?;
                    fd
                }
                Err(nix::errno::Errno::EEXIST) => open().map_err(nix_io)?,
                Err(e) => return Err(nix_io(e)),
            }
        }
        Err(nix::errno::Errno::ENOENT) => return Ok(None),
        Err(e) => return Err(nix_io(e)),
    };
    let meta = File::from(fd.try_clone()?).metadata()?;
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 && meta.mode() & 0o1000 == 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} belongs to uid {} and is not sticky (mode {:04o}); remove it",
                path.display(),
                meta.uid(),
                meta.mode() & 0o7777
            ),
        ));
    }
    Ok(Some(fd))
}

/// Our place in the queue: the file, flocked for as long as this lives.
/// Dropping it leaves the queue (the file is removed).
#[derive(Debug)]
pub struct Ticket {
    folder: OwnedFd,
    name: String,
    file: File,
    order: u128,
}

impl Ticket {
    /// Joins the end of `env`'s queue in lock folder `root`. The file is
    /// written and flocked under a dot-name first, then renamed into place,
    /// so nobody ever sees it unlocked (and takes its waiter for dead).
    pub fn join(root: &Path, env: Environment, record: &WaiterRecord) -> io::Result<Ticket> {
        let path = folder(root, env);
        let dir = open_folder(&path, true)?.expect("created");
        let pid = std::process::id();
        let temp = format!(".joining-{pid}-{}", boot_nanos()?);
        let _ = unlinkat(&dir, temp.as_str(), UnlinkatFlags::NoRemoveDir);
        let fd = openat(
            &dir,
            temp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(nix_io)?;
        let mut file = File::from(fd);
        let joined = (|| -> io::Result<(String, u128)> {
            file.set_permissions(std::fs::Permissions::from_mode(0o644))?;
            file.lock()?;
            file.write_all(&serde_json::to_vec(record).expect("serialisable"))?;
            // The ticket is taken last, at the moment of joining.
            let name = format!("{:020}-{pid}", boot_nanos()?);
            renameat(&dir, temp.as_str(), &dir, name.as_str()).map_err(nix_io)?;
            let order = ticket_of(OsStr::new(&name)).expect("a ticket name");
            Ok((name, order))
        })();
        match joined {
            Ok((name, order)) => Ok(Ticket {
                folder: dir,
                name,
                file,
                order,
            }),
            Err(e) => {
                let _ = unlinkat(&dir, temp.as_str(), UnlinkatFlags::NoRemoveDir);
                Err(e)
            }
        }
    }

    /// The ticket that orders us among the waiters.
    pub fn order(&self) -> u128 {
        self.order
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Removed only if the name is still our file.
        if same_file(&self.folder, &self.name, &self.file) {
            let _ = unlinkat(&self.folder, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

fn same_file(dir: impl AsFd, name: &str, file: &File) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .is_ok_and(|st| st.st_ino == meta.ino() && st.st_dev == meta.dev())
}

/// One entry of the queue, read.
struct Entry {
    order: u128,
    file: File,
}

/// The live waiters of `env`'s queue, first first. A dead waiter's file (no
/// flock on it) is skipped and removed when we may.
pub fn waiters(root: &Path, env: Environment) -> Vec<Waiter> {
    let Ok(Some(dir)) = open_folder(&folder(root, env), false) else {
        return Vec::new();
    };
    live_entries(&dir, &folder(root, env))
        .into_iter()
        .map(read_waiter)
        .collect()
}

fn live_entries(dir: &OwnedFd, path: &Path) -> Vec<Entry> {
    let Ok(list) = std::fs::read_dir(path) else {
        return Vec::new();
    };
    let mut entries = Vec::new();
    for item in list.flatten().take(MAX_ENTRIES) {
        let Some(order) = ticket_of(&item.file_name()) else {
            continue;
        };
        let name = item.file_name().to_string_lossy().into_owned();
        let Ok(fd) = openat(
            dir,
            name.as_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        let file = File::from(fd);
        if !file.metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        // Unlocked: its waiter is gone. Removed (the sticky folder lets only
        // its owner or root do it; anyone else just skips it).
        if file.try_lock_shared().is_ok() {
            if same_file(dir, &name, &file) {
                let _ = unlinkat(dir, name.as_str(), UnlinkatFlags::NoRemoveDir);
            }
            continue;
        }
        entries.push(Entry { order, file });
    }
    entries.sort_by_key(|e| e.order);
    entries
}

fn read_waiter(e: Entry) -> Waiter {
    let mut text = Vec::new();
    let _ = (&e.file).take(MAX_RECORD).read_to_end(&mut text);
    let record: WaiterRecord = serde_json::from_slice(&text).unwrap_or_default();
    // Who it is: the file's owner, which nobody can claim falsely.
    let uid = e.file.metadata().map(|m| m.uid()).ok();
    let user = uid
        .and_then(crate::accounts::user_name)
        .or_else(|| uid.map(|u| format!("uid {u}")))
        .unwrap_or_default();
    Waiter {
        user,
        host: record.host,
        pid: record.pid,
        reason: record.reason.filter(|r| !r.is_empty()),
        since: record.since,
        order: e.order,
    }
}

/// A thread blocked on the flock of the waiter just ahead of us: `fd()`
/// becomes readable when that waiter leaves the queue (it got the lock, gave
/// up, or died), as etcd's lock waits on its predecessor's key alone.
pub struct AheadWatch {
    read: OwnedFd,
    rx: mpsc::Receiver<()>,
}

impl AheadWatch {
    /// Watches the last live waiter ahead of `order`; None when there is
    /// none (we are first).
    pub fn start(root: &Path, env: Environment, order: u128) -> io::Result<Option<AheadWatch>> {
        let path = folder(root, env);
        let Some(dir) = open_folder(&path, false)? else {
            return Ok(None);
        };
        let Some(ahead) = live_entries(&dir, &path)
            .into_iter()
            .rfind(|e| e.order < order)
        else {
            return Ok(None);
        };
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("queue-ahead-watch".into())
            .spawn(move || {
                // Blocks until the waiter ahead lets go of its file.
                let _ = ahead.file.lock_shared();
                let _ = tx.send(());
                let _ = nix::unistd::write(&write, b"x");
            })?;
        Ok(Some(AheadWatch { read, rx }))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.read.as_fd()
    }

    /// Whether the waiter ahead has left.
    pub fn left(&self) -> bool {
        matches!(
            self.rx.try_recv(),
            Ok(()) | Err(mpsc::TryRecvError::Disconnected)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str) -> WaiterRecord {
        WaiterRecord {
            user: user.into(),
            host: "h".into(),
            pid: 1,
            reason: Some("why".into()),
            since: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn waiters_in_order_and_gone_when_dropped() {
        let t = tempfile::tempdir().unwrap();
        let env = Environment::Staging;
        let a = Ticket::join(t.path(), env, &record("a")).unwrap();
        let b = Ticket::join(t.path(), env, &record("b")).unwrap();
        assert!(a.order() < b.order());
        let w = waiters(t.path(), env);
        assert_eq!(
            w.iter().map(|w| w.order).collect::<Vec<_>>(),
            [a.order(), b.order()]
        );
        assert_eq!(w[0].reason.as_deref(), Some("why"));
        let mode = std::fs::metadata(folder(t.path(), env)).unwrap().mode();
        assert_eq!(mode & 0o7777, 0o1777);
        let watch = AheadWatch::start(t.path(), env, b.order())
            .unwrap()
            .unwrap();
        assert!(
            AheadWatch::start(t.path(), env, a.order())
                .unwrap()
                .is_none()
        );
        drop(a);
        let mut fds = [nix::poll::PollFd::new(
            watch.fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16)).unwrap();
        assert!(watch.left());
        assert_eq!(waiters(t.path(), env).len(), 1);
        drop(b);
        assert!(waiters(t.path(), env).is_empty());
        assert_eq!(std::fs::read_dir(folder(t.path(), env)).unwrap().count(), 0);
    }

    #[test]
    fn an_unlocked_file_is_a_dead_waiter_and_a_stranger_is_ignored() {
        let t = tempfile::tempdir().unwrap();
        let env = Environment::Staging;
        let live = Ticket::join(t.path(), env, &record("a")).unwrap();
        let dir = folder(t.path(), env);
        std::fs::write(dir.join("00000000000000000001-1"), b"{}").unwrap();
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("00000000000000000002-2")).unwrap();
        let w = waiters(t.path(), env);
        assert_eq!(w.len(), 1);
        assert_eq!(w[0].order, live.order());
        assert!(!dir.join("00000000000000000001-1").exists());
        assert!(dir.join("notes.txt").exists());
        assert!(
            dir.join("00000000000000000002-2")
                .symlink_metadata()
                .is_ok()
        );
    }
}
