//! The local directory store: the legacy mkdir lock in the lock folder plus
//! the checkout's state record ([`crate::lock::LocalLock`]), behind the
//! [`LockStore`] seam, with the engine's warnings handed back in results.

use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::Instant;

use super::{Acquire, AcquireOptions, Forced, Held, LockStore, Released, Warning, Watch, Woke};
use crate::context::Context;
use crate::environment::Environment;
use crate::liveness::ProcessIdentity;
use crate::lock::{self, HeldLock, LocalLock, LockError, Release};
use crate::status::Inspection;
use crate::wait::Watcher;

pub struct LocalStore<'a> {
    ctx: &'a Context,
}

impl<'a> LocalStore<'a> {
    pub fn new(ctx: &'a Context) -> LocalStore<'a> {
        LocalStore { ctx }
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

impl LockStore for LocalStore<'_> {
    fn inspect(&self, env: Environment) -> Result<Inspection, LockError> {
        LocalLock::new(self.ctx, env).inspect()
    }

    fn acquire(&self, env: Environment, how: &AcquireOptions<'_>) -> Result<Acquire, LockError> {
        let never = || false;
        let lock = LocalLock::new(self.ctx, env).interruptible(how.interrupted.unwrap_or(&never));
        let result = lock.try_acquire(how.force, how.process.clone());
        let warnings = lock.take_warnings();
        Ok(match result? {
            lock::Acquire::Acquired(h) => {
                let mut held = Held::new(env, h.record.clone(), h.took_over.clone(), h);
                held.warnings = warnings;
                Acquire::Acquired(Box::new(held))
            }
            lock::Acquire::Busy { reason, inspection } => Acquire::Busy { reason, inspection },
        })
    }

    fn record_process(&self, held: &mut Held, process: ProcessIdentity) {
        let env = held.env;
        let Some(h) = held.handle_mut::<HeldLock>() else {
            return;
        };
        let result = LocalLock::new(self.ctx, env).record_process(h, process);
        let record = h.record.clone();
        held.record = record;
        if let Err(e) = result {
            held.warnings.push(Warning::RecordProcess {
                error: e.to_string(),
            });
        }
    }

    fn release(&self, held: Held) -> Result<Released, LockError> {
        let env = held.env;
        let Some(h) = held.into_handle::<HeldLock>() else {
            return Ok(Released {
                outcome: Release::AlreadyGone,
                warnings: Vec::new(),
            });
        };
        let lock = LocalLock::new(self.ctx, env);
        let outcome = lock.release(*h);
        let mut warnings = lock.take_warnings();
        let outcome = outcome?;
        if let Release::TakenByOther { holder } = &outcome {
            warnings.insert(
                0,
                Warning::TakenByOther {
                    env,
                    holder: holder.clone(),
                },
            );
        }
        Ok(Released { outcome, warnings })
    }

    fn force_unlock(&self, env: Environment, expected: Option<&str>) -> Result<Forced, LockError> {
        let lock = LocalLock::new(self.ctx, env);
        let done = lock.force_unlock(expected);
        let warnings = lock.take_warnings();
        Ok(Forced {
            done: done?,
            warnings,
        })
    }

    fn watch(&self, env: Environment) -> Box<dyn Watch + '_> {
        Box::new(Watcher::new(&self.ctx.lock_dir(env)))
    }

    fn location(&self, env: Environment) -> PathBuf {
        self.ctx.lock_dir(env)
    }
}
