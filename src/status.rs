//! The status model: what one look at a lock finds (directory, state record,
//! holder, liveness, age) and the one-word verdict derived from it. Renderers
//! (legacy text, JSON) read this; nothing here prints.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::environment::Environment;
use crate::fsops::{DirSnapshot, PathKind};
use crate::liveness::ProcessIdentity;
use crate::state::StateDoc;
use crate::view::LegacyView;

/// Files deploy-lock or the legacy deploy.sh put inside a lock directory.
pub const LOCKED_AT_FILE: &str = "locked_at";
pub const OWNER_FILE: &str = "owner.json";
pub const OUR_FILES: &[&str] = &[LOCKED_AT_FILE, OWNER_FILE];

/// The longest reason a holder may give, in characters (`--reason`): a
/// sentence, a ticket, a link. Longer is refused when given; deploy.sh's
/// words used as the default are cut to it.
pub const MAX_REASON_CHARS: usize = 200;

/// `owner.json` inside a lock directory taken by deploy-lock: who holds this
/// very directory, with enough to tell a live holder from a recycled pid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnerRecord {
    pub environment: String,
    pub lock_id: String,
    pub deployment_id: String,
    pub locked_by: String,
    pub locked_at: String,
    pub hostname: String,
    /// The process the status shows (the deploy command once started).
    pub pid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start_ticks: Option<u64>,
    /// The deploy-lock process holding the lock for it.
    pub holder_pid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder_start_ticks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// A network store's fencing token (etcd: the key's create revision),
    /// which grows with every new holder; none for the directory lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<u64>,
    /// A network store's lease: its id and time to live in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ttl_secs: Option<u64>,
    /// Why the lock is held (`run --reason`, `freeze --reason`), as given:
    /// sanitised where it is shown. Kept here and in an etcd record's value,
    /// never in the state file the legacy scripts read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Set when the holder is a freeze (`deploy-lock freeze`): a detached
    /// deploy-lock process holding the lock with no command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freeze: Option<Freeze>,
}

/// A freeze's marker in its holder record.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Freeze {
    /// When it lifts by itself (UTC seconds, RFC 3339); none: only
    /// `unfreeze` lifts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

/// Where the holder's description came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HolderSource {
    /// `owner.json` in the lock directory (written by deploy-lock).
    LockDir,
    /// The state file's `lock` record (all the legacy deploy.sh writes).
    StateFile,
}

/// Who holds a lock, as far as the records say.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holder {
    pub source: HolderSource,
    pub lock_id: Option<String>,
    pub deployment_id: Option<String>,
    pub locked_by: Option<String>,
    pub locked_at: Option<String>,
    pub pid: Option<i32>,
    pub hostname: Option<String>,
    /// Why it holds the lock, from a deploy-lock record (none for a legacy
    /// holder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The holder is a freeze (see [`OwnerRecord::freeze`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub freeze: Option<Freeze>,
    /// Processes whose survival means the holder is alive.
    #[serde(skip)]
    pub processes: Vec<ProcessIdentity>,
}

/// Whether the holder still runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Running on this host; `comm` as `ps -o comm=` shows it.
    Alive { pid: i32, comm: String },
    /// Recorded on this host and no longer running.
    Dead,
    /// Recorded on another host: we cannot look.
    OtherHost,
    /// Nothing to check: no holder record, or no usable pid in it.
    NoRecord,
}

impl Liveness {
    /// true, false, or None when unknowable.
    pub fn as_option(&self) -> Option<bool> {
        match self {
            Liveness::Alive { .. } => Some(true),
            Liveness::Dead => Some(false),
            Liveness::OtherHost | Liveness::NoRecord => None,
        }
    }
}

/// The one-word summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No lock directory.
    Free,
    /// Held by a live holder, or by one on another host that is not stale yet.
    Held,
    /// Older than the stale timeout and the holder is not known to be alive.
    Stale,
    /// The directory exists but its holder is dead (not stale yet).
    Orphaned,
    /// The directory exists and no record names its holder (a legacy deploy
    /// between its mkdir and its state write, or a lost record): maybe alive;
    /// held until stale, never taken with --force.
    Unknown,
    /// Something that is not a directory sits at the lock path.
    Obstructed,
    /// No lock directory (it was force-unlocked), but the deploy-lock run
    /// that held it still runs its command: nothing starts until it ends.
    ReleasedRunning,
    /// Stale, but `run` cannot take it over: files that are not ours inside,
    /// or another user's directory this one may not remove.
    Blocked,
    /// Held by a live freeze (`deploy-lock freeze`): no run starts until it
    /// is lifted (`unfreeze`, or its `--until`).
    Frozen,
    /// Free (or stale), but `run --wait` runs wait in line for it: the first
    /// of them takes it next; a run that does not wait is refused rather
    /// than jump the queue.
    Queued,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Free => "free",
            Verdict::Held => "held",
            Verdict::Stale => "stale",
            Verdict::Orphaned => "orphaned",
            Verdict::Unknown => "unknown",
            Verdict::Obstructed => "obstructed",
            Verdict::ReleasedRunning => "released_running",
            Verdict::Blocked => "blocked",
            Verdict::Frozen => "frozen",
            Verdict::Queued => "queued",
        }
    }
}

/// One look at an environment's lock.
#[derive(Clone, Debug)]
pub struct Inspection {
    pub environment: Environment,
    /// What the legacy status block shows (see `crate::view`).
    pub view: LegacyView,
    pub lock_dir: PathBuf,
    pub path_kind: PathKind,
    /// The directory's listing and identity, when it is a directory.
    pub dir: Option<DirSnapshot>,
    /// Epoch seconds from `locked_at`, when it holds a plausible time.
    pub locked_at_file: Option<i64>,
    pub owner: Option<OwnerRecord>,
    pub state_file: PathBuf,
    pub state: Option<StateDoc>,
    pub holder: Option<Holder>,
    pub liveness: Liveness,
    /// Seconds since the lock was taken: the one age every message uses.
    /// For a deploy-lock lock, its acquisition time (owner.json's
    /// `locked_at`, which is also the state record's); for a legacy lock, its
    /// `locked_at` file; else the directory's mtime. (deploy-lock refreshes
    /// its directory's `locked_at` file as a heartbeat for legacy readers, so
    /// that file is not an age for its own locks.)
    pub age_seconds: Option<i64>,
    /// When this look was taken: the one clock reading behind its age and
    /// every time a message derives from it (`since` = `now` - age), so no
    /// message reads the clock a second time and lands a second off.
    pub now: jiff::Timestamp,
    pub stale: bool,
    pub verdict: Verdict,
    /// The deploy-lock run holding the whole-run kernel lock, as its record
    /// says (read, never probed by locking: a status must not make a run
    /// wait). It outlives its lock directory after a force-unlock.
    pub run_holder: Option<crate::lock::runlock::RunHolder>,
    /// For a network store (etcd): the key, fencing token and lease.
    pub network: Option<NetworkLock>,
    /// The checkout's one state record is another environment's live lock
    /// (see `lock::record_held_by_other_environment`).
    pub other_environment: Option<OtherEnvironment>,
    /// The legacy deploy.sh's migration lock beside this lock, when one is
    /// there (a crash during `migrate up` leaves it).
    pub migration: Option<crate::migration::MigrationLock>,
    /// The live `run --wait` waiters in line for this lock, first first.
    pub waiters: Vec<Waiter>,
}

/// A `run --wait` waiting in line (see `crate::queue`, and the etcd store's
/// queue keys). Its words are the waiter's own: sanitised when shown.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Waiter {
    /// Who waits: the local file's owner; an etcd waiter's own record.
    pub user: String,
    pub host: String,
    pub pid: i32,
    pub reason: Option<String>,
    /// When it joined the queue (UTC, `2026-01-01T10:02:00Z`).
    pub since: String,
    /// Its place: the local ticket, the etcd key's create revision. Lower
    /// is served first.
    #[serde(skip)]
    pub order: u128,
}

/// A locked state record that belongs to another environment's lock whose
/// directory exists and whose holder is not known to be dead: a checkout
/// records one lock at a time, so no run of this environment starts until
/// that lock is released.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtherEnvironment {
    pub environment: Environment,
    pub holder: Holder,
    pub liveness: Liveness,
}

/// What a network store adds to a look at its lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetworkLock {
    /// `etcd`.
    pub backend: &'static str,
    /// The lock's key.
    pub key: String,
    /// None while the lock is free.
    pub fencing_token: Option<i64>,
    /// The holder's lease, in hex as etcdctl shows it.
    pub lease_id: Option<String>,
    /// Seconds left on the holder's lease.
    pub ttl_remaining_secs: Option<u64>,
    /// The key holds something deploy-lock did not write, or has no lease
    /// (issue 17): shown as what it is, and removed only by `unlock`.
    pub foreign: Option<ForeignValue>,
}

/// A lock key's value that is not a deploy-lock holder record, or a key
/// without a lease (it never expires).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignValue {
    /// The value's size in bytes.
    pub size: usize,
    /// Its first bytes: printable ASCII as is, anything else as `\xNN`.
    pub head: String,
    /// Whether the value is a deploy-lock record (then only the lease is
    /// missing).
    pub is_record: bool,
    /// Whether the key has a lease.
    pub has_lease: bool,
}

impl ForeignValue {
    /// How many bytes of a value are shown.
    pub const HEAD: usize = 32;

    pub fn new(value: &[u8], is_record: bool, has_lease: bool) -> ForeignValue {
        let mut head = String::new();
        for &b in value.iter().take(Self::HEAD) {
            match b {
                b'"' | b'\\' => head.push_str(&format!("\\x{b:02x}")),
                0x20..=0x7e => head.push(b as char),
                _ => head.push_str(&format!("\\x{b:02x}")),
            }
        }
        ForeignValue {
            size: value.len(),
            head,
            is_record,
            has_lease,
        }
    }
}

impl Inspection {
    pub fn lock_dir_exists(&self) -> bool {
        self.path_kind == PathKind::Directory
    }

    /// Whether anyone holds the lock: the lock path is occupied.
    pub fn locked(&self) -> bool {
        self.path_kind != PathKind::Missing
    }
}

/// The store's classification of a lock directory: liveness first, age
/// second (see docs/legacy.md, the rules). `crate::lock::decide` refines it with
/// what else decides a run (the run lock, the directory's contents).
pub fn verdict(
    path_kind: &PathKind,
    liveness: &Liveness,
    has_holder: bool,
    stale: bool,
) -> Verdict {
    match path_kind {
        PathKind::Missing => Verdict::Free,
        PathKind::Symlink | PathKind::Other => Verdict::Obstructed,
        PathKind::Directory => match liveness {
            Liveness::Alive { .. } => Verdict::Held,
            _ if stale => Verdict::Stale,
            Liveness::OtherHost => Verdict::Held,
            Liveness::Dead => Verdict::Orphaned,
            // A record without a usable pid: held until stale (as before).
            Liveness::NoRecord if has_holder => Verdict::Held,
            // No record at all: the holder is unknown, maybe alive.
            Liveness::NoRecord => Verdict::Unknown,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_beats_age() {
        let alive = Liveness::Alive {
            pid: 1,
            comm: "x".into(),
        };
        let d = PathKind::Directory;
        assert_eq!(verdict(&d, &alive, true, true), Verdict::Held);
        assert_eq!(verdict(&d, &Liveness::Dead, true, true), Verdict::Stale);
        assert_eq!(verdict(&d, &Liveness::Dead, true, false), Verdict::Orphaned);
        assert_eq!(
            verdict(&d, &Liveness::OtherHost, true, false),
            Verdict::Held
        );
        assert_eq!(
            verdict(&d, &Liveness::OtherHost, true, true),
            Verdict::Stale
        );
        assert_eq!(
            verdict(&d, &Liveness::NoRecord, false, false),
            Verdict::Unknown
        );
        assert_eq!(
            verdict(&PathKind::Missing, &alive, true, true),
            Verdict::Free
        );
        assert_eq!(
            verdict(&PathKind::Symlink, &Liveness::NoRecord, false, false),
            Verdict::Obstructed
        );
    }
}
