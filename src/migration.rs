//! The legacy deploy.sh's migration lock, `togather-migration-ENV.lock` beside
//! the deploy locks: looked at for status and removed by unlock, only if it is
//! still the very directory that was shown.

use std::io;
use std::path::{Path, PathBuf};

use crate::environment::Environment;
use crate::fsops::{self, DirIdentity};

/// A migration lock directory as seen once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationLock {
    pub path: PathBuf,
    pub identity: DirIdentity,
    /// Seconds since the directory was made (its modification time).
    pub age_seconds: Option<i64>,
}

/// What removing a shown migration lock did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MigrationRemoval {
    Removed,
    /// Nothing is there any more.
    AlreadyGone,
    /// Another directory (or something else) is there now: left alone.
    ChangedSinceShown,
}

/// `togather-migration-ENV.lock` in the folder that holds `lock_dir` (the
/// legacy's /tmp, or DEPLOY_LOCK_DIR).
pub fn path_beside(lock_dir: &Path, env: Environment) -> PathBuf {
    lock_dir.with_file_name(format!("togather-migration-{env}.lock"))
}

/// The migration lock beside `lock_dir`, when a directory is there (never
/// followed through a symlink); `now` in epoch seconds for its age.
pub fn look(lock_dir: &Path, env: Environment, now: i64) -> Option<MigrationLock> {
    use std::os::unix::fs::MetadataExt;
    let path = path_beside(lock_dir, env);
    let m = std::fs::symlink_metadata(&path).ok()?;
    if !m.is_dir() {
        return None;
    }
    Some(MigrationLock {
        identity: DirIdentity {
            dev: m.dev(),
            ino: m.ino(),
        },
        age_seconds: now.checked_sub(m.mtime()),
        path,
    })
}

/// Removes `shown` if the directory at its path is still that one.
pub fn remove_shown(shown: &MigrationLock) -> io::Result<MigrationRemoval> {
    match fsops::remove_dir_tree(&shown.path, Some(shown.identity), &[])? {
        Some(_) => Ok(MigrationRemoval::Removed),
        None if std::fs::symlink_metadata(&shown.path).is_err() => {
            Ok(MigrationRemoval::AlreadyGone)
        }
        None => Ok(MigrationRemoval::ChangedSinceShown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_directory_shown_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let lock_dir = t.path().join("togather-deploy-staging.lock");
        assert_eq!(look(&lock_dir, Environment::Staging, 0), None);
        let p = t.path().join("togather-migration-staging.lock");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("x"), "1").unwrap();
        let shown = look(&lock_dir, Environment::Staging, i64::MAX).unwrap();
        assert_eq!(shown.path, p);
        // Replaced since it was shown: left alone.
        std::fs::remove_dir_all(&p).unwrap();
        std::fs::create_dir(t.path().join("placeholder")).unwrap();
        std::fs::create_dir(&p).unwrap();
        if look(&lock_dir, Environment::Staging, 0).unwrap().identity != shown.identity {
            assert_eq!(
                remove_shown(&shown).unwrap(),
                MigrationRemoval::ChangedSinceShown
            );
            assert!(p.exists());
        }
        let shown = look(&lock_dir, Environment::Staging, 0).unwrap();
        assert_eq!(remove_shown(&shown).unwrap(), MigrationRemoval::Removed);
        assert!(!p.exists());
        assert_eq!(remove_shown(&shown).unwrap(), MigrationRemoval::AlreadyGone);
        // A file there is not a migration lock of the legacy's.
        std::fs::write(&p, "x").unwrap();
        assert_eq!(look(&lock_dir, Environment::Staging, 0), None);
    }
}
