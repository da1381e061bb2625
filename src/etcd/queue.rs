//! The etcd store's waiter queue (issue 22): a key per `run --wait` under
//! `PREFIX/v1/env/ENV/queue/`, named by its lease (hex) and attached to it,
//! served in create-revision order, as etcd's own `concurrency.Mutex` does.
//!
//! A waiter's lease is kept alive by a thread while it waits and becomes the
//! lock's lease when it gets the lock (the acquiring txn deletes the queue
//! key and puts the lock key in one step). It is revoked when the waiter
//! gives up or ends (drop), so its key goes at once; a waiter killed
//! outright leaves its key until the lease's TTL, so a look ignores a waiter
//! of this host whose process is gone, and the waiter behind it revokes it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{Client, KeyValue};
use super::error::EtcdError;
use super::keeper::boottime;
use super::wire::{b64, header_revision, num, parse_kv};
use crate::queue::WaiterRecord;

/// What a waiter writes under its key: the local queue's record plus what
/// tells its process apart on its own host.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EtcdWaiter {
    #[serde(flatten)]
    pub waiter: WaiterRecord,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start_ticks: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
}

/// One key of the queue as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueEntry {
    pub key: Vec<u8>,
    pub create_revision: i64,
    pub lease: i64,
    /// None when the value is not a waiter record.
    pub record: Option<EtcdWaiter>,
}

impl QueueEntry {
    fn of(kv: KeyValue) -> QueueEntry {
        QueueEntry {
            record: serde_json::from_slice(&kv.value).ok(),
            key: kv.key,
            create_revision: kv.create_revision,
            lease: kv.lease,
        }
    }

    /// Its waiter record, when it was written on `host` in this boot.
    fn recorded_here(&self, host: &str) -> Option<&EtcdWaiter> {
        let r = self.record.as_ref()?;
        let this_boot = r.boot_id.is_none() || r.boot_id == crate::liveness::boot_id();
        (r.waiter.host == host && this_boot).then_some(r)
    }

    /// A place of this very process other than `current` (its lease hex):
    /// one left behind when the process joined again, after a revoke that
    /// could not reach etcd or a put whose answer was lost. A process waits
    /// in one place only, so such a place is only ever in its own way.
    pub fn stale_place_of_this_process(&self, host: &str, current: i64) -> bool {
        let Some(r) = self.recorded_here(host) else {
            return false;
        };
        let me = crate::liveness::ProcessIdentity::of_self();
        self.lease != current
            && r.waiter.pid == std::process::id() as i32
            && me.is_some_and(|m| r.pid_start_ticks.is_none() || r.pid_start_ticks == m.start_ticks)
    }

    /// Its process is known to be gone: recorded on this host (same boot)
    /// and that pid no longer runs with its start time.
    pub fn dead_here(&self, host: &str) -> bool {
        let Some(r) = self.recorded_here(host) else {
            return false;
        };
        if r.waiter.pid <= 0 {
            return false;
        }
        let id = crate::liveness::ProcessIdentity {
            pid: r.waiter.pid,
            start_ticks: r.pid_start_ticks,
            boot_id: None,
        };
        id.alive().is_none()
    }
}

/// `[prefix, prefix+1)`: every key under `prefix`.
pub(crate) fn range_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    // The prefix ends in '/', never 0xff.
    *end.last_mut().expect("a prefix") += 1;
    end
}

/// The queue's keys in create-revision order, and the store's revision.
pub(crate) fn read(
    client: &Client,
    prefix: &str,
    timeout: Duration,
) -> Result<(i64, Vec<QueueEntry>), EtcdError> {
    let v = client.call("/v3/kv/range", &range_request(prefix), timeout)?;
    Ok((header_revision(&v), entries(client.endpoint(), &v)?))
}

/// A range request for the whole queue, oldest first.
pub(crate) fn range_request(prefix: &str) -> Value {
    json!({
        "key": b64(prefix.as_bytes()),
        "range_end": b64(&range_end(prefix)),
        "sort_order": "ASCEND",
        "sort_target": "CREATE",
        "limit": "256",
    })
}

/// The entries of a range answer, oldest first.
pub(crate) fn entries(ep: &str, range: &Value) -> Result<Vec<QueueEntry>, EtcdError> {
    let mut out = Vec::new();
    for kv in range
        .get("kvs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(QueueEntry::of(parse_kv(ep, kv)?));
    }
    out.sort_by_key(|e| e.create_revision);
    Ok(out)
}

/// Our place in the queue: the key, its create revision, and the lease a
/// thread keeps alive. Dropped, it leaves the queue (the lease revoked);
/// [`QueuePlace::into_lock_lease`] hands the lease to the lock instead.
pub struct QueuePlace {
    client: Client,
    pub key: String,
    pub create_revision: i64,
    pub lease: i64,
    pub granted_ttl: u64,
    shared: Arc<Keep>,
}

struct Keep {
    stop: AtomicBool,
    /// Boot-clock nanoseconds at which the last acknowledged renewal (or
    /// the grant) was sent: the lease lasts a TTL from there.
    renewed_at: AtomicU64,
    /// The lease is gone (expired while we could not renew it).
    lost: AtomicBool,
    wake: Mutex<()>,
}

impl QueuePlace {
    /// Joins the end of the queue under `prefix`: a lease of `ttl`, a key
    /// named by it holding `record`, and a thread renewing the lease every
    /// third of its TTL.
    pub(crate) fn join(
        client: &Client,
        prefix: &str,
        ttl: Duration,
        record: &EtcdWaiter,
        timeout: Duration,
    ) -> Result<QueuePlace, EtcdError> {
        let sent = boottime();
        let (lease, granted_ttl) = client.lease_grant(ttl, timeout)?;
        let key = format!("{prefix}{lease:x}");
        let value = serde_json::to_vec(record).expect("a record serialises");
        let put = json!({
            "key": b64(key.as_bytes()),
            "value": b64(&value),
            "lease": lease.to_string(),
            "prev_kv": true,
        });
        let v = match client.call("/v3/kv/put", &put, timeout) {
            Ok(v) => v,
            Err(e) => {
                let _ = client.lease_revoke(lease, timeout);
                return Err(e);
            }
        };
        let shared = Arc::new(Keep {
            stop: AtomicBool::new(false),
            renewed_at: AtomicU64::new(sent.as_nanos() as u64),
            lost: AtomicBool::new(false),
            wake: Mutex::new(()),
        });
        {
            let (client, shared) = (client.clone(), shared.clone());
            let every = (ttl / 3).max(Duration::from_millis(300));
            std::thread::Builder::new()
                .name("etcd-queue-lease".into())
                .spawn(move || renew(&client, lease, every, &shared))
                .map_err(|e| EtcdError::Local {
                    detail: format!("cannot keep a place in the queue: {e}"),
                })?;
        }
        // Our place is the key's create revision. A put whose answer did not
        // come in time is sent again to the next endpoint (`Client::call`);
        // when the first one had landed, the key already existed and this
        // answer's revision is the second put's: a place behind our own
        // key, which then stood "ahead" of us (chaos_short: a waiter 2nd in
        // line behind itself, the lock free, until its timeout). The key's
        // earlier self, when there was one, says where the place really is.
        let create_revision = match v.get("prev_kv") {
            Some(prev) => num(prev.get("create_revision")),
            None => header_revision(&v),
        };
        Ok(QueuePlace {
            client: client.clone(),
            key,
            create_revision,
            lease,
            granted_ttl,
            shared,
        })
    }

    /// When the last acknowledged renewal was sent, on the boot clock.
    pub fn renewed_at(&self) -> Duration {
        Duration::from_nanos(self.shared.renewed_at.load(Ordering::Relaxed))
    }

    /// The lease ran out: the key is gone, so is our place.
    pub fn lost(&self) -> bool {
        self.shared.lost.load(Ordering::Relaxed)
    }

    /// Renews the lease now (before it becomes the lock's, so the lock's
    /// keeper counts its TTL from a fresh renewal): false when it is gone.
    pub fn refresh(&self, timeout: Duration) -> Result<bool, EtcdError> {
        let _guard = self.shared.wake.lock();
        let sent = boottime();
        match self.client.lease_keepalive(self.lease, timeout)? {
            Some(_) => {
                self.shared
                    .renewed_at
                    .store(sent.as_nanos() as u64, Ordering::Relaxed);
                Ok(true)
            }
            None => {
                self.shared.lost.store(true, Ordering::Relaxed);
                Ok(false)
            }
        }
    }

    /// The lock is ours: the lease is the lock's now, kept by its keeper.
    pub fn into_lock_lease(mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.lease = 0;
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Out of the line at once, not a TTL later.
        if self.lease != 0 {
            let _ = self
                .client
                .lease_revoke(self.lease, self.client.call_timeout());
        }
    }
}

fn renew(client: &Client, lease: i64, every: Duration, shared: &Keep) {
    loop {
        // Sleep in short steps, so a stopped place's thread ends soon.
        let until = std::time::Instant::now() + every;
        while std::time::Instant::now() < until {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _guard = shared.wake.lock();
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let sent = boottime();
        match client.lease_keepalive(lease, client.call_timeout()) {
            Ok(Some(_)) => shared
                .renewed_at
                .store(sent.as_nanos() as u64, Ordering::Relaxed),
            Ok(None) => {
                shared.lost.store(true, Ordering::Relaxed);
                return;
            }
            // Unreachable for now: the next pass tries again.
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(host: &str, pid: i32, ticks: Option<u64>, lease: i64) -> QueueEntry {
        QueueEntry {
            key: format!("q/{lease:x}").into_bytes(),
            create_revision: 7,
            lease,
            record: Some(EtcdWaiter {
                waiter: crate::queue::WaiterRecord {
                    user: "u".into(),
                    host: host.into(),
                    pid,
                    reason: None,
                    since: "2026-12-03T00:00:00Z".into(),
                },
                pid_start_ticks: ticks,
                boot_id: crate::liveness::boot_id(),
            }),
        }
    }

    /// Only another place of this very process (same host, pid and start
    /// time, another lease) is its own stale place.
    #[test]
    fn a_stale_place_is_this_processs_and_not_its_current_one() {
        let me = std::process::id() as i32;
        let ticks = crate::liveness::ProcessIdentity::of_self().and_then(|m| m.start_ticks);
        assert!(entry("h", me, ticks, 5).stale_place_of_this_process("h", 9));
        assert!(entry("h", me, None, 5).stale_place_of_this_process("h", 9));
        assert!(!entry("h", me, ticks, 9).stale_place_of_this_process("h", 9));
        assert!(!entry("other", me, ticks, 5).stale_place_of_this_process("h", 9));
        assert!(!entry("h", me + 1, ticks, 5).stale_place_of_this_process("h", 9));
        let older = ticks.map(|t| t.wrapping_sub(1)).or(Some(1));
        assert!(!entry("h", me, older, 5).stale_place_of_this_process("h", 9));
    }
}
