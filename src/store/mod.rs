//! The lock-store seam: what the CLI needs from wherever a lock lives. The
//! local directory store ([`local::LocalStore`]) is the first; a network
//! store (etcd) implements the same trait without touching `src/cli/`.
//!
//! Caveats every store shares: locks are advisory (a process that ignores
//! them is not stopped), and a holder is "alive" only as far as the store can
//! tell (a pid on this host, a lease elsewhere).
//!
//! A second store implements [`LockStore`] (seven methods) and fills:
//! - an [`Inspection`] (its `view` may leave `ls_ld` and `record` empty;
//!   `lock_dir` is whatever [`LockStore::location`] names, a key say);
//! - a [`HolderRecord`] per holder, with `fencing_token`, `lease_id` and
//!   `lease_ttl_secs` where the store has them;
//! - its own handle inside [`Held`] ([`Held::new`], [`Held::handle`]);
//! - a [`Keeping`] that keeps a lease alive and reports a lost lock as a
//!   [`KeepEvent`];
//! - a [`Watch`] that wakes on a release (an etcd watch from the revision it
//!   read).
//!
//! Everything else (wording, exit codes, the supervising loop) is the CLI's.
//! [`memory::MemoryStore`] is the smallest complete example.

pub mod etcd;
pub mod local;
pub mod memory;

use std::any::Any;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::Instant;

use crate::environment::Environment;
use crate::liveness::ProcessIdentity;
use crate::lock::{BusyReason, LockError, Takeover};
use crate::status::{Holder, Inspection};

pub use crate::lock::keeper::{KeepEvent, KeepFailure, Stop};
pub use crate::lock::runlock::RunHolder;
pub use crate::lock::{Released, ResetOutcome, ResetState, Unlock};
pub use crate::status::OwnerRecord as HolderRecord;
pub use crate::wait::Woke;

/// A network store's failure, typed across the seam (the CLI words it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    Etcd(crate::etcd::EtcdError),
}

impl StoreError {
    /// Whether waiting can fix it: etcd unreachable or without a leader,
    /// yes; a refused login, a denied permission, a CA file, an answer that
    /// is not etcd's, no (a `run --wait` ends at once on those).
    pub fn retryable(&self) -> bool {
        match self {
            StoreError::Etcd(e) => e.retryable(),
        }
    }
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Etcd(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for StoreError {}

/// A [`LockError`] a warning carries, typed (the CLI words it): shared so
/// that the warning stays `Clone`; two are equal when they read the same,
/// since `LockError` holds an `io::Error`, which has no equality.
#[derive(Clone, Debug)]
pub struct SharedError(pub std::sync::Arc<LockError>);

impl SharedError {
    pub fn new(e: LockError) -> SharedError {
        SharedError(std::sync::Arc::new(e))
    }
}

impl PartialEq for SharedError {
    fn eq(&self, other: &SharedError) -> bool {
        std::sync::Arc::ptr_eq(&self.0, &other.0) || self.0.to_string() == other.0.to_string()
    }
}

impl Eq for SharedError {}

/// Something the operation did not do but did not fail over either; the CLI
/// words it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The audit line could not be appended (`log` None: no HOME).
    Audit { log: Option<PathBuf>, error: String },
    /// The command's pid could not be written into the holder record.
    RecordProcess { error: SharedError },
    /// Our lock was force-unlocked during the run and someone else holds it
    /// now: it was left alone.
    TakenByOther {
        env: Environment,
        holder: Option<Holder>,
    },
    /// An unlock could not tell the holder it was announced (so the holder
    /// may restore its lock).
    Announce { path: PathBuf, error: String },
}

/// How to acquire.
pub struct AcquireOptions<'a> {
    /// Take over a dead holder's lock before it is stale (never a live one).
    pub force: bool,
    /// The process the holder record names (deploy-lock itself until the
    /// command starts, see [`Keeping::started`]).
    pub process: ProcessIdentity,
    /// Asked while waiting for the store's own serialisation (a guard flock,
    /// a network round trip): true ends the wait with
    /// [`LockError::Interrupted`].
    pub interrupted: Option<&'a dyn Fn() -> bool>,
    /// The caller waits when the lock is busy: the store may start watching
    /// for its release (see [`LockStore::watch`]), and the caller joins the
    /// waiter queue (served in arrival order; it leaves it once it holds the
    /// lock, gives up or dies).
    pub waiting: bool,
    /// Why the lock is taken: written into the holder record an acquisition
    /// makes, and into the waiter's place in the queue (issue 22).
    pub reason: Option<&'a str>,
    /// Taken as a freeze: marked so in the holder record, audited as
    /// `freeze` (its release as `unfreeze`).
    pub freeze: Option<&'a crate::status::Freeze>,
}

/// A lock we hold: the record the store wrote for us, plus the store's own
/// handle. Released by [`LockStore::release`]; a store's handle may also
/// release on drop as a safety net.
pub struct Held {
    pub env: Environment,
    pub record: HolderRecord,
    /// The dead holder whose lock was removed to make way for ours.
    pub took_over: Option<Takeover>,
    pub warnings: Vec<Warning>,
    handle: Box<dyn Any + Send>,
}

impl Held {
    pub fn new(
        env: Environment,
        record: HolderRecord,
        took_over: Option<Takeover>,
        handle: Box<dyn Any + Send>,
    ) -> Held {
        Held {
            env,
            record,
            took_over,
            warnings: Vec::new(),
            handle,
        }
    }

    /// The store's own handle, for the store that made it.
    pub fn handle<T: 'static>(&self) -> Option<&T> {
        self.handle.downcast_ref()
    }

    pub fn handle_mut<T: 'static>(&mut self) -> Option<&mut T> {
        self.handle.downcast_mut()
    }

    pub fn into_handle<T: 'static>(self) -> Option<Box<T>> {
        self.handle.downcast().ok()
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Held")
            .field("env", &self.env)
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
}

pub enum Acquire {
    Acquired(Box<Held>),
    Busy {
        reason: BusyReason,
        inspection: Box<Inspection>,
        /// For [`BusyReason::RunHeld`]: the process holding the run, when
        /// known.
        run_holder: Option<RunHolder>,
    },
}

/// What a force-unlock did, or that the lock changed hands first.
#[derive(Debug)]
pub struct Forced {
    pub outcome: Unlock,
    pub warnings: Vec<Warning>,
}

/// Which lock a force-unlock may remove: the one the person was shown, or
/// the one with this lock id. Anything else there now is left alone.
#[derive(Clone, Copy, Debug)]
pub enum Expect<'a> {
    Shown(&'a Inspection),
    LockId(&'a str),
}

/// Keeping a held lock while the command runs: the supervising loop polls
/// `fd` and calls `service` when it is readable or `deadline` passes (a
/// heartbeat, a lease keep-alive, putting back a lock someone removed
/// without announcing it).
pub trait Keeping {
    /// The command started: the holder record now names it.
    fn started(&mut self, process: ProcessIdentity);
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    fn deadline(&self) -> Option<Instant> {
        None
    }
    /// What happened since the last call, for the CLI to say.
    fn service(&mut self) -> Vec<KeepEvent> {
        Vec::new()
    }
    /// After the command ended, before the release: what happened too late
    /// for `service` to see (an unlock announced at the last moment).
    fn last_look(&mut self) -> Vec<KeepEvent> {
        Vec::new()
    }
    /// What could not be done but failed nothing.
    fn warnings(&mut self) -> Vec<Warning> {
        Vec::new()
    }
    /// This process ran again after being stopped (SIGCONT): a lease may
    /// have run out meanwhile, so look at once.
    fn resumed(&mut self) {}
}

/// Waiting for a lock to change (be released).
pub trait Watch {
    /// Whether the lock is free right now.
    fn gone(&self) -> bool;
    /// Blocks until the lock is released, `until` passes, or `extra` (a
    /// signalfd) is readable.
    fn wait(&self, until: Instant, extra: Option<BorrowedFd<'_>>) -> io::Result<Woke>;
}

/// Where locks live. Every operation is for one environment; a store is
/// built for one resolved `Context`.
pub trait LockStore {
    /// One consistent look at the lock: holder, liveness, age, verdict.
    fn inspect(&self, env: Environment) -> Result<Inspection, LockError>;

    /// Takes the lock when it is free, or when its holder is not alive and
    /// the lock is stale (or `force`); otherwise says why not. Of several
    /// callers judging one stale lock at once, exactly one wins.
    fn acquire(&self, env: Environment, how: &AcquireOptions<'_>) -> Result<Acquire, LockError>;

    /// Keeps `held` while the command runs (see [`Keeping`]).
    fn keep<'a>(&'a self, held: &'a mut Held) -> Box<dyn Keeping + 'a>;

    /// Releases the lock if it is still ours; someone else's is left alone.
    fn release(&self, held: Held) -> Result<Released, LockError>;

    /// Removes the lock whoever holds it; with `expect`, only the lock
    /// expected (re-checked where the store serialises), and a lock that
    /// changed hands since is left alone ([`Unlock::ChangedHands`]).
    fn force_unlock(
        &self,
        env: Environment,
        expect: Option<Expect<'_>>,
    ) -> Result<Forced, LockError>;

    /// Starts watching `env`'s lock before the caller's next look, so a
    /// release in between is not missed. After a busy [`LockStore::acquire`]
    /// with `waiting`, it also wakes when that acquire can be retried.
    fn watch(&self, env: Environment) -> Box<dyn Watch + '_>;

    /// Wakes on any change to any environment's lock or queue, for
    /// `status --watch` (its `wait` returns `Released` on a change). The
    /// default looks every half second.
    fn changes(&self) -> Box<dyn Watch + '_> {
        Box::new(crate::changes::FolderChanges::new(Vec::new()))
    }

    /// Where the lock is, for messages (a path, a key).
    fn location(&self, env: Environment) -> PathBuf;

    /// The store's name in views of every environment (`local`).
    fn backend(&self) -> &'static str;

    /// Whether locks can be taken here at all (the local store: its folder
    /// exists and is writable by us), so that an unusable store is an error
    /// rather than a lock shown as free.
    fn check_usable(&self) -> Result<(), LockError> {
        Ok(())
    }

    /// [`LockStore::inspect`] that still looks at the lock when the store's
    /// holder records cannot be read (a state file that is not JSON): the
    /// inspection without them, and their error beside it.
    fn inspect_despite_records(
        &self,
        env: Environment,
    ) -> Result<(Inspection, Option<LockError>), LockError> {
        self.inspect(env).map(|i| (i, None))
    }

    /// Replaces unreadable holder records with fresh ones (the local store:
    /// backs the state file up beside itself and writes a fresh one) and
    /// removes the lock, re-checking `expect` first as
    /// [`LockStore::force_unlock`] does.
    fn reset_records(
        &self,
        env: Environment,
        expect: Option<Expect<'_>>,
    ) -> Result<ResetOutcome, LockError>;

    /// Whether fencing token `token` still holds `env`'s lock; None for a
    /// store without fencing tokens (the directory lock).
    fn check(&self, _env: Environment, _token: i64) -> Result<Option<bool>, LockError> {
        Ok(None)
    }
}
