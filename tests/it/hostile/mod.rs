//! Hostile input, by theme: hand-edited and corrupted state files
//! (`state_file`), whatever sits at the lock path (`lock_path`), squatters in
//! a sticky folder (`squatters`), names that try to become paths or shell
//! text (`names`), and closed pipes and signals (`interrupts`). Nothing
//! crashes, nothing is followed, nothing is lost. This file holds what they
//! share.

mod descriptors;
mod interrupts;
mod lock_path;
mod names;
mod squatters;
mod state_file;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::*;

pub(super) const HEADER: &str =
    "Deployment Lock Status: staging\n============================================\n";
pub(super) const NO_DIR: &str = "Lock directory: Not found (unlocked)\n";

/// A file's bytes and identity, to prove nobody wrote it.
#[derive(Debug, PartialEq)]
pub(super) struct Untouched {
    bytes: Vec<u8>,
    ino: u64,
    mtime_ns: (i64, i64),
}

pub(super) fn untouched(p: &Path) -> Untouched {
    let m = fs::symlink_metadata(p).unwrap();
    Untouched {
        bytes: fs::read(p).unwrap(),
        ino: m.ino(),
        mtime_ns: (m.mtime(), m.mtime_nsec()),
    }
}

/// Every path under `dir` (relative), sorted: to prove nothing appeared.
pub(super) fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The unlock.sh status block with no lock directory and these six values,
/// then `extra` lines.
pub(super) fn block(values: [&str; 6], extra: &[&str]) -> String {
    let labels = [
        "Locked",
        "Locked by",
        "Locked at",
        "Deployment ID",
        "PID",
        "Hostname",
    ];
    let mut s = format!("{HEADER}{NO_DIR}\nState file info:\n");
    for (l, v) in labels.iter().zip(values) {
        s.push_str(&format!("  {l}: {v}\n"));
    }
    for e in extra {
        s.push_str(&format!("  {e}\n"));
    }
    s.push('\n');
    s
}

/// What `deploy-lock status staging` shows of the lock when the state file
/// is unusable: the lock directory (and who holds it), nothing of the state.
pub(super) fn lock_part(w: &World, with_lock: bool) -> String {
    let lock = w.lock_path("staging");
    let mut s = "Deployment Lock Status: staging\n============================================\n"
        .to_string();
    if with_lock {
        s.push_str(&format!(
            "Lock directory exists: {}\n{}\n\nHolder: unknown (no record says who holds it)\n\n",
            lock.display(),
            real_ls_ld(&lock, "UTC")
        ));
    } else {
        s.push_str("Lock directory: Not found (unlocked)\n\n");
    }
    s
}

/// Waits for `child` (from `Cmd::spawn`) at most `limit`, SIGKILLing it
/// after that (a hang guard: `run` blocks TERM), and collects its output.
#[track_caller]
pub(super) fn finish_within(mut child: std::process::Child, limit: Duration) -> Out {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "still running after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    Out::new(
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
        std::os::unix::process::ExitStatusExt::signal(&out.status),
    )
}

/// What a path is (without following it): type, inode, target or bytes.
pub(super) fn untouched_meta(p: &Path) -> (u32, u64, Option<PathBuf>) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.mode(), m.ino(), fs::read_link(p).ok())
}

/// Makes something at a path (a FIFO, a symlink, ...).
pub(super) type MakeAt<'a> = Box<dyn Fn(&Path) + 'a>;
