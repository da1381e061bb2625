//! Keeping a held lock visible to the legacy tools while the command runs: a
//! heartbeat on the lock directory's `locked_at` (the only age the legacy
//! deploy.sh reads), and the directory and state record restored when
//! something nobody announced removes them (the legacy deploy.sh's exit trap,
//! a hand `rm -rf`). An announced unlock is respected, and a path someone
//! else now holds is never fought over. Nothing here prints: events go back.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Announcement, HeldLock, LocalLock, LockError, io_at};
use crate::fsops::{self, PathKind};
use crate::state::StateDoc;
use crate::status::{Holder, LOCKED_AT_FILE, OWNER_FILE, OwnerRecord};

/// What the keeper did or found, for the CLI to say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepEvent {
    /// Removed by someone who did not announce it, and put back (same ids).
    Restored { directory: bool, record: bool },
    /// Someone else holds the lock path now; not fought over.
    TakenBy { holder: Option<Holder> },
    /// A deploy-lock unlock removed this lock; not restored.
    ForceUnlocked(Announcement),
    /// A heartbeat or a restore could not be written.
    Failed(KeepFailure),
    /// A network store's lock is no longer ours (lease expired or revoked,
    /// key deleted or taken, no renewal acknowledged within the TTL).
    /// `stop`: what the supervisor does to the command now (None with
    /// `DEPLOY_LOCK_ON_LOST=warn`).
    /// `kill_after`: SIGKILL follows after this long (None: never).
    Lost {
        cause: crate::etcd::LossCause,
        stop: Option<Stop>,
        kill_after: Option<Duration>,
    },
    /// The grace after a loss ran out: the command is killed.
    Stop(Stop),
}

/// What could not be written, for the CLI to word. The errors are kept as
/// their text: `io::Error` and `LockError` are neither Clone nor Eq, which
/// `KeepEvent` is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeepFailure {
    /// The lock directory's `locked_at` (`path`) could not be refreshed.
    Heartbeat { path: PathBuf, error: String },
    /// The vanished lock could not be put back (`error`: the `LockError`).
    Restore { error: String },
}

/// A signal the supervisor sends the command after a loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    Term,
    Kill,
}

/// How often the heartbeat refreshes `locked_at`: every min(60 s, stale/4),
/// and not more than four times a second whatever the stale timeout.
pub fn heartbeat_interval(stale_after: Duration) -> Duration {
    (stale_after / 4)
        .min(Duration::from_secs(60))
        .max(Duration::from_millis(250))
}

pub struct Keeper {
    beat: Duration,
    next_beat: Instant,
    /// False once the lock was announced unlocked or someone else holds it:
    /// from then on the run only keeps its kernel lock.
    keeping: bool,
    /// A change was seen; look once things settle (the legacy release writes
    /// the state file, then removes the directory: one restore, one line).
    settle_until: Option<Instant>,
    /// When a release under way in our own directory was first seen (see
    /// [`Look::ReleaseUnderWay`]).
    release_seen: Option<Instant>,
    next_poll: Instant,
    last: Fingerprint,
    lock_dir: PathBuf,
    state_file: PathBuf,
}

/// How often the keeper looks at the lock directory and the state file. A
/// stat poll, not inotify: tearing an inotify instance down at exit costs
/// about 10 ms (the kernel waits for an RCU grace period), which every run
/// and every hand-off to a waiter would pay; two lstat calls ten times a
/// second cost nothing, and a restore still comes well within a second.
const POLL: Duration = Duration::from_millis(100);

/// How long a change may settle before the keeper looks closer.
const SETTLE: Duration = Duration::from_millis(40);

/// How long a release under way in our own directory is waited for before
/// what it removed so far is put back alone. The legacy release's steps (the
/// state record through jq and mv, then `rm -rf` of the directory, itself a
/// file at a time) are each a process start apart: tens of milliseconds, far
/// more on a loaded machine, so no fixed settle time covers them.
const RELEASE_PATIENCE: Duration = Duration::from_secs(1);

/// What a settled look at the held lock found.
#[derive(Debug, PartialEq, Eq)]
enum Look {
    /// Our directory (our owner.json in it) and our record are both there.
    Intact,
    /// Our very directory (same inode) is still there, but the record says
    /// released or its files are going: someone's release is half done (the
    /// legacy exit trap between its state write and its `rm -rf`, or inside
    /// the `rm -rf`). Restoring now would restore half of it and then the
    /// other half (two lines for one removal), or mistake our own emptied
    /// directory for someone else's. (A new directory that got our freed
    /// inode number looks the same: it is named as someone else's once the
    /// patience is out, as before.)
    ReleaseUnderWay,
    /// Something is missing and nothing is under way: restore.
    Broken,
}

/// What a glance shows: the lock directory's identity and the state file's
/// identity, size and modification time.
type Fingerprint = (Option<(u64, u64)>, Option<(u64, i64, i64, u64)>);

fn fingerprint(lock_dir: &Path, state_file: &Path) -> Fingerprint {
    use std::os::unix::fs::MetadataExt;
    let dir = std::fs::symlink_metadata(lock_dir)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()));
    let state = std::fs::symlink_metadata(state_file)
        .ok()
        .map(|m| (m.ino(), m.mtime(), m.mtime_nsec(), m.size()));
    (dir, state)
}

impl Keeper {
    pub fn new(lock: &LocalLock<'_>) -> Keeper {
        let lock_dir = lock.lock_dir();
        let state_file = lock.ctx.state_file.clone();
        let beat = heartbeat_interval(lock.ctx.settings.stale_after);
        let now = Instant::now();
        Keeper {
            beat,
            next_beat: now + beat,
            keeping: true,
            settle_until: None,
            release_seen: None,
            next_poll: now + POLL,
            last: fingerprint(&lock_dir, &state_file),
            lock_dir,
            state_file,
        }
    }

    /// Nothing to poll: the keeper works on its deadlines.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    /// When to be called next: the next look, heartbeat or settled change.
    pub fn deadline(&self) -> Option<Instant> {
        if !self.keeping {
            return None;
        }
        let mut next = self.next_beat.min(self.next_poll);
        if let Some(t) = self.settle_until {
            next = next.min(t);
        }
        Some(next)
    }

    /// Beats if due, and restores what vanished. Call when `deadline`
    /// passed, only while the command runs.
    pub fn service(&mut self, lock: &LocalLock<'_>, held: &mut HeldLock) -> Vec<KeepEvent> {
        let mut out = Vec::new();
        if !self.keeping {
            return out;
        }
        let now = Instant::now();
        if now >= self.next_poll {
            let fp = fingerprint(&self.lock_dir, &self.state_file);
            if fp != self.last && self.settle_until.is_none() {
                self.settle_until = Some(now + SETTLE);
            }
            self.last = fp;
            self.next_poll = now + POLL;
        }
        let settled = self.settle_until.is_some_and(|t| now >= t);
        if Instant::now() >= self.next_beat {
            if let Err(e) = beat(held, lock.ctx.now().as_second()) {
                out.push(KeepEvent::Failed(KeepFailure::Heartbeat {
                    path: held.lock_dir.join(LOCKED_AT_FILE),
                    error: e.to_string(),
                }));
            }
            self.next_beat = Instant::now() + self.beat;
        }
        if !settled {
            return out;
        }
        self.settle_until = None;
        match look(lock, held) {
            Look::Intact => {
                self.release_seen = None;
                return out;
            }
            Look::ReleaseUnderWay
                if now < *self.release_seen.get_or_insert(now) + RELEASE_PATIENCE =>
            {
                // Look again shortly: its last step (the directory gone)
                // changes nothing the poll's fingerprint sees until then.
                self.settle_until = Some(now + SETTLE);
                return out;
            }
            Look::ReleaseUnderWay | Look::Broken => self.release_seen = None,
        }
        match self.restore(lock, held) {
            Ok(Some(ev)) => out.push(ev),
            Ok(None) => {}
            // A state file broken meanwhile is never rewritten; the release
            // reports it with the recovery steps.
            Err(LockError::State(_)) => {}
            Err(e) => out.push(KeepEvent::Failed(KeepFailure::Restore {
                error: e.to_string(),
            })),
        }
        // Our own writes are not a change to look at again.
        self.last = fingerprint(&self.lock_dir, &self.state_file);
        out
    }

    /// Once the command has ended, before the release: an unlock announced
    /// too late for `service` to see (the command ended within the settle
    /// time) is still reported.
    pub fn last_look(&mut self, lock: &LocalLock<'_>, held: &HeldLock) -> Option<KeepEvent> {
        if !self.keeping {
            return None;
        }
        self.keeping = false;
        lock.announcement(&held.record.lock_id)
            .map(KeepEvent::ForceUnlocked)
    }

    fn restore(
        &mut self,
        lock: &LocalLock<'_>,
        held: &mut HeldLock,
    ) -> Result<Option<KeepEvent>, LockError> {
        let _guard = lock.guard()?;
        let lock_id = held.record.lock_id.clone();
        if let Some(a) = lock.announcement(&lock_id) {
            self.keeping = false;
            return Ok(Some(KeepEvent::ForceUnlocked(a)));
        }
        let lock_dir = held.lock_dir.clone();
        let mut directory = false;
        match fsops::path_kind(&lock_dir).map_err(io_at(&lock_dir))? {
            PathKind::Missing => {
                if fsops::create_dir(&lock_dir).map_err(io_at(&lock_dir))? {
                    let (fd, snap) = fsops::snapshot_dir(&lock_dir).map_err(io_at(&lock_dir))?;
                    let now = lock.ctx.now().as_second();
                    fsops::create_file_at(&fd, LOCKED_AT_FILE, format!("{now}\n").as_bytes())
                        .map_err(io_at(&lock_dir))?;
                    let owner = serde_json::to_vec_pretty(&held.record).expect("serialisable");
                    fsops::create_file_at(&fd, OWNER_FILE, &owner).map_err(io_at(&lock_dir))?;
                    if let Some(id) = snap.identity {
                        held.identity = id;
                    }
                    directory = true;
                }
            }
            PathKind::Directory => {}
            PathKind::Symlink | PathKind::Other => {}
        }
        let insp = lock.inspect()?;
        if insp.owner.as_ref().map(|o| o.lock_id.as_str()) != Some(lock_id.as_str()) {
            // Someone else made the directory (a legacy deploy.sh's stale
            // takeover, another tool): say so once and leave it to them.
            self.keeping = false;
            let warning = lock.audit(
                "lost",
                insp.holder.as_ref(),
                json!({ "lock_id": lock_id, "note": "the lock path is held by someone else; not restored" }),
            );
            held.warnings.extend(warning);
            return Ok(Some(KeepEvent::TakenBy {
                holder: insp.holder,
            }));
        }
        if let Some(d) = insp.dir.as_ref().and_then(|d| d.identity) {
            held.identity = d;
        }
        let record = !record_is_ours(insp.state.as_ref(), &lock_id);
        if record {
            match lock.write_state_record(&held.record) {
                Ok(()) => {}
                Err(LockError::OtherEnvironment { .. }) if !directory => return Ok(None),
                Err(LockError::OtherEnvironment { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if !(directory || record) {
            return Ok(None);
        }
        let what = match (directory, record) {
            (true, true) => "lock directory and state record",
            (true, false) => "lock directory",
            _ => "state record",
        };
        let warning = lock.audit(
            "restore",
            None,
            json!({ "lock_id": lock_id, "restored": what, "note": "removed while the command ran, by someone who did not announce it" }),
        );
        held.warnings.extend(warning);
        Ok(Some(KeepEvent::Restored { directory, record }))
    }
}

fn look(lock: &LocalLock<'_>, held: &HeldLock) -> Look {
    let (same_dir, owner_ours) = match fsops::snapshot_dir(&held.lock_dir) {
        Ok((fd, snap)) => (
            snap.identity == Some(held.identity),
            owner_is_ours(&fd, held),
        ),
        Err(_) => (false, false),
    };
    let record_ours = match StateDoc::load(&lock.ctx.state_file) {
        Ok(d) => record_is_ours(d.as_ref(), &held.record.lock_id),
        // Unusable: nothing the keeper may fix (see `service`).
        Err(_) => true,
    };
    match (owner_ours && record_ours, same_dir) {
        (true, _) => Look::Intact,
        (false, true) => Look::ReleaseUnderWay,
        (false, false) => Look::Broken,
    }
}

/// The directory open at `fd` holds our `owner.json`.
fn owner_is_ours(fd: &std::os::fd::OwnedFd, held: &HeldLock) -> bool {
    fsops::read_small_file_at(fd, OWNER_FILE)
        .and_then(|b| serde_json::from_slice::<OwnerRecord>(&b).ok())
        .is_some_and(|o| o.lock_id == held.record.lock_id)
}

fn record_is_ours(doc: Option<&StateDoc>, lock_id: &str) -> bool {
    doc.is_some_and(|d| d.is_locked() && d.lock_str("lock_id") == Some(lock_id))
}

/// Refreshes `locked_at` in our very directory (same inode), atomically.
fn beat(held: &HeldLock, now: i64) -> std::io::Result<()> {
    let (fd, snap) = match fsops::snapshot_dir(&held.lock_dir) {
        Ok(x) => x,
        // Gone: the restore path deals with it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if snap.identity != Some(held.identity) {
        return Ok(());
    }
    fsops::replace_file_at(&fd, LOCKED_AT_FILE, format!("{now}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::{Context, Settings};
    use crate::environment::Environment;
    use crate::liveness::ProcessIdentity;
    use crate::lock::{Acquire, Unlock};

    /// Looks now, then once the change has settled.
    fn look(k: &mut Keeper, lock: &LocalLock<'_>, held: &mut HeldLock) -> Vec<KeepEvent> {
        k.next_poll = Instant::now();
        let mut events = k.service(lock, held);
        std::thread::sleep(SETTLE + Duration::from_millis(5));
        k.next_poll = Instant::now() + POLL;
        events.extend(k.service(lock, held));
        events
    }

    /// A lock folder and a checkout (with its deploy/config) in a temp dir.
    fn temp_context() -> (tempfile::TempDir, Context) {
        let t = tempfile::tempdir().unwrap();
        let settings = Settings {
            lock_root: t.path().join("locks"),
            ..Settings::default()
        };
        std::fs::create_dir_all(&settings.lock_root).unwrap();
        std::fs::create_dir_all(t.path().join("checkout/deploy/config")).unwrap();
        let mut ctx = Context::new(settings, t.path().join("checkout"));
        ctx.home = Some(t.path().join("home"));
        (t, ctx)
    }

    #[test]
    fn a_vanished_lock_is_restored_and_an_announced_unlock_is_not() {
        let (_t, ctx) = temp_context();
        let lock = LocalLock::new(&ctx, Environment::Staging);
        let Acquire::Acquired(mut held) = lock
            .try_acquire(false, ProcessIdentity::of_self().unwrap())
            .unwrap()
        else {
            panic!("not acquired")
        };
        let mut k = Keeper::new(&lock);
        assert_eq!(look(&mut k, &lock, &mut held), vec![]);
        // A hand rm -rf: put back, same ids.
        std::fs::remove_dir_all(&held.lock_dir).unwrap();
        assert_eq!(
            look(&mut k, &lock, &mut held),
            vec![KeepEvent::Restored {
                directory: true,
                record: false
            }]
        );
        let insp = lock.inspect().unwrap();
        assert_eq!(insp.owner.unwrap().lock_id, held.record.lock_id);
        // A deploy-lock unlock: announced, not restored, and said once.
        assert!(matches!(lock.force_unlock(None).unwrap(), Unlock::Done(_)));
        match &look(&mut k, &lock, &mut held)[..] {
            [KeepEvent::ForceUnlocked(a)] => assert_eq!(a.lock_id, held.record.lock_id),
            other => panic!("{other:?}"),
        }
        assert!(!held.lock_dir.exists());
        assert_eq!(look(&mut k, &lock, &mut held), vec![]);
        assert_eq!(k.deadline(), None);
        lock.release(*held).unwrap();
    }

    /// The legacy exit trap's release, its steps further apart than the
    /// settle time (a loaded machine): the record written, then the
    /// directory emptied, then removed. Nothing is restored until it is
    /// done, and then all of it at once.
    #[test]
    fn a_release_in_steps_is_restored_once_when_done() {
        let (_t, ctx) = temp_context();
        let lock = LocalLock::new(&ctx, Environment::Staging);
        let Acquire::Acquired(mut held) = lock
            .try_acquire(false, ProcessIdentity::of_self().unwrap())
            .unwrap()
        else {
            panic!("not acquired")
        };
        let mut k = Keeper::new(&lock);
        let released = "{\"environment\": \"staging\", \"lock\": {\"locked\": false}}\n";
        std::fs::write(&ctx.state_file, released).unwrap();
        assert_eq!(look(&mut k, &lock, &mut held), vec![]);
        for f in [OWNER_FILE, LOCKED_AT_FILE] {
            std::fs::remove_file(held.lock_dir.join(f)).unwrap();
            assert_eq!(look(&mut k, &lock, &mut held), vec![]);
        }
        std::fs::remove_dir(&held.lock_dir).unwrap();
        assert_eq!(
            look(&mut k, &lock, &mut held),
            vec![KeepEvent::Restored {
                directory: true,
                record: true
            }]
        );
        assert_eq!(
            lock.inspect().unwrap().owner.unwrap().lock_id,
            held.record.lock_id
        );
        lock.release(*held).unwrap();
    }

    #[test]
    fn heartbeat_is_at_most_a_minute_and_a_quarter_of_the_stale_timeout() {
        assert_eq!(
            heartbeat_interval(Duration::from_secs(1800)),
            Duration::from_secs(60)
        );
        assert_eq!(
            heartbeat_interval(Duration::from_secs(8)),
            Duration::from_secs(2)
        );
        assert_eq!(
            heartbeat_interval(Duration::ZERO),
            Duration::from_millis(250)
        );
    }
}
