//! The lock on etcd: one key per environment, `PREFIX/v1/env/ENV/lock`,
//! created only if absent and attached to the holder's lease; its create
//! revision is the fencing token. Nothing here prints.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::client::{Client, ClientConfig, Compare, KeyValue, Op};
use super::error::EtcdError;
use super::keeper::{Keeper, KeeperSpec, LossCause, LossSignal};
use super::settings::EtcdSettings;
use crate::environment::Environment;

/// The most one store operation takes when etcd stops answering midway
/// (connecting has its own budget, [`super::client::CONNECT_BUDGET`]).
pub const OP_BUDGET: Duration = Duration::from_secs(5);

/// What is left of an operation's time, handed to each call in turn.
#[derive(Clone, Copy)]
struct Budget {
    deadline: Instant,
    per_call: Duration,
}

impl Budget {
    fn new(client: &Client, deadline: Instant) -> Budget {
        Budget {
            deadline,
            per_call: client.call_timeout(),
        }
    }

    /// For the next call: the call timeout, or what is left if less.
    fn left(self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .min(self.per_call)
    }

    /// For cleaning up after a failure: a little time even when none is left.
    fn cleanup(self) -> Duration {
        self.left().max(Duration::from_millis(200))
    }
}

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

/// Who takes the lock: the fields of `status --json`'s `holder`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderInfo {
    pub lock_id: String,
    pub deployment_id: String,
    pub locked_by: String,
    pub locked_at: String,
    pub hostname: String,
    /// The process the status shows (the deploy command once started).
    pub pid: i32,
    /// The deploy-lock process holding the lock for it.
    pub holder_pid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process_name: Option<String>,
}

/// The key's value: the holder, its environment, and its lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HolderRecord {
    pub environment: String,
    #[serde(flatten)]
    pub holder: HolderInfo,
    /// Decimal, as etcd's gateway writes 64-bit numbers (jq reads doubles).
    pub lease_id: String,
    pub ttl_seconds: u64,
}

/// The lock as one read found it held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Held {
    /// None when the value is not a record deploy-lock wrote.
    pub record: Option<HolderRecord>,
    pub token: FencingToken,
    pub lease: LeaseId,
    /// Left on the lease; None when it ran out between the two reads.
    pub ttl_remaining: Option<Duration>,
    pub mod_revision: i64,
}

/// One look at an environment's lock on etcd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdInspection {
    pub environment: Environment,
    pub key: String,
    /// The store's revision at the read: a wait watches from the next one.
    pub revision: i64,
    pub held: Option<Held>,
}

/// What [`EtcdStore::try_acquire`] found.
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

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Release {
    Released,
    /// The lock was no longer ours: free, or another holder's (left alone).
    NotOurs {
        now: Option<FencingToken>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ForceUnlock {
    /// The shown holder's key was deleted and its lease revoked.
    Unlocked,
    /// The lock is no longer the one shown: nothing was done.
    ChangedHands { now: Option<FencingToken> },
}

/// The etcd lock store: a client, a key prefix and a lease TTL.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    ttl: Duration,
}

impl EtcdStore {
    /// `prefix` without a trailing slash (settings already strip it).
    pub fn new(client: Client, prefix: &str, ttl: Duration) -> EtcdStore {
        EtcdStore {
            client,
            prefix: prefix.trim_end_matches('/').to_string(),
            ttl,
        }
    }

    /// Connects as the settings say (endpoints in order, CA, login).
    pub fn open(settings: &EtcdSettings) -> Result<EtcdStore, EtcdError> {
        let client = Client::connect(&ClientConfig::from_settings(settings))?;
        Ok(EtcdStore::new(client, &settings.prefix, settings.ttl))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// `PREFIX/v1/env/ENV/lock`.
    pub fn key(&self, env: Environment) -> String {
        format!("{}/v1/env/{}/lock", self.prefix, env.as_str())
    }

    fn budget(&self) -> Budget {
        Budget::new(&self.client, Instant::now() + OP_BUDGET)
    }

    pub fn inspect(&self, env: Environment) -> Result<EtcdInspection, EtcdError> {
        let budget = self.budget();
        let read = self.client.get(self.key(env).as_bytes(), budget.left())?;
        self.inspection(env, read.revision, read.kv, budget)
    }

    fn inspection(
        &self,
        env: Environment,
        revision: i64,
        kv: Option<KeyValue>,
        budget: Budget,
    ) -> Result<EtcdInspection, EtcdError> {
        let held = match kv {
            None => None,
            Some(kv) => {
                let ttl_remaining = if kv.lease == 0 {
                    None
                } else {
                    self.client
                        .lease_time_to_live(kv.lease, budget.left())?
                        .map(|s| Duration::from_secs(s as u64))
                };
                Some(Held {
                    record: serde_json::from_slice(&kv.value).ok(),
                    token: FencingToken(kv.create_revision),
                    lease: LeaseId(kv.lease),
                    ttl_remaining,
                    mod_revision: kv.mod_revision,
                })
            }
        };
        Ok(EtcdInspection {
            environment: env,
            key: self.key(env),
            revision,
            held,
        })
    }

    /// Takes the lock if nobody holds it, in one txn: create the key only if
    /// it does not exist, attached to a new lease of ours.
    pub fn try_acquire(&self, env: Environment, who: &HolderInfo) -> Result<Acquire, EtcdError> {
        self.try_acquire_within(env, who, self.budget())
    }

    fn try_acquire_within(
        &self,
        env: Environment,
        who: &HolderInfo,
        budget: Budget,
    ) -> Result<Acquire, EtcdError> {
        let key = self.key(env);
        let granted_at = Instant::now();
        let lease = self.client.lease_grant(self.ttl, budget.left())?;
        let record = HolderRecord {
            environment: env.as_str().to_string(),
            holder: who.clone(),
            lease_id: lease.to_string(),
            ttl_seconds: self.ttl.as_secs(),
        };
        let value = serde_json::to_vec(&record).expect("a record serialises");
        let txn = self.client.txn(
            key.as_bytes(),
            &[Compare::CreateRevision(0)],
            &[Op::Put { value, lease }],
            &[Op::Get],
            budget.left(),
        );
        let txn = match txn {
            Ok(t) => t,
            Err(e) => {
                // The put may have landed: revoking the lease undoes it.
                let _ = self.client.lease_revoke(lease, budget.cleanup());
                return Err(e);
            }
        };
        let token = match txn.kv {
            _ if txn.succeeded => txn.revision,
            // Our own put, landed by an attempt that failed over to the
            // next endpoint before its answer came back: ours all the same.
            Some(kv) if kv.lease == lease => kv.create_revision,
            kv => {
                let _ = self.client.lease_revoke(lease, budget.cleanup());
                return Ok(Acquire::Busy(self.inspection(
                    env,
                    txn.revision,
                    kv,
                    budget,
                )?));
            }
        };
        let signal = LossSignal::new().map_err(|e| EtcdError::Protocol {
            endpoint: self.client.endpoint().to_string(),
            detail: format!("cannot make the loss pipe: {e}"),
        })?;
        let keeper = Keeper::start(
            KeeperSpec {
                client: self.client.clone(),
                key: key.clone().into_bytes(),
                lease,
                token,
                ttl: self.ttl,
                granted_at,
            },
            signal.clone(),
        );
        Ok(Acquire::Acquired(EtcdLock {
            client: self.client.clone(),
            environment: env,
            key,
            token: FencingToken(token),
            lease: LeaseId(lease),
            record,
            signal,
            keeper: Some(keeper),
        }))
    }

    /// Waits until the lock changes after `revision` (as read by an
    /// inspection) or `until` passes. Wakes within milliseconds of a release.
    pub fn wait_for_change(
        &self,
        env: Environment,
        revision: i64,
        until: Instant,
    ) -> Result<Change, EtcdError> {
        let key = self.key(env);
        let mut w = self.client.watch(key.as_bytes(), revision + 1, until)?;
        loop {
            match w.next_answer()? {
                super::client::WatchNext::Events { events, .. } => {
                    if let Some(e) = events.last() {
                        return Ok(match e.kind {
                            super::client::EventKind::Delete => Change::Released {
                                revision: e.kv.mod_revision,
                            },
                            super::client::EventKind::Put => Change::Changed {
                                revision: e.kv.mod_revision,
                            },
                        });
                    }
                }
                super::client::WatchNext::TimedOut => return Ok(Change::TimedOut),
                // Compacted: the caller re-reads, which is what a change means.
                super::client::WatchNext::Cancelled { compact_revision } => {
                    return Ok(Change::Changed {
                        revision: compact_revision,
                    });
                }
            }
        }
    }

    /// Takes the lock, waiting for each release until `deadline`. Losing
    /// etcd while waiting is not an error: the wait retries until its
    /// deadline and reports the last failure. `progress` is called every
    /// `tick` (for the CLI's progress lines).
    pub fn acquire_wait(
        &self,
        env: Environment,
        who: &HolderInfo,
        deadline: Instant,
        tick: Duration,
        progress: &mut dyn FnMut(&WaitProgress<'_>),
    ) -> Result<WaitOutcome, EtcdError> {
        let start = Instant::now();
        let mut next_tick = start + tick;
        let mut last_seen: Option<EtcdInspection> = None;
        let mut last_error: Option<EtcdError>;
        let mut backoff = Duration::from_millis(50);
        loop {
            // Each try within the operation budget, and not far past the wait.
            let now = Instant::now();
            let until = (now + OP_BUDGET).min(deadline.max(now + Duration::from_millis(500)));
            match self.try_acquire_within(env, who, Budget::new(&self.client, until)) {
                Ok(Acquire::Acquired(lock)) => return Ok(WaitOutcome::Acquired(lock)),
                Ok(Acquire::Busy(insp)) => {
                    last_error = None;
                    backoff = Duration::from_millis(50);
                    let until = deadline.min(next_tick);
                    let rev = insp.revision;
                    last_seen = Some(insp);
                    if let Err(e) = self.wait_for_change(env, rev, until) {
                        last_error = Some(e);
                    }
                }
                Err(e) => {
                    last_error = Some(e);
                    let until = deadline.min(next_tick).min(Instant::now() + backoff);
                    std::thread::sleep(until.saturating_duration_since(Instant::now()));
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(WaitOutcome::TimedOut {
                    last_seen,
                    last_error,
                });
            }
            if now >= next_tick {
                progress(&WaitProgress {
                    waited: now - start,
                    last_seen: last_seen.as_ref(),
                    error: last_error.as_ref(),
                });
                next_tick = now + tick;
            }
        }
    }

    /// Unlocks exactly the holder that was shown (its token and lease): if
    /// the lock changed hands since, nothing happens.
    pub fn force_unlock(
        &self,
        env: Environment,
        token: FencingToken,
        lease: LeaseId,
    ) -> Result<ForceUnlock, EtcdError> {
        let key = self.key(env);
        let budget = self.budget();
        let txn = self.client.txn(
            key.as_bytes(),
            &[Compare::CreateRevision(token.0), Compare::Lease(lease.0)],
            &[Op::Delete],
            &[Op::Get],
            budget.left(),
        )?;
        if !txn.succeeded {
            return Ok(ForceUnlock::ChangedHands {
                now: txn.kv.map(|kv| FencingToken(kv.create_revision)),
            });
        }
        // The holder's keepalive then finds its lease gone as well.
        self.client.lease_revoke(lease.0, budget.cleanup())?;
        Ok(ForceUnlock::Unlocked)
    }

    /// True only while `token` holds the lock.
    pub fn check(&self, env: Environment, token: FencingToken) -> Result<bool, EtcdError> {
        let read = self
            .client
            .get(self.key(env).as_bytes(), self.budget().left())?;
        Ok(read.kv.is_some_and(|kv| kv.create_revision == token.0))
    }
}

/// A held etcd lock; dropped, it releases what it still owns.
pub struct EtcdLock {
    client: Client,
    environment: Environment,
    key: String,
    token: FencingToken,
    lease: LeaseId,
    record: HolderRecord,
    signal: LossSignal,
    keeper: Option<Keeper>,
}

impl EtcdLock {
    pub fn environment(&self) -> Environment {
        self.environment
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn token(&self) -> FencingToken {
        self.token
    }

    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    pub fn record(&self) -> &HolderRecord {
        &self.record
    }

    /// The loss notification (a value, a wait, or an fd to poll).
    pub fn loss(&self) -> &LossSignal {
        &self.signal
    }

    pub fn lost(&self) -> Option<LossCause> {
        self.signal.lost()
    }

    /// Renew now, so a loss is found at once (after SIGCONT).
    pub fn check_now(&self) {
        if let Some(k) = &self.keeper {
            k.check_now();
        }
    }

    /// Stops renewing the lease without releasing it, as if this process
    /// were paused: the lock expires within the TTL and the loss is reported.
    pub fn stop_keepalive(&mut self) {
        if let Some(k) = &mut self.keeper {
            k.stop_keepalive();
        }
    }

    /// Deletes the key only if it is still ours (same create revision and
    /// lease), then revokes our lease.
    pub fn release(mut self) -> Result<Release, EtcdError> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<Release, EtcdError> {
        let Some(mut keeper) = self.keeper.take() else {
            return Ok(Release::NotOurs { now: None });
        };
        keeper.shut_down();
        let budget = Budget::new(&self.client, Instant::now() + OP_BUDGET);
        let txn = self.client.txn(
            self.key.as_bytes(),
            &[
                Compare::CreateRevision(self.token.0),
                Compare::Lease(self.lease.0),
            ],
            &[Op::Delete],
            &[Op::Get],
            budget.left(),
        );
        // Revoked either way: a lease nobody renews only delays the next holder.
        let _ = self.client.lease_revoke(self.lease.0, budget.cleanup());
        let txn = txn?;
        Ok(if txn.succeeded {
            Release::Released
        } else {
            Release::NotOurs {
                now: txn.kv.map(|kv| FencingToken(kv.create_revision)),
            }
        })
    }
}

impl Drop for EtcdLock {
    fn drop(&mut self) {
        let _ = self.release_inner();
    }
}

impl HolderInfo {
    /// This process as the holder, with fresh ids and the current time.
    pub fn this_process(
        locked_by: &str,
        process_name: Option<&str>,
    ) -> std::io::Result<HolderInfo> {
        let now = jiff::Timestamp::now();
        let ids = crate::ids::new_ids(now)?;
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_default();
        let pid = std::process::id() as i32;
        Ok(HolderInfo {
            lock_id: ids.lock_id,
            deployment_id: ids.deployment_id,
            locked_by: locked_by.to_string(),
            locked_at: now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            hostname,
            pid,
            holder_pid: pid,
            process_name: process_name.map(str::to_string),
        })
    }
}
