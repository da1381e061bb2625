//! A held etcd lock: its token, lease and record, the loss notification its
//! keeper feeds, and the release that deletes only what is still ours.

use std::time::Instant;

use super::client::{Client, Compare, Op};
use super::error::EtcdError;
use super::keeper::{Keeper, LossCause, LossSignal};
use super::lock::{Budget, OP_BUDGET};
use super::record::{EtcdRecord, FencingToken, LeaseId, Release};
use crate::environment::Environment;
use crate::liveness::ProcessIdentity;

/// The key's value as a record; None when deploy-lock did not write it.
pub(super) fn parse_record(value: &[u8]) -> Option<Box<EtcdRecord>> {
    serde_json::from_slice(value).ok()
}

/// A held etcd lock; dropped, it releases what it still owns.
pub struct EtcdLock {
    pub(super) client: Client,
    pub(super) environment: Environment,
    pub(super) key: String,
    pub(super) token: FencingToken,
    pub(super) lease: LeaseId,
    pub(super) record: EtcdRecord,
    pub(super) signal: LossSignal,
    pub(super) keeper: Option<Keeper>,
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

    pub fn record(&self) -> &EtcdRecord {
        &self.record
    }

    /// The loss notification (a value, a wait, or an fd to poll).
    pub fn loss(&self) -> &LossSignal {
        &self.signal
    }

    pub fn lost(&self) -> Option<LossCause> {
        self.signal.lost()
    }

    /// When the command must be stopped at the latest, on the boot clock
    /// (`keeper::boottime`): the local lease deadline less the stop margin.
    /// None once released.
    pub fn stop_at(&self) -> Option<std::time::Duration> {
        self.keeper.as_ref().map(|k| k.lease().stop_at())
    }

    /// The same moment on the monotonic clock, for a poll's timeout (which
    /// does not count a suspend: [`EtcdLock::judge_deadline`] looks again
    /// after any wake-up).
    pub fn stop_instant(&self) -> Option<Instant> {
        let stop_at = self.stop_at()?;
        let now = super::keeper::boottime();
        Some(Instant::now() + stop_at.saturating_sub(now))
    }

    /// The end of a write's budget: the operation budget, but never past
    /// the moment the command must be stopped.
    fn write_deadline(&self) -> Instant {
        let budget = Instant::now() + OP_BUDGET;
        self.stop_instant().map_or(budget, |stop| budget.min(stop))
    }

    /// Reports the loss now if the local lease deadline has come, whether
    /// or not the keeper thread has run since (a loaded machine may not
    /// have scheduled it): the supervisor's own look.
    pub fn judge_deadline(&self) {
        if let Some(k) = &self.keeper
            && self.signal.lost().is_none()
            && let Some(cause) = k.lease().judge(super::keeper::boottime())
        {
            self.signal.report(cause);
        }
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

    /// Ok while the lock is ours; the cause once it is lost (the seam's
    /// `hold`: the keeper does the renewing, this only asks).
    pub fn hold(&self) -> Result<(), LossCause> {
        match self.signal.lost() {
            None => Ok(()),
            Some(cause) => Err(cause),
        }
    }

    /// Names the started command as the holder process (status shows it),
    /// in the same key, lease and create revision. False when the lock is
    /// no longer ours (nothing written).
    pub fn record_process(
        &mut self,
        process: &ProcessIdentity,
        process_name: Option<&str>,
    ) -> Result<bool, EtcdError> {
        let mut record = self.record.clone();
        record.owner.pid = process.pid;
        record.owner.pid_start_ticks = process.start_ticks;
        record.process_name = process_name.map(str::to_string);
        let value = serde_json::to_vec(&record).expect("a record serialises");
        let txn = self.client.txn(
            self.key.as_bytes(),
            &[
                Compare::CreateRevision(self.token.0),
                Compare::Lease(self.lease.0),
            ],
            &[Op::Put {
                value,
                lease: self.lease.0,
            }],
            &[],
            // Never past the local lease deadline: the supervisor that asks
            // is the one that must stop the command then.
            Budget::new(&self.client, self.write_deadline()).left(),
        )?;
        if txn.succeeded {
            self.record = record;
        }
        Ok(txn.succeeded)
    }

    /// Deletes the key only if it is still ours (same create revision and
    /// lease), then revokes our lease.
    pub fn release(mut self) -> Result<Release, EtcdError> {
        self.release_inner()
    }

    /// [`EtcdLock::release`] that also puts `extra` (keys without a lease:
    /// the audit copies) in the same write: a txn that deletes the key if
    /// it is still ours, instead of revoking the lease (which then expires
    /// with nothing attached). True when `extra` was written.
    pub fn release_with(
        mut self,
        extra: &[(Vec<u8>, Vec<u8>)],
    ) -> Result<(Release, bool), EtcdError> {
        if extra.is_empty() || self.keeper.is_none() {
            return self.release_inner().map(|r| (r, false));
        }
        if let Some(mut keeper) = self.keeper.take() {
            keeper.shut_down();
        }
        let budget = Budget::new(&self.client, Instant::now() + OP_BUDGET);
        let txn = self.client.delete_if_and_put(
            self.key.as_bytes(),
            self.token.0,
            self.lease.0,
            extra,
            budget.left(),
        )?;
        let release = match txn.kv {
            _ if txn.succeeded => Release::Released,
            Some(kv) if kv.create_revision != self.token.0 => Release::TakenByOther {
                token: FencingToken(kv.create_revision),
                record: parse_record(&kv.value),
            },
            _ => Release::AlreadyGone,
        };
        Ok((release, true))
    }

    fn release_inner(&mut self) -> Result<Release, EtcdError> {
        let Some(mut keeper) = self.keeper.take() else {
            return Ok(Release::AlreadyGone);
        };
        keeper.shut_down();
        let budget = Budget::new(&self.client, Instant::now() + OP_BUDGET);
        // Revoking our lease deletes exactly the keys attached to it: our
        // key if it is still ours, never another holder's (theirs hangs on
        // their lease). One write instead of a compare-and-delete and a
        // revoke; the key is read only when the lease was already gone.
        if self.client.lease_revoke(self.lease.0, budget.left())? {
            return Ok(Release::Released);
        }
        let read = self.client.get(self.key.as_bytes(), budget.cleanup())?;
        Ok(match read.kv {
            Some(kv) if kv.create_revision != self.token.0 => Release::TakenByOther {
                token: FencingToken(kv.create_revision),
                record: parse_record(&kv.value),
            },
            _ => Release::AlreadyGone,
        })
    }
}

impl Drop for EtcdLock {
    fn drop(&mut self) {
        let _ = self.release_inner();
    }
}
