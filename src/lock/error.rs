//! What can go wrong with a lock operation; Display is the one-line message
//! the CLI prints after `ERROR:`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use crate::environment::Environment;
use crate::state::StateError;
use crate::status::Holder;
use crate::view::NonDirectory;

#[derive(Debug)]
pub enum LockError {
    State(StateError),
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// The wait for the guard was ended by the caller (a signal in `run`).
    Interrupted,
    /// Something other than a directory sits at the lock path: never followed
    /// or removed by us.
    NotADirectory {
        path: PathBuf,
        what: NonDirectory,
    },
    /// A lock directory we may not remove (another user's, in sticky /tmp).
    NotPermitted {
        path: PathBuf,
        owner_uid: u32,
    },
    /// The folder that holds the locks is missing or not writable by us: a
    /// lock can be neither taken nor trusted to be free there.
    LockFolder {
        path: PathBuf,
        problem: crate::fsops::FolderProblem,
    },
    /// The checkout's single `lock` record belongs to another environment
    /// whose lock is live: writing ours would hide theirs.
    OtherEnvironment {
        environment: Environment,
        holder: Box<Holder>,
    },
    /// A network lock store (etcd) could not be reached or refused the
    /// operation: typed, with whether waiting can fix it.
    Store(crate::store::StoreError),
}

impl fmt::Display for LockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::State(e) => e.fmt(f),
            LockError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            LockError::Interrupted => f.write_str("interrupted while waiting for the lock"),
            LockError::NotADirectory { path, .. } => {
                write!(f, "{} is not a lock directory", path.display())
            }
            LockError::LockFolder { path, .. } => {
                write!(f, "the lock folder {} is not usable", path.display())
            }
            LockError::NotPermitted { path, owner_uid } => write!(
                f,
                "cannot remove {}: it belongs to uid {owner_uid}",
                path.display()
            ),
            LockError::OtherEnvironment { environment, .. } => write!(
                f,
                "the state file's lock record belongs to a live {environment} deployment"
            ),
            LockError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for LockError {}

impl From<StateError> for LockError {
    fn from(e: StateError) -> Self {
        LockError::State(e)
    }
}

pub(super) fn io_at(path: &Path) -> impl FnOnce(io::Error) -> LockError + '_ {
    move |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    }
}
