//! The local directory store: the legacy mkdir lock in the lock folder plus
//! the checkout's state record ([`crate::lock::LocalLock`]), with the
//! whole-run kernel lock and the keeper, behind the [`LockStore`] seam. The
//! engine's warnings come back inside results.

use std::cell::RefCell;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::Instant;

use super::{
    Acquire, AcquireOptions, Expect, Forced, Held, KeepEvent, Keeping, LockStore, Released,
    ResetOutcome, Warning, Watch, Woke,
};
use crate::context::Context;
use crate::environment::Environment;
use crate::liveness::ProcessIdentity;
use crate::lock::keeper::Keeper;
use crate::lock::runlock::RunWaiter;
use crate::lock::{self, BusyReason, HeldLock, LocalLock, LockError, Release, Shown, Unlock};
use crate::queue::{AheadWatch, Ticket, WaiterRecord};
use crate::status::Inspection;
use crate::wait::{Watcher, poll_any};

pub struct LocalStore<'a> {
    ctx: &'a Context,
    /// Waiting on another deploy-lock run: a thread blocked in its kernel
    /// lock, which hands that lock to the next `acquire`.
    waiter: RefCell<Option<RunWaiter>>,
    /// Watchers of finished waits, dropped with the store: closing an
    /// inotify descriptor waits for the kernel (10-20 ms), which must not
    /// happen while a lock just taken is held (every hand-off would pay it).
    spent_watches: RefCell<Vec<Watcher>>,
    /// Whether a waiting `acquire` joins the local waiter queue (not inside
    /// the etcd store, whose queue is in etcd).
    queue: bool,
    /// Our place in the queue while we wait; dropped (the file removed)
    /// once the lock is ours, or with the store.
    ticket: RefCell<Option<Ticket>>,
    /// Waiting behind others in the queue: the waiter just ahead.
    ahead: RefCell<Option<AheadWatch>>,
}

impl<'a> LocalStore<'a> {
    pub fn new(ctx: &'a Context) -> LocalStore<'a> {
        LocalStore {
            ctx,
            waiter: RefCell::new(None),
            spent_watches: RefCell::new(Vec::new()),
            queue: true,
            ticket: RefCell::new(None),
            ahead: RefCell::new(None),
        }
    }

    /// The local store inside another store that queues its waiters itself.
    pub fn without_queue(ctx: &'a Context) -> LocalStore<'a> {
        LocalStore {
            queue: false,
            ..LocalStore::new(ctx)
        }
    }

    /// Joins the queue on the first waiting acquire: our place for the rule
    /// that serves waiters in arrival order.
    fn place(&self, env: Environment, how: &AcquireOptions<'_>) -> Result<Option<u128>, LockError> {
        if !(self.queue && how.waiting) {
            return Ok(None);
        }
        if let Some(t) = self.ticket.borrow().as_ref() {
            return Ok(Some(t.order()));
        }
        let record = WaiterRecord {
            user: self.ctx.user().to_string(),
            host: self.ctx.host.clone(),
            pid: std::process::id() as i32,
            reason: how.reason.map(str::to_string),
            since: crate::times::utc_seconds(self.ctx.now()),
        };
        let root = &self.ctx.settings.lock_root;
        let ticket = Ticket::join(root, env, &record).map_err(|source| LockError::Io {
            path: crate::queue::folder(root, env),
            source,
        })?;
        let order = ticket.order();
        *self.ticket.borrow_mut() = Some(ticket);
        Ok(Some(order))
    }

    fn run_file_error(&self, env: Environment, source: io::Error) -> LockError {
        LockError::Io {
            path: self.ctx.settings.run_file(env),
            source,
        }
    }
}

impl Watch for Watcher {
    fn gone(&self) -> bool {
        Watcher::gone(self)
    }
    fn wait(&self, until: Instant, extra: Option<BorrowedFd<'_>>) -> io::Result<Woke> {
        Watcher::wait(self, until, extra)
    }
}

/// The lock directory, or, while another run's kernel lock is waited for,
/// that hand-over.
struct LocalWatch<'s> {
    dir: Option<Watcher>,
    waiter: &'s RefCell<Option<RunWaiter>>,
    ahead: &'s RefCell<Option<AheadWatch>>,
    spent: &'s RefCell<Vec<Watcher>>,
}

impl Drop for LocalWatch<'_> {
    fn drop(&mut self) {
        // Closed with the store, not while a lock just taken is held.
        self.spent.borrow_mut().extend(self.dir.take());
    }
}

impl Watch for LocalWatch<'_> {
    fn gone(&self) -> bool {
        self.waiter.borrow().is_none()
            && self.ahead.borrow().as_ref().is_none_or(AheadWatch::left)
            && self.dir.as_ref().is_none_or(Watcher::gone)
    }

    fn wait(&self, until: Instant, extra: Option<BorrowedFd<'_>>) -> io::Result<Woke> {
        // Behind others in the queue: woken when the waiter just ahead
        // leaves it (only then can our turn have come).
        if let Some(a) = self.ahead.borrow().as_ref() {
            let mut fds = vec![a.fd()];
            fds.extend(extra);
            return Ok(match poll_any(&fds, until)? {
                Some(0) => Woke::Released,
                Some(_) => Woke::Extra,
                None => Woke::Timeout,
            });
        }
        let waiter = self.waiter.borrow();
        let Some(w) = waiter.as_ref() else {
            return match &self.dir {
                Some(d) => d.wait(until, extra),
                None => Ok(Woke::Released),
            };
        };
        let mut fds = vec![w.fd()];
        fds.extend(extra);
        Ok(match poll_any(&fds, until)? {
            Some(0) => Woke::Released,
            Some(_) => Woke::Extra,
            None => Woke::Timeout,
        })
    }
}

fn from_engine(env: Environment, a: lock::Acquire) -> Acquire {
    match a {
        lock::Acquire::Acquired(mut h) => {
            let warnings = std::mem::take(&mut h.warnings);
            let mut held = Held::new(env, h.record.clone(), h.took_over.clone(), h);
            held.warnings = warnings;
            Acquire::Acquired(Box::new(held))
        }
        lock::Acquire::Busy {
            reason,
            inspection,
            run_holder,
        } => Acquire::Busy {
            reason,
            inspection,
            run_holder,
        },
    }
}

impl LockStore for LocalStore<'_> {
    fn inspect(&self, env: Environment) -> Result<Inspection, LockError> {
        LocalLock::new(self.ctx, env).inspect()
    }

    fn acquire(&self, env: Environment, how: &AcquireOptions<'_>) -> Result<Acquire, LockError> {
        let never = || false;
        let queued = self.place(env, how)?;
        self.ahead.borrow_mut().take();
        let lock = LocalLock::new(self.ctx, env)
            .interruptible(how.interrupted.unwrap_or(&never))
            .noting(how.reason, how.freeze)
            .in_line(queued);
        let waiting = self.waiter.borrow_mut().take();
        let result = match waiting {
            Some(w) => match w.take() {
                Some(Ok(run)) => lock.try_acquire_with(run, how.force, how.process.clone()),
                Some(Err(e)) => return Err(self.run_file_error(env, e)),
                None => {
                    // Still running: nothing to try yet.
                    let run_holder = w.holder();
                    *self.waiter.borrow_mut() = Some(w);
                    return Ok(Acquire::Busy {
                        reason: BusyReason::RunHeld,
                        inspection: Box::new(lock.look()?),
                        run_holder,
                    });
                }
            },
            None => lock.try_acquire(how.force, how.process.clone()),
        };
        let mut got = from_engine(env, result?);
        // A refusal shows the status block and names the run; a waiter
        // only a phrase.
        if let Acquire::Busy {
            inspection,
            reason,
            run_holder,
        } = &mut got
            && !how.waiting
        {
            lock.add_ls_ld(inspection);
            if *reason == BusyReason::RunHeld && run_holder.is_none() {
                *run_holder = lock.run_holder();
            }
        }
        if let Acquire::Busy {
            reason: BusyReason::RunHeld,
            ..
        } = &got
            && how.waiting
        {
            *self.waiter.borrow_mut() = Some(lock.run_waiter()?);
        }
        if let (
            Acquire::Busy {
                reason: BusyReason::Queued { .. },
                ..
            },
            Some(order),
        ) = (&got, queued)
        {
            let root = &self.ctx.settings.lock_root;
            *self.ahead.borrow_mut() =
                AheadWatch::start(root, env, order).map_err(|source| LockError::Io {
                    path: crate::queue::folder(root, env),
                    source,
                })?;
        }
        if let Acquire::Acquired(_) = &got {
            // Ours now: out of the line (the lock directory keeps the others
            // out from here on).
            self.ticket.borrow_mut().take();
        }
        Ok(got)
    }

    fn keep<'a>(&'a self, held: &'a mut Held) -> Box<dyn Keeping + 'a> {
        let lock = LocalLock::new(self.ctx, held.env);
        Box::new(LocalKeeping {
            keeper: Keeper::new(&lock),
            lock,
            held,
        })
    }

    fn release(&self, held: Held) -> Result<Released, LockError> {
        let env = held.env;
        let Some(h) = held.into_handle::<HeldLock>() else {
            return Ok(Released {
                outcome: Release::AlreadyGone,
                warnings: Vec::new(),
            });
        };
        let mut released = LocalLock::new(self.ctx, env).release(*h)?;
        if let Release::TakenByOther { holder } = &released.outcome {
            released.warnings.insert(
                0,
                Warning::TakenByOther {
                    env,
                    holder: holder.clone(),
                },
            );
        }
        Ok(released)
    }

    fn force_unlock(
        &self,
        env: Environment,
        expect: Option<Expect<'_>>,
    ) -> Result<Forced, LockError> {
        let lock = LocalLock::new(self.ctx, env);
        let shown = expect.map(|e| match e {
            Expect::Shown(insp) => Shown::of(insp),
            Expect::LockId(id) => Shown::LockId(id.to_string()),
        });
        let mut outcome = lock.force_unlock(shown.as_ref())?;
        let warnings = match &mut outcome {
            Unlock::Done(done) => std::mem::take(&mut done.warnings),
            Unlock::ChangedHands { .. } => Vec::new(),
        };
        Ok(Forced { outcome, warnings })
    }

    fn watch(&self, env: Environment) -> Box<dyn Watch + '_> {
        Box::new(LocalWatch {
            dir: Some(Watcher::new(&self.ctx.lock_dir(env))),
            waiter: &self.waiter,
            ahead: &self.ahead,
            spent: &self.spent_watches,
        })
    }

    fn location(&self, env: Environment) -> PathBuf {
        self.ctx.lock_dir(env)
    }

    /// The lock folder (lock directories, run files), each environment's
    /// queue folder, and the state file's folder (the holder records).
    fn changes(&self) -> Box<dyn Watch + '_> {
        let root = &self.ctx.settings.lock_root;
        let mut folders = vec![root.clone()];
        folders.extend(
            Environment::ALL
                .iter()
                .map(|e| crate::queue::folder(root, *e)),
        );
        if self.ctx.no_checkout.is_none()
            && let Some(dir) = self.ctx.state_file.parent()
        {
            folders.push(dir.to_path_buf());
        }
        Box::new(crate::changes::FolderChanges::new(folders))
    }

    fn backend(&self) -> &'static str {
        "local"
    }

    fn check_usable(&self) -> Result<(), LockError> {
        let root = &self.ctx.settings.lock_root;
        crate::fsops::check_folder(root).map_err(|problem| LockError::LockFolder {
            path: root.clone(),
            problem,
        })
    }

    fn inspect_despite_records(
        &self,
        env: Environment,
    ) -> Result<(Inspection, Option<LockError>), LockError> {
        LocalLock::new(self.ctx, env).inspect_despite_state()
    }

    fn reset_records(
        &self,
        env: Environment,
        expect: Option<Expect<'_>>,
    ) -> Result<ResetOutcome, LockError> {
        let shown = expect.map(|e| match e {
            Expect::Shown(insp) => Shown::of(insp),
            Expect::LockId(id) => Shown::LockId(id.to_string()),
        });
        LocalLock::new(self.ctx, env).reset_state(shown.as_ref())
    }
}

struct LocalKeeping<'a> {
    keeper: Keeper,
    lock: LocalLock<'a>,
    held: &'a mut Held,
}

impl Keeping for LocalKeeping<'_> {
    fn started(&mut self, process: ProcessIdentity) {
        let Some(h) = self.held.handle_mut::<HeldLock>() else {
            return;
        };
        let result = self.lock.record_process(h, process);
        let record = h.record.clone();
        self.held.record = record;
        if let Err(e) = result {
            self.held.warnings.push(Warning::RecordProcess {
                error: super::SharedError::new(e),
            });
        }
    }

    fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.keeper.fd()
    }

    fn deadline(&self) -> Option<Instant> {
        self.keeper.deadline()
    }

    fn service(&mut self) -> Vec<KeepEvent> {
        match self.held.handle_mut::<HeldLock>() {
            Some(h) => self.keeper.service(&self.lock, h),
            None => Vec::new(),
        }
    }

    fn last_look(&mut self) -> Vec<KeepEvent> {
        match self.held.handle::<HeldLock>() {
            Some(h) => self.keeper.last_look(&self.lock, h).into_iter().collect(),
            None => Vec::new(),
        }
    }

    fn warnings(&mut self) -> Vec<Warning> {
        let mut w = std::mem::take(&mut self.held.warnings);
        if let Some(h) = self.held.handle_mut::<HeldLock>() {
            w.append(&mut h.warnings);
        }
        w
    }
}
