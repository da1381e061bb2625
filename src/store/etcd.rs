//! The etcd store behind the lock-store seam: the lock is the etcd key
//! (`crate::etcd`), shared by every machine; the legacy local lock is also
//! taken on the machine that runs the command, after the etcd lock, so a
//! legacy deploy.sh or unlock.sh there still sees it.
//!
//! A held etcd lock reports its loss (lease gone, key deleted or taken, no
//! renewal acknowledged within the TTL) as a [`KeepEvent::Lost`] with what the
//! supervisor must do to the command (`DEPLOY_LOCK_ON_LOST`,
//! `DEPLOY_LOCK_LOST_GRACE`), audited as `lost`.

use std::cell::RefCell;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::local::LocalStore;
use super::{
    Acquire, AcquireOptions, Expect, Forced, Held, HolderRecord, KeepEvent, Keeping, LockStore,
    Released, ResetOutcome, Stop, Unlock, Warning, Watch, Woke,
};
use crate::context::Context;
use crate::environment::Environment;
use crate::etcd::audit_copy::AuditCopies;
use crate::etcd::queue::{EtcdWaiter, QueueEntry, QueuePlace};
use crate::etcd::settings::{self, Backend, EtcdSettings, SettingsError, SettingsWarning};
use crate::etcd::{
    self, EtcdError, EtcdInspection, EtcdLock, EtcdStore, EtcdWatcher, FencingToken, LeaseId,
    LossResponse, OnLost, Step,
};
use crate::fsops::{PathKind, Removal};
use crate::holder::{holder_from, liveness_of};
use crate::liveness::ProcessIdentity;
use crate::lock::{BusyReason, ForceUnlock, LockError, Release};
use crate::status::{ForeignValue, Inspection, Liveness, NetworkLock, Verdict};
use crate::times::parse_time;
use crate::view::{DirView, LegacyView, ProcessView, RecordView};

/// The backend the checkout file and the caller's values choose (`lookup`:
/// the caller's variables and flags).
pub fn choose(
    ctx: &Context,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(Backend, Vec<SettingsWarning>), SettingsError> {
    let file = settings::read_checkout_file(&ctx.project_root)?;
    settings::resolve(file.as_ref(), lookup)
}

impl crate::audit::Copies for AuditCopies {
    fn put(&self, events: &[(Environment, serde_json::Value)]) -> Result<(), super::StoreError> {
        AuditCopies::put(self, events).map_err(super::StoreError::Etcd)
    }
}

pub fn store_error(e: EtcdError) -> LockError {
    LockError::Store(super::StoreError::Etcd(e))
}

/// etcd's "requested lease not found" (gRPC NotFound) for a lease we used:
/// it expired or was revoked while we could not reach etcd.
fn place_lease_gone(e: &LockError) -> bool {
    let LockError::Store(super::StoreError::Etcd(e)) = e else {
        return false;
    };
    let gone = |e: &EtcdError| matches!(e, EtcdError::Server { code: 5, message, .. } if message.contains("lease not found"));
    match e {
        EtcdError::AllEndpoints(v) => v.iter().any(gone),
        e => gone(e),
    }
}

pub struct EtcdLockStore<'a> {
    ctx: &'a Context,
    etcd: EtcdStore,
    settings: EtcdSettings,
    local: LocalStore<'a>,
    copies: AuditCopies,
    /// Our place in the waiter queue while a `run --wait` waits; revoked
    /// (out of the line) when dropped, the lock's lease once the lock is ours.
    place: RefCell<Option<QueuePlace>>,
    /// Waiting behind others: the key of the waiter just ahead, watched
    /// alone (no thundering herd: one waiter wakes per hand-off).
    ahead: RefCell<Option<Ahead>>,
}

/// The waiter just ahead: its key's watch, and its entry when it runs on
/// this host (then its death is noticed at once, not a lease TTL later).
struct Ahead {
    watch: EtcdWatcher,
    here: Option<(QueueEntry, String)>,
}

impl Ahead {
    fn dead(&self) -> bool {
        self.here
            .as_ref()
            .is_some_and(|(e, host)| e.dead_here(host))
    }
}

/// Our handle inside [`Held`]: the etcd lock and the local lock taken after it.
struct EtcdHeld {
    lock: EtcdLock,
    local: Option<Held>,
}

impl<'a> EtcdLockStore<'a> {
    /// Connects (endpoints in order, within the connect budget).
    pub fn open(ctx: &'a Context, settings: EtcdSettings) -> Result<EtcdLockStore<'a>, LockError> {
        let etcd = EtcdStore::open(&settings).map_err(store_error)?;
        // Every event this process audits also goes to etcd (shipped by
        // `audit::ship_copies` once the operation is done).
        let copies = AuditCopies::new(etcd.client().clone(), &settings.prefix, &ctx.host);
        crate::audit::copy_to(Box::new(copies.clone()));
        Ok(EtcdLockStore {
            ctx,
            etcd,
            settings,
            local: LocalStore::without_queue(ctx),
            copies,
            place: RefCell::new(None),
            ahead: RefCell::new(None),
        })
    }

    /// Joins the queue on the first waiting acquire (again if our lease ran
    /// out meanwhile).
    fn ensure_place(&self, env: Environment, how: &AcquireOptions<'_>) -> Result<(), LockError> {
        if !how.waiting {
            return Ok(());
        }
        if self.place.borrow().as_ref().is_some_and(|p| !p.lost()) {
            return Ok(());
        }
        self.place.borrow_mut().take();
        let me = ProcessIdentity::of_self();
        let record = EtcdWaiter {
            waiter: crate::queue::WaiterRecord {
                user: self.ctx.user().to_string(),
                host: self.ctx.host.clone(),
                pid: std::process::id() as i32,
                reason: how.reason.map(str::to_string),
                since: crate::times::utc_seconds(self.ctx.now()),
            },
            pid_start_ticks: me.as_ref().and_then(|m| m.start_ticks),
            boot_id: crate::liveness::boot_id(),
        };
        let place = self.etcd.join_queue(env, &record).map_err(store_error)?;
        *self.place.borrow_mut() = Some(place);
        Ok(())
    }

    /// A busy answer: held, or free with waiters ahead of `mine` (our
    /// place's create revision) in line.
    fn busy(&self, insp: EtcdInspection, mine: Option<i64>) -> Acquire {
        let held = insp.held.is_some();
        let inspection = self.inspection(insp);
        let ahead = inspection
            .waiters
            .iter()
            .filter(|w| mine.is_none_or(|m| (w.order as i64) < m))
            .count();
        let reason = match held {
            false if ahead > 0 => BusyReason::Queued { ahead },
            _ => BusyReason::HolderAlive,
        };
        Acquire::Busy {
            reason,
            inspection: Box::new(inspection),
            run_holder: None,
        }
    }

    /// The waiter's acquisition: its txn, then, when busy, the watch it
    /// waits on: the waiter just ahead (a dead one of this host is removed
    /// at once and the txn tried again), or the lock key when it is first.
    fn acquire_in_line(
        &self,
        env: Environment,
        how: &AcquireOptions<'_>,
        owner: &crate::status::OwnerRecord,
        look_first: bool,
    ) -> Result<Acquire, LockError> {
        // Woken because the waiter ahead left: it has nearly always just
        // taken the lock, so a read-only look comes first (a write that
        // would fail is a raft round trip on the hand-off's path).
        let mut looked = None;
        if look_first {
            let insp = self.etcd.look_in_line(env).map_err(store_error)?;
            if insp.held.is_some() {
                looked = Some(insp);
            }
        }
        for _ in 0..8 {
            let tried = match looked.take() {
                Some(insp) => Ok(etcd::Acquire::Busy(insp)),
                None => {
                    let place = self.place.borrow();
                    self.etcd.try_acquire_in_line(env, owner, place.as_ref())
                }
            };
            let insp = match tried.map_err(store_error)? {
                etcd::Acquire::Acquired(lock) => {
                    if let Some(p) = self.place.borrow_mut().take() {
                        p.into_lock_lease();
                    }
                    return self.with_local_lock(env, how, lock);
                }
                etcd::Acquire::Busy(insp) => insp,
            };
            let mine = self.place.borrow().as_ref().map(|p| p.create_revision);
            let Some(mine) = mine else {
                return Ok(self.busy(insp, None));
            };
            if self.place.borrow().as_ref().is_some_and(|p| p.lost()) {
                return Ok(self.busy(insp, Some(mine)));
            }
            let ahead = insp
                .waiters
                .iter()
                .rfind(|e| e.create_revision < mine)
                .cloned();
            let current = self.place.borrow().as_ref().map_or(0, |p| p.lease);
            match ahead {
                Some(dead) if dead.dead_here(&self.ctx.host) => {
                    self.etcd.remove_dead_waiter(&dead);
                    continue;
                }
                // Our own earlier place (chaos_short: a waiter cut off from
                // etcd joined again while its first place's key lived on,
                // and waited behind itself until its timeout).
                Some(own) if own.stale_place_of_this_process(&self.ctx.host, current) => {
                    self.etcd.remove_dead_waiter(&own);
                    continue;
                }
                Some(a) => {
                    let key = String::from_utf8_lossy(&a.key).into_owned();
                    let here = a
                        .record
                        .as_ref()
                        .is_some_and(|r| r.waiter.host == self.ctx.host)
                        .then(|| (a.clone(), self.ctx.host.clone()));
                    *self.ahead.borrow_mut() = self
                        .etcd
                        .watcher_of(&key)
                        .ok()
                        .map(|watch| Ahead { watch, here });
                }
                None => {}
            }
            return Ok(self.busy(insp, Some(mine)));
        }
        let insp = self.etcd.inspect(env).map_err(store_error)?;
        let mine = self.place.borrow().as_ref().map(|p| p.create_revision);
        Ok(self.busy(insp, mine))
    }

    /// With the etcd lock had: this machine's legacy lock too.
    fn with_local_lock(
        &self,
        env: Environment,
        how: &AcquireOptions<'_>,
        lock: EtcdLock,
    ) -> Result<Acquire, LockError> {
        // Then this machine's legacy lock; if a legacy deploy holds it, the
        // etcd lock goes back (dropping it releases it).
        let local = match self.local.acquire(env, how)? {
            Acquire::Acquired(local) => local,
            // Our own machine's leftover of an etcd run that died: its lease
            // is gone (the key is ours now), so it is taken over (the engine
            // re-checks under its guard and audits the takeover).
            Acquire::Busy {
                inspection,
                reason: BusyReason::NotStale,
                ..
            } if leftover_seen_by_its_successor(&inspection) => {
                let forced = AcquireOptions {
                    force: true,
                    process: how.process.clone(),
                    interrupted: how.interrupted,
                    waiting: how.waiting,
                    reason: how.reason,
                    freeze: how.freeze,
                };
                match self.local.acquire(env, &forced)? {
                    Acquire::Acquired(local) => local,
                    busy @ Acquire::Busy { .. } => return Ok(busy),
                }
            }
            busy @ Acquire::Busy { .. } => return Ok(busy),
        };
        let record = HolderRecord {
            fencing_token: Some(lock.token().0 as u64),
            lease_id: Some(lock.lease().to_string()),
            lease_ttl_secs: Some(lock.record().lease_ttl_secs),
            ..lock.record().owner.clone()
        };
        let mut local = *local;
        let took_over = local.took_over.take();
        let warnings = std::mem::take(&mut local.warnings);
        let mut held = Held::new(
            env,
            record,
            took_over,
            Box::new(EtcdHeld {
                lock,
                local: Some(local),
            }),
        );
        held.warnings = warnings;
        Ok(Acquire::Acquired(Box::new(held)))
    }

    /// The live waiters as views show them: a waiter of this host whose
    /// process is gone is left out (its key lasts until its lease's TTL).
    fn waiters(&self, entries: &[QueueEntry]) -> Vec<crate::status::Waiter> {
        entries
            .iter()
            .filter(|e| !e.dead_here(&self.ctx.host))
            .map(|e| {
                let r = e.record.clone().unwrap_or_default().waiter;
                crate::status::Waiter {
                    user: r.user,
                    host: r.host,
                    pid: r.pid,
                    reason: r.reason.filter(|r| !r.is_empty()),
                    since: r.since,
                    order: e.create_revision.max(0) as u128,
                }
            })
            .collect()
    }

    fn inspection(&self, e: EtcdInspection) -> Inspection {
        let env = e.environment;
        let stale_after_secs = self.ctx.settings.stale_after.as_secs();
        let owner = e.held.as_ref().and_then(|h| {
            h.record.as_ref().map(|r| HolderRecord {
                fencing_token: Some(h.token.0 as u64),
                lease_id: Some(h.lease.to_string()),
                lease_ttl_secs: h.ttl_remaining.map(|d| d.as_secs()),
                ..r.owner.clone()
            })
        });
        let holder = holder_from(owner.as_ref(), None, env);
        // The lease is the holder's liveness: a key exists only while its
        // lease does. A process is probed only to name it on its own host.
        let liveness = match holder.as_ref().map(|h| liveness_of(h, &self.ctx.host)) {
            Some(alive @ Liveness::Alive { .. }) => alive,
            _ if e.held.is_some() => Liveness::OtherHost,
            _ => Liveness::NoRecord,
        };
        let now = self.ctx.now();
        let age_seconds = owner
            .as_ref()
            .and_then(|o| parse_time(&o.locked_at))
            .map(|t| now.as_second() - t.as_second());
        let record = match &owner {
            None if e.held.is_some() => RecordView {
                locked: Some("true".into()),
                ..Default::default()
            },
            None => RecordView::default(),
            Some(o) => RecordView {
                locked: Some("true".into()),
                locked_by: Some(o.locked_by.clone()),
                locked_at: Some(o.locked_at.clone()),
                deployment_id: Some(o.deployment_id.clone()),
                pid: Some(o.pid.to_string()),
                hostname: Some(o.hostname.clone()),
                age: age_seconds,
                process: match &liveness {
                    Liveness::Alive { comm, .. } => ProcessView::Running {
                        comm: comm.clone(),
                        display: comm.clone(),
                    },
                    _ => ProcessView::NotChecked,
                },
                ..Default::default()
            },
        };
        let (path_kind, dir, verdict) = match e.held {
            Some(_) => (
                PathKind::Directory,
                DirView::Exists { ls_ld: None },
                Verdict::Held,
            ),
            None => (
                PathKind::Missing,
                DirView::Missing { blocked_by: None },
                Verdict::Free,
            ),
        };
        let mut insp = Inspection {
            environment: env,
            view: LegacyView {
                dir,
                obstruction: None,
                record: Some(record),
                stale_after_secs,
                no_checkout: self
                    .ctx
                    .no_checkout
                    .as_ref()
                    .map(|e| e.searched_from.clone()),
            },
            lock_dir: self.location(env),
            path_kind,
            dir: None,
            locked_at_file: None,
            owner,
            state_file: self.ctx.state_file.clone(),
            state: None,
            holder,
            liveness,
            age_seconds,
            now,
            stale: false,
            verdict,
            run_holder: None,
            other_environment: None,
            migration: None,
            waiters: self.waiters(&e.waiters),
            network: Some(NetworkLock {
                backend: "etcd",
                key: e.key.clone(),
                fencing_token: e.held.as_ref().map(|h| h.token.0),
                lease_id: e.held.as_ref().map(|h| h.lease.to_string()),
                ttl_remaining_secs: e
                    .held
                    .as_ref()
                    .and_then(|h| h.ttl_remaining)
                    .map(|d| d.as_secs()),
                foreign: e.held.as_ref().and_then(|h| {
                    let (is_record, has_lease) = (h.record.is_some(), h.lease.0 != 0);
                    (!is_record || !has_lease).then(|| {
                        let mut f = ForeignValue::new(&h.value_head, is_record, has_lease);
                        f.size = h.value_size;
                        f
                    })
                }),
            }),
        };
        // A held key's verdict is the decision's too (a freeze is `frozen`),
        // and so is a free key's with waiters in line (theirs: `queued`).
        if insp.locked() || insp.verdict == Verdict::Free {
            insp.verdict = crate::lock::decide(&insp).verdict;
        }
        insp
    }

    fn audit(
        &self,
        event: &str,
        env: Environment,
        holder: Option<&HolderRecord>,
        extra: serde_json::Value,
    ) -> Option<Warning> {
        let holder = holder_from(holder, None, env);
        crate::audit::record(self.ctx, event, env, holder.as_ref(), extra)
            .err()
            .map(|e| Warning::Audit {
                log: crate::audit::log_path(self.ctx),
                error: e.to_string(),
            })
    }
}

impl Watch for EtcdWatcher {
    fn gone(&self) -> bool {
        EtcdWatcher::gone(self)
    }
    fn wait(&self, until: Instant, extra: Option<BorrowedFd<'_>>) -> io::Result<Woke> {
        EtcdWatcher::wait(self, until, extra)
    }
}

/// The lock key, or, while a waiter is behind others in the queue, the key
/// of the waiter just ahead (its turn can come only once that one leaves).
struct InLineWatch<'s> {
    lock: Box<dyn Watch + 's>,
    ahead: &'s RefCell<Option<Ahead>>,
}

/// How often a waiter looks whether the waiter ahead of it, on this host,
/// still runs (a SIGKILLed one leaves its key until its lease runs out).
const AHEAD_LOOK: Duration = Duration::from_secs(1);

impl Watch for InLineWatch<'_> {
    fn gone(&self) -> bool {
        match self.ahead.borrow().as_ref() {
            Some(a) => a.dead() || a.watch.gone(),
            None => self.lock.gone(),
        }
    }
    fn wait(&self, until: Instant, extra: Option<BorrowedFd<'_>>) -> io::Result<Woke> {
        let ahead = self.ahead.borrow();
        let Some(a) = ahead.as_ref() else {
            return self.lock.wait(until, extra);
        };
        if a.here.is_none() {
            return a.watch.wait(until, extra);
        }
        loop {
            if a.dead() {
                return Ok(Woke::Released);
            }
            let slice = (Instant::now() + AHEAD_LOOK).min(until);
            match a.watch.wait(slice, extra)? {
                Woke::Timeout if slice < until => {}
                woke => return Ok(woke),
            }
        }
    }
}

/// Without a watch thread (no pipe could be made): a look every 100 ms.
struct PollWatch<'s> {
    store: &'s EtcdLockStore<'s>,
    env: Environment,
}

impl Watch for PollWatch<'_> {
    fn gone(&self) -> bool {
        self.store
            .etcd
            .inspect(self.env)
            .is_ok_and(|i| i.held.is_none())
    }
    fn wait(&self, until: Instant, extra: Option<BorrowedFd<'_>>) -> io::Result<Woke> {
        loop {
            if self.gone() {
                return Ok(Woke::Released);
            }
            let next = (Instant::now() + Duration::from_millis(100)).min(until);
            let fds: Vec<BorrowedFd<'_>> = extra.into_iter().collect();
            if crate::wait::poll_any(&fds, next)?.is_some() {
                return Ok(Woke::Extra);
            }
            if Instant::now() >= until {
                return Ok(Woke::Timeout);
            }
        }
    }
}

impl LockStore for EtcdLockStore<'_> {
    fn backend(&self) -> &'static str {
        "etcd"
    }

    /// The state file is this machine's, beside the etcd key: resetting it
    /// is the local store's job (the etcd key is unlocked with `unlock`).
    fn reset_records(
        &self,
        env: Environment,
        expect: Option<Expect<'_>>,
    ) -> Result<ResetOutcome, LockError> {
        self.local.reset_records(env, expect)
    }

    /// The etcd key; while it is free, also this machine's lock directory,
    /// which a run here takes next: if that would refuse (a legacy deploy
    /// holds it), the local lock is what is shown, so `status --quiet`
    /// answers what `run` would do. An etcd run's own leftover
    /// ([`crate::lock::leftover_of_dead_etcd_run`]) is no obstacle.
    fn inspect(&self, env: Environment) -> Result<Inspection, LockError> {
        let e = self.etcd.inspect(env).map_err(store_error)?;
        let free = e.held.is_none();
        let etcd = self.inspection(e);
        if !free {
            return Ok(etcd);
        }
        let mut local = match self.local.inspect(env) {
            Ok(l) => l,
            // The key is the lock; an unreadable local record is shown by
            // the run that trips over it.
            Err(_) => return Ok(etcd),
        };
        if local.path_kind == PathKind::Missing && local.run_holder.is_none() {
            return Ok(etcd);
        }
        local.network = etcd.network.clone();
        if crate::lock::would_take(&local) {
            return Ok(etcd);
        }
        local.waiters = etcd.waiters;
        Ok(local)
    }

    fn acquire(&self, env: Environment, how: &AcquireOptions<'_>) -> Result<Acquire, LockError> {
        let mut owner =
            etcd::this_process(env, &self.ctx.locked_by()).map_err(|source| LockError::Io {
                path: "/dev/urandom".into(),
                source,
            })?;
        owner.pid = how.process.pid;
        owner.pid_start_ticks = how.process.start_ticks;
        owner.reason = how.reason.map(str::to_string);
        owner.freeze = how.freeze.cloned();
        // A waiter waits in line (only the first is woken by a release, so
        // no race of waiters to avoid): one txn takes the lock when it is
        // free and nobody is ahead, else reads the lock and the queue.
        self.ensure_place(env, how)?;
        let was_behind = self.ahead.borrow_mut().take().is_some();
        if self.place.borrow().is_some() {
            return match self.acquire_in_line(env, how, &owner, was_behind) {
                // Our place's lease ran out (this machine was cut off from
                // etcd for longer than its TTL, seen in a chaos run): the
                // place is gone with it, so join again, at the end of the
                // line, rather than end the wait on an error.
                Err(e) if place_lease_gone(&e) => {
                    self.place.borrow_mut().take();
                    self.ensure_place(env, how)?;
                    self.acquire_in_line(env, how, &owner, false)
                }
                other => other,
            };
        }
        let lock = match self.etcd.try_acquire(env, &owner).map_err(store_error)? {
            etcd::Acquire::Busy(insp) => return Ok(self.busy(insp, None)),
            etcd::Acquire::Acquired(lock) => lock,
        };
        self.with_local_lock(env, how, lock)
    }

    fn keep<'a>(&'a self, held: &'a mut Held) -> Box<dyn Keeping + 'a> {
        let env = held.env;
        let Some(h) = held.handle_mut::<EtcdHeld>() else {
            return Box::new(NoKeeping);
        };
        let EtcdHeld { lock, local } = h;
        let local = local.as_mut().map(|l| self.local.keep(l));
        Box::new(EtcdKeeping {
            store: self,
            env,
            lock,
            local,
            response: LossResponse::new(self.settings.on_lost, self.settings.lost_grace),
            lost: false,
            pending_process: None,
            audit_lost: None,
            warnings: Vec::new(),
        })
    }

    fn release(&self, held: Held) -> Result<Released, LockError> {
        let env = held.env;
        let Some(h) = held.into_handle::<EtcdHeld>() else {
            return Ok(Released {
                outcome: Release::AlreadyGone,
                warnings: Vec::new(),
            });
        };
        let EtcdHeld { lock, local } = *h;
        let mut warnings = Vec::new();
        // Taken last, let go first.
        if let Some(local) = local {
            warnings.extend(self.local.release(local)?.warnings);
        }
        // The audit events so far (the acquisition, the release just
        // recorded) ride in the release's own write.
        let events = crate::audit::take_copies();
        let (released, shipped) = match lock.release_with(&self.copies.kvs(&events)) {
            Ok(r) => r,
            Err(e) => {
                crate::audit::requeue_copies(events);
                return Err(store_error(e));
            }
        };
        if !shipped {
            crate::audit::requeue_copies(events);
        } else if crate::etcd::audit_copy::trim_due() {
            let _ = self.copies.trim_all(&events, crate::etcd::audit_copy::KEEP);
        }
        let outcome = match released {
            etcd::Release::Released => Release::Released,
            etcd::Release::AlreadyGone => Release::AlreadyGone,
            etcd::Release::TakenByOther { record, .. } => {
                let holder = holder_from(record.as_ref().map(|r| &r.owner), None, env);
                warnings.insert(
                    0,
                    Warning::TakenByOther {
                        env,
                        holder: holder.clone(),
                    },
                );
                Release::TakenByOther { holder }
            }
        };
        Ok(Released { outcome, warnings })
    }

    fn force_unlock(
        &self,
        env: Environment,
        expect: Option<Expect<'_>>,
    ) -> Result<Forced, LockError> {
        let result = match expect {
            None => self.etcd.force_unlock_expected(env, None),
            Some(Expect::LockId(id)) => self.etcd.force_unlock_expected(env, Some(id)),
            Some(Expect::Shown(insp)) => {
                let net = insp.network.as_ref();
                let token = net.and_then(|n| n.fencing_token);
                let lease = net
                    .and_then(|n| n.lease_id.as_deref())
                    .and_then(|l| i64::from_str_radix(l, 16).ok());
                match (token, lease) {
                    (Some(t), Some(l)) => self.etcd.force_unlock(env, FencingToken(t), LeaseId(l)),
                    // Shown free: only a lock that is still free is "it".
                    _ => self.etcd.force_unlock_expected(env, Some("")),
                }
            }
        }
        .map_err(store_error)?;
        let mut warnings = Vec::new();
        let outcome = match result {
            etcd::ForceUnlock::Unlocked { record } => {
                let owner = record.as_ref().map(|r| &r.owner);
                // Removing a freeze lifts it (see the local store's unlock).
                let event = match owner.and_then(|o| o.freeze.as_ref()) {
                    Some(_) => "unfreeze",
                    None => "force_unlock",
                };
                warnings.extend(self.audit(
                    event,
                    env,
                    owner,
                    json!({"backend": "etcd", "key": self.etcd.key(env)}),
                ));
                Unlock::Done(ForceUnlock {
                    dir_removed: Some(Removal {
                        had_foreign_entries: false,
                        had_entries: false,
                    }),
                    state_updated: false,
                    warnings: Vec::new(),
                })
            }
            etcd::ForceUnlock::NotHeld => Unlock::Done(ForceUnlock {
                dir_removed: None,
                state_updated: false,
                warnings: Vec::new(),
            }),
            etcd::ForceUnlock::ChangedHands { record, .. } => Unlock::ChangedHands {
                now: holder_from(record.as_ref().map(|r| &r.owner), None, env),
            },
        };
        Ok(Forced { outcome, warnings })
    }

    fn watch(&self, env: Environment) -> Box<dyn Watch + '_> {
        let lock: Box<dyn Watch + '_> = match self.etcd.watcher(env) {
            Ok(w) => Box::new(w),
            Err(_) => Box::new(PollWatch { store: self, env }),
        };
        Box::new(InLineWatch {
            lock,
            ahead: &self.ahead,
        })
    }

    /// A watch on every key under the store's prefix (locks and queues).
    fn changes(&self) -> Box<dyn Watch + '_> {
        match crate::changes::EtcdChanges::start(self.etcd.client(), &self.etcd.env_prefix()) {
            Ok(c) => Box::new(c),
            Err(_) => self.local.changes(),
        }
    }

    fn location(&self, env: Environment) -> PathBuf {
        PathBuf::from(format!("etcd:{}", self.etcd.key(env)))
    }

    fn check(&self, env: Environment, token: i64) -> Result<Option<bool>, LockError> {
        self.etcd
            .check(env, FencingToken(token))
            .map(Some)
            .map_err(store_error)
    }
}

/// [`crate::lock::leftover_of_dead_etcd_run`] as a run that holds the etcd
/// key sees it: the kernel run lock it names is this run's own (taken
/// before the directory), so free of any other run.
fn leftover_seen_by_its_successor(insp: &Inspection) -> bool {
    let ours = insp
        .run_holder
        .as_ref()
        .is_some_and(|r| r.pid == std::process::id() as i32);
    if !ours {
        return crate::lock::leftover_of_dead_etcd_run(insp);
    }
    let mut insp = insp.clone();
    insp.run_holder = None;
    crate::lock::leftover_of_dead_etcd_run(&insp)
}

/// How long after its start the command is named in the records (the etcd
/// key, and this machine's lock directory and state file): a command done
/// by then (a hook, `true`) costs no raft write and no local rewrite (two
/// renames, three fsyncs), which were most of a short run's time. Until
/// then the records name the deploy-lock process, which outlives its
/// command (the command is reaped before the lock is let go, and gets
/// SIGTERM should deploy-lock die), so every view still sees a live holder.
const RECORD_AFTER: Duration = Duration::from_millis(50);

struct NoKeeping;
impl Keeping for NoKeeping {
    fn started(&mut self, _: ProcessIdentity) {}
}

struct EtcdKeeping<'a> {
    store: &'a EtcdLockStore<'a>,
    env: Environment,
    lock: &'a mut EtcdLock,
    local: Option<Box<dyn Keeping + 'a>>,
    response: LossResponse,
    lost: bool,
    /// The started command, to name in the etcd record when due.
    pending_process: Option<(ProcessIdentity, Instant)>,
    /// The loss's cause, to audit once the command was signalled.
    audit_lost: Option<String>,
    warnings: Vec<Warning>,
}

fn stop(step: Step) -> Stop {
    match step {
        Step::Term => Stop::Term,
        Step::Kill => Stop::Kill,
    }
}

impl Keeping for EtcdKeeping<'_> {
    fn started(&mut self, process: ProcessIdentity) {
        // Named in both records a moment later (see RECORD_AFTER), by
        // `service`.
        self.pending_process = Some((process, Instant::now() + RECORD_AFTER));
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        // The loss fd stays readable once lost: polled only until then.
        if self.lost {
            self.local.as_ref().and_then(|l| l.fd())
        } else {
            Some(self.lock.loss().fd())
        }
    }

    fn deadline(&self) -> Option<Instant> {
        // The local lease deadline, until the loss is seen: the supervisor
        // wakes for it even if the keeper thread is not scheduled in time.
        let lease = (!self.lost).then(|| self.lock.stop_instant()).flatten();
        [
            self.local.as_ref().and_then(|l| l.deadline()),
            self.response.deadline(),
            lease,
            self.pending_process.as_ref().map(|p| p.1),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn service(&mut self) -> Vec<KeepEvent> {
        let mut out = match &mut self.local {
            Some(l) => l.service(),
            None => Vec::new(),
        };
        let now = Instant::now();
        if !self.lost {
            self.lock.judge_deadline();
        }
        // Not once the lock is lost (a resumed holder past its deadline):
        // there is no record of ours left to name it in.
        if self.pending_process.as_ref().is_some_and(|p| now >= p.1)
            && let Some((process, _)) = self.pending_process.take()
        {
            if let Some(l) = &mut self.local {
                l.started(process.clone());
            }
            self.record_process(&process);
        }
        if !self.lost
            && let Some(cause) = self.lock.lost()
        {
            self.lost = true;
            let step = self.response.lost(now);
            out.push(KeepEvent::Lost {
                cause: cause.clone(),
                stop: step.map(stop),
                kill_after: step.and(self.settings().lost_grace),
            });
            // Written by `warnings`, which the supervisor calls after it
            // has signalled the command: a slow disk must not delay the TERM.
            self.audit_lost = Some(cause.to_string());
        }
        if let Some(step) = self.response.due(now) {
            out.push(KeepEvent::Stop(stop(step)));
        }
        out
    }

    fn last_look(&mut self) -> Vec<KeepEvent> {
        match &mut self.local {
            Some(l) => l.last_look(),
            None => Vec::new(),
        }
    }

    fn warnings(&mut self) -> Vec<Warning> {
        if let Some(cause) = self.audit_lost.take() {
            let record = HolderRecord {
                fencing_token: Some(self.lock.token().0 as u64),
                ..self.lock.record().owner.clone()
            };
            let w = self.store.audit(
                "lost",
                self.env,
                Some(&record),
                json!({
                    "backend": "etcd",
                    "key": self.lock.key(),
                    "fencing_token": self.lock.token().0,
                    "cause": cause,
                    "on_lost": match self.settings().on_lost { OnLost::Term => "term", OnLost::Warn => "warn" },
                }),
            );
            self.warnings.extend(w);
        }
        let mut w = std::mem::take(&mut self.warnings);
        if let Some(l) = &mut self.local {
            w.extend(l.warnings());
        }
        w
    }

    fn resumed(&mut self) {
        self.lock.check_now();
    }
}

impl EtcdKeeping<'_> {
    fn settings(&self) -> &EtcdSettings {
        &self.store.settings
    }

    /// Names the command in the etcd record, unless the lock is lost (a
    /// resumed holder past its deadline has no record of ours left).
    fn record_process(&mut self, process: &ProcessIdentity) {
        if self.lost || self.lock.lost().is_some() {
            return;
        }
        let name = crate::liveness::probe(process.pid).map(|p| p.ps_comm());
        if let Err(e) = self.lock.record_process(process, name.as_deref()) {
            self.warnings.push(Warning::RecordProcess {
                error: super::SharedError::new(store_error(e)),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_lost_lease_rejoins_the_line() {
        let server = |code, message: &str| EtcdError::Server {
            endpoint: "http://127.0.0.1:2379".into(),
            code,
            message: message.into(),
        };
        let gone = server(5, "etcdserver: requested lease not found");
        assert!(place_lease_gone(&store_error(gone.clone())));
        assert!(place_lease_gone(&store_error(EtcdError::AllEndpoints(
            vec![server(14, "etcdserver: no leader"), gone,]
        ))));
        assert!(!place_lease_gone(&store_error(server(
            7,
            "etcdserver: permission denied"
        ))));
        assert!(!place_lease_gone(&store_error(server(
            5,
            "etcdserver: key not found"
        ))));
    }
}
