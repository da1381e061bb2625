//! Issue 22's fair queue on the local store: `run --wait` waiters are served
//! in arrival order, shown by `status` (text, JSON, the list), a dead waiter
//! leaves the line at once, and a run that does not wait cannot jump it.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::*;

/// The name `status` shows for waiters of this test's user (the queue file's
/// owner, not the USER variable).
pub fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .unwrap()
        .unwrap()
        .name
}

/// The waiters `status ENV --json` lists: (position, reason) of each.
pub fn queued(w: &World, env: &str, extra: &[(&str, &str)]) -> Vec<(u64, String)> {
    let mut c = w.deploy_lock(&["status", env, "--json"]);
    for (k, v) in extra {
        c = c.env(k, v);
    }
    let out = c.run();
    out.code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    v["waiters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["position"].as_u64().unwrap(),
                w["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// A holder whose command waits for `go` to exist in `d`, started and
/// holding the lock when this returns.
pub fn holder(w: &World, env: &str, d: &Path, extra: &[(&str, &str)]) -> KillOnDrop {
    let script = format!(
        r#"echo held > "{d}/held"; while [ ! -e "{d}/go" ]; do sleep 0.01; done"#,
        d = d.display()
    );
    let mut c = w.deploy_lock(&["run", env, "--", "sh", "-c", &script]);
    for (k, v) in extra {
        c = c.env(k, v);
    }
    let h = c.spawn_guarded();
    wait_until(PATIENCE, "the holder to hold the lock", || {
        d.join("held").exists()
    });
    h
}

/// Five waiters, each started once the one before is visible in the queue,
/// are served in that order, every round; `extra` selects the store.
pub fn five_waiters_in_order(w: &World, rounds: usize, extra: &[(&str, &str)]) {
    for round in 0..rounds {
        let d = w.tmp.path().join(format!("round{round}"));
        fs::create_dir(&d).unwrap();
        let h = holder(w, "staging", &d, extra);
        let order = d.join("order");
        let mut waiters = Vec::new();
        for i in 1..=5 {
            let reason = format!("w{i}");
            let script = format!("echo {i} >> \"{}\"", order.display());
            let mut c = w.deploy_lock(&[
                "run", "--wait", "--reason", &reason, "staging", "--", "sh", "-c", &script,
            ]);
            for (k, v) in extra {
                c = c.env(k, v);
            }
            waiters.push(c.spawn_guarded());
            wait_until(PATIENCE, "the waiter to join the queue", || {
                queued(w, "staging", extra).len() == i
            });
        }
        let want: Vec<(u64, String)> = (1..=5).map(|i| (i, format!("w{i}"))).collect();
        assert_eq!(queued(w, "staging", extra), want, "round {round}");
        fs::write(d.join("go"), "").unwrap();
        finish(h).code(0);
        for (i, waiter) in waiters.into_iter().enumerate() {
            let out = finish(waiter);
            out.code(0).stderr_after_waiting("");
            // A lone waiter's line names no place: the first joined alone.
            if i == 0 {
                continue;
            }
            let place = ordinal(i + 1);
            assert!(
                out.stderr.contains(&format!("({place} in line; ")),
                "waiter {} never said it was {place} in line:\n{}",
                i + 1,
                out.stderr
            );
        }
        assert_eq!(
            fs::read_to_string(&order).unwrap(),
            "1\n2\n3\n4\n5\n",
            "round {round}"
        );
        assert_eq!(queued(w, "staging", extra), []);
    }
}

/// A live waiter in `env`'s queue that is no deploy-lock run: a file this
/// test keeps flocked (as another user's planted one would be), with a
/// terminal escape in its reason. Dropping the file lets it go.
pub fn plant_waiter(w: &World, env: &str) -> (std::path::PathBuf, fs::File) {
    let q = w.locks.join(format!(".togather-deploy-{env}.queue"));
    let _ = fs::create_dir(&q);
    let f = q.join("00000000000000000001-1");
    fs::write(
        &f,
        r#"{"user":"mallory","host":"h","pid":1,"reason":"why\u001b[2J","since":"2026-01-01T10:02:00Z"}"#,
    )
    .unwrap();
    let held = fs::File::open(&f).unwrap();
    held.lock().unwrap();
    (f, held)
}

pub fn ordinal(n: usize) -> &'static str {
    ["1st", "2nd", "3rd", "4th", "5th"][n - 1]
}

/// 20 rounds in two worlds of 10 side by side (each world its own lock
/// folder, and with etcd its own prefix): most of a round is waiting.
fn twenty_rounds_in_two_worlds(extra: &[Vec<(&str, &str)>; 2]) {
    std::thread::scope(|s| {
        for extra in extra {
            s.spawn(move || five_waiters_in_order(&World::new(), 10, extra));
        }
    });
}

#[test]
fn five_waiters_are_served_in_arrival_order_local() {
    twenty_rounds_in_two_worlds(&[vec![], vec![]]);
}

/// A SIGKILLed waiter is gone from `status` within 1 s (its flock went with
/// it), and the waiters behind it move up.
pub fn a_killed_waiter_leaves_the_queue(w: &World, extra: &[(&str, &str)]) {
    let d = w.tmp.path().join("killed");
    fs::create_dir(&d).unwrap();
    let h = holder(w, "staging", &d, extra);
    let mut waiters = Vec::new();
    for i in 1..=3 {
        let reason = format!("w{i}");
        let mut c = w.deploy_lock(&[
            "run", "--wait", "--reason", &reason, "staging", "--", "true",
        ]);
        for (k, v) in extra {
            c = c.env(k, v);
        }
        waiters.push(c.spawn_guarded());
        wait_until(PATIENCE, "the waiter to join the queue", || {
            queued(w, "staging", extra).len() == i
        });
    }
    let mut second = waiters.remove(1);
    send_signal(second.pid(), nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    wait_exit(second.as_mut());
    let want = vec![(1, "w1".to_string()), (2, "w3".to_string())];
    let deadline = killed + Duration::from_secs(1);
    let mut seen = queued(w, "staging", extra);
    while seen != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
        seen = queued(w, "staging", extra);
    }
    let took = killed.elapsed();
    assert_eq!(seen, want, "1 s after the SIGKILL");
    eprintln!("killed waiter gone from status after {took:?}");
    fs::write(d.join("go"), "").unwrap();
    finish(h).code(0);
    for waiter in waiters {
        finish(waiter).code(0).stderr_after_waiting("");
    }
}

#[test]
fn a_killed_waiter_leaves_the_queue_at_once_local() {
    let w = World::new();
    a_killed_waiter_leaves_the_queue(&w, &[]);
}

/// A live waiter (here: a file this test keeps flocked, as another user's
/// planted waiter would) holds a free lock for the line: `run` without
/// `--wait` is refused with 75 naming the queue, every view agrees, and a
/// planted file that nobody holds is a dead waiter, removed by the next look.
#[test]
fn a_run_without_wait_does_not_jump_the_queue() {
    let w = World::new();
    let (f, held) = plant_waiter(&w, "staging");
    let me = me();
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(75)
        .stdout("")
        .stderr(&format!(
            "ERROR: the staging lock is free, but 1 run waits in line for it; a deploy without --wait would jump the queue.\n\
             1 waiting: {me} (why?[2J) since 10:02\n  \
             join the queue:   deploy-lock run --wait staging -- true\n  \
             details:          deploy-lock status staging\n"
        ));
    w.deploy_lock(&["status", "staging", "--quiet"])
        .run()
        .code(75)
        .stdout("")
        .stderr("");
    let status = w.deploy_lock(&["status", "staging"]).run();
    status.code(0);
    assert!(
        status.stdout.ends_with(&format!(
            "1 waiting: {me} (why?[2J) since 10:02\n\
             Verdict: queued: free, but 1 run waits in line for it: the first takes it next; a deploy without --wait is refused (`deploy-lock run --wait staging` joins the end)\n"
        )),
        "{}",
        status.stdout
    );
    let list = w.deploy_lock(&["status"]).run();
    list.code(0);
    assert!(
        list.stdout
            .contains("staging      queued   -       -    1        local\n"),
        "{}",
        list.stdout
    );
    // The legacy persona's status is the legacy's: no queue line.
    let legacy = w.unlock_sh(&["staging", "--status"]).run();
    assert!(!legacy.stdout.contains("waiting"), "{}", legacy.stdout);
    // Its process gone (the flock let go), the waiter is gone too.
    drop(held);
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(0)
        .stdout("")
        .stderr("");
    assert!(!f.exists());
}

/// The same on the etcd store (a real etcd): the queue is in etcd, ordered
/// by create revision, each waiter watching the one just ahead.
fn etcd_vars(e: &crate::etcd_support::Etcd, test: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DEPLOY_LOCK_BACKEND", "etcd".to_string()),
        ("DEPLOY_LOCK_ETCD_ENDPOINTS", e.endpoint.clone()),
        ("DEPLOY_LOCK_ETCD_PREFIX", crate::etcd_support::prefix(test)),
    ]
}

#[test]
fn five_waiters_are_served_in_arrival_order_etcd() {
    let e = crate::etcd_support::need_etcd!("five_waiters_are_served_in_arrival_order_etcd");
    let vars = [
        etcd_vars(e, "five_waiters_in_order_a"),
        etcd_vars(e, "five_waiters_in_order_b"),
    ];
    let extra = vars
        .each_ref()
        .map(|v| v.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>());
    twenty_rounds_in_two_worlds(&extra);
}

#[test]
fn a_killed_waiter_leaves_the_queue_at_once_etcd() {
    let e = crate::etcd_support::need_etcd!("a_killed_waiter_leaves_the_queue_at_once_etcd");
    let vars = etcd_vars(e, "killed_waiter");
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let w = World::new();
    a_killed_waiter_leaves_the_queue(&w, &extra);
}

/// `status --watch` under tmux (a real terminal): the view is drawn, and a
/// run taking the lock shows in it (the latency is printed, not asserted).
fn watch_under_tmux(w: &World, test: &str, extra: &[(&str, &str)]) {
    if which::which("tmux").is_err() {
        crate::harness::skip!("{test}: tmux is not installed (apt-get install tmux)");
        return;
    }
    let sock = format!("dl-{test}-{}", std::process::id());
    let tmux = |args: &[&str]| {
        command("tmux")
            .args(["-L", &sock, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap()
    };
    let mut line = format!(
        "env DEPLOY_LOCK_DIR='{}' HOME='{}' TZ=UTC LC_ALL=C",
        w.locks.display(),
        w.home.display()
    );
    for (k, v) in extra {
        line.push_str(&format!(" {k}='{v}'"));
    }
    line.push_str(&format!(
        " '{}' status --watch",
        env!("CARGO_BIN_EXE_deploy-lock")
    ));
    let root = w.root.to_str().unwrap();
    let started = tmux(&[
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "30",
        "-c",
        root,
        &line,
    ]);
    assert!(started.status.success(), "{started:?}");
    struct Kill<F: Fn(&[&str]) -> std::process::Output>(F);
    impl<F: Fn(&[&str]) -> std::process::Output> Drop for Kill<F> {
        fn drop(&mut self) {
            (self.0)(&["kill-server"]);
        }
    }
    let tmux = Kill(tmux);
    let screen = || String::from_utf8_lossy(&(tmux.0)(&["capture-pane", "-p"]).stdout).into_owned();
    wait_until(PATIENCE, "the watch to draw the view", || {
        screen().contains("staging      free")
    });
    assert!(
        screen().contains("deploy-lock status --watch ("),
        "{}",
        screen()
    );
    let d = w.tmp.path().join("watched");
    fs::create_dir(&d).unwrap();
    let h = holder(w, "staging", &d, extra);
    let held = Instant::now();
    wait_until(PATIENCE, "the watch to show the holder", || {
        screen().contains("staging      held")
    });
    eprintln!(
        "{test}: the watch showed the new holder {:?} after it held the lock",
        held.elapsed()
    );
    fs::write(d.join("go"), "").unwrap();
    finish(h).code(0);
    wait_until(PATIENCE, "the watch to show the release", || {
        screen().contains("staging      free")
    });
}

#[test]
fn status_watch_redraws_on_a_change_local() {
    let w = World::new();
    watch_under_tmux(&w, "status_watch_redraws_on_a_change_local", &[]);
}

#[test]
fn status_watch_redraws_on_a_change_etcd() {
    let e = crate::etcd_support::need_etcd!("status_watch_redraws_on_a_change_etcd");
    let vars = etcd_vars(e, "status_watch");
    let extra: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let w = World::new();
    watch_under_tmux(&w, "status_watch_redraws_on_a_change_etcd", &extra);
}

/// Off a terminal: one block per change, nothing while nothing changes.
#[test]
fn status_watch_prints_one_block_per_change_off_a_terminal() {
    let w = World::new();
    let mut watch = w
        .deploy_lock(&["status", "--watch", "staging"])
        .spawn_guarded();
    let free = "ENVIRONMENT  VERDICT  HOLDER  AGE  WAITING  BACKEND\n\
                staging      free     -       -    -        local\n\n";
    assert_eq!(watch.stdout_until(free), free);
    let d = w.tmp.path().join("watched");
    fs::create_dir(&d).unwrap();
    let h = holder(&w, "staging", &d, &[]);
    let seen = watch.stdout_until("held");
    assert!(seen.ends_with("staging      held"), "{seen}");
    fs::write(d.join("go"), "").unwrap();
    finish(h).code(0);
    let seen = watch.stdout_until("staging      free     -       -    -        local\n\n");
    assert!(!seen.contains("ENVIRONMENT  VERDICT  HOLDER  AGE  WAITING  BACKEND\nstaging      free     -       -    -        local\n\nENVIRONMENT  VERDICT  HOLDER  AGE  WAITING  BACKEND\nstaging      free"), "{seen}");
}
