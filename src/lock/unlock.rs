//! Force-unlock, both personas': remove the lock whoever holds it, but only
//! if it is still the lock the person was shown, and announce the removal of
//! a deploy-lock holder's lock so that holder does not restore it.

use serde_json::{Value, json};

use super::{LocalLock, LockError, removal_error};
use crate::fsops::{self, DirIdentity, PathKind};
use crate::state::{self, Edit};
use crate::status::{Holder, Inspection, OUR_FILES};
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
        let mut warnings = Vec::new();
        if let Some(owner) = &inspection.owner {
            let note = Announcement {
                lock_id: owner.lock_id.clone(),
                by: self.ctx.locked_by(),
                at: utc_seconds(self.ctx.now()),
                pid: std::process::id() as i32,
            };
            let path = self.ctx.settings.announce_file(self.env);
            let text = serde_json::to_vec(&note).expect("serialisable");
            // Readable by every holder: another user's run must see it too.
            let written = fsops::atomic_write(&path, &text).and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            });
            if let Err(e) = written {
                warnings.push(Warning::Announce {
                    path,
                    error: e.to_string(),
                });
            }
        }
        let lock_dir = self.lock_dir();
        let dir_removed = match inspection.path_kind {
            PathKind::Missing => None,
            PathKind::Directory => fsops::remove_dir_tree(&lock_dir, None, OUR_FILES)
                .map_err(|e| removal_error(&lock_dir, e))?,
            PathKind::Symlink | PathKind::Other => {
                return Err(LockError::NotADirectory {
                    what: NonDirectory::at(&lock_dir),
                    path: lock_dir,
                });
            }
        };
        let state_updated = state::update(&self.ctx.state_file, false, |doc| match doc {
            None => Ok::<_, LockError>(Edit::Keep(false)),
            Some(doc) => {
                let lock = doc.lock_mut();
                lock.insert("locked".into(), Value::Bool(false));
                lock.insert("deployment_id".into(), Value::Null);
                Ok(Edit::Write(true))
            }
        })?;
        warnings.extend(self.audit(
            "force_unlock",
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

    /// The unlock announced for `lock_id`, if any.
    pub fn announcement(&self, lock_id: &str) -> Option<Announcement> {
        let text = fsops::read_small_file(&self.ctx.settings.announce_file(self.env))?;
        serde_json::from_slice::<Announcement>(&text)
            .ok()
            .filter(|a| a.lock_id == lock_id)
    }
}
