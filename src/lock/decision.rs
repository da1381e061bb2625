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
}

/// What `run` (without `--force`) would do with the lock `insp` saw, and its
/// verdict: the answer of `status`, `status --json` and `status --quiet`.
pub fn decide(insp: &Inspection) -> Decision {
    decide_as(insp, Asker::default())
}

/// The rules, in order: the first that applies decides.
pub fn decide_as(insp: &Inspection, asker: Asker) -> Decision {
    let rules: [fn(&Inspection, Asker) -> Option<Decision>; 8] = [
        obstructed,
        run_still_running,
        free,
        holder_alive,
        unknown_holder_young,
        young_without_force,
        foreign_contents,
        not_removable,
    ];
    rules
        .iter()
        .find_map(|rule| rule(insp, asker))
        .unwrap_or(Decision {
            verdict: base(insp),
            run: RunChoice::TakeOver,
        })
}

/// The store's own classification of the lock (directory, holder, age),
/// which the rules refine. A verdict only the rules give is read back as
/// the store's, so that deciding twice gives the same answer.
fn base(insp: &Inspection) -> Verdict {
    match insp.verdict {
        Verdict::ReleasedRunning => Verdict::Free,
        Verdict::Blocked => Verdict::Stale,
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
/// starts until that command ends).
fn run_still_running(insp: &Inspection, asker: Asker) -> Option<Decision> {
    if asker.holds_run_lock || insp.run_holder.is_none() {
        return None;
    }
    let verdict = match base(insp) {
        Verdict::Free | Verdict::Stale => Verdict::ReleasedRunning,
        v => v,
    };
    refuse(verdict, BusyReason::RunHeld)
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
