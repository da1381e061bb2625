//! What the etcd lock stores and answers: the holder record (the local
//! lock's `OwnerRecord` plus the process name and the lease), fencing
//! tokens, and the outcomes of each operation, named as the lock-store seam
//! names them (`Released` / `AlreadyGone` / `TakenByOther`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::EtcdError;
use super::held::EtcdLock;
use crate::environment::Environment;
use crate::status::OwnerRecord;

/// The key's create revision: grows with every new holder, so a system
/// that remembers the highest token it has seen can refuse a stale holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FencingToken(pub i64);

/// An etcd lease id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LeaseId(pub i64);

impl std::fmt::Display for FencingToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::fmt::Display for LeaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // etcdctl shows lease ids in hex.
        write!(f, "{:x}", self.0)
    }
}

/// The lock key's value: the same holder record the local lock keeps in
/// `owner.json` (so `status --json`'s `holder` reads alike for both), the
/// command's name (its pid cannot be probed from another host), and the lease.
/// The lease fields have the names i11's `OwnerRecord` gives them
/// (`lease_id`, `lease_ttl_secs`), so the stored JSON stays the same when
/// they move into it; the fencing token is not stored (the value is written
/// before its create revision exists): it is read from the key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdRecord {
    #[serde(flatten)]
    pub owner: OwnerRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_name: Option<String>,
    /// Decimal, as etcd's gateway writes 64-bit numbers (jq reads doubles).
    pub lease_id: String,
    /// The TTL etcd granted.
    pub lease_ttl_secs: u64,
}

/// This process as a holder of `env`'s lock: fresh ids, the current time,
/// this host, and this process's identity (pid, start time, boot id).
pub fn this_process(env: Environment, locked_by: &str) -> std::io::Result<OwnerRecord> {
    let now = jiff::Timestamp::now();
    let ids = crate::ids::new_ids(now)?;
    let me =
        crate::liveness::ProcessIdentity::of_self().unwrap_or(crate::liveness::ProcessIdentity {
            pid: std::process::id() as i32,
            ..Default::default()
        });
    let hostname = nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(OwnerRecord {
        environment: env.as_str().to_string(),
        lock_id: ids.lock_id,
        deployment_id: ids.deployment_id,
        locked_by: locked_by.to_string(),
        locked_at: now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        hostname,
        pid: me.pid,
        pid_start_ticks: me.start_ticks,
        holder_pid: me.pid,
        holder_start_ticks: me.start_ticks,
        boot_id: me.boot_id,
        // Filled from the key and lease when the record is read back (the
        // lease fields of this record are its own, beside the flattened owner).
        fencing_token: None,
        lease_id: None,
        lease_ttl_secs: None,
        reason: None,
        freeze: None,
    })
}

/// The lock as one read found it held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// None when the value is not a record deploy-lock wrote.
    pub record: Option<EtcdRecord>,
    pub token: FencingToken,
    pub lease: LeaseId,
    /// Left on the lease; None when it ran out between the two reads.
    pub ttl_remaining: Option<Duration>,
    pub mod_revision: i64,
    /// The value's size, and its first bytes (for a value that is not a
    /// record: shown as what it is).
    pub value_size: usize,
    pub value_head: Vec<u8>,
}

/// One look at an environment's lock on etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdInspection {
    pub environment: Environment,
    pub key: String,
    /// The store's revision at the read: a wait watches from the next one.
    pub revision: i64,
    pub held: Option<Held>,
    /// The waiter queue's keys, oldest first (see `super::queue`).
    pub waiters: Vec<super::queue::QueueEntry>,
}

/// What [`super::EtcdStore::try_acquire`] found.
pub enum Acquire {
    Acquired(EtcdLock),
    Busy(EtcdInspection),
}

/// What a wait for a change of the lock saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key was deleted (released, unlocked, or its lease expired).
    Released {
        revision: i64,
    },
    /// The key was written: a new holder.
    Changed {
        revision: i64,
    },
    TimedOut,
}

/// Where a waiting acquisition stands, for progress lines.
#[derive(Debug)]
pub struct WaitProgress<'a> {
    pub waited: Duration,
    /// The holder we wait for, as last read.
    pub last_seen: Option<&'a EtcdInspection>,
    /// Set while etcd cannot be reached; the wait goes on regardless.
    pub error: Option<&'a EtcdError>,
}

pub enum WaitOutcome {
    Acquired(EtcdLock),
    TimedOut {
        last_seen: Option<EtcdInspection>,
        /// The last failure to reach etcd, if the wait ended in one.
        last_error: Option<EtcdError>,
    },
}

/// What releasing a held lock found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    /// Our key was deleted and our lease revoked.
    Released,
    /// Our key was gone already (a forced unlock, or the lease expired).
    AlreadyGone,
    /// Our lock was lost and someone else holds it now: left alone.
    TakenByOther {
        token: FencingToken,
        record: Option<Box<EtcdRecord>>,
    },
}

/// What a forced unlock did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForceUnlock {
    /// The shown holder's key was deleted and its lease revoked.
    Unlocked { record: Option<Box<EtcdRecord>> },
    /// Nobody holds the lock: nothing to do.
    NotHeld,
    /// The lock is no longer the one shown: nothing was done.
    ChangedHands {
        token: FencingToken,
        record: Option<Box<EtcdRecord>>,
    },
}
