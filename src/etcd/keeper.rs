//! Keeps a held etcd lock's lease alive and notices when the lock is lost:
//! one thread renews the lease every TTL/3, one watches the key.
//!
//! Loss causes: the lease is gone (keepalive answered without a TTL), the key
//! was deleted (a forced unlock revokes the lease) or re-created by someone
//! else, or the local lease deadline came (see [`stop_margin`]) before a
//! keepalive was acknowledged (etcd unreachable, or this process was paused). The first cause found is reported once
//! through a [`LossSignal`], which the supervisor can poll, wait on, or
//! select on as a file descriptor.

use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{Client, EventKind, WatchNext};

/// Why a held lock is no longer ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LossCause {
    /// A keepalive found the lease gone: it expired or was revoked.
    LeaseGone,
    /// The key was deleted (a forced unlock, its lease expiring, or by hand).
    KeyDeleted { revision: i64 },
    /// The key now belongs to another holder (another create revision).
    KeyReplaced { token: i64, revision: i64 },
    /// No keepalive was acknowledged in time: the lease could expire on the
    /// server within the stop margin (etcd unreachable, or this process did
    /// not run, stopped or suspended, for that long). `since` is the time
    /// since the last acknowledged renewal was sent, `ttl` the lease's.
    NoKeepaliveAck { since: Duration, ttl: Duration },
}

impl fmt::Display for LossCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LossCause::LeaseGone => f.write_str("the lock's lease expired or was revoked"),
            LossCause::KeyDeleted { revision } => {
                write!(f, "the lock's key was deleted (revision {revision})")
            }
            LossCause::KeyReplaced { token, revision } => write!(
                f,
                "another holder took the lock (fencing token {token}, revision {revision})"
            ),
            LossCause::NoKeepaliveAck { since, ttl } => write!(
                f,
                "no lease renewal acknowledged for {:.1} s of its {} s TTL (etcd unreachable \
                 or this process was stopped)",
                since.as_secs_f64(),
                ttl.as_secs()
            ),
        }
    }
}

/// Reported at most once; readable as a value, a wait, or an fd.
#[derive(Clone)]
pub struct LossSignal {
    inner: Arc<SignalInner>,
}

struct SignalInner {
    cause: Mutex<Option<LossCause>>,
    cv: Condvar,
    read: OwnedFd,
    write: OwnedFd,
}

impl LossSignal {
    pub(crate) fn new() -> std::io::Result<LossSignal> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)?;
        Ok(LossSignal {
            inner: Arc::new(SignalInner {
                cause: Mutex::new(None),
                cv: Condvar::new(),
                read,
                write,
            }),
        })
    }

    /// The cause, once the lock is lost.
    pub fn lost(&self) -> Option<LossCause> {
        self.inner.cause.lock().unwrap().clone()
    }

    /// Waits up to `timeout` for a loss.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<LossCause> {
        let guard = self.inner.cause.lock().unwrap();
        let (guard, _) = self
            .inner
            .cv
            .wait_timeout_while(guard, timeout, |c| c.is_none())
            .unwrap();
        guard.clone()
    }

    /// Becomes readable (and stays so) when the lock is lost: for a
    /// supervisor's poll loop beside its signalfd. Never read it.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.inner.read.as_fd()
    }

    /// The first report wins; later ones are dropped.
    pub(crate) fn report(&self, cause: LossCause) -> bool {
        let mut c = self.inner.cause.lock().unwrap();
        if c.is_some() {
            return false;
        }
        *c = Some(cause);
        self.inner.cv.notify_all();
        if let Ok(fd) = self.inner.write.try_clone() {
            let _ = std::fs::File::from(fd).write(&[1]);
        }
        true
    }
}

/// Shared between the lock and its two threads.
pub(crate) struct KeeperState {
    control: Mutex<Control>,
    cv: Condvar,
    /// The lease as the holder must assume it on the boot clock.
    lease: Mutex<LocalLease>,
}

/// The local lease deadline: the earliest moment etcd could expire the
/// lease is the send time of the last acknowledged renewal (or of the
/// grant) plus the TTL; etcd only ever starts the TTL later than that (when
/// the request arrives; a leader change restarts it). The command is stopped
/// `margin` before it, so it is always stopped before anyone else can be
/// granted the lock, as long as this machine's clock runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LocalLease {
    /// When the last acknowledged renewal (or the grant) was sent.
    pub sent_at: Duration,
    /// `sent_at` + TTL.
    pub expires_at: Duration,
    pub margin: Duration,
}

impl LocalLease {
    /// When the command must be stopped.
    pub(crate) fn stop_at(&self) -> Duration {
        self.expires_at.saturating_sub(self.margin)
    }

    /// The loss to report at boot-clock time `now`, if the deadline came.
    pub(crate) fn judge(&self, now: Duration) -> Option<LossCause> {
        (now >= self.stop_at()).then(|| LossCause::NoKeepaliveAck {
            since: now.saturating_sub(self.sent_at),
            ttl: self.expires_at.saturating_sub(self.sent_at),
        })
    }
}

/// How long before the earliest server-side expiry the holder stops its
/// command: a quarter of the TTL, between 250 ms and 2 s. It covers what
/// lies between the deadline and the SIGTERM landing: the keeper thread
/// and the supervisor being scheduled, the pipe between them, the poll, and
/// a slow write (the stderr line and the audit line are written after the
/// signal, but a loaded machine may hold any of these steps up: at a load
/// of 9 on 2 cores, an eighth of a 2 s TTL, 250 ms, was once 92 ms short).
pub fn stop_margin(ttl: Duration) -> Duration {
    (ttl / 4).clamp(Duration::from_millis(250), Duration::from_secs(2))
}

#[derive(Default)]
struct Control {
    /// The keepalive thread ends (release, or a test simulating a pause).
    stop_keepalive: bool,
    /// Both threads end; a deletion is then our own release, not a loss.
    released: bool,
    /// Renew (and so re-check) now: after SIGCONT.
    check_now: bool,
}

impl KeeperState {
    fn stopped(&self) -> bool {
        self.control.lock().unwrap().released
    }
}

/// The running keeper of one held lock.
pub(crate) struct Keeper {
    state: Arc<KeeperState>,
    keepalive: Option<thread::JoinHandle<()>>,
}

pub(crate) struct KeeperSpec {
    pub client: Client,
    pub key: Vec<u8>,
    pub lease: i64,
    pub token: i64,
    pub ttl: Duration,
    /// When the lease was asked for, on the boot clock ([`boottime`]): the
    /// TTL counts from here.
    pub granted_at: Duration,
}

impl KeeperSpec {
    fn first_lease(&self) -> LocalLease {
        LocalLease {
            sent_at: self.granted_at,
            expires_at: self.granted_at + self.ttl,
            margin: stop_margin(self.ttl),
        }
    }
}

impl Keeper {
    /// Fails only when a thread cannot be started.
    pub(crate) fn start(spec: KeeperSpec, signal: LossSignal) -> std::io::Result<Keeper> {
        let state = Arc::new(KeeperState {
            control: Mutex::new(Control::default()),
            cv: Condvar::new(),
            lease: Mutex::new(spec.first_lease()),
        });
        let spec = Arc::new(spec);
        let keepalive = {
            let (spec, state, signal) = (spec.clone(), state.clone(), signal.clone());
            thread::Builder::new()
                .name("etcd-keepalive".into())
                .spawn(move || keepalive_loop(&spec, &state, &signal))?
        };
        let mut keeper = Keeper {
            state: state.clone(),
            keepalive: Some(keepalive),
        };
        // Not joined: it may sit in a watch read; `released` ends it.
        if let Err(e) = thread::Builder::new()
            .name("etcd-watch".into())
            .spawn(move || watch_loop(&spec, &state, &signal))
        {
            keeper.shut_down();
            return Err(e);
        }
        Ok(keeper)
    }

    /// Stops renewing the lease without releasing: the lock then expires
    /// within the TTL, as for a paused or partitioned holder. Returns once
    /// the keepalive thread has ended (no renewal after this).
    pub(crate) fn stop_keepalive(&mut self) {
        self.state.control.lock().unwrap().stop_keepalive = true;
        self.state.cv.notify_all();
        if let Some(h) = self.keepalive.take() {
            let _ = h.join();
        }
    }

    /// The local lease deadline as it stands.
    pub(crate) fn lease(&self) -> LocalLease {
        *self.state.lease.lock().unwrap()
    }

    pub(crate) fn check_now(&self) {
        self.state.control.lock().unwrap().check_now = true;
        self.state.cv.notify_all();
    }

    /// Before our own release: what follows is not a loss. Not joined: a
    /// renewal in flight against a silent etcd must not hold up the release.
    pub(crate) fn shut_down(&mut self) {
        let mut c = self.state.control.lock().unwrap();
        c.released = true;
        c.stop_keepalive = true;
        self.state.cv.notify_all();
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// A failed keepalive is retried this often until the TTL runs out.
const RETRY: Duration = Duration::from_millis(200);

/// Time since boot, suspend included (CLOCK_BOOTTIME). `Instant` is
/// CLOCK_MONOTONIC, which stops while a laptop sleeps: a holder resumed
/// after a suspend longer than its TTL must not believe its lease alive.
pub(crate) fn boottime() -> Duration {
    use nix::time::{ClockId, clock_gettime};
    match clock_gettime(ClockId::CLOCK_BOOTTIME) {
        Ok(t) => Duration::new(t.tv_sec() as u64, t.tv_nsec() as u32),
        Err(_) => {
            // No such clock: monotonic time from the first call on.
            static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            START.get_or_init(Instant::now).elapsed()
        }
    }
}

/// The keepalive thread looks at the boot clock at least this often, so a
/// resume from suspend (which no signal announces) is noticed quickly.
const SLICE: Duration = Duration::from_millis(250);

fn keepalive_loop(spec: &KeeperSpec, state: &KeeperState, signal: &LossSignal) {
    let interval = spec.ttl / 3;
    let mut next_renewal = spec.granted_at + interval;
    loop {
        let lease = *state.lease.lock().unwrap();
        let now = boottime();
        let wait = next_renewal
            .min(lease.stop_at())
            .saturating_sub(now)
            .min(SLICE);
        let now_requested = {
            let guard = state.control.lock().unwrap();
            let (mut c, _) = state
                .cv
                .wait_timeout_while(guard, wait, |c| {
                    !c.stop_keepalive && !c.released && !c.check_now
                })
                .unwrap();
            if c.stop_keepalive || c.released {
                return;
            }
            std::mem::take(&mut c.check_now)
        };
        // Judged before asking: a process resumed after a long stop or
        // suspend must not trust a renewal of a lease that may already
        // have changed hands.
        let now = boottime();
        if let Some(cause) = lease.judge(now) {
            signal.report(cause);
            return;
        }
        if now < next_renewal && !now_requested {
            continue;
        }
        let sent_at = now;
        // Not past the deadline: an answer after it changes nothing. Each
        // endpoint gets the client's attempt budget within this.
        let timeout = lease
            .stop_at()
            .saturating_sub(now)
            .max(Duration::from_millis(50));
        match spec.client.lease_keepalive(spec.lease, timeout) {
            Ok(Some(granted)) => {
                // Renewed no earlier than we asked: the lease lives until
                // sent_at + TTL at least.
                let ttl = spec.ttl.min(Duration::from_secs(granted.max(1) as u64));
                *state.lease.lock().unwrap() = LocalLease {
                    sent_at,
                    expires_at: sent_at + ttl,
                    margin: lease.margin,
                };
                next_renewal = sent_at + interval;
            }
            Ok(None) => {
                if !state.stopped() {
                    signal.report(LossCause::LeaseGone);
                }
                return;
            }
            Err(_) => next_renewal = boottime() + RETRY,
        }
    }
}

/// How long one watch request stays open before it is renewed.
const WATCH_WINDOW: Duration = Duration::from_secs(10);

/// How long after the grant the key's watch starts. A short command (a
/// hook, `true`) is done by then and costs no watch request, no second
/// connection and no watcher on the server; a change in between is not
/// missed, since the watch replays every event after our create revision
/// (and the keepalive, not the watch, guards the lease deadline).
const WATCH_AFTER: Duration = Duration::from_millis(100);

fn watch_loop(spec: &KeeperSpec, state: &KeeperState, signal: &LossSignal) {
    {
        let guard = state.control.lock().unwrap();
        let (c, _) = state
            .cv
            .wait_timeout_while(guard, WATCH_AFTER, |c| !c.released)
            .unwrap();
        if c.released {
            return;
        }
    }
    let mut from = spec.token + 1;
    while !state.stopped() && signal.lost().is_none() {
        let mut w = match spec
            .client
            .watch(&spec.key, from, Instant::now() + WATCH_WINDOW)
        {
            Ok(w) => w,
            Err(_) => {
                // Connectivity is the keepalive's to judge; try again soon.
                thread::sleep(RETRY);
                continue;
            }
        };
        loop {
            match w.next_answer() {
                Ok(WatchNext::Events { events, .. }) => {
                    if state.stopped() {
                        return;
                    }
                    for e in events {
                        from = from.max(e.kv.mod_revision + 1);
                        let cause = match e.kind {
                            EventKind::Delete => LossCause::KeyDeleted {
                                revision: e.kv.mod_revision,
                            },
                            EventKind::Put if e.kv.create_revision != spec.token => {
                                LossCause::KeyReplaced {
                                    token: e.kv.create_revision,
                                    revision: e.kv.mod_revision,
                                }
                            }
                            EventKind::Put => continue,
                        };
                        signal.report(cause);
                        return;
                    }
                }
                Ok(WatchNext::TimedOut) | Err(_) => break,
                Ok(WatchNext::Cancelled { .. }) => {
                    // Compacted past `from`: look at the key itself instead.
                    match spec.client.get(&spec.key, spec.client.call_timeout()) {
                        Ok(r) => match r.kv {
                            _ if state.stopped() => return,
                            None => {
                                signal.report(LossCause::KeyDeleted {
                                    revision: r.revision,
                                });
                                return;
                            }
                            Some(kv) if kv.create_revision != spec.token => {
                                signal.report(LossCause::KeyReplaced {
                                    token: kv.create_revision,
                                    revision: kv.mod_revision,
                                });
                                return;
                            }
                            Some(_) => from = r.revision + 1,
                        },
                        Err(_) => thread::sleep(RETRY),
                    }
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn the_command_is_stopped_a_margin_before_the_earliest_expiry() {
        let sent = Duration::from_secs(100);
        let lease = LocalLease {
            sent_at: sent,
            expires_at: sent + Duration::from_secs(2),
            margin: stop_margin(Duration::from_secs(2)),
        };
        assert_eq!(lease.margin, MS(500));
        assert_eq!(lease.stop_at(), sent + MS(1500));
        assert_eq!(lease.judge(sent + MS(1499)), None);
        assert_eq!(
            lease.judge(sent + MS(1500)),
            Some(LossCause::NoKeepaliveAck {
                since: MS(1500),
                ttl: Duration::from_secs(2)
            })
        );
        assert_eq!(
            lease.judge(sent + MS(1500)).unwrap().to_string(),
            "no lease renewal acknowledged for 1.5 s of its 2 s TTL (etcd unreachable or this \
             process was stopped)"
        );
        assert_eq!(stop_margin(Duration::from_secs(1)), MS(250));
        assert_eq!(stop_margin(Duration::from_secs(30)), MS(2000));
        assert_eq!(stop_margin(Duration::from_secs(3600)), MS(2000));
    }

    #[test]
    fn a_renewal_round_fits_between_the_renewal_and_the_stop() {
        // A renewal sent at TTL/3 may try all three members of a cluster,
        // each for the attempt budget, and still land before the stop,
        // for every TTL the settings allow.
        for ttl in [1, 2, 3, 5, 10, 30, 60, 3600].map(Duration::from_secs) {
            let attempt = super::super::client::attempt_budget(ttl);
            let room = ttl - ttl / 3 - stop_margin(ttl);
            assert!(
                attempt * 2 < room,
                "{ttl:?}: attempt {attempt:?}, room {room:?}"
            );
        }
    }
}
