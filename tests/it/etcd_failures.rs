//! etcd that cannot be used, and etcd chosen by the checkout: each failure
//! is a typed error naming the endpoint within the 5 s budget; a waiting
//! acquisition outlives a lost etcd; the checkout file picks the backend.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use deploy_lock::Environment;
use deploy_lock::etcd::client::CONNECT_BUDGET;
use deploy_lock::etcd::settings::{self, Backend, BackendKind, SettingsWarning};
use deploy_lock::etcd::{
    Acquire, Client, ClientConfig, EtcdError, EtcdStore, WaitOutcome, this_process,
};

use crate::etcd_support::{self, need_etcd};

fn connect(endpoints: &[&str]) -> (Result<Client, EtcdError>, Duration) {
    let t = Instant::now();
    let r = Client::connect(&ClientConfig::new(
        endpoints.iter().map(|s| s.to_string()).collect(),
    ));
    (r, t.elapsed())
}

/// One HTTP request from `r`: its request line and headers, less any
/// `Connection` header, and its body (by `Content-Length`). None when the
/// connection ends first.
fn read_request(r: &mut BufReader<std::net::TcpStream>) -> Option<(String, Vec<u8>)> {
    let mut head = String::new();
    let mut len = 0;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 {
            return None;
        }
        if h == "\r\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            head.push_str(&h);
        }
    }
    let mut body = vec![0; len];
    std::io::Read::read_exact(r, &mut body).ok()?;
    Some((head, body))
}

/// A loopback HTTP server answering every request with `answer(path)`
/// (status, body); it serves until the test process ends.
fn fake_server(answer: fn(&str) -> (u16, &'static str)) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let (head, _body) = read_request(&mut r).unwrap_or_default();
            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
            let (status, text) = answer(&path);
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    url
}

#[test]
fn an_unreachable_endpoint_is_one_typed_error_naming_it() {
    let port = etcd_support::free_port();
    let ep = format!("http://127.0.0.1:{port}");
    let (r, took) = connect(&[&ep]);
    let e = r.err().expect("nothing listens there");
    assert!(
        matches!(&e, EtcdError::Unreachable { endpoint, .. } if *endpoint == ep),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("etcd at {ep} is unreachable: ")),
        "{e}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
}

#[test]
fn silent_endpoints_share_the_5_s_budget() {
    // Accepted by the kernel, never answered.
    let (l1, l2) = (
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    );
    let ep1 = format!("http://{}", l1.local_addr().unwrap());
    let ep2 = format!("http://{}", l2.local_addr().unwrap());
    let (r, took) = connect(&[&ep1, &ep2]);
    match r.err().expect("no answer") {
        EtcdError::AllEndpoints(v) => {
            assert!(
                matches!(&v[..], [EtcdError::Unreachable { endpoint: a, .. }, EtcdError::Unreachable { endpoint: b, .. }] if *a == ep1 && *b == ep2),
                "{v:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        took >= CONNECT_BUDGET - Duration::from_millis(100)
            && took < CONNECT_BUDGET + Duration::from_millis(500),
        "{took:?}"
    );
    drop((l1, l2));
}

#[test]
fn a_404_endpoint_is_a_disabled_gateway() {
    let ep = fake_server(|_| (404, "404 page not found\n"));
    let (r, took) = connect(&[&ep]);
    let e = r.err().expect("404");
    assert!(
        matches!(&e, EtcdError::GatewayDisabled { endpoint, .. } if *endpoint == ep),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .starts_with(&format!("{ep} answers 404 on /version")),
        "{e}"
    );
    assert!(took < Duration::from_secs(1), "{took:?}");
    // An etcd whose /version answers but whose gateway is off.
    let ep = fake_server(|path| match path {
        "/version" => (200, r#"{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}"#),
        _ => (404, "404 page not found\n"),
    });
    let e = connect(&[&ep]).0.err().expect("404 on /v3");
    assert_eq!(
        e,
        EtcdError::GatewayDisabled {
            endpoint: ep,
            path: "/v3/maintenance/status".into()
        }
    );
}

#[test]
fn etcd_older_than_3_4_is_refused() {
    let ep = fake_server(|_| (200, r#"{"etcdserver":"3.3.25","etcdcluster":"3.3.0"}"#));
    let e = connect(&[&ep]).0.err().expect("too old");
    assert_eq!(
        e,
        EtcdError::TooOld {
            endpoint: ep,
            version: "3.3.25".into()
        }
    );
}

#[test]
fn endpoints_are_tried_in_order() {
    let etcd = need_etcd!("etcd_failures::endpoints_are_tried_in_order");
    let dead = format!("http://127.0.0.1:{}", etcd_support::free_port());
    let c = connect(&[&dead, &etcd.endpoint]).0.unwrap();
    assert_eq!(c.endpoint(), etcd.endpoint);
    assert!(
        c.server_version().starts_with("3."),
        "{}",
        c.server_version()
    );
    // All failing: one error per endpoint, in order.
    let gone = fake_server(|_| (404, ""));
    match connect(&[&dead, &gone]).0.err().unwrap() {
        EtcdError::AllEndpoints(v) => {
            assert_eq!(v.len(), 2);
            assert_eq!(v[0].endpoint(), Some(dead.as_str()));
            assert_eq!(v[1].endpoint(), Some(gone.as_str()));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_wait_that_loses_etcd_keeps_trying_until_its_timeout() {
    let Some(etcd) =
        etcd_support::own("etcd_failures::a_wait_that_loses_etcd_keeps_trying_until_its_timeout")
    else {
        return;
    };
    let ttl = Duration::from_secs(30);
    let p = etcd_support::prefix("lose-etcd");
    let a = EtcdStore::new(etcd.client(), &p, ttl);
    let b = EtcdStore::new(etcd.client(), &p, ttl);
    let env = Environment::Production;
    let me = this_process(env, "a@it").unwrap();
    let held = match a.try_acquire(env, &me).unwrap() {
        Acquire::Acquired(l) => l,
        Acquire::Busy(_) => panic!("busy"),
    };
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let mut errors_seen = 0;
        let t = Instant::now();
        let out = b
            .acquire_wait(
                env,
                &this_process(env, "b@it").unwrap(),
                Instant::now() + Duration::from_secs(3),
                Duration::from_millis(250),
                &mut |p| {
                    errors_seen += usize::from(p.error.is_some());
                    if p.last_seen.is_some() {
                        let _ = seen_tx.send(());
                    }
                },
            )
            .unwrap();
        (out, errors_seen, t.elapsed())
    });
    // Waiting once its progress names the holder.
    seen.recv().unwrap();
    etcd.stop();
    let (out, errors_seen, took) = waiter.join().unwrap();
    std::mem::forget(held);
    match out {
        WaitOutcome::TimedOut {
            last_seen,
            last_error,
        } => {
            assert!(last_seen.is_some());
            let e = last_error.expect("the lost etcd is reported");
            assert_eq!(e.endpoint(), Some(etcd.endpoint.as_str()), "{e}");
        }
        WaitOutcome::Acquired(_) => panic!("acquired from a stopped etcd"),
    }
    assert!(errors_seen >= 2, "progress said so: {errors_seen}");
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(3) + CONNECT_BUDGET,
        "{took:?}"
    );
}

#[test]
fn the_checkout_file_chooses_the_backend() {
    let etcd = need_etcd!("etcd_failures::the_checkout_file_chooses_the_backend");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("deploy/config")).unwrap();
    // No file: the local lock, as before.
    assert_eq!(settings::read_checkout_file(root).unwrap(), None);
    let prefix = etcd_support::prefix("checkout");
    std::fs::write(
        root.join(settings::CHECKOUT_FILE),
        format!(
            "# The team's lock store.\nDEPLOY_LOCK_BACKEND=etcd\n\
             DEPLOY_LOCK_ETCD_ENDPOINTS={}\nDEPLOY_LOCK_ETCD_PREFIX={prefix}\n\
             DEPLOY_LOCK_ETCD_TTL=10\n",
            etcd.endpoint
        ),
    )
    .unwrap();
    let file = settings::read_checkout_file(root).unwrap().unwrap();
    let (backend, warnings) = settings::resolve(Some(&file), &|_| None).unwrap();
    assert!(warnings.is_empty());
    let Backend::Etcd(s) = backend else {
        panic!("{backend:?}")
    };
    assert_eq!(s.ttl, Duration::from_secs(10));
    let store = EtcdStore::open(&s).unwrap();
    assert_eq!(
        store.key(Environment::Staging),
        format!("{prefix}/v1/env/staging/lock")
    );
    let me = this_process(Environment::Staging, "ci@it").unwrap();
    assert!(matches!(
        store.try_acquire(Environment::Staging, &me).unwrap(),
        Acquire::Acquired(_)
    ));
    // The caller's variable wins, with a warning.
    let (backend, warnings) = settings::resolve(Some(&file), &|k| {
        (k == settings::BACKEND).then(|| "local".to_string())
    })
    .unwrap();
    assert_eq!(backend, Backend::Local);
    assert_eq!(
        warnings,
        [SettingsWarning::BackendOverridden {
            caller: BackendKind::Local,
            checkout: BackendKind::Etcd,
            file: root.join(settings::CHECKOUT_FILE)
        }]
    );
    // A bad line names the file and the line.
    std::fs::write(
        root.join(settings::CHECKOUT_FILE),
        "DEPLOY_LOCK_BACKEND=etcd\nDEPLOY_LOCK_ETCD_TTL 5\n",
    )
    .unwrap();
    let e = settings::read_checkout_file(root).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}:2: ",
            root.join(settings::CHECKOUT_FILE).display()
        )),
        "{e}"
    );
}

#[test]
fn an_etcd_that_stops_answering_midway_bounds_every_operation() {
    let test = "etcd_failures::an_etcd_that_stops_answering_midway_bounds_every_operation";
    let Some(etcd) = etcd_support::own(test) else {
        return;
    };
    // A short call timeout keeps the test short; the default is 2 s a call
    // within OP_BUDGET (5 s) an operation.
    let mut cfg = etcd.config();
    cfg.call_timeout = Duration::from_millis(700);
    let store = EtcdStore::new(
        Client::connect(&cfg).unwrap(),
        &etcd_support::prefix("silent"),
        Duration::from_secs(2),
    );
    let env = Environment::Staging;
    let me = this_process(env, "a@it").unwrap();
    let Acquire::Acquired(held) = store.try_acquire(env, &me).unwrap() else {
        panic!("busy")
    };
    let shown = store.inspect(env).unwrap().held.unwrap();
    // Stopped, it still accepts connections (the kernel does) but never answers.
    let pid = nix::unistd::Pid::from_raw(etcd.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    // The stop reaches each of etcd's threads in turn: until all are stopped
    // one may still answer (a loaded CI run saw `check` succeed).
    etcd_support::wait_stopped(etcd.pid());
    type Op = Box<dyn FnOnce(EtcdStore) -> Option<EtcdError> + Send>;
    let ops: Vec<(&str, Op)> = vec![
        ("inspect", Box::new(move |s| s.inspect(env).err())),
        (
            "try_acquire",
            Box::new(move |s| s.try_acquire(env, &me).err()),
        ),
        ("check", Box::new(move |s| s.check(env, shown.token).err())),
        (
            "force_unlock",
            Box::new(move |s| s.force_unlock(env, shown.token, shown.lease).err()),
        ),
    ];
    let threads: Vec<_> = ops
        .into_iter()
        .map(|(name, op)| {
            let s = store.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                (name, op(s), t.elapsed())
            })
        })
        .collect();
    let lost = held.loss().wait_timeout(Duration::from_secs(4));
    for t in threads {
        let (name, err, took) = t.join().unwrap();
        let e = err.unwrap_or_else(|| panic!("{name} succeeded against a stopped etcd"));
        assert_eq!(e.endpoint(), Some(etcd.endpoint.as_str()), "{name}: {e}");
        assert!(took < Duration::from_secs(5), "{name} took {took:?}");
    }
    assert!(
        matches!(
            lost,
            Some(deploy_lock::etcd::LossCause::NoKeepaliveAck { .. })
        ),
        "{lost:?}"
    );
    // Releasing against the silent etcd is bounded too (a renewal in flight
    // does not hold it up).
    let t = Instant::now();
    let e = held.release().unwrap_err();
    assert_eq!(e.endpoint(), Some(etcd.endpoint.as_str()), "{e}");
    assert!(
        t.elapsed() < deploy_lock::etcd::OP_BUDGET,
        "{:?}",
        t.elapsed()
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
}

#[test]
fn a_wait_from_a_compacted_revision_reports_a_change_not_an_error() {
    let test = "etcd_failures::a_wait_from_a_compacted_revision_reports_a_change_not_an_error";
    let Some(etcd) = etcd_support::own(test) else {
        return;
    };
    let (a, b) = (
        EtcdStore::new(etcd.client(), "/it/compact", Duration::from_secs(30)),
        EtcdStore::new(etcd.client(), "/it/compact", Duration::from_secs(30)),
    );
    let env = Environment::Staging;
    let Acquire::Acquired(_held) = a
        .try_acquire(env, &this_process(env, "a@it").unwrap())
        .unwrap()
    else {
        panic!("busy")
    };
    let seen = b.inspect(env).unwrap();
    // Other keys move the store on; then history is compacted past `seen`.
    for _ in 0..3 {
        let other = Environment::Production;
        let Acquire::Acquired(l) = a
            .try_acquire(other, &this_process(other, "a@it").unwrap())
            .unwrap()
        else {
            panic!("busy")
        };
        l.release().unwrap();
    }
    let now = b.inspect(env).unwrap().revision;
    assert!(now > seen.revision + 1);
    if etcd_support::etcdctl(test, &etcd, &["compact", &now.to_string()]).is_none() {
        return;
    }
    let t = Instant::now();
    let change = b
        .wait_for_change(env, seen.revision, Instant::now() + Duration::from_secs(2))
        .unwrap();
    assert!(
        matches!(change, deploy_lock::etcd::Change::Changed { .. }),
        "{change:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_holder_keeps_its_lock_when_its_endpoint_dies_and_the_next_one_answers() {
    let test =
        "etcd_failures::a_holder_keeps_its_lock_when_its_endpoint_dies_and_the_next_one_answers";
    let Some(members) = etcd_support::cluster(test, 3) else {
        return;
    };
    let endpoints: Vec<&str> = members.iter().map(|m| m.endpoint.as_str()).collect();
    let ttl = Duration::from_secs(2);
    let env = Environment::Staging;
    let holder = EtcdStore::new(connect(&endpoints).0.unwrap(), "/it/failover", ttl);
    assert_eq!(holder.client().endpoint(), endpoints[0]);
    let Acquire::Acquired(lock) = holder
        .try_acquire(env, &this_process(env, "a@it").unwrap())
        .unwrap()
    else {
        panic!("busy")
    };
    // The first endpoint dies; renewals and the watch move to the next.
    members[0].stop();
    assert_eq!(lock.loss().wait_timeout(ttl * 2), None, "the lock was kept");
    assert_ne!(holder.client().endpoint(), endpoints[0]);
    // Another machine, listing the endpoints in the same order, sees it held.
    let other = EtcdStore::new(connect(&endpoints).0.unwrap(), "/it/failover", ttl);
    let held = other.inspect(env).unwrap().held.unwrap();
    assert_eq!(held.token, lock.token());
    assert!(matches!(
        other
            .try_acquire(env, &this_process(env, "b@it").unwrap())
            .unwrap(),
        Acquire::Busy(_)
    ));
    assert_eq!(
        lock.release().unwrap(),
        deploy_lock::etcd::Release::Released
    );
}

#[test]
fn a_watcher_made_while_etcd_is_silent_catches_the_release_once_it_answers() {
    use deploy_lock::etcd::Woke;
    let test =
        "etcd_failures::a_watcher_made_while_etcd_is_silent_catches_the_release_once_it_answers";
    let Some(etcd) = etcd_support::own(test) else {
        return;
    };
    let env = Environment::Staging;
    let (a, b) = (
        EtcdStore::new(etcd.client(), "/it/silent-watch", Duration::from_secs(30)),
        EtcdStore::new(etcd.client(), "/it/silent-watch", Duration::from_secs(30)),
    );
    let Acquire::Acquired(lock) = a
        .try_acquire(env, &this_process(env, "a@it").unwrap())
        .unwrap()
    else {
        panic!("busy")
    };
    let pid = nix::unistd::Pid::from_raw(etcd.pid());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    etcd_support::wait_stopped(etcd.pid());
    let w = b
        .watcher(env)
        .expect("made even though etcd does not answer");
    assert!(w.error().is_some());
    let t = Instant::now();
    assert_eq!(
        w.wait(Instant::now() + Duration::from_millis(700), None)
            .unwrap(),
        Woke::Timeout
    );
    assert!(
        t.elapsed() < Duration::from_millis(1200),
        "{:?}",
        t.elapsed()
    );
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    // Released while the watcher waits (its thread reconnecting).
    let waiting = etcd_support::tid();
    let releaser = std::thread::spawn(move || {
        etcd_support::wait_in_poll(waiting);
        lock.release().unwrap()
    });
    // Until the lock is gone: a wake-up with the lock still held (the watch
    // coming back) only means "look again".
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert_eq!(w.wait(deadline, None).unwrap(), Woke::Released);
        if w.gone() {
            break;
        }
    }
    assert_eq!(
        releaser.join().unwrap(),
        deploy_lock::etcd::Release::Released
    );
}

/// A loopback proxy to `upstream` (an etcd's `host:port`) that relays every
/// request and answer, except that the answer to the first put under
/// `/queue/` is never sent: the put lands, the caller's attempt times out.
fn proxy_losing_the_first_queue_put_answer(upstream: String) -> String {
    use std::io::Read;
    use std::sync::atomic::{AtomicBool, Ordering};
    static LOST: AtomicBool = AtomicBool::new(false);
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut conn) = conn else { continue };
            let upstream = upstream.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let Some((head, body)) = read_request(&mut r) else {
                    return;
                };
                let put = head.starts_with("POST /v3/kv/put ");
                let queue_put = put
                    && serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| {
                        v["key"].as_str().is_some_and(|k| {
                            use base64::Engine;
                            let k = base64::engine::general_purpose::STANDARD
                                .decode(k)
                                .unwrap_or_default();
                            String::from_utf8_lossy(&k).contains("/queue/")
                        })
                    });
                let mut up = std::net::TcpStream::connect(&upstream).unwrap();
                up.write_all(head.as_bytes()).unwrap();
                up.write_all(b"Connection: close\r\n\r\n").unwrap();
                up.write_all(&body).unwrap();
                let mut answer = Vec::new();
                let _ = up.read_to_end(&mut answer);
                if queue_put && !LOST.swap(true, Ordering::SeqCst) {
                    // Landed; the answer is lost. Hold the connection
                    // until the caller gives up on it.
                    let _ = r.read_line(&mut String::new());
                    return;
                }
                // One answer per connection: the caller opens a new one.
                let text = String::from_utf8_lossy(&answer);
                let answer = match text.split_once("\r\n") {
                    Some((status, rest)) => format!("{status}\r\nConnection: close\r\n{rest}"),
                    None => text.into_owned(),
                };
                let _ = conn.write_all(answer.as_bytes());
            });
        }
    });
    url
}

/// A waiter's put into the queue that landed, whose answer was lost, and
/// which the client therefore sent again to the next endpoint: the place is
/// where the key was first created, not the second put's revision. Before,
/// the waiter's own key stood "ahead" of it (chaos_short, beside two busy
/// loops: "2nd in line; free, but others were in line first" until its
/// one-minute limit, exit 124).
#[test]
fn a_queue_put_sent_twice_keeps_the_place_of_the_first() {
    let test = "etcd_failures::a_queue_put_sent_twice_keeps_the_place_of_the_first";
    let Some(etcd) = etcd_support::shared(test) else {
        return;
    };
    let upstream = etcd.endpoint.trim_start_matches("http://").to_string();
    let proxy = proxy_losing_the_first_queue_put_answer(upstream);
    let client = Client::connect(&ClientConfig {
        attempt_timeout: Duration::from_millis(500),
        ..ClientConfig::new(vec![proxy.clone(), etcd.endpoint.clone()])
    })
    .unwrap();
    let prefix = format!("/it/{}", std::process::id());
    let store = EtcdStore::new(client, &format!("{prefix}/twice"), Duration::from_secs(5));
    let env = Environment::Staging;
    let me = deploy_lock::liveness::ProcessIdentity::of_self().unwrap();
    let record = deploy_lock::etcd::queue::EtcdWaiter {
        waiter: deploy_lock::queue::WaiterRecord {
            user: "a".into(),
            host: "it".into(),
            pid: me.pid,
            reason: None,
            since: "2026-12-03T00:00:00Z".into(),
        },
        pid_start_ticks: me.start_ticks,
        boot_id: None,
    };
    let place = store.join_queue(env, &record).unwrap();
    // The put went to the proxy first (its answer lost), then to etcd.
    assert_eq!(store.client().endpoint(), etcd.endpoint);
    let listed = store.look_in_line(env).unwrap().waiters;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].key, place.key.as_bytes());
    assert_eq!(
        (listed[0].create_revision, listed[0].lease),
        (place.create_revision, place.lease),
        "the place is the key's first creation"
    );
    // Alone in line, the lock free: it is ours at once.
    match store
        .try_acquire_in_line(env, &this_process(env, "a@it").unwrap(), Some(&place))
        .unwrap()
    {
        Acquire::Acquired(lock) => {
            place.into_lock_lease();
            lock.release().unwrap();
        }
        Acquire::Busy(insp) => panic!("alone in line and refused: {:?}", insp.waiters),
    }
}

/// A login the cluster cannot answer (etcd's "leader changed", gRPC 14) is
/// unavailability, tried at the next endpoint and retried by a waiter, not
/// a refusal of the credentials. Seen at load 14: "refused the login:
/// etcdserver: leader changed (check DEPLOY_LOCK_ETCD_USER and ...)".
#[test]
fn a_login_during_a_leader_change_is_unavailability_not_a_refusal() {
    let changing = fake_server(|path| match path {
        "/v3/auth/authenticate" => (
            503,
            r#"{"error":"etcdserver: leader changed","code":14,"message":"etcdserver: leader changed"}"#,
        ),
        _ => (404, "404 page not found"),
    });
    let cfg = ClientConfig {
        credentials: Some(deploy_lock::etcd::settings::Credentials {
            user: "deploy".into(),
            password: "secret".into(),
        }),
        ..ClientConfig::new(vec![changing.clone()])
    };
    let e = Client::connect(&cfg).err().expect("no login, no client");
    assert_eq!(
        e.to_string(),
        format!("etcd at {changing}: etcdserver: leader changed (code 14)")
    );
    assert!(e.retryable(), "{e:?}");
}
