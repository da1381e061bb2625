//! The local lock backend: the legacy mkdir lock in the lock folder plus the
//! checkout's state record. Its whole surface is inspect, acquire (with
//! takeover of a dead holder's lock), release-if-owned and force-unlock, so a
//! network backend can later stand beside it without touching the CLI.

mod decision;
mod error;
pub mod keeper;
pub mod runlock;
mod unlock;

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::audit;
use crate::context::Context;
use crate::environment::Environment;
use crate::fsops::{self, DirIdentity, FlockGuard, PathKind};
use crate::holder::{holder_from, liveness_in};
use crate::ids::new_ids;
use crate::liveness::{self, ProcessIdentity, Sightings};
use crate::state::{self, Edit, StateDoc, StateError};
use crate::status::{
    Holder, Inspection, LOCKED_AT_FILE, Liveness, OUR_FILES, OWNER_FILE, OtherEnvironment,
    OwnerRecord, verdict,
};
use crate::store::Warning;
use crate::times::{parse_time, utc_seconds};
use crate::view::{DirView, Facts, LegacyView, NonDirectory, probe_proc, record_view};
pub use decision::{Asker, Decision, RunChoice, decide, decide_as};
pub use error::LockError;
use error::io_at;
use runlock::{RunHolder, RunLock, TryRun};
pub use unlock::{Announcement, ForceUnlock, ResetOutcome, ResetState, Shown, Unlock};

/// The legacy refuses `locked_at` values below this as "manual intervention".
const PLAUSIBLE_EPOCH: i64 = 1_000_000_000;

/// Why an acquisition did not happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusyReason {
    /// The holder is alive: never taken, whatever its age or `--force`.
    HolderAlive,
    /// Holder dead or unknowable, but younger than the stale timeout.
    NotStale,
    /// Something that is not a directory sits at the lock path.
    Obstructed,
    /// The dead holder's directory holds files that are neither ours nor the
    /// legacy's: a takeover would have to delete them, so it is refused.
    ForeignContents,
    /// Nobody is recorded as holding it, and it belongs to another user who
    /// alone may remove it (a sticky folder): squatted.
    Squatted { owner_uid: u32 },
    /// Another deploy-lock run holds the whole-run kernel lock: its command
    /// still runs (even if its lock directory was removed meanwhile).
    RunHeld,
    /// Stale, but another user's directory in a folder where only owners
    /// remove entries (`run` reports it as [`LockError::NotPermitted`]).
    NotRemovable { owner_uid: u32 },
    /// Free to take, but `ahead` waiters are in line before the asker.
    Queued { ahead: usize },
}

/// A dead or stale lock removed to make way for ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Takeover {
    /// Who held it, when anything recorded it (a bare directory has no one).
    pub holder: Option<Holder>,
}

/// A lock we hold. Dropping it releases it (only if it is still ours); the
/// `run` path releases explicitly because destructors do not run on `raise`.
#[derive(Debug)]
pub struct HeldLock {
    pub environment: Environment,
    pub lock_dir: PathBuf,
    pub identity: DirIdentity,
    pub record: OwnerRecord,
    /// The holder whose stale or dead lock we removed to get this one.
    pub took_over: Option<Takeover>,
    /// What could not be done along the way (an audit line), for the caller
    /// to say; taken out by whoever reports them.
    pub warnings: Vec<Warning>,
    guard_file: PathBuf,
    state_file: PathBuf,
    released: bool,
    /// The whole-run kernel lock; let go only after the release (field order
    /// does not matter: `release` and `Drop` finish before it is dropped).
    run: Option<RunLock>,
}

pub enum Acquire {
    Acquired(Box<HeldLock>),
    Busy {
        reason: BusyReason,
        inspection: Box<Inspection>,
        /// For [`BusyReason::RunHeld`]: the deploy-lock process holding the
        /// run, when its record could be read.
        run_holder: Option<RunHolder>,
    },
}

/// What a release found, and what it could not do (an audit line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Released {
    pub outcome: Release,
    pub warnings: Vec<Warning>,
}

/// What a release found. (One per run: the size of a holder in one
/// variant costs nothing worth a box.)
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Release {
    /// Our directory and state record were removed/reset.
    Released,
    /// Someone removed our lock already (a force-unlock, or the legacy script's
    /// EXIT trap); nothing of anyone else's was touched.
    AlreadyGone,
    /// Our lock was force-unlocked and someone else holds it now: left alone.
    TakenByOther { holder: Option<Holder> },
}

pub struct LocalLock<'a> {
    ctx: &'a Context,
    env: Environment,
    /// Asked while waiting for the guard: true ends the wait (a signal came).
    interrupted: Option<&'a dyn Fn() -> bool>,
    /// Why the lock is taken, written into the record an acquisition makes.
    reason: Option<&'a str>,
    /// Taken as a freeze (see `OwnerRecord::freeze`).
    freeze: Option<&'a crate::status::Freeze>,
    /// Our place in the waiter queue, when we wait in it.
    queued: Option<u128>,
}

impl<'a> LocalLock<'a> {
    pub fn new(ctx: &'a Context, env: Environment) -> LocalLock<'a> {
        LocalLock {
            ctx,
            env,
            interrupted: None,
            reason: None,
            freeze: None,
            queued: None,
        }
    }

    /// Acquisitions record `reason` in the owner record (never in the state
    /// file: the legacy scripts read that) and in their audit line; with
    /// `freeze`, as a freeze (audited `freeze`, released as `unfreeze`).
    pub fn noting(
        mut self,
        reason: Option<&'a str>,
        freeze: Option<&'a crate::status::Freeze>,
    ) -> LocalLock<'a> {
        self.reason = reason;
        self.freeze = freeze;
        self
    }

    /// Appends an audit line. Called with the guard held, so the log's order
    /// is the lock's order (one run's `release` before the next `acquire`).
    /// A failure is a warning for the result, never a failed operation.
    fn audit(&self, event: &str, holder: Option<&Holder>, extra: Value) -> Option<Warning> {
        audit::record(self.ctx, event, self.env, holder, extra)
            .err()
            .map(|e| Warning::Audit {
                log: audit::log_path(self.ctx),
                error: e.to_string(),
            })
    }

    /// Waits for the guard end with [`LockError::Interrupted`] once
    /// `interrupted()` returns true.
    pub fn interruptible(mut self, interrupted: &'a dyn Fn() -> bool) -> LocalLock<'a> {
        self.interrupted = Some(interrupted);
        self
    }

    pub fn lock_dir(&self) -> PathBuf {
        self.ctx.lock_dir(self.env)
    }

    /// Acquires as the waiter with this place in the queue (see
    /// [`decision::Asker::queued`]).
    pub fn in_line(mut self, queued: Option<u128>) -> LocalLock<'a> {
        self.queued = queued;
        self
    }

    /// Waiters in line ahead of us, looked at under the guard before the
    /// directory is created: a free lock is theirs first.
    fn queued_ahead(&self) -> Option<usize> {
        let ahead = crate::queue::waiters(&self.ctx.settings.lock_root, self.env)
            .iter()
            .filter(|w| self.queued.is_none_or(|mine| w.order < mine))
            .count();
        (ahead > 0).then_some(ahead)
    }

    fn guard(&self) -> Result<FlockGuard, LockError> {
        let path = self.ctx.settings.guard_file(self.env);
        let never = || false;
        fsops::flock_exclusive_until(&path, self.interrupted.unwrap_or(&never)).map_err(|e| {
            if e.kind() == io::ErrorKind::Interrupted {
                LockError::Interrupted
            } else {
                LockError::Io { path, source: e }
            }
        })
    }

    /// One consistent look at the lock: directory, state file, holder,
    /// liveness, age, verdict, and everything the status block shows. Fails
    /// only on an unusable state file or an unreadable lock path.
    pub fn inspect(&self) -> Result<Inspection, LockError> {
        let mut insp = self.look()?;
        self.add_ls_ld(&mut insp);
        Ok(insp)
    }

    /// The `ls -ld` line of the lock directory, into an inspection taken
    /// without it (it costs a passwd and a time zone lookup, so the
    /// engine's own looks under the guard go without it).
    pub fn add_ls_ld(&self, insp: &mut Inspection) {
        if let DirView::Exists { ls_ld } = &mut insp.view.dir
            && ls_ld.is_none()
        {
            let tz = crate::tz::system_time_zone();
            *ls_ld = crate::lsld::ls_ld(&insp.lock_dir, insp.now, &tz).ok();
        }
    }

    /// [`LocalLock::inspect`] without the `ls -ld` line.
    pub(crate) fn look(&self) -> Result<Inspection, LockError> {
        self.look_with(false).map(|(insp, _)| insp)
    }

    /// [`LocalLock::inspect`] that still looks at the lock when the state
    /// file is not usable (not JSON, not the documented shape): the
    /// inspection then has no state, and the state's error comes beside it.
    /// A state file that cannot be read at all is still an error.
    pub fn inspect_despite_state(&self) -> Result<(Inspection, Option<LockError>), LockError> {
        let (mut insp, err) = self.look_with(true)?;
        self.add_ls_ld(&mut insp);
        Ok((insp, err))
    }

    /// One look; `tolerant`: a state file that does not parse (or is not
    /// the documented shape) is returned beside the inspection, not as the
    /// error. Outside a checkout there is no state file to read.
    pub(crate) fn look_with(
        &self,
        tolerant: bool,
    ) -> Result<(Inspection, Option<LockError>), LockError> {
        let lock_dir = self.lock_dir();
        let path_kind = fsops::path_kind(&lock_dir).map_err(io_at(&lock_dir))?;
        let (mut dir, mut locked_at_file, mut owner) = (None, None, None);
        if path_kind == PathKind::Directory {
            match fsops::snapshot_dir(&lock_dir) {
                Ok((fd, mut snap)) => {
                    locked_at_file = fsops::read_small_file_at(&fd, LOCKED_AT_FILE)
                        .and_then(|b| parse_locked_at(&b));
                    // Holder trust: owner.json counts only when the
                    // directory's owner wrote it. In a shared folder anyone
                    // may drop one into a directory they can write to, naming
                    // any live process (whose kill would then be advised).
                    owner = match fsops::read_small_file_owned_at(&fd, OWNER_FILE) {
                        Some((_, uid)) if uid != snap.uid => {
                            snap.disowned_record_uid = Some(uid);
                            None
                        }
                        Some((b, _)) => serde_json::from_slice::<OwnerRecord>(&b)
                            .ok()
                            .filter(|o| o.environment == self.env.as_str()),
                        None => None,
                    };
                    dir = Some(snap);
                }
                // Removed between the lstat and the open: it is free now.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return self.look_with(tolerant);
                }
                // Unlistable (another user's 0700 directory): still a lock.
                Err(_) => dir = None,
            }
        }
        // The state file after the directory: a holder releases its record
        // before the next one can take the directory (both under the guard),
        // so a record read now is never an earlier holder's beside a later
        // holder's directory (read first, it could be: a dead holder seen in
        // a live lock).
        let (state, state_err) = match self.ctx.no_checkout {
            Some(_) => (None, None),
            None => match StateDoc::load(&self.ctx.state_file) {
                Ok(s) => (s, None),
                Err(e) if tolerant && !matches!(e, StateError::Io { .. }) => {
                    (None, Some(LockError::State(e)))
                }
                Err(e) => return Err(e.into()),
            },
        };
        // The record is this lock's only when it is not another
        // environment's (whatever the top-level `environment` says).
        let record_env = state.as_ref().and_then(|d| record_environment(d, self.ctx));
        let own_record = state
            .as_ref()
            .filter(|_| record_env.is_none_or(|e| e == self.env));
        let holder = if path_kind == PathKind::Directory {
            holder_from(owner.as_ref(), own_record, self.env)
        } else {
            None
        };
        // Every judgement of a process in this look reads /proc once.
        let look = Sightings::new();
        let other_environment = state
            .as_ref()
            .and_then(|d| other_environment_of(d, record_env?, self.env, self.ctx, &look));
        let liveness = holder
            .as_ref()
            .map(|h| liveness_in(h, &self.ctx.host, &look))
            .unwrap_or(Liveness::NoRecord);
        let now_ts = self.ctx.now();
        let now = now_ts.as_second();
        // The one age source (see `status::Inspection::age_seconds`): the
        // acquisition time deploy-lock recorded in owner.json (its locked_at
        // file is a heartbeat for the legacy), else the legacy's locked_at,
        // else the directory's mtime. A directory we may not list (another
        // user's 0700 one) is still aged by its mtime, which lstat gives anyone.
        let acquired_at = owner
            .as_ref()
            .and_then(|o| parse_time(&o.locked_at))
            .map(|t| t.as_second());
        let taken_at = acquired_at
            .or(locked_at_file)
            .or_else(|| dir.as_ref().map(|d| d.mtime))
            .or_else(|| {
                use std::os::unix::fs::MetadataExt;
                (path_kind == PathKind::Directory)
                    .then(|| std::fs::symlink_metadata(&lock_dir).ok().map(|m| m.mtime()))
                    .flatten()
            });
        let age_seconds = taken_at.and_then(|t| now.checked_sub(t));
        let stale_after =
            i64::try_from(self.ctx.settings.stale_after.as_secs()).unwrap_or(i64::MAX);
        let stale = age_seconds.is_some_and(|a| a > stale_after);
        let verdict = verdict(&path_kind, &liveness, holder.is_some(), stale);
        let view = self.legacy_view(
            &lock_dir,
            &path_kind,
            state.as_ref(),
            age_seconds,
            now_ts,
            &look,
        );
        let mut insp = Inspection {
            run_holder: runlock::read_record(&self.ctx.settings.run_file(self.env)),
            network: None,
            environment: self.env,
            view,
            lock_dir,
            path_kind,
            dir,
            locked_at_file,
            owner,
            state_file: self.ctx.state_file.clone(),
            state,
            holder,
            liveness,
            age_seconds,
            now: now_ts,
            stale,
            verdict,
            other_environment,
            migration: crate::migration::look(&self.lock_dir(), self.env, now),
            waiters: crate::queue::waiters(&self.ctx.settings.lock_root, self.env),
        };
        // The verdict every view shows is the decision's (see `decision`).
        insp.verdict = decide(&insp).verdict;
        Ok((insp, state_err))
    }

    /// What the legacy status block shows, gathered here so that renderers
    /// do no I/O.
    fn legacy_view(
        &self,
        lock_dir: &Path,
        path_kind: &PathKind,
        state: Option<&StateDoc>,
        age: Option<i64>,
        now: jiff::Timestamp,
        look: &Sightings,
    ) -> LegacyView {
        // The legacy tested `[ -d "$LOCK_DIR" ]`, which follows a symlink,
        // then printed `ls -ld` of the path itself.
        // Only a symlink is looked at again (followed): the kind was read
        // once, and a directory released since must not read as unreadable.
        let dir = match path_kind {
            PathKind::Directory => DirView::Exists { ls_ld: None },
            PathKind::Missing => DirView::Missing { blocked_by: None },
            PathKind::Symlink if lock_dir.is_dir() => DirView::Exists { ls_ld: None },
            PathKind::Symlink | PathKind::Other => DirView::Missing {
                blocked_by: Some(NonDirectory::at(lock_dir)),
            },
        };
        let stale_after_secs = self.ctx.settings.stale_after.as_secs();
        let facts = Facts {
            now,
            host: &self.ctx.host,
            stale_after_secs,
            dir_age: (*path_kind == PathKind::Directory).then_some(age).flatten(),
            tz: crate::tz::system_time_zone,
        };
        let obstruction = matches!(path_kind, PathKind::Symlink | PathKind::Other)
            .then(|| NonDirectory::at(lock_dir));
        LegacyView {
            dir,
            obstruction,
            record: state.map(|doc| record_view(doc, &facts, |id| probe_proc(look, id))),
            no_checkout: self
                .ctx
                .no_checkout
                .as_ref()
                .map(|e| e.searched_from.clone()),
            stale_after_secs,
        }
    }

    /// Takes the lock if it is free, or if its holder is not alive and the
    /// lock is stale (or `force`). Judging, removing and re-creating happen
    /// under the environment's guard flock with the lock re-read there, so of
    /// several processes judging one stale lock at once exactly one wins.
    ///
    /// First of all it takes the whole-run kernel lock without waiting; when
    /// another deploy-lock run holds that, the answer is
    /// [`BusyReason::RunHeld`] whatever the lock directory looks like.
    pub fn try_acquire(&self, force: bool, pid: ProcessIdentity) -> Result<Acquire, LockError> {
        let path = self.ctx.settings.run_file(self.env);
        match runlock::try_take(&path).map_err(io_at(&path))? {
            TryRun::Taken(run) => self.try_acquire_with(run, force, pid),
            TryRun::Held(holder) => Ok(Acquire::Busy {
                reason: BusyReason::RunHeld,
                inspection: Box::new(self.look()?),
                run_holder: holder,
            }),
        }
    }

    /// Who holds the run lock, looking for up to 100 ms (a holder that has
    /// just taken it writes its record a moment later).
    pub fn run_holder(&self) -> Option<RunHolder> {
        runlock::holder(&self.ctx.settings.run_file(self.env))
    }

    /// Waits for the run lock in a thread (see [`runlock::RunWaiter`]).
    pub fn run_waiter(&self) -> Result<runlock::RunWaiter, LockError> {
        let path = self.ctx.settings.run_file(self.env);
        runlock::RunWaiter::start(&path).map_err(io_at(&path))
    }

    /// [`try_acquire`](Self::try_acquire) with the run lock already held
    /// (handed over by a [`runlock::RunWaiter`]). When busy, the run lock is
    /// let go again: a legacy holder's lock is waited for without it.
    pub fn try_acquire_with(
        &self,
        run: RunLock,
        force: bool,
        pid: ProcessIdentity,
    ) -> Result<Acquire, LockError> {
        let got = self.acquire_dir(force, pid)?;
        Ok(match got {
            Acquire::Acquired(mut held) => {
                run.record(Some(&held.record.lock_id));
                held.run = Some(run);
                Acquire::Acquired(held)
            }
            busy => busy,
        })
    }

    fn acquire_dir(&self, force: bool, pid: ProcessIdentity) -> Result<Acquire, LockError> {
        let _guard = self.guard()?;
        let lock_dir = self.lock_dir();
        let mut took_over = None;
        if let Some(ahead) = self.queued_ahead() {
            let inspection = self.look()?;
            // The same rule as every view's (`decision::waiters_ahead`), or a
            // held lock's own reason when the look finds it taken meanwhile.
            let asker = Asker {
                force,
                holds_run_lock: true,
                queued: self.queued,
            };
            let reason = match decide_as(&inspection, asker).run {
                RunChoice::Refuse(reason) => reason,
                _ => BusyReason::Queued { ahead },
            };
            return Ok(Acquire::Busy {
                reason,
                inspection: Box::new(inspection),
                run_holder: None,
            });
        }
        // Each pass either takes the lock, reports it busy, or removes a dead
        // lock; a few passes cover a legacy script racing us without the guard.
        for _ in 0..4 {
            if fsops::create_dir(&lock_dir).map_err(io_at(&lock_dir))? {
                let mut acquired = self.finish_acquire(pid, took_over)?;
                if let Acquire::Acquired(held) = &mut acquired {
                    let event = if held.record.freeze.is_some() {
                        "freeze"
                    } else if held.took_over.is_some() {
                        "takeover"
                    } else {
                        "acquire"
                    };
                    let prev = held.took_over.as_ref().and_then(|t| t.holder.as_ref());
                    let mut ids = json!({
                        "lock_id": held.record.lock_id,
                        "deployment_id": held.record.deployment_id,
                    });
                    if let Some(r) = &held.record.reason {
                        ids["reason"] = json!(r);
                    }
                    if let Some(until) = held.record.freeze.as_ref().and_then(|f| f.until.as_ref())
                    {
                        ids["until"] = json!(until);
                    }
                    let warning = self.audit(event, prev, ids);
                    held.warnings.extend(warning);
                }
                return Ok(acquired);
            }
            let inspection = self.look()?;
            let asker = Asker {
                force,
                holds_run_lock: true,
                queued: self.queued,
            };
            match decide_as(&inspection, asker).run {
                RunChoice::Take => continue,
                RunChoice::TakeOver => {}
                RunChoice::Refuse(BusyReason::NotRemovable { owner_uid }) => {
                    return Err(LockError::NotPermitted {
                        path: lock_dir,
                        owner_uid,
                    });
                }
                RunChoice::Refuse(reason) => {
                    return Ok(Acquire::Busy {
                        reason,
                        inspection: Box::new(inspection),
                        run_holder: None,
                    });
                }
            }
            let expect = inspection.dir.as_ref().and_then(|d| d.identity);
            let removed = fsops::remove_dir_tree(&lock_dir, expect, OUR_FILES)
                .map_err(|e| removal_error(&lock_dir, e))?;
            if removed.is_some() {
                took_over = Some(Takeover {
                    holder: inspection.holder.clone(),
                });
            }
        }
        Ok(Acquire::Busy {
            reason: BusyReason::NotStale,
            inspection: Box::new(self.look()?),
            run_holder: None,
        })
    }

    fn finish_acquire(
        &self,
        pid: ProcessIdentity,
        took_over: Option<Takeover>,
    ) -> Result<Acquire, LockError> {
        let lock_dir = self.lock_dir();
        let undo = |e: LockError| {
            let _ = fsops::remove_dir_tree(&lock_dir, None, OUR_FILES);
            e
        };
        let now = self.ctx.now();
        let ids = new_ids(now).map_err(io_at(Path::new("/dev/urandom")))?;
        let me = ProcessIdentity::of_self().unwrap_or(ProcessIdentity {
            pid: std::process::id() as i32,
            ..Default::default()
        });
        let record = OwnerRecord {
            environment: self.env.as_str().to_string(),
            lock_id: ids.lock_id,
            deployment_id: ids.deployment_id,
            locked_by: self.ctx.locked_by(),
            locked_at: utc_seconds(now),
            hostname: self.ctx.host.clone(),
            pid: pid.pid,
            pid_start_ticks: pid.start_ticks,
            holder_pid: me.pid,
            holder_start_ticks: me.start_ticks,
            boot_id: liveness::boot_id(),
            fencing_token: None,
            lease_id: None,
            lease_ttl_secs: None,
            reason: self.reason.map(str::to_string),
            freeze: self.freeze.cloned(),
        };
        let (fd, snap) = fsops::snapshot_dir(&lock_dir)
            .map_err(io_at(&lock_dir))
            .map_err(undo)?;
        let write_files = || -> io::Result<()> {
            fsops::create_file_at(
                &fd,
                LOCKED_AT_FILE,
                format!("{}\n", now.as_second()).as_bytes(),
            )?;
            let owner = serde_json::to_vec_pretty(&record).expect("serialisable");
            fsops::create_file_at(&fd, OWNER_FILE, &owner)
        };
        write_files().map_err(io_at(&lock_dir)).map_err(undo)?;
        self.write_state_record(&record).map_err(undo)?;
        Ok(Acquire::Acquired(Box::new(HeldLock {
            environment: self.env,
            lock_dir,
            identity: snap.identity.expect("snapshot has an identity"),
            record,
            took_over,
            warnings: Vec::new(),
            guard_file: self.ctx.settings.guard_file(self.env),
            state_file: self.ctx.state_file.clone(),
            released: false,
            run: None,
        })))
    }

    fn write_state_record(&self, record: &OwnerRecord) -> Result<(), LockError> {
        let ctx = self.ctx;
        state::update_noting_creation(&ctx.state_file, true, |doc, created| {
            let doc = doc.expect("create=true always yields a document");
            if let Some(other) = live_other_environment(doc, self.env, ctx) {
                return Err(other);
            }
            let expires = parse_time(&record.locked_at)
                .and_then(|t| {
                    t.checked_add(jiff::SignedDuration::from_secs(
                        i64::try_from(ctx.settings.stale_after.as_secs()).ok()?,
                    ))
                    .ok()
                })
                .map(utc_seconds);
            // Set only in a file we create, as the legacy did: its release
            // removes the lock directory of the environment this key names,
            // so rewriting it would make a later legacy deploy of the file's
            // environment release another environment's path and leave its
            // own lock behind.
            if created {
                doc.root.insert(
                    "environment".into(),
                    Value::String(record.environment.clone()),
                );
            }
            doc.root
                .insert("lock".into(), state_lock_object(record, expires));
            Ok(Edit::Write(()))
        })
    }

    /// Records the started command as the holder process, so the status shows
    /// its name (`deploy.sh`) and liveness follows it.
    pub fn record_process(
        &self,
        held: &mut HeldLock,
        pid: ProcessIdentity,
    ) -> Result<(), LockError> {
        held.record.pid = pid.pid;
        held.record.pid_start_ticks = pid.start_ticks;
        let _guard = self.guard()?;
        let lock_dir = &held.lock_dir;
        if let Ok((fd, snap)) = fsops::snapshot_dir(lock_dir)
            && snap.identity == Some(held.identity)
        {
            let owner = serde_json::to_vec_pretty(&held.record).expect("serialisable");
            fsops::replace_file_at(&fd, OWNER_FILE, &owner).map_err(io_at(lock_dir))?;
        }
        if let Some(run) = &held.run {
            run.record_with(Some(&held.record.lock_id), Some(pid.pid));
        }
        let record = held.record.clone();
        state::update(&self.ctx.state_file, false, |doc| {
            let Some(doc) = doc else {
                return Ok(Edit::Keep(()));
            };
            if doc.lock_str("lock_id") != Some(record.lock_id.as_str()) {
                return Ok(Edit::Keep(()));
            }
            let lock = doc.lock_mut();
            lock.insert("pid".into(), json!(record.pid));
            set_opt(
                lock,
                "pid_start_ticks",
                record.pid_start_ticks.map(|t| json!(t)),
            );
            Ok::<_, LockError>(Edit::Write(()))
        })
    }

    /// Releases `held` if it is still ours: the directory only if it is the
    /// very directory we created and still names our lock id; the state record
    /// only if it still carries our lock id.
    pub fn release(&self, mut held: HeldLock) -> Result<Released, LockError> {
        held.released = true;
        if let Some(run) = &held.run {
            run.forget();
        }
        let lock_id = held.record.lock_id.clone();
        let mut warnings = std::mem::take(&mut held.warnings);
        // A freeze's own release lifts it: audited as such.
        let released = match held.record.freeze {
            Some(_) if !audit::was_freeze_lifted_elsewhere() => "unfreeze",
            _ => "release",
        };
        let outcome = release_owned(&held, |outcome| {
            let (event, holder, note) = match outcome {
                Release::Released => (released, None, None),
                Release::AlreadyGone => ("release", None, Some("already removed by someone else")),
                Release::TakenByOther { holder } => (
                    "release_skipped",
                    holder.as_ref(),
                    Some("taken by someone else; left alone"),
                ),
            };
            let extra = match note {
                Some(note) => json!({ "lock_id": lock_id, "note": note }),
                None => json!({ "lock_id": lock_id }),
            };
            warnings.extend(self.audit(event, holder, extra));
        })?;
        Ok(Released { outcome, warnings })
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        if !self.released {
            self.released = true;
            // The safety net (an early return in the CLI): no audit line.
            let _ = release_owned(self, |_| {});
        }
    }
}

/// Releases what is still ours; `audit` sees the outcome while the guard is
/// still held.
fn release_owned(held: &HeldLock, audit: impl FnOnce(&Release)) -> Result<Release, LockError> {
    let _guard = fsops::flock_exclusive(&held.guard_file).map_err(io_at(&held.guard_file))?;
    let lock_dir = &held.lock_dir;
    let ours = |fd: &std::os::fd::OwnedFd| {
        fsops::read_small_file_at(fd, OWNER_FILE)
            .and_then(|b| serde_json::from_slice::<OwnerRecord>(&b).ok())
            .is_some_and(|o| o.lock_id == held.record.lock_id)
    };
    let mut outcome = match fsops::path_kind(lock_dir).map_err(io_at(lock_dir))? {
        PathKind::Missing => Release::AlreadyGone,
        _ => match fsops::snapshot_dir(lock_dir) {
            Ok((fd, snap)) if snap.identity == Some(held.identity) && ours(&fd) => {
                match fsops::remove_dir_tree(lock_dir, Some(held.identity), OUR_FILES)
                    .map_err(io_at(lock_dir))?
                {
                    Some(_) => Release::Released,
                    None => Release::AlreadyGone,
                }
            }
            _ => Release::TakenByOther { holder: None },
        },
    };
    let lock_id = held.record.lock_id.as_str();
    let env = held.environment;
    let state_owner = state::update(&held.state_file, false, |doc| {
        let Some(doc) = doc else {
            return Ok::<_, LockError>(Edit::Keep(None));
        };
        if doc.lock_str("lock_id") == Some(lock_id) {
            // The legacy's normal release writes exactly this.
            doc.root.insert("lock".into(), json!({ "locked": false }));
            return Ok(Edit::Write(None));
        }
        Ok(Edit::Keep(holder_from(None, Some(doc), env)))
    })?;
    if let Release::TakenByOther { holder } = &mut outcome {
        *holder = state_owner;
    }
    audit(&outcome);
    Ok(outcome)
}

/// The state file's `lock` object for a record we write: the documented
/// fields first, then what liveness needs.
fn state_lock_object(record: &OwnerRecord, expires: Option<String>) -> Value {
    let mut lock = Map::new();
    lock.insert("locked".into(), Value::Bool(true));
    lock.insert("lock_id".into(), json!(record.lock_id));
    lock.insert("deployment_id".into(), json!(record.deployment_id));
    lock.insert("locked_by".into(), json!(record.locked_by));
    lock.insert("locked_at".into(), json!(record.locked_at));
    set_opt(&mut lock, "lock_expires_at", expires.map(Value::String));
    lock.insert("pid".into(), json!(record.pid));
    lock.insert("hostname".into(), json!(record.hostname));
    set_opt(
        &mut lock,
        "pid_start_ticks",
        record.pid_start_ticks.map(|t| json!(t)),
    );
    lock.insert("holder_pid".into(), json!(record.holder_pid));
    set_opt(
        &mut lock,
        "holder_start_ticks",
        record.holder_start_ticks.map(|t| json!(t)),
    );
    set_opt(
        &mut lock,
        "boot_id",
        record.boot_id.clone().map(Value::String),
    );
    Value::Object(lock)
}

fn set_opt(map: &mut Map<String, Value>, key: &str, value: Option<Value>) {
    match value {
        Some(v) => {
            map.insert(key.into(), v);
        }
        None => {
            map.remove(key);
        }
    }
}

/// When the state's lock record is another environment's and that lock is
/// live (its directory exists and its holder is not known dead), the error to
/// refuse with.
fn live_other_environment(doc: &StateDoc, env: Environment, ctx: &Context) -> Option<LockError> {
    let o = other_environment_record(doc, env, ctx)?;
    Some(LockError::OtherEnvironment {
        environment: o.environment,
        holder: Box::new(o.holder),
    })
}

/// Which environment's lock the checkout's locked state record is, or None
/// when it is not locked or cannot be told. Not the top-level `environment`
/// alone: the legacy deploy.sh writes that key only when it creates the
/// file, so it names the first environment ever deployed from the checkout.
/// In order: the environment whose lock directory's owner.json carries the
/// record's lock id (deploy-lock's locks); the top-level environment, if its
/// lock directory exists; the one environment whose lock directory exists
/// without an owner.json (a legacy lock); else the top-level environment.
pub fn record_environment(doc: &StateDoc, ctx: &Context) -> Option<Environment> {
    if !doc.is_locked() {
        return None;
    }
    let named = doc.environment().and_then(Environment::parse);
    let lock_id = doc.lock_str("lock_id");
    let mut legacy_dirs = Vec::new();
    // The named environment first: where the record usually is, so one look
    // answers (the order does not change the answer: a lock id is one
    // environment's).
    let order = named
        .into_iter()
        .chain(Environment::ALL.into_iter().filter(|e| Some(*e) != named));
    for e in order {
        let dir = ctx.lock_dir(e);
        if fsops::path_kind(&dir).ok() != Some(PathKind::Directory) {
            continue;
        }
        let owner = std::fs::read(dir.join(OWNER_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<OwnerRecord>(&b).ok());
        match owner {
            Some(o) if lock_id == Some(o.lock_id.as_str()) => return Some(e),
            Some(_) => {}
            None => legacy_dirs.push(e),
        }
    }
    if let Some(n) = named
        && legacy_dirs.contains(&n)
    {
        return Some(n);
    }
    match legacy_dirs[..] {
        [one] => Some(one),
        _ => named,
    }
}

/// The record as another environment's live lock, when it is one.
fn other_environment_record(
    doc: &StateDoc,
    env: Environment,
    ctx: &Context,
) -> Option<OtherEnvironment> {
    let look = Sightings::new();
    other_environment_of(doc, record_environment(doc, ctx)?, env, ctx, &look)
}

/// [`other_environment_record`] with the record's environment already told.
fn other_environment_of(
    doc: &StateDoc,
    other: Environment,
    env: Environment,
    ctx: &Context,
    look: &Sightings,
) -> Option<OtherEnvironment> {
    if other == env {
        return None;
    }
    if fsops::path_kind(&ctx.lock_dir(other)).ok()? != PathKind::Directory {
        return None;
    }
    let holder = holder_from(None, Some(doc), other)?;
    let liveness = liveness_in(&holder, &ctx.host, look);
    if liveness == Liveness::Dead {
        return None;
    }
    Some(OtherEnvironment {
        environment: other,
        holder,
        liveness,
    })
}

/// The one-record-per-checkout rule: the checkout's state record is another
/// environment's live lock, so a run of this environment would be refused
/// (or wait) until that lock is released, whatever this lock looks like.
pub fn record_held_by_other_environment(insp: &Inspection) -> bool {
    insp.other_environment
        .as_ref()
        .is_some_and(|o| o.environment != insp.environment && o.liveness != Liveness::Dead)
}

/// The owner's uid of a lock directory nobody is recorded as holding and
/// this user (not root) does not own.
fn squatter(insp: &Inspection) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let me = nix::unistd::geteuid();
    if insp.holder.is_some() || me.is_root() || insp.path_kind != PathKind::Directory {
        return None;
    }
    let uid = std::fs::symlink_metadata(&insp.lock_dir).ok()?.uid();
    (uid != me.as_raw()).then_some(uid)
}

/// Whether a run would take the lock `insp` saw right now, without --force
/// (what `status --quiet` answers): [`decide`]'s answer, kept under its old
/// name for the callers that only want yes or no.
pub fn would_take(insp: &Inspection) -> bool {
    decide(insp).takes()
}

/// The run file is flocked by a process that is not a deploy-lock run (no
/// live record names it, and it runs another program): a run would be
/// refused, so the lock is not free, and the refusal names that process and
/// its user instead of "a deploy-lock run".
pub fn run_file_squatted(insp: &Inspection) -> Option<runlock::FlockHolder> {
    if insp.run_holder.is_some() {
        return None;
    }
    let run_file = insp
        .lock_dir
        .with_file_name(insp.environment.run_file_name());
    runlock::flock_holder(&run_file).filter(|h| !h.deploy_lock)
}

/// The local facts of issue 17's rule: `insp` (this machine's lock
/// directory) is what an etcd run that died without releasing (SIGKILL, a
/// crash) leaves behind: a lock directory holding only our files, whose
/// record deploy-lock wrote (`owner.json`, not a legacy deploy.sh's state
/// record) on this host, whose processes are gone, and no deploy-lock run
/// holds the kernel run lock. Such a lock is taken over, with a warning and
/// a `takeover` audit line, once the etcd lease is gone too (the caller's
/// half of the rule: the etcd key is free, or now ours); until then the
/// etcd key keeps everyone out anyway. Without this, that machine alone
/// stayed locked for the 30-minute stale timeout.
pub fn leftover_of_dead_etcd_run(insp: &Inspection) -> bool {
    use crate::status::{HolderSource, Liveness};
    insp.path_kind == PathKind::Directory
        && insp.liveness == Liveness::Dead
        && insp.run_holder.is_none()
        && insp
            .holder
            .as_ref()
            .is_some_and(|h| h.source == HolderSource::LockDir)
        && insp
            .dir
            .as_ref()
            .is_some_and(|d| d.entries.iter().all(|e| is_ours(e)))
}

/// Files deploy-lock or the legacy put in a lock directory, including the
/// temp file of an interrupted `owner.json` replace.
pub fn is_ours(name: &std::ffi::OsStr) -> bool {
    let n = name.to_string_lossy();
    OUR_FILES.iter().any(|o| n == *o)
        || ((n.starts_with(".owner.json.") || n.starts_with(".locked_at.")) && n.ends_with(".tmp"))
}

/// A removal that failed for lack of permission names the owner to ask.
fn removal_error(path: &Path, e: io::Error) -> LockError {
    use std::os::unix::fs::MetadataExt;
    if e.kind() == io::ErrorKind::PermissionDenied
        && let Ok(m) = std::fs::symlink_metadata(path)
    {
        return LockError::NotPermitted {
            path: path.to_path_buf(),
            owner_uid: m.uid(),
        };
    }
    LockError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}

/// `locked_at` file contents: epoch seconds, plausible (the legacy's rule).
fn parse_locked_at(bytes: &[u8]) -> Option<i64> {
    let n: i64 = std::str::from_utf8(bytes).ok()?.trim().parse().ok()?;
    (n >= PLAUSIBLE_EPOCH).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Clock, Settings};
    use crate::status::Verdict;

    fn ctx(tmp: &Path) -> Context {
        let settings = Settings {
            lock_root: tmp.join("locks"),
            ..Settings::default()
        };
        std::fs::create_dir_all(&settings.lock_root).unwrap();
        let mut c = Context::new(settings, tmp.join("checkout"));
        // The audit log goes here, never to the real HOME.
        c.home = Some(tmp.join("home"));
        c
    }

    fn me() -> ProcessIdentity {
        ProcessIdentity::of_self().unwrap()
    }

    /// A pid that ran and was reaped: certainly not alive.
    fn dead() -> ProcessIdentity {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id() as i32;
        c.wait().unwrap();
        ProcessIdentity {
            pid,
            start_ticks: Some(1),
            boot_id: None,
        }
    }

    fn acquired(a: Acquire) -> Box<HeldLock> {
        match a {
            Acquire::Acquired(h) => h,
            Acquire::Busy { reason, .. } => panic!("busy: {reason:?}"),
        }
    }

    /// `try_acquire` a moment after this process let its run lock go: a
    /// child another test thread forked meanwhile shares the run file's
    /// open description (and so its flock) until it execs, which a loaded
    /// machine can delay; that is the only RunHeld waited out here.
    fn settled(lock: &LocalLock<'_>, pid: ProcessIdentity) -> Acquire {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            match lock.try_acquire(false, pid.clone()).unwrap() {
                Acquire::Busy {
                    reason: BusyReason::RunHeld,
                    ..
                } if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                a => return a,
            }
        }
    }

    fn acquired_again(lock: &LocalLock<'_>) -> Box<HeldLock> {
        acquired(settled(lock, me()))
    }

    fn busy(a: Acquire) -> BusyReason {
        match a {
            Acquire::Acquired(_) => panic!("acquired"),
            Acquire::Busy { reason, .. } => reason,
        }
    }

    /// Issue 19: a lock directory emptied and re-used for another holder
    /// between the look and the removal (same inode, as an rmdir+mkdir on
    /// ext4 can give) is not removed: the record inside is compared too.
    #[test]
    fn unlock_removes_only_the_record_it_looked_at_even_in_the_same_inode() {
        let t = tempfile::tempdir().unwrap();
        let c = ctx(t.path());
        let lock = LocalLock::new(&c, Environment::Staging);
        let mut held = acquired(lock.try_acquire(false, dead()).unwrap());
        held.run.take();
        let shown = lock.look().unwrap();
        let mut other = held.record.clone();
        other.lock_id = "someone-else".into();
        let (fd, _) = fsops::snapshot_dir(&held.lock_dir).unwrap();
        fsops::replace_file_at(&fd, OWNER_FILE, &serde_json::to_vec(&other).unwrap()).unwrap();
        assert_eq!(
            fsops::snapshot_dir(&held.lock_dir).unwrap().1.identity,
            shown.dir.as_ref().unwrap().identity,
            "same inode"
        );
        assert_eq!(lock.remove_shown(&shown).unwrap(), None);
        assert!(held.lock_dir.join(OWNER_FILE).exists());
        // The record it showed: removed.
        let now = lock.look().unwrap();
        assert!(lock.remove_shown(&now).unwrap().is_some());
        assert!(!held.lock_dir.exists());
        std::mem::forget(held);
    }

    /// Issue 19: owner.json counts only when the directory's owner wrote it.
    #[test]
    fn an_owner_record_written_by_another_user_is_not_believed() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP: needs root to give owner.json to another uid");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let c = ctx(t.path());
        let lock = LocalLock::new(&c, Environment::Staging);
        let mut held = acquired(lock.try_acquire(false, me()).unwrap());
        held.run.take();
        assert!(lock.look().unwrap().owner.is_some());
        std::os::unix::fs::chown(held.lock_dir.join(OWNER_FILE), Some(54_998), None).unwrap();
        let insp = lock.look().unwrap();
        assert_eq!(insp.owner, None);
        assert!(
            insp.holder
                .as_ref()
                .is_none_or(|h| h.source != crate::status::HolderSource::LockDir)
        );
        let d = insp.dir.as_ref().unwrap();
        assert_eq!((d.uid, d.disowned_record_uid), (0, Some(54_998)));
        std::mem::forget(held);
    }

    #[test]
    fn a_live_holder_is_never_taken_even_when_old_or_forced() {
        let t = tempfile::tempdir().unwrap();
        let c = ctx(t.path());
        let lock = LocalLock::new(&c, Environment::Staging);
        let held = acquired(lock.try_acquire(false, me()).unwrap());
        assert_eq!(lock.inspect().unwrap().verdict, Verdict::Held);
        // Three hours later (an injected clock), with --force: still ours.
        let mut later = c.clone();
        later.clock = Clock::Fixed(c.now() + jiff::SignedDuration::from_hours(3));
        let other = LocalLock::new(&later, Environment::Staging);
        assert!(other.inspect().unwrap().stale);
        // Our run lock keeps every other deploy-lock out first of all...
        assert_eq!(
            busy(other.try_acquire(true, me()).unwrap()),
            BusyReason::RunHeld
        );
        // ...and the directory's live holder would on its own.
        assert_eq!(
            busy(other.acquire_dir(true, me()).unwrap()),
            BusyReason::HolderAlive
        );
        assert_eq!(lock.release(*held).unwrap().outcome, Release::Released);
        assert_eq!(lock.inspect().unwrap().verdict, Verdict::Free);
    }

    #[test]
    fn a_dead_holder_is_taken_once_stale_or_with_force() {
        let t = tempfile::tempdir().unwrap();
        let c = ctx(t.path());
        let lock = LocalLock::new(&c, Environment::Staging);
        let mut held = acquired(lock.try_acquire(false, dead()).unwrap());
        // A crashed holder's kernel lock went with it.
        held.run.take();
        // The holder record names only the dead pid and us; forget us.
        let mut record = held.record.clone();
        record.holder_pid = record.pid;
        let (fd, _) = fsops::snapshot_dir(&held.lock_dir).unwrap();
        fsops::replace_file_at(&fd, OWNER_FILE, &serde_json::to_vec(&record).unwrap()).unwrap();
        std::mem::forget(held);
        assert_eq!(lock.inspect().unwrap().verdict, Verdict::Orphaned);
        assert_eq!(busy(settled(&lock, me())), BusyReason::NotStale);
        let mut later = c.clone();
        later.clock = Clock::Fixed(c.now() + jiff::SignedDuration::from_mins(31));
        let stale = LocalLock::new(&later, Environment::Staging);
        assert_eq!(stale.inspect().unwrap().verdict, Verdict::Stale);
        let taken = acquired(settled(&stale, me()));
        let prev = taken.took_over.as_ref().and_then(|t| t.holder.as_ref());
        assert_eq!(prev.and_then(|h| h.pid), Some(record.pid));
        assert_eq!(stale.release(*taken).unwrap().outcome, Release::Released);
    }

    #[test]
    fn a_dead_deploy_lock_holders_leftover_counts_once_the_etcd_key_is_free() {
        use crate::status::NetworkLock;
        let t = tempfile::tempdir().unwrap();
        let c = ctx(t.path());
        let lock = LocalLock::new(&c, Environment::Staging);
        let mut held = acquired(lock.try_acquire(false, dead()).unwrap());
        held.run.take();
        let mut record = held.record.clone();
        record.holder_pid = record.pid;
        let (fd, _) = fsops::snapshot_dir(&held.lock_dir).unwrap();
        fsops::replace_file_at(&fd, OWNER_FILE, &serde_json::to_vec(&record).unwrap()).unwrap();
        std::mem::forget(held);
        let mut insp = lock.inspect().unwrap();
        assert!(leftover_of_dead_etcd_run(&insp));
        // Alone (the local backend) it is an orphan that waits for the
        // stale timeout; with the etcd key free, a run takes it.
        assert!(!would_take(&insp));
        let network = |token| NetworkLock {
            backend: "etcd",
            key: "/k".into(),
            fencing_token: token,
            lease_id: None,
            ttl_remaining_secs: None,
            foreign: None,
        };
        insp.network = Some(network(None));
        assert!(would_take(&insp));
        insp.network = Some(network(Some(7)));
        assert!(!would_take(&insp), "the lease is not gone");
        // Not while another run holds the kernel lock, nor with a live
        // holder, nor with a record only the legacy wrote.
        let mut busy_run = insp.clone();
        busy_run.network = Some(network(None));
        busy_run.run_holder = Some(runlock::RunHolder {
            pid: 1,
            lock_id: None,
            command: None,
        });
        assert!(!leftover_of_dead_etcd_run(&busy_run));
        let mut alive = insp.clone();
        alive.liveness = Liveness::Alive {
            pid: 1,
            comm: "sh".into(),
        };
        assert!(!leftover_of_dead_etcd_run(&alive));
        let mut legacy = insp.clone();
        if let Some(h) = &mut legacy.holder {
            h.source = crate::status::HolderSource::StateFile;
        }
        assert!(!leftover_of_dead_etcd_run(&legacy));
    }

    #[test]
    fn a_release_leaves_a_new_holders_lock_alone() {
        let t = tempfile::tempdir().unwrap();
        let c = ctx(t.path());
        let lock = LocalLock::new(&c, Environment::Staging);
        let mut first = acquired(lock.try_acquire(false, me()).unwrap());
        assert!(matches!(lock.force_unlock(None).unwrap(), Unlock::Done(_)));
        // While the force-unlocked run goes on, nobody else gets in...
        assert_eq!(
            busy(lock.try_acquire(false, me()).unwrap()),
            BusyReason::RunHeld
        );
        // ...and it can tell it was announced, not vanished.
        let note = lock.announcement(&first.record.lock_id).unwrap();
        assert_eq!(note.by, c.locked_by());
        // Its command ended (its kernel lock with it), but not its release yet.
        first.run.take();
        let second = acquired_again(&lock);
        assert!(matches!(
            lock.release(*first).unwrap().outcome,
            Release::TakenByOther { .. }
        ));
        let insp = lock.inspect().unwrap();
        assert_eq!(
            insp.owner.map(|o| o.lock_id),
            Some(second.record.lock_id.clone())
        );
        assert_eq!(
            StateDoc::load(&c.state_file)
                .unwrap()
                .unwrap()
                .lock_str("lock_id"),
            Some(second.record.lock_id.as_str())
        );
        assert_eq!(lock.release(*second).unwrap().outcome, Release::Released);
    }

    #[test]
    fn an_unlock_removes_only_the_lock_it_showed() {
        let t = tempfile::tempdir().unwrap();
        let c = ctx(t.path());
        let lock = LocalLock::new(&c, Environment::Staging);
        let mut first = acquired(lock.try_acquire(false, me()).unwrap());
        let shown = Shown::of(&lock.inspect().unwrap());
        first.run.take();
        lock.release(*first).unwrap();
        let second = acquired_again(&lock);
        match lock.force_unlock(Some(&shown)).unwrap() {
            Unlock::ChangedHands { now } => assert_eq!(
                now.and_then(|h| h.lock_id),
                Some(second.record.lock_id.clone())
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            lock.inspect().unwrap().owner.map(|o| o.lock_id),
            Some(second.record.lock_id.clone())
        );
        let by_id = Shown::LockId(second.record.lock_id.clone());
        assert!(matches!(
            lock.force_unlock(Some(&by_id)).unwrap(),
            Unlock::Done(_)
        ));
        // Its run still holds the run lock: not free until it lets go.
        let after = lock.inspect().unwrap();
        assert_eq!(after.verdict, Verdict::ReleasedRunning);
        assert!(!would_take(&after));
        drop(second);
        assert_eq!(lock.inspect().unwrap().verdict, Verdict::Free);
    }

    #[test]
    fn an_unknown_holder_is_not_taken_by_force_until_stale() {
        let t = tempfile::tempdir().unwrap();
        let c = ctx(t.path());
        let lock = LocalLock::new(&c, Environment::Staging);
        let dir = lock.lock_dir();
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join(LOCKED_AT_FILE),
            format!("{}\n", c.now().as_second()),
        )
        .unwrap();
        let insp = lock.inspect().unwrap();
        assert_eq!(
            (insp.liveness, insp.verdict),
            (Liveness::NoRecord, Verdict::Unknown)
        );
        assert_eq!(
            busy(lock.try_acquire(true, me()).unwrap()),
            BusyReason::NotStale
        );
        let mut later = c.clone();
        later.clock = Clock::Fixed(c.now() + jiff::SignedDuration::from_mins(31));
        let stale = LocalLock::new(&later, Environment::Staging);
        let held = acquired(stale.try_acquire(false, me()).unwrap());
        stale.release(*held).unwrap();
    }

    #[test]
    fn one_record_per_checkout_whatever_the_top_level_environment_says() {
        let t = tempfile::tempdir().unwrap();
        let c = ctx(t.path());
        // A legacy production deploy (alive: this process) in a checkout
        // whose file a staging deploy created long ago.
        let prod = LocalLock::new(&c, Environment::Production);
        let dir = prod.lock_dir();
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join(LOCKED_AT_FILE),
            format!("{}\n", c.now().as_second()),
        )
        .unwrap();
        std::fs::create_dir_all(c.state_file.parent().unwrap()).unwrap();
        let record = json!({
            "environment": "staging",
            "lock": {
                "locked": true, "lock_id": "lock_x", "deployment_id": "dep_x",
                "locked_by": "deploy@h", "locked_at": utc_seconds(c.now()),
                "pid": std::process::id(), "hostname": c.host,
            }
        });
        std::fs::write(&c.state_file, record.to_string()).unwrap();
        let doc = StateDoc::load(&c.state_file).unwrap().unwrap();
        assert_eq!(record_environment(&doc, &c), Some(Environment::Production));
        // Production's lock shows that holder, alive, not "unknown".
        let insp = prod.inspect().unwrap();
        assert!(
            matches!(insp.liveness, Liveness::Alive { .. }),
            "{:?}",
            insp.liveness
        );
        assert_eq!(insp.verdict, Verdict::Held);
        assert!(!record_held_by_other_environment(&insp));
        // Staging's lock is free, but a staging run would be refused: status
        // --quiet says so too.
        let staging = LocalLock::new(&c, Environment::Staging);
        let insp = staging.inspect().unwrap();
        assert_eq!(insp.verdict, Verdict::Blocked);
        assert!(record_held_by_other_environment(&insp));
        assert!(!would_take(&insp));
        assert!(matches!(
            staging.try_acquire(false, me()),
            Err(LockError::OtherEnvironment {
                environment: Environment::Production,
                ..
            })
        ));
        // Once production's directory is gone, the record binds nobody.
        std::fs::remove_dir_all(&dir).unwrap();
        let insp = staging.inspect().unwrap();
        assert!(!record_held_by_other_environment(&insp));
        assert!(would_take(&insp));
    }
}
