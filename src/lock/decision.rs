//! The one decision every view of a lock renders: what `run` would do with
//! the lock one inspection saw, and the verdict word that says so. `status`
//! (text, JSON, `--quiet`), the overview and `run`'s acquisition all ask here.
//!
//! The rules are evaluated in order in [`decide_as`], each a small named
//! function returning `Some(decision)` when it applies and `None` to pass to
//! the next. To add a rule (a leftover of a dead etcd run, a record naming
//! another checkout, a squatted run file...), write it as one more such
//! function with a unit test below and put it in the list where it ranks:
//! before `free` if it can refuse a lock with no directory, before
//! `holder_alive` if it overrides liveness, and so on. Nothing else decides.

use std::os::unix::fs::MetadataExt;

use crate::fsops::PathKind;
use crate::status::{Inspection, Liveness, Verdict};

use super::{BusyReason, is_ours};

/// What `run` does with the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunChoice {
    /// Nothing holds it: created.
    Take,
    /// Its holder is not running and it is stale (or `--force` on a dead
    /// holder): removed and created again.
    TakeOver,
    /// Left alone; the reason is what the refusal explains.
    Refuse(BusyReason),
}

/// One decision: the verdict word every view shows and what `run` does.
/// Verdicts `free` and `stale` are exactly the ones `run` takes (without
/// `--force`); every other verdict is a refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub run: RunChoice,
}

impl Decision {
    pub fn takes(&self) -> bool {
        matches!(self.run, RunChoice::Take | RunChoice::TakeOver)
    }
}

/// Who asks: `status` and the overview look from outside (no `--force`, the
/// run lock is someone else's if anyone holds it); `run` asks holding the
/// run lock, with or without `--force`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Asker {
    pub force: bool,
    /// The asker holds the whole-run kernel lock itself.
    pub holds_run_lock: bool,
    /// The asker is a waiter in line with this place (its ticket or create
    /// revision): only waiters before it are ahead. None: every waiter is.
    pub queued: Option<u128>,
}

/// What `run` (without `--force`) would do with the lock `insp` saw, and its
/// verdict: the answer of `status`, `status --json` and `status --quiet`.
pub fn decide(insp: &Inspection) -> Decision {
    decide_as(insp, Asker::default())
}

/// The rules, in order: the first that applies decides.
pub fn decide_as(insp: &Inspection, asker: Asker) -> Decision {
    let rules: [fn(&Inspection, Asker) -> Option<Decision>; 12] = [
        obstructed,
        run_file_squatted,
        frozen,
        run_still_running,
        record_of_another_environment,
        free,
        holder_alive,
        unknown_holder_young,
        leftover_of_dead_etcd_run,
        young_without_force,
        foreign_contents,
        not_removable,
    ];
    let decision = rules
        .iter()
        .find_map(|rule| rule(insp, asker))
        .unwrap_or(Decision {
            verdict: base(insp),
            run: RunChoice::TakeOver,
        });
    if decision.takes() {
        return waiters_ahead(insp, asker).unwrap_or(decision);
    }
    decision
}

/// Issue 22: waiters are served in arrival order. A lock free to take is
/// still refused while live waiters are in line ahead of the asker: a run
/// without `--wait` would jump the queue (refused, naming it; with `--wait`
/// it joins the end), and a waiter behind others lets the first go first.
/// Even `--force` waits its turn: it overrides a dead holder, not the line.
fn waiters_ahead(insp: &Inspection, asker: Asker) -> Option<Decision> {
    let ahead = insp
        .waiters
        .iter()
        .filter(|w| asker.queued.is_none_or(|mine| w.order < mine))
        .count();
    (ahead > 0)
        .then_some(())
        .and(refuse(Verdict::Queued, BusyReason::Queued { ahead }))
}

/// The store's own classification of the lock (directory, holder, age),
/// which the rules refine. A verdict only the rules give is read back as
/// the store's, so that deciding twice gives the same answer.
fn base(insp: &Inspection) -> Verdict {
    match insp.verdict {
        Verdict::ReleasedRunning | Verdict::Queued => Verdict::Free,
        Verdict::Blocked => Verdict::Stale,
        Verdict::Frozen => Verdict::Held,
        v => v,
    }
}

fn refuse(verdict: Verdict, reason: BusyReason) -> Option<Decision> {
    Some(Decision {
        verdict,
        run: RunChoice::Refuse(reason),
    })
}

/// Something that is not a directory sits at the lock path: never touched.
fn obstructed(insp: &Inspection, _: Asker) -> Option<Decision> {
    matches!(insp.path_kind, PathKind::Symlink | PathKind::Other)
        .then_some(())
        .and(refuse(Verdict::Obstructed, BusyReason::Obstructed))
}

/// Another deploy-lock run holds the whole-run kernel lock: its command
/// still runs, even when its lock directory was force-unlocked meanwhile
/// (then the verdict is `released_running`: no directory, yet nothing
/// starts until that command ends). A run that has not recorded a lock id
/// yet is taking the lock this very moment: `held`.
fn run_still_running(insp: &Inspection, asker: Asker) -> Option<Decision> {
    let run = insp.run_holder.as_ref().filter(|_| !asker.holds_run_lock)?;
    let verdict = match base(insp) {
        Verdict::Free | Verdict::Stale if run.lock_id.is_some() => Verdict::ReleasedRunning,
        Verdict::Free | Verdict::Stale => Verdict::Held,
        v => v,
    };
    refuse(verdict, BusyReason::RunHeld)
}

/// Issue 22: a freeze (`deploy-lock freeze`) whose holder is alive (here:
/// its process runs; on etcd: its lease) refuses every run, `--force` or
/// not, and says `frozen`. A freeze whose holder died is no freeze: the
/// rules below treat it as any dead holder's lock.
fn frozen(insp: &Inspection, _: Asker) -> Option<Decision> {
    let live = match insp.liveness {
        Liveness::Alive { .. } => true,
        Liveness::OtherHost => !insp.stale,
        Liveness::Dead | Liveness::NoRecord => false,
    };
    (insp.lock_dir_exists() && live && insp.holder.as_ref()?.freeze.is_some())
        .then_some(())
        .and(refuse(Verdict::Frozen, BusyReason::HolderAlive))
}

/// Issue 19: the run file is flocked by a process that is not a deploy-lock
/// run (another user's squatter): no run can start until it lets go, and
/// the lock is `blocked`, never `free`.
fn run_file_squatted(insp: &Inspection, asker: Asker) -> Option<Decision> {
    if asker.holds_run_lock {
        return None;
    }
    super::run_file_squatted(insp)?;
    refuse(Verdict::Blocked, BusyReason::RunHeld)
}

/// Issue 18: one checkout records one lock at a time. With no lock directory
/// of its own, an environment whose checkout's state record belongs to
/// another environment's live lock is `blocked` until that one is released.
/// Only the outside look decides it here: `run` meets the same rule when it
/// writes the record (`LockError::OtherEnvironment`, with its own refusal).
fn record_of_another_environment(insp: &Inspection, asker: Asker) -> Option<Decision> {
    if asker.holds_run_lock || insp.path_kind != PathKind::Missing {
        return None;
    }
    super::record_held_by_other_environment(insp)
        .then_some(())
        .and(refuse(Verdict::Blocked, BusyReason::NotStale))
}

/// Issue 17: a dead etcd run's own leftover lock directory on this machine
/// is taken over at any age once its etcd lease is gone (the key was free
/// when this inspection read it); until then the key keeps everyone out.
fn leftover_of_dead_etcd_run(insp: &Inspection, _: Asker) -> Option<Decision> {
    let etcd_free = insp
        .network
        .as_ref()
        .is_some_and(|n| n.fencing_token.is_none());
    (etcd_free && super::leftover_of_dead_etcd_run(insp)).then_some(Decision {
        verdict: Verdict::Stale,
        run: RunChoice::TakeOver,
    })
}

fn free(insp: &Inspection, _: Asker) -> Option<Decision> {
    (insp.path_kind == PathKind::Missing).then_some(Decision {
        verdict: Verdict::Free,
        run: RunChoice::Take,
    })
}

/// A running holder's lock is never taken, whatever its age or `--force`.
fn holder_alive(insp: &Inspection, _: Asker) -> Option<Decision> {
    matches!(insp.liveness, Liveness::Alive { .. })
        .then_some(())
        .and(refuse(Verdict::Held, BusyReason::HolderAlive))
}

/// No record names the holder (a legacy deploy between its mkdir and its
/// state write may be alive): only the stale timeout frees it, never --force.
fn unknown_holder_young(insp: &Inspection, _: Asker) -> Option<Decision> {
    (insp.liveness == Liveness::NoRecord && insp.holder.is_none() && !insp.stale)
        .then_some(())
        .and(refuse(base(insp), not_stale(insp)))
}

/// A holder not running (or not checkable) whose lock is younger than the
/// stale timeout: waited for, unless `run --force`.
fn young_without_force(insp: &Inspection, asker: Asker) -> Option<Decision> {
    (!(insp.stale || asker.force))
        .then_some(())
        .and(refuse(base(insp), not_stale(insp)))
}

/// A young lock's reason: squatted when nobody is recorded as holding it and
/// it is another user's this one may not remove.
fn not_stale(insp: &Inspection) -> BusyReason {
    match super::squatter(insp) {
        Some(owner_uid) => BusyReason::Squatted { owner_uid },
        None => BusyReason::NotStale,
    }
}

/// Taking it over would delete files neither deploy-lock nor the legacy put
/// there: refused, the lock `blocked` until someone looks.
fn foreign_contents(insp: &Inspection, _: Asker) -> Option<Decision> {
    insp.dir
        .as_ref()
        .is_some_and(|d| d.entries.iter().any(|e| !is_ours(e)))
        .then_some(())
        .and(refuse(blocked(insp), BusyReason::ForeignContents))
}

/// Another user's directory in a folder that lets only owners remove
/// entries (sticky, like /tmp): this user cannot take it over.
fn not_removable(insp: &Inspection, _: Asker) -> Option<Decision> {
    if insp.path_kind != PathKind::Directory || insp.network.is_some() {
        return None;
    }
    let me = nix::unistd::geteuid();
    let owner = std::fs::symlink_metadata(&insp.lock_dir).ok()?.uid();
    let sticky = insp
        .lock_dir
        .parent()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| m.mode() & 0o1000 != 0);
    (!me.is_root() && owner != me.as_raw() && sticky)
        .then_some(())
        .and(refuse(
            blocked(insp),
            BusyReason::NotRemovable { owner_uid: owner },
        ))
}

/// A stale lock run cannot take over is `blocked`; with --force on a young
/// one, the store's verdict stays.
fn blocked(insp: &Inspection) -> Verdict {
    match base(insp) {
        Verdict::Stale => Verdict::Blocked,
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::Environment;
    use crate::fsops::DirSnapshot;
    use crate::lock::runlock::RunHolder;
    use crate::status::{Holder, HolderSource, verdict};
    use crate::view::{DirView, LegacyView};

    /// A look at a lock in a folder that does not exist (so the removal
    /// rule sees no sticky parent): `entries` inside a directory, or none.
    fn look(kind: PathKind, liveness: Liveness, recorded: bool, stale: bool) -> Inspection {
        let holder = recorded.then(|| Holder {
            source: HolderSource::StateFile,
            lock_id: Some("lock_a".into()),
            deployment_id: None,
            locked_by: None,
            locked_at: None,
            pid: Some(1),
            hostname: None,
            reason: None,
            freeze: None,
            processes: Vec::new(),
        });
        Inspection {
            environment: Environment::Staging,
            view: LegacyView {
                dir: DirView::Missing { blocked_by: None },
                obstruction: None,
                record: None,
                no_checkout: None,
                stale_after_secs: 1800,
            },
            lock_dir: "/nonexistent-deploy-lock-decision/x.lock".into(),
            dir: (kind == PathKind::Directory).then(|| DirSnapshot {
                identity: None,
                mtime: 0,
                entries: vec!["locked_at".into()],
                uid: 0,
                disowned_record_uid: None,
            }),
            verdict: verdict(&kind, &liveness, recorded, stale),
            path_kind: kind,
            locked_at_file: None,
            owner: None,
            state_file: "/nonexistent-deploy-lock-decision/state.json".into(),
            state: None,
            holder,
            liveness,
            age_seconds: Some(60),
            now: jiff::Timestamp::UNIX_EPOCH,
            stale,
            run_holder: None,
            network: None,
            other_environment: None,
            migration: None,
            waiters: Vec::new(),
        }
    }

    fn alive() -> Liveness {
        Liveness::Alive {
            pid: 1,
            comm: "deploy.sh".into(),
        }
    }

    fn run_holder() -> Option<RunHolder> {
        Some(RunHolder {
            pid: 2,
            lock_id: Some("lock_a".into()),
            command: Some(3),
        })
    }

    #[test]
    fn free_and_stale_are_exactly_what_run_takes() {
        let free = decide(&look(PathKind::Missing, Liveness::NoRecord, false, false));
        assert_eq!((free.verdict, free.run), (Verdict::Free, RunChoice::Take));
        let stale = decide(&look(PathKind::Directory, Liveness::Dead, true, true));
        assert_eq!(
            (stale.verdict, stale.run),
            (Verdict::Stale, RunChoice::TakeOver)
        );
        let held = decide(&look(PathKind::Directory, alive(), true, true));
        assert_eq!(
            (held.verdict, held.run),
            (Verdict::Held, RunChoice::Refuse(BusyReason::HolderAlive))
        );
        let orphan = look(PathKind::Directory, Liveness::Dead, true, false);
        assert_eq!(decide(&orphan).run, RunChoice::Refuse(BusyReason::NotStale));
        let forced = Asker {
            force: true,
            holds_run_lock: true,
            queued: None,
        };
        assert_eq!(decide_as(&orphan, forced).run, RunChoice::TakeOver);
        // An unknown holder: never by force.
        let unknown = look(PathKind::Directory, Liveness::NoRecord, false, false);
        assert_eq!(decide(&unknown).verdict, Verdict::Unknown);
        assert!(!decide_as(&unknown, forced).takes());
        let obstructed = decide(&look(PathKind::Symlink, Liveness::NoRecord, false, true));
        assert_eq!(obstructed.verdict, Verdict::Obstructed);
        assert!(!obstructed.takes());
    }

    /// The run lock outranks the directory: a force-unlocked run still
    /// running is `released_running`; a live holder's lock stays `held`.
    #[test]
    fn a_running_run_refuses_whatever_the_directory_says() {
        let mut gone = look(PathKind::Missing, Liveness::NoRecord, false, false);
        gone.run_holder = run_holder();
        let d = decide(&gone);
        assert_eq!(
            (d.verdict, d.run),
            (
                Verdict::ReleasedRunning,
                RunChoice::Refuse(BusyReason::RunHeld)
            )
        );
        // Deciding again on the decided look gives the same answer.
        gone.verdict = d.verdict;
        assert_eq!(decide(&gone), d);
        let mut stale = look(PathKind::Directory, Liveness::Dead, true, true);
        stale.run_holder = run_holder();
        assert_eq!(decide(&stale).verdict, Verdict::ReleasedRunning);
        let mut held = look(PathKind::Directory, alive(), true, false);
        held.run_holder = run_holder();
        assert_eq!(decide(&held).verdict, Verdict::Held);
        // A run still taking the lock (no lock id recorded yet): held.
        let mut taking = look(PathKind::Missing, Liveness::NoRecord, false, false);
        taking.run_holder = Some(RunHolder {
            pid: 2,
            lock_id: None,
            command: None,
        });
        let d = decide(&taking);
        assert_eq!(
            (d.verdict, d.run),
            (Verdict::Held, RunChoice::Refuse(BusyReason::RunHeld))
        );
        // The run itself, holding the run lock, is not kept out by it.
        let mine = Asker {
            force: false,
            holds_run_lock: true,
            queued: None,
        };
        assert_eq!(decide_as(&gone, mine).run, RunChoice::Take);
    }

    /// A live freeze refuses every run, `--force` too, above the run lock
    /// it holds; a dead one is any dead holder's lock.
    #[test]
    fn a_live_freeze_is_frozen_and_a_dead_one_is_not() {
        let mut l = look(PathKind::Directory, alive(), true, true);
        l.holder.as_mut().unwrap().freeze = Some(crate::status::Freeze::default());
        l.run_holder = run_holder();
        let d = decide(&l);
        assert_eq!(
            (d.verdict, d.run),
            (Verdict::Frozen, RunChoice::Refuse(BusyReason::HolderAlive))
        );
        let forced = Asker {
            force: true,
            holds_run_lock: true,
            queued: None,
        };
        assert!(!decide_as(&l, forced).takes());
        l.verdict = d.verdict;
        assert_eq!(decide(&l), d);
        // Its holder gone: stale, taken over as any.
        let mut dead = look(PathKind::Directory, Liveness::Dead, true, true);
        dead.holder.as_mut().unwrap().freeze = Some(crate::status::Freeze::default());
        assert_eq!(decide(&dead).verdict, Verdict::Stale);
        // Force-unlocked (no directory): not frozen.
        let mut gone = look(PathKind::Missing, Liveness::NoRecord, false, false);
        gone.holder = l.holder.clone();
        assert_ne!(decide(&gone).verdict, Verdict::Frozen);
    }

    /// Issue 22: a lock free to take is the first waiter's. Outside askers
    /// (status, a run without --wait) and waiters behind others are
    /// refused; the first waiter takes it; a held lock stays `held`.
    #[test]
    fn waiters_in_line_come_first() {
        let waiter = |order| crate::status::Waiter {
            user: "a".into(),
            host: "h".into(),
            pid: 1,
            reason: None,
            since: String::new(),
            order,
        };
        let mut free = look(PathKind::Missing, Liveness::NoRecord, false, false);
        free.waiters = vec![waiter(10), waiter(20)];
        let d = decide(&free);
        assert_eq!(
            (d.verdict, d.run),
            (
                Verdict::Queued,
                RunChoice::Refuse(BusyReason::Queued { ahead: 2 })
            )
        );
        free.verdict = d.verdict;
        assert_eq!(decide(&free), d);
        let as_waiter = |order| Asker {
            force: false,
            holds_run_lock: true,
            queued: Some(order),
        };
        assert_eq!(decide_as(&free, as_waiter(10)).run, RunChoice::Take);
        assert_eq!(
            decide_as(&free, as_waiter(20)).run,
            RunChoice::Refuse(BusyReason::Queued { ahead: 1 })
        );
        let mut stale = look(PathKind::Directory, Liveness::Dead, true, true);
        stale.waiters = vec![waiter(10)];
        assert_eq!(decide(&stale).verdict, Verdict::Queued);
        assert_eq!(decide_as(&stale, as_waiter(10)).run, RunChoice::TakeOver);
        let mut held = look(PathKind::Directory, alive(), true, false);
        held.waiters = vec![waiter(10)];
        assert_eq!(decide(&held).verdict, Verdict::Held);
    }

    #[test]
    fn a_stale_lock_with_foreign_files_is_blocked() {
        let mut l = look(PathKind::Directory, Liveness::Dead, true, true);
        l.dir.as_mut().unwrap().entries.push("notes.txt".into());
        let d = decide(&l);
        assert_eq!(
            (d.verdict, d.run),
            (
                Verdict::Blocked,
                RunChoice::Refuse(BusyReason::ForeignContents)
            )
        );
        l.verdict = d.verdict;
        assert_eq!(decide(&l), d);
    }
}
