//! The etcd lock store: one key per environment, `PREFIX/v1/env/ENV/lock`,
//! created only if absent and attached to the holder's lease; its create
//! revision is the fencing token. Nothing here prints.

use std::time::{Duration, Instant};

use serde_json::json;

use super::client::{Client, ClientConfig, Compare, EventKind, KeyValue, Op, WatchNext};
use super::error::EtcdError;
use super::held::{EtcdLock, parse_record};
use super::keeper::{Keeper, KeeperSpec, LossSignal};
use super::queue::{self, EtcdWaiter, QueueEntry, QueuePlace};
use super::record::{
    Acquire, Change, EtcdInspection, EtcdRecord, FencingToken, ForceUnlock, Held, LeaseId,
    WaitOutcome, WaitProgress,
};
use super::settings::EtcdSettings;
use super::watcher::EtcdWatcher;
use super::wire::{b64, first_kv, header_revision};
use crate::environment::Environment;
use crate::status::OwnerRecord;

/// The most one store operation takes when etcd stops answering midway
/// (connecting has its own budget, [`super::client::CONNECT_BUDGET`]).
pub const OP_BUDGET: Duration = Duration::from_secs(5);

/// What is left of an operation's time, handed to each call in turn.
#[derive(Clone, Copy)]
pub(super) struct Budget {
    deadline: Instant,
    per_call: Duration,
}

impl Budget {
    pub(super) fn new(client: &Client, deadline: Instant) -> Budget {
        Budget {
            deadline,
            per_call: client.call_timeout(),
        }
    }

    /// For the next call: the call timeout, or what is left if less.
    pub(super) fn left(self) -> Duration {
        self.deadline
            .saturating_duration_since(Instant::now())
            .min(self.per_call)
    }

    /// For cleaning up after a failure: a little time even when none is left.
    pub(super) fn cleanup(self) -> Duration {
        self.left().max(Duration::from_millis(200))
    }
}

/// What the acquiring txn found (see [`EtcdStore::txn_in_line`]).
struct InLine {
    succeeded: bool,
    revision: i64,
    /// The lock key, read when the txn did not take it.
    kv: Option<KeyValue>,
    /// The queue, read when the txn did not take the lock.
    waiters: Vec<QueueEntry>,
}

/// The etcd lock store: a client, a key prefix and a lease TTL.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    ttl: Duration,
    /// A lease granted for an attempt that lost the race, kept for the next
    /// attempt: every waiter wakes on a release and all but one lose, and
    /// a grant and a revoke each (two raft writes) per loser per hand-off
    /// made a contended lock slow.
    spare: std::sync::Arc<std::sync::Mutex<Option<SpareLease>>>,
}

/// A lease of ours that no key is attached to yet.
#[derive(Clone, Copy)]
struct SpareLease {
    id: i64,
    granted_ttl: u64,
    /// When it was asked for, on the boot clock: its TTL counts from here.
    granted_at: Duration,
}

impl EtcdStore {
    /// `prefix` without a trailing slash (settings already strip it).
    pub fn new(client: Client, prefix: &str, ttl: Duration) -> EtcdStore {
        EtcdStore {
            client,
            prefix: prefix.trim_end_matches('/').to_string(),
            ttl,
            spare: Default::default(),
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

    /// `PREFIX/v1/env/`: every environment's lock and queue.
    pub fn env_prefix(&self) -> String {
        format!("{}/v1/env/", self.prefix)
    }

    /// `PREFIX/v1/env/ENV/queue/`: one key per waiter (see `super::queue`).
    pub fn queue_prefix(&self, env: Environment) -> String {
        format!("{}/v1/env/{}/queue/", self.prefix, env.as_str())
    }

    /// Joins `env`'s waiter queue (a lease of the lock's TTL, kept alive
    /// while we wait, that becomes the lock's lease when we get it).
    pub fn join_queue(
        &self,
        env: Environment,
        record: &EtcdWaiter,
    ) -> Result<QueuePlace, EtcdError> {
        QueuePlace::join(
            &self.client,
            &self.queue_prefix(env),
            self.ttl,
            record,
            self.budget().left(),
        )
    }

    /// Revokes the lease of a waiter whose process is known to be gone, so
    /// its key leaves the queue now rather than a TTL later.
    pub fn remove_dead_waiter(&self, entry: &QueueEntry) {
        if entry.lease != 0 {
            let _ = self
                .client
                .lease_revoke(entry.lease, self.client.call_timeout());
        }
    }

    fn budget(&self) -> Budget {
        Budget::new(&self.client, Instant::now() + OP_BUDGET)
    }

    pub fn inspect(&self, env: Environment) -> Result<EtcdInspection, EtcdError> {
        let budget = self.budget();
        let read = self.client.get(self.key(env).as_bytes(), budget.left())?;
        let mut insp = self.inspection(env, read.revision, read.kv, budget)?;
        insp.waiters = queue::read(&self.client, &self.queue_prefix(env), budget.left())?.1;
        Ok(insp)
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
                    value_size: kv.value.len(),
                    value_head: kv.value.iter().take(64).copied().collect(),
                })
            }
        };
        Ok(EtcdInspection {
            environment: env,
            key: self.key(env),
            revision,
            held,
            waiters: Vec::new(),
        })
    }

    /// While waiting for a release: a lease granted ahead (a spare, see
    /// `spare`), so the attempt after the release is one txn. A spare that
    /// got too old to use is left to expire and replaced.
    pub fn prepare_spare(&self, timeout: Duration) {
        let fresh =
            |s: &SpareLease| super::keeper::boottime().saturating_sub(s.granted_at) < self.ttl / 3;
        if self.spare.lock().unwrap().as_ref().is_some_and(fresh) {
            return;
        }
        let granted_at = super::keeper::boottime();
        if let Ok((id, granted_ttl)) = self.client.lease_grant(self.ttl, timeout) {
            *self.spare.lock().unwrap() = Some(SpareLease {
                id,
                granted_ttl,
                granted_at,
            });
        }
    }

    /// Takes the lock if nobody holds it, in one txn: create the key only if
    /// it does not exist, attached to a new lease of ours.
    /// `owner` is who takes it (see [`super::record::this_process`]); its
    /// `environment` is set to `env`.
    pub fn try_acquire(&self, env: Environment, owner: &OwnerRecord) -> Result<Acquire, EtcdError> {
        self.try_acquire_within(env, owner, self.budget(), None)
    }

    /// [`EtcdStore::try_acquire`] as the waiter at `place` in the queue:
    /// taken only when no waiter is ahead of it, with the place's lease, and
    /// the place's key deleted in the same txn. Without a place, taken only
    /// while nobody waits (a run that does not wait never jumps the queue).
    pub fn try_acquire_in_line(
        &self,
        env: Environment,
        owner: &OwnerRecord,
        place: Option<&QueuePlace>,
    ) -> Result<Acquire, EtcdError> {
        self.try_acquire_within(env, owner, self.budget(), place)
    }

    fn try_acquire_within(
        &self,
        env: Environment,
        owner: &OwnerRecord,
        budget: Budget,
        place: Option<&QueuePlace>,
    ) -> Result<Acquire, EtcdError> {
        let key = self.key(env);
        // A waiter's lease renewed long ago (its renewals failed, etcd was
        // away) is renewed first: the lock's local lease deadline counts
        // from that renewal. A lease that ran out meanwhile lost our place.
        if let Some(p) = place
            && super::keeper::boottime().saturating_sub(p.renewed_at()) > self.ttl / 3
            && !p.refresh(budget.left())?
        {
            return Ok(Acquire::Busy(self.look_in_line(env)?));
        }
        // A spare lease from a lost race, while young enough that its first
        // renewal (due a third of the TTL after its grant) is not late;
        // otherwise a new one. The keeper judges by the TTL asked for: if
        // etcd granted more, a loss is reported early, never late.
        let spare = match place {
            Some(_) => None,
            None => self.spare.lock().unwrap().take(),
        };
        let (lease, granted_ttl, granted_at, reused) = match spare {
            // A waiter's own lease, kept alive since it joined the queue.
            _ if let Some(p) = place => (p.lease, p.granted_ttl, p.renewed_at(), false),
            Some(s) if super::keeper::boottime().saturating_sub(s.granted_at) < self.ttl / 3 => {
                (s.id, s.granted_ttl, s.granted_at, true)
            }
            // A stale spare is left to expire (no key hangs on it): a
            // revoke here would be one more write before the lock is ours.
            _ => {
                let granted_at = super::keeper::boottime();
                let (id, ttl) = self.client.lease_grant(self.ttl, budget.left())?;
                (id, ttl, granted_at, false)
            }
        };
        let record = EtcdRecord {
            owner: OwnerRecord {
                environment: env.as_str().to_string(),
                ..owner.clone()
            },
            process_name: None,
            lease_id: lease.to_string(),
            lease_ttl_secs: granted_ttl,
        };
        let value = serde_json::to_vec(&record).expect("a record serialises");
        let txn = self.txn_in_line(env, value, lease, place, budget.left());
        let txn = match txn {
            Ok(t) => t,
            // A spare lease etcd no longer knows: once more with a new one.
            Err(EtcdError::Server { code: 5, .. }) if reused => {
                return self.try_acquire_within(env, owner, budget, place);
            }
            // A waiter's put that landed is found ours by its next try
            // (its lease), or undone when it leaves the queue.
            Err(e) if place.is_some() => return Err(e),
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
                // Kept for the next attempt (see `spare`).
                if place.is_none() {
                    *self.spare.lock().unwrap() = Some(SpareLease {
                        id: lease,
                        granted_ttl,
                        granted_at,
                    });
                }
                let mut insp = self.inspection(env, txn.revision, kv, budget)?;
                insp.waiters = txn.waiters;
                return Ok(Acquire::Busy(insp));
            }
        };
        // Held from here on: without a keeper it must not stay held.
        let keeper = LossSignal::new().and_then(|signal| {
            let spec = KeeperSpec {
                client: self.client.clone(),
                key: key.clone().into_bytes(),
                lease,
                token,
                ttl: self.ttl,
                granted_at,
            };
            Keeper::start(spec, signal.clone()).map(|k| (k, signal))
        });
        let (keeper, signal) = match keeper {
            Ok(ks) => ks,
            Err(e) => {
                let _ = self.client.lease_revoke(lease, budget.cleanup());
                return Err(EtcdError::Local {
                    detail: format!("cannot start keeping the lock: {e}"),
                });
            }
        };
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

    /// The acquiring txn: put the lock key if it is absent and no waiter is
    /// ahead (with `place`: no queue key older than ours, and ours deleted
    /// in the same step; without: the queue empty); else read the lock key
    /// and the queue. One round trip either way.
    fn txn_in_line(
        &self,
        env: Environment,
        value: Vec<u8>,
        lease: i64,
        place: Option<&QueuePlace>,
        timeout: Duration,
    ) -> Result<InLine, EtcdError> {
        let key = b64(self.key(env).as_bytes());
        let prefix = self.queue_prefix(env);
        let (q, q_end) = (b64(prefix.as_bytes()), b64(&queue::range_end(&prefix)));
        let lock_free =
            json!({"key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0"});
        // Over a range, a compare holds for every key in it (an empty range
        // compares as one absent key: create revision 0).
        let none_ahead = match place {
            Some(p) => json!({"key": q, "range_end": q_end, "result": "GREATER",
                "target": "CREATE", "create_revision": (p.create_revision - 1).to_string()}),
            None => json!({"key": q, "range_end": q_end, "result": "EQUAL",
                "target": "CREATE", "create_revision": "0"}),
        };
        let mut success = vec![json!({"request_put": {"key": key, "value": b64(&value),
            "lease": lease.to_string()}})];
        if let Some(p) = place {
            success.push(json!({"request_delete_range": {"key": b64(p.key.as_bytes())}}));
        }
        let failure = vec![
            json!({"request_range": {"key": key}}),
            json!({"request_range": queue::range_request(&prefix)}),
        ];
        let body =
            json!({"compare": [lock_free, none_ahead], "success": success, "failure": failure});
        self.in_line_answer(&self.client.call("/v3/kv/txn", &body, timeout)?)
    }

    /// The lock key and the queue in one read-only txn (no raft write): for
    /// a waiter woken because the one ahead left, which finds that one
    /// holding the lock nearly always.
    pub fn look_in_line(&self, env: Environment) -> Result<EtcdInspection, EtcdError> {
        let budget = self.budget();
        let prefix = self.queue_prefix(env);
        let body = json!({"compare": [], "success": [
            {"request_range": {"key": b64(self.key(env).as_bytes())}},
            {"request_range": queue::range_request(&prefix)},
        ], "failure": []});
        let got = self.in_line_answer(&self.client.call("/v3/kv/txn", &body, budget.left())?)?;
        let mut insp = self.inspection_without_ttl(env, got.revision, got.kv);
        insp.waiters = got.waiters;
        Ok(insp)
    }

    /// A look from a read that did not ask for the lease's time left.
    fn inspection_without_ttl(
        &self,
        env: Environment,
        revision: i64,
        kv: Option<KeyValue>,
    ) -> EtcdInspection {
        EtcdInspection {
            environment: env,
            key: self.key(env),
            revision,
            held: kv.map(|kv| Held {
                record: serde_json::from_slice(&kv.value).ok(),
                token: FencingToken(kv.create_revision),
                lease: LeaseId(kv.lease),
                ttl_remaining: None,
                mod_revision: kv.mod_revision,
                value_size: kv.value.len(),
                value_head: kv.value.iter().take(64).copied().collect(),
            }),
            waiters: Vec::new(),
        }
    }

    fn in_line_answer(&self, v: &serde_json::Value) -> Result<InLine, EtcdError> {
        let ep = self.client.endpoint().to_string();
        let ranges: Vec<&serde_json::Value> = v
            .get("responses")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get("response_range"))
            .collect();
        let succeeded = v
            .get("succeeded")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        Ok(InLine {
            succeeded,
            revision: header_revision(v),
            kv: match ranges.first() {
                Some(r) => first_kv(&ep, r)?,
                None => None,
            },
            waiters: match ranges.get(1) {
                Some(r) => queue::entries(&ep, r)?,
                None => Vec::new(),
            },
        })
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
                WatchNext::Events { events, .. } => {
                    if let Some(e) = events.last() {
                        return Ok(match e.kind {
                            EventKind::Delete => Change::Released {
                                revision: e.kv.mod_revision,
                            },
                            EventKind::Put => Change::Changed {
                                revision: e.kv.mod_revision,
                            },
                        });
                    }
                }
                WatchNext::TimedOut => return Ok(Change::TimedOut),
                // Compacted: the caller re-reads, which is what a change means.
                WatchNext::Cancelled { compact_revision } => {
                    return Ok(Change::Changed {
                        revision: compact_revision,
                    });
                }
            }
        }
    }

    /// Takes the lock, waiting for each release until `deadline`. Losing
    /// etcd while waiting is not an error: the wait retries until its
    /// deadline and reports the last failure; an error waiting cannot fix
    /// ([`EtcdError::retryable`] false) ends it at once. `progress` is called every
    /// `tick` (for the CLI's progress lines).
    pub fn acquire_wait(
        &self,
        env: Environment,
        owner: &OwnerRecord,
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
            match self.try_acquire_within(env, owner, Budget::new(&self.client, until), None) {
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
                // Waiting cannot fix a refused login or permission.
                Err(e) if !e.retryable() => return Err(e),
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
            &[Op::Get, Op::Delete],
            &[Op::Get],
            budget.left(),
        )?;
        let record = txn.kv.as_ref().and_then(|kv| parse_record(&kv.value));
        if !txn.succeeded {
            return Ok(match txn.kv {
                None => ForceUnlock::NotHeld,
                Some(kv) => ForceUnlock::ChangedHands {
                    token: FencingToken(kv.create_revision),
                    record,
                },
            });
        }
        // The holder's keepalive then finds its lease gone as well. (A key
        // put by hand has no lease: deleting it was all there was to do.)
        if lease.0 != 0 {
            self.client.lease_revoke(lease.0, budget.cleanup())?;
        }
        Ok(ForceUnlock::Unlocked { record })
    }

    /// The seam's form of [`EtcdStore::force_unlock`]: unlocks whoever holds
    /// the lock, or with `expected` (a lock id the caller showed) only that
    /// holder; the token and lease come from a fresh read, and the unlock
    /// itself still compares them, so a change in between is never undone.
    pub fn force_unlock_expected(
        &self,
        env: Environment,
        expected: Option<&str>,
    ) -> Result<ForceUnlock, EtcdError> {
        let budget = self.budget();
        let read = self.client.get(self.key(env).as_bytes(), budget.left())?;
        let Some(kv) = read.kv else {
            return Ok(ForceUnlock::NotHeld);
        };
        let record = parse_record(&kv.value);
        if let Some(id) = expected
            && record.as_ref().map(|r| r.owner.lock_id.as_str()) != Some(id)
        {
            return Ok(ForceUnlock::ChangedHands {
                token: FencingToken(kv.create_revision),
                record,
            });
        }
        self.force_unlock(env, FencingToken(kv.create_revision), LeaseId(kv.lease))
    }

    /// Starts watching `env`'s lock for releases (the seam's `watch`): made
    /// before the caller's next look, so a release in between is not missed.
    /// Fails only when no pipe can be made; an unreachable etcd is retried
    /// (see [`EtcdWatcher::error`]).
    pub fn watcher(&self, env: Environment) -> std::io::Result<EtcdWatcher> {
        EtcdWatcher::start(&self.client, &self.key(env), self.budget().left())
    }

    /// Watches another key for its deletion (a waiter's, by the one behind).
    pub fn watcher_of(&self, key: &str) -> std::io::Result<EtcdWatcher> {
        EtcdWatcher::start(&self.client, key, self.budget().left())
    }

    /// True only while `token` holds the lock.
    pub fn check(&self, env: Environment, token: FencingToken) -> Result<bool, EtcdError> {
        let read = self
            .client
            .get(self.key(env).as_bytes(), self.budget().left())?;
        Ok(read.kv.is_some_and(|kv| kv.create_revision == token.0))
    }
}
