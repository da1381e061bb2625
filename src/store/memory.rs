//! An in-memory store: the reference for what a second [`LockStore`] must do,
//! and the double the CLI-level tests run against (proving a store that is
//! not a directory fits without touching `src/cli/`). Not for production:
//! its locks live only as long as the value.

use std::collections::HashMap;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{
    Acquire, AcquireOptions, Expect, Forced, Held, HolderRecord, Keeping, LockStore, Released,
    ResetOutcome, ResetState, Unlock, Watch, Woke,
};
use crate::context::Context;
use crate::environment::Environment;
use crate::fsops::PathKind;
use crate::holder::{holder_from, liveness_of};
use crate::ids::new_ids;
use crate::liveness::{ProcessIdentity, boot_id};
use crate::lock::{BusyReason, ForceUnlock, LockError, Release, Takeover};
use crate::status::{Inspection, Liveness, verdict};
use crate::times::{parse_time, utc_seconds};
use crate::view::{DirView, LegacyView};

#[derive(Clone)]
pub struct MemoryStore {
    ctx: Context,
    locks: Arc<Mutex<HashMap<Environment, HolderRecord>>>,
}

/// The handle of a lock held in memory: its lock id.
struct Token(String);

impl MemoryStore {
    pub fn new(ctx: &Context) -> MemoryStore {
        MemoryStore {
            ctx: ctx.clone(),
            locks: Arc::default(),
        }
    }

    /// Puts a holder record in place, as another process would have.
    pub fn put(&self, record: HolderRecord) {
        let env = Environment::parse(&record.environment).expect("a known environment");
        self.locks.lock().unwrap().insert(env, record);
    }

    pub fn holder(&self, env: Environment) -> Option<HolderRecord> {
        self.locks.lock().unwrap().get(&env).cloned()
    }

    fn look(&self, env: Environment, record: Option<&HolderRecord>) -> Inspection {
        let path_kind = if record.is_some() {
            PathKind::Directory
        } else {
            PathKind::Missing
        };
        let holder = holder_from(record, None, env);
        let liveness = holder
            .as_ref()
            .map(|h| liveness_of(h, &self.ctx.host))
            .unwrap_or(Liveness::NoRecord);
        let now = self.ctx.now();
        let age_seconds = record
            .and_then(|r| parse_time(&r.locked_at))
            .map(|t| now.as_second() - t.as_second());
        let stale = age_seconds.is_some_and(|a| a > self.ctx.settings.stale_after.as_secs() as i64);
        let stale_after_secs = self.ctx.settings.stale_after.as_secs();
        Inspection {
            run_holder: None,
            other_environment: None,
            migration: None,
            waiters: Vec::new(),
            network: None,
            environment: env,
            view: LegacyView {
                dir: match path_kind {
                    PathKind::Missing => DirView::Missing { blocked_by: None },
                    _ => DirView::Exists { ls_ld: None },
                },
                obstruction: None,
                record: None,
                no_checkout: None,
                stale_after_secs,
            },
            lock_dir: self.location(env),
            verdict: verdict(&path_kind, &liveness, holder.is_some(), stale),
            path_kind,
            dir: None,
            locked_at_file: None,
            owner: record.cloned(),
            state_file: self.ctx.state_file.clone(),
            state: None,
            holder,
            liveness,
            age_seconds,
            now,
            stale,
        }
    }
}

impl LockStore for MemoryStore {
    fn inspect(&self, env: Environment) -> Result<Inspection, LockError> {
        Ok(self.look(env, self.locks.lock().unwrap().get(&env)))
    }

    fn acquire(&self, env: Environment, how: &AcquireOptions<'_>) -> Result<Acquire, LockError> {
        let mut locks = self.locks.lock().unwrap();
        let mut took_over = None;
        if let Some(current) = locks.get(&env) {
            let insp = self.look(env, Some(current));
            let reason = match insp.liveness {
                Liveness::Alive { .. } => Some(BusyReason::HolderAlive),
                _ if !(insp.stale || how.force) => Some(BusyReason::NotStale),
                _ => None,
            };
            if let Some(reason) = reason {
                return Ok(Acquire::Busy {
                    reason,
                    inspection: Box::new(insp),
                    run_holder: None,
                });
            }
            took_over = Some(Takeover {
                holder: insp.holder,
            });
        }
        let now = self.ctx.now();
        let ids = new_ids(now).map_err(|source| LockError::Io {
            path: "/dev/urandom".into(),
            source,
        })?;
        let me = ProcessIdentity::of_self().unwrap_or_default();
        let record = HolderRecord {
            environment: env.as_str().to_string(),
            lock_id: ids.lock_id,
            deployment_id: ids.deployment_id,
            locked_by: self.ctx.locked_by(),
            locked_at: utc_seconds(now),
            hostname: self.ctx.host.clone(),
            pid: how.process.pid,
            pid_start_ticks: how.process.start_ticks,
            holder_pid: me.pid,
            holder_start_ticks: me.start_ticks,
            boot_id: boot_id(),
            fencing_token: None,
            lease_id: None,
            lease_ttl_secs: None,
            reason: how.reason.map(str::to_string),
            freeze: how.freeze.cloned(),
        };
        locks.insert(env, record.clone());
        let token = Token(record.lock_id.clone());
        Ok(Acquire::Acquired(Box::new(Held::new(
            env,
            record,
            took_over,
            Box::new(token),
        ))))
    }

    fn keep<'a>(&'a self, held: &'a mut Held) -> Box<dyn Keeping + 'a> {
        Box::new(MemoryKeeping { store: self, held })
    }

    fn release(&self, held: Held) -> Result<Released, LockError> {
        let mut locks = self.locks.lock().unwrap();
        let ours = held.handle::<Token>().map(|t| t.0.clone());
        let outcome = match locks.get(&held.env) {
            None => Release::AlreadyGone,
            Some(r) if Some(&r.lock_id) == ours.as_ref() => {
                locks.remove(&held.env);
                Release::Released
            }
            Some(r) => Release::TakenByOther {
                holder: holder_from(Some(r), None, held.env),
            },
        };
        let mut warnings = Vec::new();
        if let Release::TakenByOther { holder } = &outcome {
            warnings.push(super::Warning::TakenByOther {
                env: held.env,
                holder: holder.clone(),
            });
        }
        Ok(Released { outcome, warnings })
    }

    fn force_unlock(
        &self,
        env: Environment,
        expect: Option<Expect<'_>>,
    ) -> Result<Forced, LockError> {
        let mut locks = self.locks.lock().unwrap();
        let current = locks.get(&env).cloned();
        let now_id = current.as_ref().map(|r| r.lock_id.clone());
        let expected = match expect {
            None => now_id.clone(),
            Some(Expect::LockId(id)) => Some(id.to_string()),
            Some(Expect::Shown(insp)) => insp.owner.as_ref().map(|o| o.lock_id.clone()),
        };
        if current.is_some() && expected != now_id {
            return Ok(Forced {
                outcome: Unlock::ChangedHands {
                    now: current
                        .as_ref()
                        .and_then(|r| holder_from(Some(r), None, env)),
                },
                warnings: Vec::new(),
            });
        }
        locks.remove(&env);
        Ok(Forced {
            outcome: Unlock::Done(ForceUnlock {
                dir_removed: current.as_ref().map(|_| crate::fsops::Removal {
                    had_foreign_entries: false,
                    had_entries: false,
                }),
                state_updated: false,
                warnings: Vec::new(),
            }),
            warnings: Vec::new(),
        })
    }

    fn watch(&self, env: Environment) -> Box<dyn Watch + '_> {
        Box::new(MemoryWatch { store: self, env })
    }

    fn location(&self, env: Environment) -> PathBuf {
        PathBuf::from(format!("memory:{env}"))
    }

    fn backend(&self) -> &'static str {
        "memory"
    }

    /// Records in memory are never unreadable: a plain force-unlock.
    fn reset_records(
        &self,
        env: Environment,
        expect: Option<Expect<'_>>,
    ) -> Result<ResetOutcome, LockError> {
        let forced = self.force_unlock(env, expect)?;
        Ok(match forced.outcome {
            Unlock::Done(done) => ResetOutcome::Done(ResetState {
                state: crate::state::Reset::Usable,
                dir_removed: done.dir_removed,
                warnings: forced.warnings,
            }),
            Unlock::ChangedHands { now } => ResetOutcome::ChangedHands { now },
        })
    }
}

struct MemoryKeeping<'a> {
    store: &'a MemoryStore,
    held: &'a mut Held,
}

impl Keeping for MemoryKeeping<'_> {
    /// A look every 20 ms: in-process tests have other threads, any of which
    /// may be handed the command's SIGCHLD, so the supervisor must not rely
    /// on it alone (the binary blocks it before any thread exists).
    fn deadline(&self) -> Option<Instant> {
        Some(Instant::now() + Duration::from_millis(20))
    }

    fn started(&mut self, process: ProcessIdentity) {
        self.held.record.pid = process.pid;
        self.held.record.pid_start_ticks = process.start_ticks;
        let mut locks = self.store.locks.lock().unwrap();
        if let Some(r) = locks.get_mut(&self.held.env)
            && r.lock_id == self.held.record.lock_id
        {
            *r = self.held.record.clone();
        }
    }
}

struct MemoryWatch<'a> {
    store: &'a MemoryStore,
    env: Environment,
}

impl Watch for MemoryWatch<'_> {
    fn gone(&self) -> bool {
        self.store.holder(self.env).is_none()
    }

    fn wait(&self, until: Instant, _extra: Option<BorrowedFd<'_>>) -> io::Result<Woke> {
        loop {
            if self.gone() {
                return Ok(Woke::Released);
            }
            let now = Instant::now();
            if now >= until {
                return Ok(Woke::Timeout);
            }
            std::thread::sleep((until - now).min(Duration::from_millis(1)));
        }
    }
}
