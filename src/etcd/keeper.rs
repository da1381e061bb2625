//! Keeps a held etcd lock's lease alive and notices when the lock is lost:
//! one thread renews the lease every TTL/3, one watches the key.
//!
//! Loss causes: the lease is gone (keepalive answered without a TTL), the key
//! was deleted (a forced unlock revokes the lease) or re-created by someone
//! else, or no keepalive was acknowledged within the TTL (etcd unreachable,
//! or this process was paused). The first cause found is reported once
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
    /// No keepalive was acknowledged for a whole TTL: etcd unreachable, or
    /// this process did not run (stopped, suspended) for that long.
    NoKeepaliveAck { since: Duration },
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
            LossCause::NoKeepaliveAck { since } => write!(
                f,
                "no lease renewal acknowledged for {:.1} s (etcd unreachable or this process \
                 was stopped)",
                since.as_secs_f64()
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

impl Keeper {
    /// Fails only when a thread cannot be started.
    pub(crate) fn start(spec: KeeperSpec, signal: LossSignal) -> std::io::Result<Keeper> {
        let state = Arc::new(KeeperState {
            control: Mutex::new(Control::default()),
            cv: Condvar::new(),
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
    let mut last_ack = spec.granted_at;
    let mut next_renewal = last_ack + interval;
    loop {
        let wait = next_renewal.saturating_sub(boottime()).min(SLICE);
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
        let since = now.saturating_sub(last_ack);
        if since >= spec.ttl {
            signal.report(LossCause::NoKeepaliveAck { since });
            return;
        }
        if now < next_renewal && !now_requested {
            continue;
        }
        let sent_at = now;
        // At most a second a try: a call caught in a suspend would otherwise
        // wait out its monotonic timeout after the resume.
        let timeout = (spec.ttl - since).clamp(Duration::from_millis(50), Duration::from_secs(1));
        match spec.client.lease_keepalive(spec.lease, timeout) {
            Ok(Some(_)) => {
                // Renewed no earlier than we asked: the lease lives until
                // sent_at + TTL at least.
                last_ack = sent_at;
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

fn watch_loop(spec: &KeeperSpec, state: &KeeperState, signal: &LossSignal) {
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
