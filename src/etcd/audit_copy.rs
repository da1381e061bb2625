//! The audit trail's copy in etcd: every event also a key under its
//! environment's prefix, the newest [`KEEP`] kept, read back by `log`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::client::Client;
use super::error::EtcdError;
use crate::environment::Environment;

/// How many events each environment keeps in etcd; older ones are deleted
/// by the writer that goes past it.
pub const KEEP: i64 = 1000;

/// The time one shipment (a put, a count, perhaps a trim) may take: it runs
/// after the lock operation, so it delays only the process's exit.
pub const SHIP_BUDGET: Duration = Duration::from_secs(1);

/// Whether this shipment also trims (about one in eight): a count per
/// release would be one more request on every run's way out, and the bound
/// only needs to hold give or take a few events.
pub fn trim_due() -> bool {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .is_ok_and(|d| d.subsec_micros() % 8 == 0)
}

/// Reads and writes `PREFIX/v1/env/ENV/audit/KEY`, where KEY is the
/// event's time in nanoseconds (20 digits, so key order is time order),
/// the host, the pid and the event's place in its shipment.
#[derive(Clone)]
pub struct AuditCopies {
    client: Client,
    prefix: String,
    host: String,
}

impl AuditCopies {
    /// `prefix` without a trailing slash; `host` names this machine in keys.
    pub fn new(client: Client, prefix: &str, host: &str) -> AuditCopies {
        AuditCopies {
            client,
            prefix: prefix.trim_end_matches('/').to_string(),
            // Keys stay one path segment whatever the host name holds.
            host: host
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect(),
        }
    }

    /// `PREFIX/v1/env/ENV/audit/`.
    pub fn dir(&self, env: Environment) -> String {
        format!("{}/v1/env/{}/audit/", self.prefix, env.as_str())
    }

    /// Puts the events in one txn, then trims each environment written to
    /// back to [`KEEP`] events.
    pub fn put(&self, events: &[(Environment, Value)]) -> Result<(), EtcdError> {
        self.put_keeping(events, KEEP)
    }

    /// [`AuditCopies::put`], keeping `keep` events per environment.
    pub fn put_keeping(&self, events: &[(Environment, Value)], keep: i64) -> Result<(), EtcdError> {
        self.client.put_all(&self.kvs(events), SHIP_BUDGET)?;
        self.trim_all(events, keep)
    }

    /// The keys and values of `events`, to put in one txn.
    pub fn kvs(&self, events: &[(Environment, Value)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let pid = std::process::id();
        events
            .iter()
            .enumerate()
            .map(|(i, (env, line))| {
                let key = format!("{}{nanos:020}-{}-{pid}-{i}", self.dir(*env), self.host);
                let value = serde_json::to_vec(line).expect("serialisable");
                (key.into_bytes(), value)
            })
            .collect()
    }

    /// Trims the environments of `events` back to `keep` events each.
    pub fn trim_all(&self, events: &[(Environment, Value)], keep: i64) -> Result<(), EtcdError> {
        let mut envs: Vec<Environment> = events.iter().map(|(e, _)| *e).collect();
        envs.dedup();
        for env in envs {
            self.trim(env, keep)?;
        }
        Ok(())
    }

    /// Deletes the oldest events beyond `keep` (a count, and past the
    /// bound one read of the surplus keys and one delete).
    fn trim(&self, env: Environment, keep: i64) -> Result<(), EtcdError> {
        let dir = self.dir(env);
        let count = self.client.count_prefix(dir.as_bytes(), SHIP_BUDGET)?;
        if count <= keep {
            return Ok(());
        }
        let surplus = self
            .client
            .range_prefix(dir.as_bytes(), count - keep, true, SHIP_BUDGET)?;
        if let (Some(first), Some(last)) = (surplus.first(), surplus.last()) {
            self.client
                .delete_through(&first.key, &last.key, SHIP_BUDGET)?;
        }
        Ok(())
    }

    /// Every environment's events, as recorded (a value that is not a
    /// JSON object is skipped: not ours).
    pub fn read_all(&self, timeout: Duration) -> Result<Vec<Value>, EtcdError> {
        let mut out = Vec::new();
        for env in Environment::ALL {
            let kvs = self
                .client
                .range_prefix(self.dir(env).as_bytes(), 0, false, timeout)?;
            out.extend(
                kvs.iter()
                    .filter_map(|kv| serde_json::from_slice::<Value>(&kv.value).ok())
                    .filter(Value::is_object),
            );
        }
        Ok(out)
    }
}
