//! What `run` does to its command once the lock is lost, as a pure policy the
//! supervisor's poll loop consults: SIGTERM once at the loss, SIGKILL once
//! after `DEPLOY_LOCK_LOST_GRACE` (never with 0), or only a warning with
//! `DEPLOY_LOCK_ON_LOST=warn`. Consul lock's answer, which etcd users asked
//! for (etcd PR #7983); `etcdctl lock` does nothing and lets the command run.

use std::time::{Duration, Instant};

use super::settings::OnLost;

/// One thing to do to the command's process group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Term,
    Kill,
}

/// The escalation for one run.
#[derive(Clone, Debug)]
pub struct LossResponse {
    on_lost: OnLost,
    grace: Option<Duration>,
    kill_at: Option<Instant>,
    lost: bool,
}

impl LossResponse {
    /// `grace` None: never SIGKILL.
    pub fn new(on_lost: OnLost, grace: Option<Duration>) -> LossResponse {
        LossResponse {
            on_lost,
            grace,
            kill_at: None,
            lost: false,
        }
    }

    /// The loss was seen at `now`: what to do at once (nothing after the
    /// first call, nothing with `warn`).
    pub fn lost(&mut self, now: Instant) -> Option<Step> {
        if std::mem::replace(&mut self.lost, true) || self.on_lost == OnLost::Warn {
            return None;
        }
        // Settings bound the grace; an Instant that cannot hold it anyway
        // (a far-future grace) means never, not a panic.
        self.kill_at = self.grace.and_then(|g| now.checked_add(g));
        Some(Step::Term)
    }

    /// When the supervisor must wake for this policy, if ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.kill_at
    }

    /// The deadline may have passed: SIGKILL once when it has.
    pub fn due(&mut self, now: Instant) -> Option<Step> {
        match self.kill_at {
            Some(t) if now >= t => {
                self.kill_at = None;
                Some(Step::Kill)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn term_once_then_kill_once_after_the_grace() {
        let t0 = Instant::now();
        let mut r = LossResponse::new(OnLost::Term, Some(Duration::from_secs(30)));
        assert_eq!(r.deadline(), None);
        assert_eq!(r.due(t0), None);
        assert_eq!(r.lost(t0), Some(Step::Term));
        assert_eq!(r.lost(t0 + Duration::from_secs(1)), None, "once");
        assert_eq!(r.deadline(), Some(t0 + Duration::from_secs(30)));
        assert_eq!(r.due(t0 + Duration::from_secs(29)), None);
        assert_eq!(r.due(t0 + Duration::from_secs(30)), Some(Step::Kill));
        assert_eq!(r.due(t0 + Duration::from_secs(31)), None, "once");
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn grace_zero_never_kills_and_warn_does_nothing() {
        let t0 = Instant::now();
        let mut r = LossResponse::new(OnLost::Term, None);
        assert_eq!(r.lost(t0), Some(Step::Term));
        assert_eq!(r.deadline(), None);
        assert_eq!(r.due(t0 + Duration::from_secs(3600)), None);
        let mut w = LossResponse::new(OnLost::Warn, Some(Duration::from_secs(1)));
        assert_eq!(w.lost(t0), None);
        assert_eq!(w.deadline(), None);
        assert_eq!(w.due(t0 + Duration::from_secs(2)), None);
    }
}
