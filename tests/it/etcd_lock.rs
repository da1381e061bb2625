//! The etcd lock at library level, against a real etcd: mutual exclusion
//! between two machines, what one machine sees of the other's holder,
//! fencing tokens, loss of a paused holder, forced unlock of exactly the
//! shown lease, and prompt wake-up of a waiter.

use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deploy_lock::Environment;
use deploy_lock::etcd::{
    Acquire, Change, EtcdLock, EtcdStore, ForceUnlock, LossCause, Release, WaitOutcome,
    this_process,
};
use deploy_lock::status::OwnerRecord;

use crate::etcd_support::need_etcd;

const ENV: Environment = Environment::Staging;
/// Long enough never to expire in a test that does not mean it to.
const LONG_TTL: Duration = Duration::from_secs(30);
/// For the tests that wait for an expiry.
const SHORT_TTL: Duration = Duration::from_secs(2);

fn who(name: &str) -> OwnerRecord {
    this_process(ENV, &format!("{name}@it")).unwrap()
}

#[track_caller]
fn acquire(store: &EtcdStore, name: &str) -> EtcdLock {
    match store.try_acquire(ENV, &who(name)).unwrap() {
        Acquire::Acquired(l) => l,
        Acquire::Busy(i) => panic!("{name} expected the lock, found it held: {i:?}"),
    }
}

#[test]
fn two_machines_exclude_each_other_with_growing_tokens() {
    let etcd = need_etcd!("etcd_lock::two_machines_exclude_each_other_with_growing_tokens");
    let (a, b) = etcd.two_machines("exclusion", LONG_TTL);
    let inside = Arc::new(AtomicBool::new(false));
    let overlaps = Arc::new(AtomicUsize::new(0));
    let tokens = Arc::new(Mutex::new(Vec::new()));
    const ROUNDS: usize = 100;
    let started = Instant::now();
    let workers: Vec<_> = [("a", a), ("b", b)]
        .into_iter()
        .map(|(name, store)| {
            let (inside, overlaps, tokens) = (inside.clone(), overlaps.clone(), tokens.clone());
            std::thread::spawn(move || {
                let me = who(name);
                for _ in 0..ROUNDS {
                    let deadline = Instant::now() + Duration::from_secs(20);
                    let lock = match store
                        .acquire_wait(ENV, &me, deadline, Duration::from_secs(5), &mut |_| {})
                        .unwrap()
                    {
                        WaitOutcome::Acquired(l) => l,
                        WaitOutcome::TimedOut { last_error, .. } => {
                            panic!("{name} timed out: {last_error:?}")
                        }
                    };
                    if inside.swap(true, Ordering::SeqCst) {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                    tokens.lock().unwrap().push(lock.token());
                    std::thread::yield_now();
                    inside.store(false, Ordering::SeqCst);
                    assert_eq!(lock.release().unwrap(), Release::Released);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    eprintln!(
        "etcd: {} contended acquisitions by two machines in {:?}",
        2 * ROUNDS,
        started.elapsed()
    );
    assert_eq!(overlaps.load(Ordering::SeqCst), 0);
    let tokens = tokens.lock().unwrap();
    assert_eq!(tokens.len(), 2 * ROUNDS);
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]),
        "tokens must grow in the order the lock was held: {tokens:?}"
    );
}

#[test]
fn one_machine_sees_the_other_machines_holder() {
    let etcd = need_etcd!("etcd_lock::one_machine_sees_the_other_machines_holder");
    let (a, b) = etcd.two_machines("inspect", LONG_TTL);
    assert_eq!(b.inspect(ENV).unwrap().held, None);
    let lock = acquire(&a, "alice");
    let insp = b.inspect(ENV).unwrap();
    assert_eq!(insp.key, a.key(ENV));
    assert!(insp.key.ends_with("/v1/env/staging/lock"), "{}", insp.key);
    let held = insp.held.expect("held");
    assert_eq!(held.record.as_ref(), Some(lock.record()));
    let record = held.record.unwrap();
    assert_eq!(record.owner.environment, "staging");
    assert_eq!(record.owner.locked_by, "alice@it");
    assert_eq!(record.owner.pid, std::process::id() as i32);
    assert_eq!(record.owner.hostname, crate::harness::hostname());
    assert_eq!(record.process_name, None);
    assert_eq!(record.lease_id, lock.lease().0.to_string());
    assert_eq!(record.lease_ttl_secs, 30);
    assert_eq!((held.token, held.lease), (lock.token(), lock.lease()));
    let left = held.ttl_remaining.expect("a live lease");
    assert!(
        left <= LONG_TTL && left >= LONG_TTL - Duration::from_secs(3),
        "{left:?}"
    );
    // Busy, as the other machine's try sees it.
    match b.try_acquire(ENV, &who("bob")).unwrap() {
        Acquire::Busy(i) => assert_eq!(i.held.unwrap().token, lock.token()),
        Acquire::Acquired(_) => panic!("bob got a held lock"),
    }
    // Another environment is another key.
    assert!(matches!(
        b.try_acquire(Environment::Production, &who("bob")).unwrap(),
        Acquire::Acquired(_)
    ));
}

#[test]
fn check_is_true_only_while_the_token_holds_the_lock() {
    let etcd = need_etcd!("etcd_lock::check_is_true_only_while_the_token_holds_the_lock");
    let (a, b) = etcd.two_machines("check", LONG_TTL);
    let first = acquire(&a, "alice");
    let t1 = first.token();
    assert!(b.check(ENV, t1).unwrap());
    assert_eq!(first.release().unwrap(), Release::Released);
    assert!(!b.check(ENV, t1).unwrap());
    let second = acquire(&b, "bob");
    assert!(second.token() > t1);
    assert!(a.check(ENV, second.token()).unwrap());
    assert!(!a.check(ENV, t1).unwrap());
}

#[test]
fn a_paused_holder_loses_the_lock_within_its_ttl_and_is_told() {
    let etcd = need_etcd!("etcd_lock::a_paused_holder_loses_the_lock_within_its_ttl_and_is_told");
    let (a, b) = etcd.two_machines("paused", SHORT_TTL);
    let mut lock = acquire(&a, "alice");
    let fd = lock.loss().fd().try_clone_to_owned().unwrap();
    assert!(!readable(&fd));
    let stopped = Instant::now();
    lock.stop_keepalive();
    let cause = lock
        .loss()
        .wait_timeout(SHORT_TTL + Duration::from_millis(2500))
        .expect("the loss is reported");
    let after = stopped.elapsed();
    eprintln!("etcd: a paused holder's loss reported after {after:?} ({cause})");
    assert!(matches!(cause, LossCause::KeyDeleted { .. }), "{cause:?}");
    assert!(readable(&fd), "the loss fd becomes readable");
    assert_eq!(lock.lost(), Some(cause));
    let next = acquire(&b, "bob");
    assert!(!b.check(ENV, lock.token()).unwrap());
    // The old holder's release leaves the new holder alone.
    assert_eq!(
        lock.release().unwrap(),
        Release::TakenByOther {
            token: next.token(),
            record: Some(Box::new(next.record().clone()))
        }
    );
    assert!(a.check(ENV, next.token()).unwrap());
}

fn readable(fd: &std::os::fd::OwnedFd) -> bool {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, PollTimeout::ZERO).unwrap() == 1
}

#[test]
fn a_forced_unlock_revokes_exactly_the_shown_lease() {
    let etcd = need_etcd!("etcd_lock::a_forced_unlock_revokes_exactly_the_shown_lease");
    let (a, b) = etcd.two_machines("force", LONG_TTL);
    let lock = acquire(&a, "alice");
    let shown = b.inspect(ENV).unwrap().held.unwrap();
    let t0 = Instant::now();
    assert_eq!(
        b.force_unlock(ENV, shown.token, shown.lease).unwrap(),
        ForceUnlock::Unlocked {
            record: Some(Box::new(lock.record().clone()))
        }
    );
    let cause = lock
        .loss()
        .wait_timeout(Duration::from_secs(2))
        .expect("the holder is told");
    eprintln!(
        "etcd: forced unlock reached the holder in {:?}",
        t0.elapsed()
    );
    assert!(
        matches!(cause, LossCause::KeyDeleted { .. } | LossCause::LeaseGone),
        "{cause:?}"
    );
    assert_eq!(lock.hold(), Err(cause));
    assert_eq!(lock.release().unwrap(), Release::AlreadyGone);
    // The lock changed hands since it was shown: nothing happens.
    let next = acquire(&b, "bob");
    let changed = ForceUnlock::ChangedHands {
        token: next.token(),
        record: Some(Box::new(next.record().clone())),
    };
    assert_eq!(
        a.force_unlock(ENV, shown.token, shown.lease).unwrap(),
        changed
    );
    // The same through the seam's form, by the lock id that was shown.
    let shown_id = shown.record.as_ref().unwrap().owner.lock_id.as_str();
    assert_eq!(
        a.force_unlock_expected(ENV, Some(shown_id)).unwrap(),
        changed
    );
    assert!(a.check(ENV, next.token()).unwrap());
    assert_eq!(next.lost(), None);
    assert_eq!(next.hold(), Ok(()));
    // Without an expectation it unlocks whoever holds it.
    assert_eq!(
        a.force_unlock_expected(ENV, None).unwrap(),
        ForceUnlock::Unlocked {
            record: Some(Box::new(next.record().clone()))
        }
    );
    // Free: nothing to do.
    assert_eq!(
        a.force_unlock(ENV, shown.token, shown.lease).unwrap(),
        ForceUnlock::NotHeld
    );
    assert_eq!(
        a.force_unlock_expected(ENV, Some(shown_id)).unwrap(),
        ForceUnlock::NotHeld
    );
}

#[test]
fn the_started_command_is_recorded_as_the_holder_process() {
    let etcd = need_etcd!("etcd_lock::the_started_command_is_recorded_as_the_holder_process");
    let (a, b) = etcd.two_machines("record-process", LONG_TTL);
    let mut lock = acquire(&a, "alice");
    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let process = deploy_lock::liveness::ProcessIdentity::of_pid(child.id() as i32).unwrap();
    assert!(lock.record_process(&process, Some("sleep")).unwrap());
    let record = b.inspect(ENV).unwrap().held.unwrap().record.unwrap();
    assert_eq!(&record, lock.record());
    assert_eq!(record.owner.pid, child.id() as i32);
    assert_eq!(record.owner.pid_start_ticks, process.start_ticks);
    assert_eq!(record.owner.holder_pid, std::process::id() as i32);
    assert_eq!(record.process_name.as_deref(), Some("sleep"));
    assert_eq!(lock.hold(), Ok(()));
    assert!(b.check(ENV, lock.token()).unwrap());
    child.kill().unwrap();
    child.wait().unwrap();
    // Rewriting our own record is not a loss: the keeper's watch sees the
    // rewrite, then this deletion, and reports the deletion (a rewrite
    // taken for a loss would be reported first, as another holder's key).
    b.force_unlock(ENV, lock.token(), lock.lease()).unwrap();
    let cause = lock
        .loss()
        .wait_timeout(Duration::from_secs(10))
        .expect("the deletion is reported");
    assert!(
        matches!(cause, LossCause::KeyDeleted { .. } | LossCause::LeaseGone),
        "{cause:?}"
    );
}

#[test]
fn a_waiter_wakes_within_50_ms_of_the_release() {
    let etcd = need_etcd!("etcd_lock::a_waiter_wakes_within_50_ms_of_the_release");
    let (a, b) = etcd.two_machines("wake", LONG_TTL);
    let mut wakes = Vec::new();
    for _ in 0..3 {
        let lock = acquire(&a, "alice");
        let insp = b.inspect(ENV).unwrap();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let waiter = {
            let b = b.clone();
            std::thread::spawn(move || {
                tid_tx.send(crate::etcd_support::tid()).unwrap();
                let c = b
                    .wait_for_change(ENV, insp.revision, Instant::now() + Duration::from_secs(10))
                    .unwrap();
                (c, Instant::now())
            })
        };
        // Released once the waiter sleeps reading its watch. (Not the member's
        // watcher gauge: other tests share the member, and one of theirs
        // ending as ours starts left the count where it was.) Its watch
        // starts at the revision it saw, so a release that reaches etcd
        // before the watch does is still replayed to it.
        crate::etcd_support::wait_in_read(tid_rx.recv().unwrap());
        let released = Instant::now();
        assert_eq!(lock.release().unwrap(), Release::Released);
        let (change, woke) = waiter.join().unwrap();
        assert!(matches!(change, Change::Released { .. }), "{change:?}");
        wakes.push(woke.saturating_duration_since(released));
    }
    eprintln!("etcd: waiter woke {wakes:?} after the release");
    // The best of three, so a busy test machine does not decide it.
    assert!(
        wakes.iter().min().unwrap() <= &Duration::from_millis(50),
        "{wakes:?}"
    );
}

#[test]
fn a_waiting_acquisition_gets_the_lock_when_it_is_released() {
    let etcd = need_etcd!("etcd_lock::a_waiting_acquisition_gets_the_lock_when_it_is_released");
    let (a, b) = etcd.two_machines("acquire-wait", LONG_TTL);
    let lock = acquire(&a, "alice");
    // Timing out reports the holder it waited for. (2 s, not less: each
    // try gets the rest of the wait as its budget, and on a loaded machine a
    // shorter one ran out inside a try, an error rather than a look.)
    // A try that outlives its budget on a loaded machine is reported as an
    // error (etcd gave no answer in time): allowed, but not every look may
    // fail, and without one the timeout reports no error.
    let (mut ticks, mut errors) = (0, 0);
    match b
        .acquire_wait(
            ENV,
            &who("bob"),
            Instant::now() + Duration::from_secs(2),
            Duration::from_millis(200),
            &mut |p| {
                ticks += 1;
                if p.error.is_some() {
                    errors += 1;
                } else {
                    assert!(p.last_seen.is_some());
                }
            },
        )
        .unwrap()
    {
        WaitOutcome::TimedOut {
            last_seen,
            last_error,
        } => {
            assert_eq!(last_seen.unwrap().held.unwrap().token, lock.token());
            if errors == 0 {
                assert_eq!(last_error, None);
            }
        }
        WaitOutcome::Acquired(_) => panic!("acquired a held lock"),
    }
    assert!(ticks >= 1, "progress was reported");
    assert!(errors < ticks, "every look of {ticks} failed");
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let waiter = {
        let b = b.clone();
        std::thread::spawn(move || {
            // Progress every 10 ms names the holder it waits for: the sign
            // that it waits (released before that, it would not wait at all).
            b.acquire_wait(
                ENV,
                &who("bob"),
                Instant::now() + Duration::from_secs(10),
                Duration::from_millis(10),
                &mut |p| {
                    if p.last_seen.is_some() {
                        let _ = seen_tx.send(());
                    }
                },
            )
            .unwrap()
        })
    };
    seen.recv().unwrap();
    let old = lock.token();
    drop(lock);
    match waiter.join().unwrap() {
        WaitOutcome::Acquired(l) => assert!(l.token() > old),
        WaitOutcome::TimedOut { .. } => panic!("timed out"),
    }
}

#[test]
fn etcd_stopped_under_a_holder_is_a_loss_within_the_ttl() {
    let Some(etcd) =
        crate::etcd_support::own("etcd_lock::etcd_stopped_under_a_holder_is_a_loss_within_the_ttl")
    else {
        return;
    };
    let store = EtcdStore::new(
        etcd.client(),
        &crate::etcd_support::prefix("stopped"),
        SHORT_TTL,
    );
    let lock = acquire(&store, "alice");
    // Renewals keep it for longer than the TTL while etcd runs.
    assert_eq!(
        lock.loss()
            .wait_timeout(SHORT_TTL + Duration::from_millis(500)),
        None
    );
    let stopped = Instant::now();
    etcd.stop();
    let cause = lock
        .loss()
        .wait_timeout(SHORT_TTL + Duration::from_secs(1))
        .expect("the loss is reported");
    let after = stopped.elapsed();
    eprintln!("etcd: loss reported {after:?} after etcd stopped ({cause})");
    assert!(
        matches!(cause, LossCause::NoKeepaliveAck { .. }),
        "{cause:?}"
    );
    // Reported at the last renewal + TTL (before the stop), plus one 200 ms
    // retry tick and scheduling slack on a shared machine.
    assert!(after <= SHORT_TTL + Duration::from_millis(800), "{after:?}");
}

/// Library-level figures for the report and the bench (no assertion on
/// speed beyond a generous bound: the machine is shared).
#[test]
fn figures_connect_inspect_acquire_release() {
    let etcd = need_etcd!("etcd_lock::figures_connect_inspect_acquire_release");
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (mut connect, mut inspect, mut take, mut release) = (vec![], vec![], vec![], vec![]);
    let (a, _) = etcd.two_machines("figures", LONG_TTL);
    for _ in 0..20 {
        let t = Instant::now();
        let _ = etcd.client();
        connect.push(t.elapsed());
        let t = Instant::now();
        a.inspect(ENV).unwrap();
        inspect.push(t.elapsed());
        let t = Instant::now();
        let lock = acquire(&a, "alice");
        take.push(t.elapsed());
        let t = Instant::now();
        assert_eq!(lock.release().unwrap(), Release::Released);
        release.push(t.elapsed());
    }
    let (c, i, t, r) = (
        median(connect),
        median(inspect),
        median(take),
        median(release),
    );
    eprintln!(
        "etcd: medians of 20: connect {c:?}, inspect {i:?}, try_acquire {t:?}, release {r:?}"
    );
    assert!(t + r < Duration::from_millis(500), "{t:?} + {r:?}");
}

#[test]
fn a_watcher_wakes_on_release_times_out_and_yields_to_an_extra_fd() {
    use deploy_lock::etcd::Woke;
    let etcd =
        need_etcd!("etcd_lock::a_watcher_wakes_on_release_times_out_and_yields_to_an_extra_fd");
    let (a, b) = etcd.two_machines("watcher", LONG_TTL);
    let lock = acquire(&a, "alice");
    let w = b.watcher(ENV).unwrap();
    assert!(!w.gone());
    let t = Instant::now();
    assert_eq!(
        w.wait(Instant::now() + Duration::from_millis(100), None)
            .unwrap(),
        Woke::Timeout
    );
    assert!(t.elapsed() >= Duration::from_millis(100));
    // A readable extra fd (run's signalfd) ends the wait.
    let (r, wr) = nix::unistd::pipe().unwrap();
    nix::unistd::write(&wr, b"x").unwrap();
    assert_eq!(
        w.wait(Instant::now() + Duration::from_secs(5), Some(r.as_fd()))
            .unwrap(),
        Woke::Extra
    );
    // A release made before the wait starts is not missed.
    let released = Instant::now();
    assert_eq!(lock.release().unwrap(), Release::Released);
    assert_eq!(
        w.wait(Instant::now() + Duration::from_secs(5), Some(r.as_fd()))
            .unwrap(),
        Woke::Released,
        "the lock is gone: Released before the extra fd"
    );
    assert!(w.gone());
    // Held again, then released while waiting: woken within milliseconds.
    let lock = acquire(&a, "alice");
    let waiting = crate::etcd_support::tid();
    let releaser = std::thread::spawn(move || {
        crate::etcd_support::wait_in_poll(waiting);
        let at = Instant::now();
        lock.release().unwrap();
        at
    });
    // A wake-up may be left over from the release before (its watch event
    // can come after the look that saw it): then the lock is still held,
    // and the wait goes on.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(w.wait(deadline, None).unwrap(), Woke::Released);
        if w.gone() {
            break;
        }
    }
    let woke = Instant::now();
    let at = releaser.join().unwrap();
    eprintln!(
        "etcd: watcher woke {:?} after the release ({:?} for the first)",
        woke.saturating_duration_since(at),
        released.elapsed()
    );
    assert!(woke.saturating_duration_since(at) < Duration::from_millis(500));
}

#[test]
fn a_key_put_by_hand_shows_as_held_by_an_unknown_holder_and_can_be_unlocked() {
    let test =
        "etcd_lock::a_key_put_by_hand_shows_as_held_by_an_unknown_holder_and_can_be_unlocked";
    let etcd = need_etcd!(test);
    let (a, b) = etcd.two_machines("by-hand", LONG_TTL);
    if crate::etcd_support::etcdctl(test, etcd, &["put", &a.key(ENV), "not json"]).is_none() {
        return;
    }
    let held = a.inspect(ENV).unwrap().held.expect("held");
    assert_eq!(
        (held.record.as_ref(), held.lease.0, held.ttl_remaining),
        (None, 0, None)
    );
    assert!(matches!(
        b.try_acquire(ENV, &who("bob")).unwrap(),
        Acquire::Busy(_)
    ));
    assert_eq!(
        b.force_unlock(ENV, held.token, held.lease).unwrap(),
        ForceUnlock::Unlocked { record: None }
    );
    drop(acquire(&b, "bob"));
}

#[test]
fn the_audit_copy_keeps_the_newest_events_of_each_environment() {
    use deploy_lock::etcd::audit_copy::AuditCopies;
    let etcd = need_etcd!("etcd_lock::the_audit_copy_keeps_the_newest_events_of_each_environment");
    let prefix = crate::etcd_support::prefix("audit-copy");
    let copies = AuditCopies::new(etcd.client(), &prefix, "host/with odd:chars");
    let event =
        |n: u64| serde_json::json!({"time": "2026-01-01T00:00:00Z", "event": "acquire", "n": n});
    // Five shipments of one event each, keeping three: the last three stay.
    for n in 0..5 {
        copies.put_keeping(&[(ENV, event(n))], 3).unwrap();
    }
    // Another environment's events are its own, and counted apart.
    copies
        .put_keeping(&[(Environment::Production, event(9))], 3)
        .unwrap();
    let all = copies.read_all(Duration::from_secs(5)).unwrap();
    assert_eq!(all, vec![event(2), event(3), event(4), event(9)]);
    // One key segment per event, whatever the host name holds.
    let keys = etcd
        .client()
        .range_prefix(copies.dir(ENV).as_bytes(), 0, true, Duration::from_secs(5))
        .unwrap();
    assert_eq!(keys.len(), 3);
    for k in keys {
        let k = String::from_utf8(k.key).unwrap();
        let name = k.strip_prefix(&copies.dir(ENV)).unwrap();
        assert!(name.contains("-host_with_odd_chars-"), "{k}");
        assert!(!name.contains('/'), "{k}");
    }
}
