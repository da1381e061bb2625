//! File-system primitives the lock needs to be safe in a shared, sticky /tmp:
//! no-follow opens and removals relative to a directory fd, atomic replace of
//! the state file, and flock guards.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

fn nix_io(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// A directory's identity: the same (dev, ino) means the same directory, so a
/// lock removed and re-created by someone else is never mistaken for ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirIdentity {
    pub dev: u64,
    pub ino: u64,
}

/// What sits at a lock path, seen without following a symlink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathKind {
    Missing,
    Directory,
    Symlink,
    Other,
}

pub fn path_kind(path: &Path) -> io::Result<PathKind> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => Ok(PathKind::Directory),
        Ok(m) if m.file_type().is_symlink() => Ok(PathKind::Symlink),
        Ok(_) => Ok(PathKind::Other),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PathKind::Missing),
        Err(e) => Err(e),
    }
}

fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    Ok((parent.unwrap_or(Path::new(".")), name))
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).bits())
        .open(path)?;
    Ok(f.into())
}

fn open_dir_at(dir: impl AsFd, name: &OsStr) -> io::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(nix_io)
}

/// A snapshot of a lock directory's contents, read through a no-follow fd.
#[derive(Clone, Debug, Default)]
pub struct DirSnapshot {
    pub identity: Option<DirIdentity>,
    pub mtime: i64,
    /// Entry names other than `.` and `..`.
    pub entries: Vec<OsString>,
    /// The directory's owner: the only user whose records inside it count.
    pub uid: u32,
    /// The owner of an `owner.json` inside that was not believed because
    /// someone other than the directory's owner wrote it.
    pub disowned_record_uid: Option<u32>,
}

/// Largest file we read from inside a lock directory; ours are tiny.
const SMALL_FILE_LIMIT: u64 = 64 * 1024;

/// Opens `path` as a directory without following a symlink and lists it.
pub fn snapshot_dir(path: &Path) -> io::Result<(OwnedFd, DirSnapshot)> {
    let fd = open_dir(path)?;
    let st = fstat(&fd).map_err(nix_io)?;
    let mut dir = Dir::from_fd(fd.try_clone()?).map_err(nix_io)?;
    let mut entries = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(nix_io)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            entries.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok((
        fd,
        DirSnapshot {
            identity: Some(DirIdentity {
                dev: st.st_dev,
                ino: st.st_ino,
            }),
            mtime: st.st_mtime,
            entries,
            uid: st.st_uid,
            disowned_record_uid: None,
        },
    ))
}

/// Reads a small regular file inside `dir` without following a symlink.
/// None when absent, not a regular file, or larger than a lock file can be.
pub fn read_small_file_at(dir: impl AsFd, name: &str) -> Option<Vec<u8>> {
    read_small_file_owned_at(dir, name).map(|(bytes, _)| bytes)
}

/// [`read_small_file_at`] with the file's owner (from the open descriptor,
/// so it is the owner of the bytes read).
pub fn read_small_file_owned_at(dir: impl AsFd, name: &str) -> Option<(Vec<u8>, u32)> {
    let fd = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let st = fstat(&fd).ok()?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG
        || st.st_size as u64 > SMALL_FILE_LIMIT
    {
        return None;
    }
    // Sized from the fstat: one read for the bytes and one for the end
    // (from an empty buffer std probes with 32-byte reads and doubles).
    let mut buf = Vec::with_capacity(st.st_size as usize + 1);
    File::from(fd)
        .take(SMALL_FILE_LIMIT)
        .read_to_end(&mut buf)
        .ok()?;
    Some((buf, st.st_uid))
}

/// Reads a small regular file at `path` without following a symlink (the
/// hidden sidecars in a shared lock folder). None when absent or unusable.
pub fn read_small_file(path: &Path) -> Option<Vec<u8>> {
    let (dir, name) = split(path).ok()?;
    let fd = open_dir(dir).ok()?;
    read_small_file_at(&fd, name.to_str()?)
}

/// Creates `name` inside `dir` exclusively (never through a symlink) and writes
/// `content` to it.
pub fn create_file_at(dir: impl AsFd, name: &str, content: &[u8]) -> io::Result<()> {
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )
    .map_err(nix_io)?;
    let mut f = File::from(fd);
    // On the descriptor, whatever the umask: every user who deploys reads
    // the holder (a umask 077 would hide it from them).
    f.set_permissions(std::fs::Permissions::from_mode(LOCK_FILE_MODE))?;
    f.write_all(content)?;
    Ok(())
}

/// The mode of the files in a lock directory and of the sidecars beside it
/// (guard, run file, announcement): readable by everyone who deploys, so
/// another user can read the holder and take a flock on a read-only fd.
pub const LOCK_FILE_MODE: u32 = 0o644;

/// Replaces `name` inside `dir` atomically (temp + rename in the same dir).
pub fn replace_file_at(dir: impl AsFd, name: &str, content: &[u8]) -> io::Result<()> {
    let tmp = format!(".{name}.{}.tmp", std::process::id());
    let _ = unlinkat(dir.as_fd(), tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    create_file_at(dir.as_fd(), &tmp, content)?;
    nix::fcntl::renameat(dir.as_fd(), tmp.as_str(), dir.as_fd(), name).map_err(nix_io)
}

/// `mkdir` with the process umask, as the legacy `mkdir` did. Ok(false) when
/// something already exists there.
pub fn create_dir(path: &Path) -> io::Result<bool> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a removal found inside the directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Removal {
    /// Entries other than `ours` were present (and were removed too).
    pub had_foreign_entries: bool,
    /// The directory held anything at all (so the legacy's `rmdir` would have
    /// failed and it would have gone on to `rm -rf`).
    pub had_entries: bool,
}

/// Removes the directory at `path` and everything in it, never following a
/// symlink (a symlink inside is unlinked, not entered). With `expect`, the
/// directory is removed only if it is still that directory.
pub fn remove_dir_tree(
    path: &Path,
    expect: Option<DirIdentity>,
    ours: &[&str],
) -> io::Result<Option<Removal>> {
    remove_dir_tree_if(path, expect, ours, &|_| true)
}

/// [`remove_dir_tree`] that also asks `still_it` about the opened directory
/// (through its descriptor) before emptying it: an inode number can be
/// reused by a directory removed and re-created meanwhile (ext4 does), so
/// the caller compares what the records inside say too. Ok(None) when the
/// directory is gone, another one, or `still_it` says no.
pub fn remove_dir_tree_if(
    path: &Path,
    expect: Option<DirIdentity>,
    ours: &[&str],
    still_it: &dyn Fn(&OwnedFd) -> bool,
) -> io::Result<Option<Removal>> {
    let (parent, name) = split(path)?;
    let parent_fd = open_dir(parent)?;
    let fd = match open_dir_at(&parent_fd, name) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let st = fstat(&fd).map_err(nix_io)?;
    if let Some(want) = expect
        && (want.dev != st.st_dev || want.ino != st.st_ino)
    {
        return Ok(None);
    }
    if !still_it(&fd) {
        return Ok(None);
    }
    let mut removal = Removal::default();
    empty_dir(&fd, ours, &mut removal)?;
    unlinkat(&parent_fd, name, UnlinkatFlags::RemoveDir).map_err(nix_io)?;
    Ok(Some(removal))
}

fn empty_dir(fd: &OwnedFd, ours: &[&str], removal: &mut Removal) -> io::Result<()> {
    let mut dir = Dir::from_fd(fd.try_clone()?).map_err(nix_io)?;
    let names: Vec<OsString> = dir
        .iter()
        .filter_map(Result::ok)
        .map(|e| OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    for name in names {
        removal.had_entries = true;
        if !ours.iter().any(|o| name == *o) {
            removal.had_foreign_entries = true;
        }
        let st = fstatat(
            fd,
            name.as_os_str(),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(nix_io)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
            let sub = open_dir_at(fd, &name)?;
            empty_dir(&sub, ours, removal)?;
            unlinkat(fd, name.as_os_str(), UnlinkatFlags::RemoveDir).map_err(nix_io)?;
        } else {
            unlinkat(fd, name.as_os_str(), UnlinkatFlags::NoRemoveDir).map_err(nix_io)?;
        }
    }
    Ok(())
}

/// Writes `path` atomically: a temp file in the same folder, fsync, rename over
/// the old file, fsync the folder. An existing file keeps its mode (and, when
/// we may, its owner); a new one is created 0600.
pub fn atomic_write(path: &Path, content: &[u8]) -> io::Result<()> {
    atomic_write_mode(path, content, None)
}

/// [`atomic_write`] with the mode the file gets (set with fchmod on the temp
/// file before the rename, never by name), whatever the umask or the old
/// file's mode.
pub fn atomic_write_mode(path: &Path, content: &[u8], mode: Option<u32>) -> io::Result<()> {
    let (dir, name) = split(path)?;
    let existing = std::fs::metadata(path).ok();
    let mut tmp_name = OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp: PathBuf = dir.join(&tmp_name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlag::O_NOFOLLOW.bits())
        .open(&tmp)?;
    let result = (|| {
        f.write_all(content)?;
        if let Some(mode) = mode {
            f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        } else if let Some(m) = &existing {
            f.set_permissions(std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            if nix::unistd::geteuid().is_root() {
                let _ = nix::unistd::fchown(
                    &f,
                    Some(nix::unistd::Uid::from_raw(m.uid())),
                    Some(nix::unistd::Gid::from_raw(m.gid())),
                );
            }
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What is wrong with the folder that holds the locks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FolderProblem {
    Missing,
    /// Something else sits there ("a regular file", ...).
    NotADirectory(&'static str),
    /// We may not create entries in it: who owns it, and its mode bits.
    NotWritable {
        uid: u32,
        gid: u32,
        mode: u32,
    },
    Unreadable(String),
}

/// Whether `dir` is a folder we may create and remove entries in (what taking
/// a lock needs), checked with access(2) as the effective user.
pub fn check_folder(dir: &Path) -> Result<(), FolderProblem> {
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(FolderProblem::Missing),
        Err(e) => return Err(FolderProblem::Unreadable(e.to_string())),
    };
    if !meta.is_dir() {
        return Err(FolderProblem::NotADirectory(file_type_name(&meta)));
    }
    use nix::unistd::{AccessFlags, access};
    if access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_err() {
        return Err(FolderProblem::NotWritable {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// "a directory", "a FIFO", ... for an error naming what sits at a path.
pub fn file_type_name(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else {
        "not a regular file"
    }
}

/// An exclusive flock held until dropped.
#[derive(Debug)]
pub struct FlockGuard {
    _file: File,
}

/// Takes an exclusive flock on `path`, creating it if needed. The file is
/// opened read-only and without following symlinks: in a sticky /tmp another
/// user may own it, and flock works on a read-only descriptor. An existing
/// file is opened without O_CREAT because `fs.protected_regular` refuses
/// O_CREAT on another user's file there.
pub fn flock_exclusive(path: &Path) -> io::Result<FlockGuard> {
    flock_exclusive_until(path, &|| false)
}

/// Why a guard file could not be used, carried inside the `io::Error`
/// (Display is the bare fact; the CLI adds what to do about it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuardProblem {
    /// Something other than a regular file sits at the guard path.
    NotRegular { what: String },
    /// Another process has held it far longer than deploy-lock ever does.
    HeldTooLong { secs: u64 },
    /// It could not be opened: what sits there, its owner and mode.
    Unopenable {
        what: String,
        uid: u32,
        mode: u32,
        error: String,
    },
}

impl std::fmt::Display for GuardProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuardProblem::NotRegular { what } => write!(f, "not a regular file but {what}"),
            GuardProblem::HeldTooLong { secs } => {
                write!(f, "held by another process for over {secs} s")
            }
            GuardProblem::Unopenable {
                what,
                uid,
                mode,
                error,
            } => write!(
                f,
                "cannot be opened ({error}): {what} owned by uid {uid} with mode {mode:04o}"
            ),
        }
    }
}

impl std::error::Error for GuardProblem {}

/// A lock file we could not open because of what sits at `path` (another
/// user's 0600 file, a symlink, a folder: os errors 13, 40, 21), as a
/// [`GuardProblem::Unopenable`] naming its owner and mode; other errors as
/// they are.
fn unopenable(path: &Path, e: io::Error) -> io::Error {
    let telling = matches!(
        e.raw_os_error(),
        Some(libc_err) if [Errno::EACCES, Errno::ELOOP, Errno::EISDIR, Errno::EPERM]
            .iter()
            .any(|x| *x as i32 == libc_err)
    );
    match std::fs::symlink_metadata(path) {
        Ok(meta) if telling => io::Error::new(
            e.kind(),
            GuardProblem::Unopenable {
                what: file_type_name(&meta).to_string(),
                uid: meta.uid(),
                mode: meta.mode() & 0o7777,
                error: e.to_string(),
            },
        ),
        _ => e,
    }
}

/// Opens a lock file in a shared folder (the guard, the run file), creating
/// it if needed: never through a symlink (O_NOFOLLOW); never blocking on a
/// FIFO planted at the path (O_NONBLOCK: with `run`'s signals blocked, not
/// even Ctrl-C would end the open); without O_CREAT on an existing file
/// (`fs.protected_regular` in sticky /tmp); and anything but a regular file
/// is [`GuardProblem::NotRegular`]. `write`: read-write when we may, else
/// read-only (flock works on either).
pub fn open_lock_file(path: &Path, write: bool) -> io::Result<File> {
    let existing = |write: bool| {
        OpenOptions::new()
            .read(true)
            .write(write)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
            .open(path)
    };
    let file = match existing(write) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(LOCK_FILE_MODE)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(path)
        {
            Ok(f) => {
                // The documented mode whatever the umask (a umask 077 made
                // it 0600, and every other user then failed to open it).
                f.set_permissions(std::fs::Permissions::from_mode(LOCK_FILE_MODE))?;
                f
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                existing(write).map_err(|e| unopenable(path, e))?
            }
            Err(e) => return Err(e),
        },
        Err(e) if write && e.kind() == io::ErrorKind::PermissionDenied => {
            existing(false).map_err(|e| unopenable(path, e))?
        }
        Err(e) => return Err(unopenable(path, e)),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            GuardProblem::NotRegular {
                what: file_type_name(&meta).to_string(),
            },
        ));
    }
    Ok(file)
}

/// [`flock_exclusive`] that gives up with `ErrorKind::Interrupted` as soon as
/// `interrupted()` says so while it waits (`run` passes "a signal came").
pub fn flock_exclusive_until(
    path: &Path,
    interrupted: &dyn Fn() -> bool,
) -> io::Result<FlockGuard> {
    let file = open_lock_file(path, false)?;
    // Our own holders keep a guard for milliseconds. Waiting without bound
    // would let anyone who can open the file (it is world-readable in /tmp)
    // hang every deploy, with `run`'s signals blocked; so wait a while, then
    // say who to look for.
    let deadline = std::time::Instant::now() + GUARD_PATIENCE;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(FlockGuard { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) if interrupted() => {
                return Err(io::Error::new(
                    io::ErrorKind::Interrupted,
                    "interrupted while waiting for the guard",
                ));
            }
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    GuardProblem::HeldTooLong {
                        secs: GUARD_PATIENCE.as_secs(),
                    },
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// How long a guard flock may stay taken by someone else before we give up.
const GUARD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_folder_says_what_is_wrong() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(check_folder(t.path()), Ok(()));
        assert_eq!(
            check_folder(&t.path().join("missing")),
            Err(FolderProblem::Missing)
        );
        let f = t.path().join("file");
        std::fs::write(&f, "x").unwrap();
        assert_eq!(
            check_folder(&f),
            Err(FolderProblem::NotADirectory("a regular file"))
        );
        if !nix::unistd::geteuid().is_root() {
            let ro = t.path().join("ro");
            std::fs::create_dir(&ro).unwrap();
            std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
            assert!(matches!(
                check_folder(&ro),
                Err(FolderProblem::NotWritable { mode: 0o555, .. })
            ));
        }
    }

    #[test]
    fn remove_dir_tree_does_not_follow_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("precious"), "x").unwrap();
        let lock = t.path().join("l.lock");
        std::fs::create_dir(&lock).unwrap();
        std::fs::write(lock.join("locked_at"), "1\n").unwrap();
        std::os::unix::fs::symlink(&outside, lock.join("link")).unwrap();
        std::fs::create_dir(lock.join("sub")).unwrap();
        std::os::unix::fs::symlink(&outside, lock.join("sub/link2")).unwrap();
        let r = remove_dir_tree(&lock, None, &["locked_at"])
            .unwrap()
            .unwrap();
        assert!(r.had_foreign_entries);
        assert!(!lock.exists());
        assert!(outside.join("precious").exists());
    }

    #[test]
    fn remove_dir_tree_refuses_a_symlinked_lock_and_other_identities() {
        let t = tempfile::tempdir().unwrap();
        let target = t.path().join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("f"), "x").unwrap();
        let lock = t.path().join("l.lock");
        std::os::unix::fs::symlink(&target, &lock).unwrap();
        assert!(remove_dir_tree(&lock, None, &[]).is_err());
        assert!(target.join("f").exists());

        let real = t.path().join("r.lock");
        std::fs::create_dir(&real).unwrap();
        let wrong = DirIdentity { dev: 0, ino: 1 };
        assert_eq!(remove_dir_tree(&real, Some(wrong), &[]).unwrap(), None);
        assert!(real.exists());
    }

    #[test]
    fn atomic_write_keeps_mode_and_creates_0600() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.json");
        atomic_write(&p, b"{}\n").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        atomic_write(&p, b"{\"a\":1}\n").unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o640);
        assert_eq!(std::fs::read(&p).unwrap(), b"{\"a\":1}\n");
        assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 1);
    }
}
