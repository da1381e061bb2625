//! Force-unlock, both personas': remove the lock whoever holds it, but only
//! if it is still the lock the person was shown, and announce the removal of
//! a deploy-lock holder's lock so that holder does not restore it.

use serde_json::{Value, json};

use super::{LocalLock, LockError, removal_error};
use crate::fsops::{self, DirIdentity, PathKind};
use crate::state::{self, Edit};
use crate::status::{Holder, Inspection, LOCKED_AT_FILE, OUR_FILES, OWNER_FILE, OwnerRecord};
use crate::store::Warning;
use crate::times::utc_seconds;
use crate::view::NonDirectory;

/// What a force-unlock was shown, to re-check under the guard right before
/// anything is removed: the lock id for a deploy-lock holder, the lock id, pid
/// and `locked_at` for a legacy record, the directory itself for a bare one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shown {
    Free,
    LockId(String),
    Legacy {
        lock_id: Option<String>,
        pid: Option<i32>,
        locked_at: Option<String>,
    },
    Bare(Option<DirIdentity>),
}

impl Shown {
    pub fn of(insp: &Inspection) -> Shown {
        if insp.path_kind != PathKind::Directory {
            return Shown::Free;
        }
        match &insp.holder {
            Some(h) if h.source == crate::status::HolderSource::LockDir => {
                Shown::LockId(h.lock_id.clone().unwrap_or_default())
            }
            Some(h) => Shown::Legacy {
                lock_id: h.lock_id.clone(),
                pid: h.pid,
                locked_at: h.locked_at.clone(),
            },
            None => Shown::Bare(insp.dir.as_ref().and_then(|d| d.identity)),
        }
    }

    fn matches(&self, now: &Inspection) -> bool {
        let current = Shown::of(now);
        match (self, &current) {
            // Nothing there now: nothing of anyone's can be removed.
            (_, Shown::Free) => true,
            (Shown::LockId(want), Shown::LockId(got)) => want == got,
            // `--id` also names a legacy record's lock id.
            (Shown::LockId(want), Shown::Legacy { lock_id, .. }) => {
                lock_id.as_deref() == Some(want.as_str())
            }
            _ => *self == current,
        }
    }
}

/// An unlock announced under the guard before a deploy-lock holder's lock is
/// removed, so that holder knows not to restore it. One JSON object.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Announcement {
    pub lock_id: String,
    /// `user@host` of whoever unlocked.
    pub by: String,
    /// UTC, second precision.
    pub at: String,
    pub pid: i32,
}

/// What a force-unlock did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForceUnlock {
    /// None: there was no lock directory.
    pub dir_removed: Option<fsops::Removal>,
    /// false: there was no state file.
    pub state_updated: bool,
    /// What could not be done (the announcement, the audit line).
    pub warnings: Vec<Warning>,
}

/// What a force-unlock that re-checks what it showed did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unlock {
    Done(ForceUnlock),
    /// The lock changed hands since it was shown: nothing was changed.
    ChangedHands {
        now: Option<Holder>,
    },
}

/// What a state reset did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetState {
    pub state: state::Reset,
    /// None: there was no lock directory.
    pub dir_removed: Option<fsops::Removal>,
    /// What could not be done (the announcement, the audit line).
    pub warnings: Vec<Warning>,
}

/// What a state reset that re-checks what it showed did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResetOutcome {
    Done(ResetState),
    /// The lock changed hands since it was shown: nothing was changed.
    ChangedHands {
        now: Option<Holder>,
    },
}

impl LocalLock<'_> {
    /// The legacy force-unlock: remove the directory whoever holds it, then
    /// `locked: false` and `deployment_id: null` with the other lock fields
    /// kept. The CLI asks for confirmation first.
    ///
    /// With `shown`, what the person confirmed is re-checked under the guard
    /// first: a lock that changed hands since is left as it is. A deploy-lock
    /// holder's removal is announced (see [`Announcement`]) before anything is
    /// removed, so that holder does not restore its lock.
    pub fn force_unlock(&self, shown: Option<&Shown>) -> Result<Unlock, LockError> {
        let _guard = self.guard()?;
        let inspection = self.look()?;
        if let Some(shown) = shown
            && !shown.matches(&inspection)
        {
            return Ok(Unlock::ChangedHands {
                now: inspection.holder,
            });
        }
        let mut warnings = self.announce(&inspection);
        let dir_removed = self.remove_shown(&inspection)?;
        if inspection.path_kind == PathKind::Directory && dir_removed.is_none() {
            // Swapped between the look and the removal (a legacy deploy.sh
            // takes no guard): not the lock shown, so nothing is changed.
            let now = self.look().ok().and_then(|i| i.holder);
            return Ok(Unlock::ChangedHands { now });
        }
        let state_updated = state::update(&self.ctx.state_file, false, |doc| match doc {
            None => Ok::<_, LockError>(Edit::Keep(false)),
            Some(doc) => {
                let lock = doc.lock_mut();
                lock.insert("locked".into(), Value::Bool(false));
                lock.insert("deployment_id".into(), Value::Null);
                Ok(Edit::Write(true))
            }
        })?;
        // Removing a freeze lifts it: one `unfreeze` event (whether
        // `unfreeze` or `unlock` asked), naming the freeze removed.
        let event = match inspection.holder.as_ref().and_then(|h| h.freeze.as_ref()) {
            Some(_) => "unfreeze",
            None => "force_unlock",
        };
        warnings.extend(self.audit(
            event,
            inspection.holder.as_ref(),
            json!({
                "lock_dir_removed": dir_removed.is_some(),
                "state_updated": state_updated,
            }),
        ));
        Ok(Unlock::Done(ForceUnlock {
            dir_removed,
            state_updated,
            warnings,
        }))
    }

    /// Tells a deploy-lock holder, under the guard and before anything is
    /// removed, that its lock is being unlocked, so it does not restore it.
    fn announce(&self, inspection: &Inspection) -> Vec<Warning> {
        let Some(owner) = &inspection.owner else {
            return Vec::new();
        };
        let note = Announcement {
            lock_id: owner.lock_id.clone(),
            by: self.ctx.locked_by(),
            at: utc_seconds(self.ctx.now()),
            pid: std::process::id() as i32,
        };
        let path = self.ctx.settings.announce_file(self.env);
        let text = serde_json::to_vec(&note).expect("serialisable");
        // Readable by every holder: another user's run must see it too. The
        // mode is set on the temp file's descriptor before the rename: a
        // chmod by name could be sent through a symlink swapped in.
        let written = fsops::atomic_write_mode(&path, &text, Some(fsops::LOCK_FILE_MODE));
        match written {
            Ok(()) => Vec::new(),
            Err(e) => vec![Warning::Announce {
                path,
                error: e.to_string(),
            }],
        }
    }

    /// Removes the lock directory `inspection` saw (never follows or removes
    /// anything else at the path); None when there was none.
    pub(super) fn remove_shown(
        &self,
        inspection: &Inspection,
    ) -> Result<Option<fsops::Removal>, LockError> {
        let lock_dir = self.lock_dir();
        match inspection.path_kind {
            PathKind::Missing => Ok(None),
            // Only the directory looked at: the same inode and the same
            // records (lock id; for a legacy lock, its locked_at), read
            // through the descriptor that is about to be emptied.
            PathKind::Directory => {
                let snap = inspection.dir.as_ref();
                let still_it = |fd: &std::os::fd::OwnedFd| {
                    let owner = fsops::read_small_file_at(fd, OWNER_FILE)
                        .and_then(|b| serde_json::from_slice::<OwnerRecord>(&b).ok())
                        .filter(|o| o.environment == self.env.as_str())
                        .map(|o| o.lock_id);
                    match &inspection.owner {
                        Some(shown) => owner.as_deref() == Some(shown.lock_id.as_str()),
                        None => {
                            let locked_at = fsops::read_small_file_at(fd, LOCKED_AT_FILE)
                                .and_then(|b| super::parse_locked_at(&b));
                            // A disowned owner.json was seen and not
                            // believed; any other one is a new holder's.
                            let disowned = snap.is_some_and(|d| d.disowned_record_uid.is_some());
                            (owner.is_none() || disowned) && locked_at == inspection.locked_at_file
                        }
                    }
                };
                fsops::remove_dir_tree_if(
                    &lock_dir,
                    snap.and_then(|d| d.identity),
                    OUR_FILES,
                    &still_it,
                )
                .map_err(|e| removal_error(&lock_dir, e))
            }
            PathKind::Symlink | PathKind::Other => Err(LockError::NotADirectory {
                what: NonDirectory::at(&lock_dir),
                path: lock_dir,
            }),
        }
    }

    /// Recovery from a state file that is not usable (not JSON, or not the
    /// documented shape), which every other operation refuses to touch:
    /// under the guard, re-check what the person was shown, back the file up
    /// beside itself and write a fresh one with the lock released
    /// ([`state::reset`]), then remove the lock directory as a force-unlock
    /// does (announced to a deploy-lock holder).
    pub fn reset_state(&self, shown: Option<&Shown>) -> Result<ResetOutcome, LockError> {
        let _guard = self.guard()?;
        let (inspection, _) = self.look_with(true)?;
        if let Some(shown) = shown
            && !shown.matches(&inspection)
        {
            return Ok(ResetOutcome::ChangedHands {
                now: inspection.holder,
            });
        }
        if matches!(inspection.path_kind, PathKind::Symlink | PathKind::Other) {
            // Refused before the state file is touched.
            self.remove_shown(&inspection)?;
        }
        let stamp = self.ctx.now().strftime("%Y%m%dT%H%M%SZ").to_string();
        let state = state::reset(&self.ctx.state_file, self.env.as_str(), &stamp)?;
        let mut warnings = self.announce(&inspection);
        let dir_removed = self.remove_shown(&inspection)?;
        let backup = match &state {
            state::Reset::Done { backup } => Value::String(backup.to_string_lossy().into_owned()),
            _ => Value::Null,
        };
        warnings.extend(self.audit(
            "reset_state",
            inspection.holder.as_ref(),
            json!({
                "backup": backup,
                "lock_dir_removed": dir_removed.is_some(),
            }),
        ));
        Ok(ResetOutcome::Done(ResetState {
            state,
            dir_removed,
            warnings,
        }))
    }

    /// The unlock announced for `lock_id`, if any.
    pub fn announcement(&self, lock_id: &str) -> Option<Announcement> {
        let text = fsops::read_small_file(&self.ctx.settings.announce_file(self.env))?;
        serde_json::from_slice::<Announcement>(&text)
            .ok()
            .filter(|a| a.lock_id == lock_id)
    }
}
