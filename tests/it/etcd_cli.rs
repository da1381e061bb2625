//! Issue 13 through the real binary: "machines" (separate checkouts and
//! lock folders) sharing one real etcd, each test on its own key prefix.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::etcd_support::{self, Etcd, need_etcd};
use crate::harness::{
    Cmd, PATIENCE, World, epoch, finish, hostname, live_refusal, now, per_second, proc_state,
    send_signal, wait_until,
};

/// One machine of `e` on `prefix`: its own checkout, lock folder and HOME.
struct Machine {
    w: World,
    endpoint: String,
    prefix: String,
}

impl Machine {
    fn new(e: &Etcd, prefix: &str) -> Machine {
        Machine {
            w: World::new(),
            endpoint: e.endpoint.clone(),
            prefix: prefix.to_string(),
        }
    }

    fn dl(&self, args: &[&str]) -> Cmd {
        self.w
            .deploy_lock(args)
            .env("DEPLOY_LOCK_BACKEND", "etcd")
            .env("DEPLOY_LOCK_ETCD_ENDPOINTS", &self.endpoint)
            .env("DEPLOY_LOCK_ETCD_PREFIX", &self.prefix)
    }

    fn status_json(&self) -> serde_json::Value {
        let out = self.dl(&["status", "staging", "--json"]).run();
        out.code(0);
        serde_json::from_str(&out.stdout).unwrap()
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.w.tmp.path().join(name)
    }
}

/// The pid a command wrote to `file` once it started.
fn pid_in(file: &Path) -> i32 {
    wait_until(PATIENCE, "the command's pid file", || {
        fs::read_to_string(file).is_ok_and(|s| s.ends_with('\n'))
    });
    fs::read_to_string(file).unwrap().trim().parse().unwrap()
}

fn gone(pid: i32) -> bool {
    matches!(proc_state(pid), None | Some('Z'))
}

/// The etcd revision a `lost` message names: etcd's own count, which every
/// test on the shared server moves, so it is read from the message (digits).
#[track_caller]
fn revision_in(stderr: &str) -> String {
    let rev: String = stderr
        .split_once("(revision ")
        .map(|(_, rest)| rest.chars().take_while(char::is_ascii_digit).collect())
        .unwrap_or_default();
    assert!(!rev.is_empty(), "no revision in:\n{stderr}");
    rev
}

/// The holder's whole stderr when its `sh` command is stopped: `lines`,
/// with sh's report of its killed `sleep` (`notice`: "Terminated",
/// "Killed") before, after or not at all, as the race with the signal goes.
fn with_shell_notice(lines: &str, notice: &str) -> Vec<String> {
    vec![
        lines.to_string(),
        format!("{notice}\n{lines}"),
        format!("{lines}{notice}\n"),
    ]
}

/// A command that writes its pid and runs until killed (ignoring nothing).
const HOLD: &str = "echo $$ > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"; while :; do sleep 0.05; done";

#[test]
fn two_machines_exclude_each_other_and_tokens_grow() {
    let e = need_etcd!("two_machines_exclude_each_other_and_tokens_grow");
    let prefix = etcd_support::prefix("cli-exclude");
    let (a, b) = (Machine::new(e, &prefix), Machine::new(e, &prefix));
    let inside = a.path("inside");
    let tokens = a.path("tokens");
    // Inside the lock: mkdir fails if another holder is inside too.
    let body = "mkdir \"$1\" 2>/dev/null || exit 99; echo \"$DEPLOY_LOCK_FENCING_TOKEN\" >> \"$2\"; rmdir \"$1\"";
    let started = Instant::now();
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let m = if i % 2 == 0 { &a } else { &b };
            let cmds: Vec<Cmd> = (0..50)
                .map(|_| {
                    m.dl(&["run", "--wait=60", "staging", "--", "sh", "-c", body, "_"])
                        .env("X", "")
                })
                .collect();
            let (inside, tokens) = (inside.clone(), tokens.clone());
            std::thread::spawn(move || {
                let mut codes = Vec::new();
                for mut c in cmds {
                    c.cmd.arg(&inside).arg(&tokens);
                    let out = c.run();
                    out.any_code().any_stderr();
                    codes.push((out.code, out.stderr.clone()));
                }
                codes
            })
        })
        .collect();
    let mut overlaps = 0;
    for w in workers {
        for (code, stderr) in w.join().unwrap() {
            match code {
                Some(0) => {}
                Some(99) => overlaps += 1,
                other => panic!("run ended {other:?}: {stderr}"),
            }
        }
    }
    assert_eq!(overlaps, 0, "holders overlapped");
    let t: Vec<i64> = fs::read_to_string(&tokens)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(t.len(), 200);
    assert!(t.windows(2).all(|w| w[0] < w[1]), "tokens grow: {t:?}");
    eprintln!("200 contended runs on 2 machines: {:?}", started.elapsed());
}

/// `cmd` with `path` appended (the command's pid file).
fn arg(mut c: Cmd, path: &Path) -> Cmd {
    c.cmd.arg(path);
    c
}

#[test]
fn status_on_one_machine_shows_the_others_holder_and_check() {
    let e = need_etcd!("status_on_one_machine_shows_the_others_holder_and_check");
    let prefix = etcd_support::prefix("cli-status");
    let (a, b) = (Machine::new(e, &prefix), Machine::new(e, &prefix));
    let pidfile = a.path("pid");
    let tokfile = a.path("token");
    let script = format!(
        "echo \"$DEPLOY_LOCK_FENCING_TOKEN\" > {}; {HOLD}",
        tokfile.display()
    );
    let holder = arg(
        a.dl(&["run", "staging", "--", "sh", "-c", &script, "_"]),
        &pidfile,
    )
    .spawn_guarded();
    let pid = pid_in(&pidfile);
    // The etcd record names the command shortly after its start.
    wait_until(PATIENCE, "the record to name the command", || {
        b.status_json()["holder"]["pid"] == pid
    });
    let v = b.status_json();
    assert_eq!(v["verdict"], "held");
    assert_eq!(v["backend"], "etcd");
    assert_eq!(v["key"], format!("{prefix}/v1/env/staging/lock"));
    assert_eq!(v["holder"]["pid"], pid);
    let token = fs::read_to_string(&tokfile).unwrap().trim().to_string();
    assert_eq!(v["fencing_token"].to_string(), token);
    assert!(v["lease_ttl_remaining_seconds"].as_u64().unwrap() > 0);
    // The block on the other machine, and its refusal.
    let out = b.dl(&["status", "staging"]).run();
    out.code(0);
    assert!(
        out.stdout.contains(&format!("  Fencing token: {token}\n")),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("Verdict: held"), "{}", out.stdout);
    let before = now();
    let out = b.dl(&["run", "staging", "--", "true"]).run();
    let after = now();
    // Both machines run on this host, so the holder's process is shown.
    let at = epoch(v["holder"]["locked_at"].as_str().unwrap());
    let who = format!("tester@{}", hostname());
    out.code(75).stderr_one_of(&per_second(before, after, |t| {
        live_refusal(
            &who,
            at,
            t,
            "sh",
            pid,
            "deploy-lock run --wait staging -- true",
            true,
        )
    }));
    assert!(out.stderr.contains("is held"), "{}", out.stderr);
    // unlock.sh keeps the legacy block's shape for the etcd holder.
    let out =
        b.w.unlock_sh(&["staging"])
            .env("DEPLOY_LOCK_BACKEND", "etcd")
            .env("DEPLOY_LOCK_ETCD_ENDPOINTS", &b.endpoint)
            .env("DEPLOY_LOCK_ETCD_PREFIX", &prefix)
            .run();
    out.code(0);
    assert!(out.stdout.contains("  Locked: true\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("  PID: {pid}\n")),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("Fencing"), "{}", out.stdout);
    // check: 0 while the token holds, 75 for any other.
    b.dl(&["check", "staging", "--token", &token]).run().code(0);
    let stale = (token.parse::<i64>().unwrap() - 1).to_string();
    let out = b.dl(&["check", "staging", "--token", &stale]).run();
    out.code(75).stderr(&format!(
        "ERROR: fencing token {stale} no longer holds the staging lock: stop before anything irreversible\n"
    ));
    drop(holder);
}

#[test]
fn forced_unlock_from_another_machine_stops_the_command() {
    let e = need_etcd!("forced_unlock_from_another_machine_stops_the_command");
    let prefix = etcd_support::prefix("cli-forced");
    let (a, b) = (Machine::new(e, &prefix), Machine::new(e, &prefix));
    let pidfile = a.path("pid");
    let holder = arg(
        a.dl(&["run", "staging", "--", "sh", "-c", HOLD, "_"])
            .env("DEPLOY_LOCK_LOST_GRACE", "5"),
        &pidfile,
    )
    .spawn_guarded();
    let pid = pid_in(&pidfile);
    let out = b.dl(&["unlock", "staging", "--yes"]).run();
    out.code(0).any_stderr();
    // The banner and the result speak of the lease and the key (no lock
    // directory or state file on etcd), and say the holder stops its command.
    let key = format!("etcd:{prefix}/v1/env/staging/lock");
    let tail = format!(
        "This will:\n  1. Revoke the holder's lease, which deletes the lock key: {key}\n  2. Make the holder stop its command: it loses the lock and, unless it runs with DEPLOY_LOCK_ON_LOST=warn, sends it SIGTERM\n\nOnly do this if:\n  - The deployment process crashed or hangs\n  - You've verified no deployment should go on\n\n✓ Lease revoked; the lock key is gone\n\n✓ Lock forcefully released\n\nNext deployment will proceed normally.\n"
    );
    assert!(out.stdout.ends_with(&tail), "{}", out.stdout);
    let t = Instant::now();
    let out = finish(holder);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let rev = revision_in(&out.stderr);
    out.code(76).stderr_one_of(
        &with_shell_notice(
            &format!(
                "ERROR: lost the staging lock while the command runs: the lock's key was deleted (revision {rev}); stopping the command: SIGTERM now, SIGKILL in 5 s; another deploy may start; exit 76\n"
            ),
            "Terminated",
        ),
    );
    assert!(gone(pid), "the command was stopped");
    let loud: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("lost the staging lock"))
        .collect();
    assert_eq!(loud.len(), 1, "{}", out.stderr);
    assert!(
        loud[0].starts_with(
            "ERROR: lost the staging lock while the command runs: the lock's key was deleted"
        ),
        "{}",
        loud[0]
    );
    assert!(a.w.audit_log().contains("\"event\":\"lost\""));
    // Free for the next holder.
    assert_eq!(b.status_json()["verdict"], "free");
}

#[test]
fn on_lost_warn_lets_the_command_finish_and_still_exits_76() {
    let e = need_etcd!("on_lost_warn_lets_the_command_finish_and_still_exits_76");
    let prefix = etcd_support::prefix("cli-warn");
    let (a, b) = (Machine::new(e, &prefix), Machine::new(e, &prefix));
    let go = a.path("go");
    let script = format!(
        "echo $$ > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"; while [ ! -e {} ]; do sleep 0.02; done; echo finished",
        go.display()
    );
    let pidfile = a.path("pid");
    let holder = arg(
        a.dl(&["run", "staging", "--", "sh", "-c", &script, "_"])
            .env("DEPLOY_LOCK_ON_LOST", "warn"),
        &pidfile,
    )
    .spawn_guarded();
    pid_in(&pidfile);
    b.dl(&["unlock", "staging", "--yes"])
        .run()
        .code(0)
        .any_stderr();
    wait_until(PATIENCE, "the loss reported", || {
        a.w.audit_log().contains("\"event\":\"lost\"")
    });
    fs::write(&go, "").unwrap();
    let out = finish(holder);
    let rev = revision_in(&out.stderr);
    out.code(76).stderr(&format!(
        "ERROR: lost the staging lock while the command runs: the lock's key was deleted (revision {rev}); the command goes on (DEPLOY_LOCK_ON_LOST=warn); another deploy may start; exit 76\n"
    ));
    assert_eq!(out.stdout, "finished\n");
    assert!(
        out.stderr
            .contains("the command goes on (DEPLOY_LOCK_ON_LOST=warn)"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_sigkilled_holder_is_free_within_ttl_and_its_command_dead() {
    let e = need_etcd!("a_sigkilled_holder_is_free_within_ttl_and_its_command_dead");
    let prefix = etcd_support::prefix("cli-sigkill");
    let (a, b) = (Machine::new(e, &prefix), Machine::new(e, &prefix));
    let pidfile = a.path("pid");
    let mut holder = arg(
        a.dl(&["run", "staging", "--", "sh", "-c", HOLD, "_"])
            .env("DEPLOY_LOCK_ETCD_TTL", "2"),
        &pidfile,
    )
    .spawn_guarded();
    let pid = pid_in(&pidfile);
    send_signal(holder.pid(), Signal::SIGKILL);
    let _ = holder.0.wait();
    let t = Instant::now();
    let out = b.dl(&["run", "--wait=10", "staging", "--", "true"]).run();
    // Issue 21: progress lines while it waited (off a terminal).
    out.code(0).stderr_after_waiting("");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "free after {:?}",
        t.elapsed()
    );
    wait_until(Duration::from_secs(2), "the command's end", || gone(pid));
}

#[test]
fn etcd_stopped_under_a_holder_stops_its_command_within_ttl_and_grace() {
    let Some(e) = etcd_support::own("etcd_stopped_under_a_holder") else {
        return;
    };
    let prefix = etcd_support::prefix("cli-etcd-gone");
    let a = Machine::new(&e, &prefix);
    let pidfile = a.path("pid");
    // A command that ignores SIGTERM: only the SIGKILL after the grace ends it.
    let script = format!("trap '' TERM; {HOLD}");
    let holder = arg(
        a.dl(&["run", "staging", "--", "sh", "-c", &script, "_"])
            .env("DEPLOY_LOCK_ETCD_TTL", "2")
            .env("DEPLOY_LOCK_LOST_GRACE", "1"),
        &pidfile,
    )
    .spawn_guarded();
    let pid = pid_in(&pidfile);
    let t = Instant::now();
    e.stop();
    let out = finish(holder);
    let took = t.elapsed();
    // How long no renewal was acknowledged is measured (1.5 s and up, by
    // the scheduler's whim); sh reports its SIGKILLed `sleep` or not as the
    // race goes; and etcd may go before the wrapper recorded the command's
    // pid (a warning whose cause is how the connection broke): the lines
    // are checked one by one below.
    out.code(76).any_stderr();
    assert!(gone(pid));
    assert!(took < Duration::from_secs(2 + 1 + 1), "{took:?}");
    assert!(
        out.stderr.contains("no lease renewal acknowledged"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("SIGKILL"), "{}", out.stderr);
    let mut lines: Vec<&str> = out.stderr.lines().filter(|l| *l != "Killed").collect();
    let unrecorded = format!(
        "WARNING: could not record the command's pid in the lock: etcd at {} is unreachable: ",
        e.endpoint
    );
    if lines[0].starts_with(&unrecorded) {
        lines.remove(0);
    }
    let lost = lines[0]
        .strip_prefix(
            "ERROR: lost the staging lock while the command runs: no lease renewal acknowledged for ",
        )
        .and_then(|l| l.strip_suffix(" s of its 2 s TTL (etcd unreachable or this process was stopped); stopping the command: SIGTERM now, SIGKILL in 1 s; another deploy may start; exit 76"))
        .unwrap_or_else(|| panic!("{}", out.stderr));
    // Stopped at the local lease deadline: the stop margin (500 ms at a
    // 2 s TTL) before etcd could expire the lease, never after.
    assert!(
        lost.parse::<f64>().is_ok_and(|s| (1.5..2.0).contains(&s)),
        "{}",
        out.stderr
    );
    assert_eq!(
        lines[1..],
        [
            "ERROR: the command outlived the grace after losing the staging lock: SIGKILL",
            &format!(
                "ERROR: etcd at {} is unreachable: Connection refused (os error 111)",
                e.endpoint
            ),
            // The run's audit events stay in the checkout's log only.
            &format!(
                "WARNING: could not copy {} audit events to etcd (etcd at {} is unreachable: \
                 Connection refused (os error 111)); this checkout's audit log has them",
                a.w.audit_log().lines().count(),
                e.endpoint
            ),
        ],
        "{}",
        out.stderr
    );
    assert!(out.stderr.ends_with('\n'), "{}", out.stderr);
}

#[test]
fn a_holder_stopped_past_its_ttl_stops_its_command_on_resume_and_leaves_the_new_holder_alone() {
    let e = need_etcd!("a_holder_stopped_past_its_ttl");
    let prefix = etcd_support::prefix("cli-sigstop");
    let (a, b) = (Machine::new(e, &prefix), Machine::new(e, &prefix));
    let pidfile = a.path("pid");
    let holder = arg(
        a.dl(&["run", "staging", "--", "sh", "-c", HOLD, "_"])
            .env("DEPLOY_LOCK_ETCD_TTL", "1"),
        &pidfile,
    )
    .spawn_guarded();
    let pid = pid_in(&pidfile);
    let wrapper = holder.pid();
    send_signal(wrapper, Signal::SIGSTOP);
    // The new holder gets in once the lease ran out, and runs until told.
    let (in_b, go_b) = (b.path("b-in"), b.path("b-go"));
    let script = format!(
        "touch {}; while [ ! -e {} ]; do sleep 0.02; done; echo b-done",
        in_b.display(),
        go_b.display()
    );
    let new = b
        .dl(&["run", "--wait=20", "staging", "--", "sh", "-c", &script])
        .spawn_guarded();
    wait_until(PATIENCE, "the new holder", || in_b.exists());
    let token_b = b.status_json()["fencing_token"].clone();
    assert!(!gone(pid), "the stopped holder's command ran on meanwhile");
    send_signal(wrapper, Signal::SIGCONT);
    let t = Instant::now();
    let out = finish(holder);
    // What the resumed holder notices first is a race between its watch
    // (the key deleted, or b's key) and its keepalive (no renewal for so
    // many seconds), and sh reports its killed `sleep` or not: the cause is
    // left open, the rest checked line by line.
    out.code(76).any_stderr();
    let lines: Vec<&str> = out.stderr.lines().filter(|l| *l != "Terminated").collect();
    assert_eq!(lines.len(), 2, "{}", out.stderr);
    assert!(
        lines[0].starts_with("ERROR: lost the staging lock while the command runs: ")
            && lines[0].ends_with(
                "; stopping the command: SIGTERM now, SIGKILL in 30 s; another deploy may start; exit 76"
            ),
        "{}",
        out.stderr
    );
    assert_eq!(
        lines[1],
        format!(
            "WARNING: the staging lock is held by tester@{} now; left it alone",
            hostname()
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.ends_with('\n'), "{}", out.stderr);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert!(gone(pid));
    // The new holder keeps its lock.
    let v = b.status_json();
    assert_eq!(v["verdict"], "held");
    assert_eq!(v["fencing_token"], token_b);
    fs::write(&go_b, "").unwrap();
    let out = finish(new);
    out.code(0).stderr_after_waiting("");
    assert_eq!(out.stdout, "b-done\n");
}

#[test]
fn the_checkout_file_chooses_the_backend() {
    let e = need_etcd!("the_checkout_file_chooses_the_backend");
    let prefix = etcd_support::prefix("cli-file");
    let w = World::new();
    fs::write(
        w.root.join("deploy/config/deploy-lock.env"),
        format!(
            "# the team's lock\nDEPLOY_LOCK_BACKEND=etcd\nDEPLOY_LOCK_ETCD_ENDPOINTS={}\nDEPLOY_LOCK_ETCD_PREFIX={prefix}\n",
            e.endpoint
        ),
    )
    .unwrap();
    let out = w.deploy_lock(&["status", "staging", "--json"]).run();
    out.code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["backend"], "etcd");
    assert_eq!(v["key"], format!("{prefix}/v1/env/staging/lock"));
    // The caller's variable wins, with a warning.
    let out = w
        .deploy_lock(&["status", "staging", "--json"])
        .env("DEPLOY_LOCK_BACKEND", "local")
        .run();
    out.code(0).stderr(&format!(
        "WARNING: DEPLOY_LOCK_BACKEND=local overrides {}'s DEPLOY_LOCK_BACKEND=etcd: this lock is not the one the rest of the team uses\n",
        w.root.join("deploy/config/deploy-lock.env").display()
    ));
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(v.get("backend").is_none());
    // So does the flag.
    let out = w
        .deploy_lock(&["status", "staging", "--json", "--backend", "local"])
        .run();
    out.code(0).any_stderr();
    assert!(out.stderr.contains("overrides"));
}

/// A TCP server answering every request with `reply` (None: never answers).
fn fake_server(reply: Option<&'static str>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut s in l.incoming().flatten() {
            if let Some(r) = reply {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(r.as_bytes());
            } else {
                held.push(s);
            }
        }
    });
    format!("http://{addr}")
}

#[test]
fn unreachable_and_404_endpoints_fail_in_one_line_with_74_and_run_nothing() {
    let w = World::new();
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("http://{a}")
    };
    let not_found = fake_server(Some(
        "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
    ));
    let silent = fake_server(None);
    let ran = w.tmp.path().join("ran");
    for (endpoint, want, whole) in [
        (
            &refused,
            format!("ERROR: etcd at {refused} is unreachable: "),
            format!("ERROR: etcd at {refused} is unreachable: Connection refused (os error 111)\n"),
        ),
        (
            &not_found,
            format!("ERROR: {not_found} answers 404 on /version: "),
            format!(
                "ERROR: {not_found} answers 404 on /version: not an etcd client URL, or its JSON gateway is disabled (start etcd with --enable-grpc-gateway)\n"
            ),
        ),
        (
            &silent,
            format!("ERROR: etcd at {silent} is unreachable: "),
            format!("ERROR: etcd at {silent} is unreachable: no answer within 5.0 s\n"),
        ),
    ] {
        let t = Instant::now();
        let out = w
            .deploy_lock(&["run", "staging", "--", "touch"])
            .env("DEPLOY_LOCK_BACKEND", "etcd")
            .env("DEPLOY_LOCK_ETCD_ENDPOINTS", endpoint)
            .env("PATH", "/usr/bin:/bin");
        let mut out = out;
        out.cmd.arg(&ran);
        let out = out.run();
        out.code(74).stderr(&whole);
        assert!(
            t.elapsed() < Duration::from_millis(5500),
            "{endpoint}: {:?}",
            t.elapsed()
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stderr.starts_with(&want), "{}", out.stderr);
        assert!(!ran.exists(), "nothing runs");
    }
}

#[test]
fn a_waiter_that_loses_etcd_retries_and_says_so() {
    let Some(e) = etcd_support::own("a_waiter_that_loses_etcd_retries_and_says_so") else {
        return;
    };
    let prefix = etcd_support::prefix("cli-wait-lost");
    let (a, b) = (Machine::new(&e, &prefix), Machine::new(&e, &prefix));
    let (pidfile, go) = (a.path("pid"), a.path("go"));
    let script = format!(
        "echo $$ > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"; while [ ! -e {} ]; do sleep 0.02; done",
        go.display()
    );
    let holder = arg(
        a.dl(&["run", "staging", "--", "sh", "-c", &script, "_"]),
        &pidfile,
    )
    .spawn_guarded();
    let pid = pid_in(&pidfile);
    // The record names the command shortly after its start: before etcd is
    // stopped, or the holder rightly warns that it could not record it.
    wait_until(PATIENCE, "the record to name the command", || {
        b.status_json()["holder"]["pid"] == pid
    });
    let waiter = b
        .dl(&[
            "run",
            "--wait=30",
            "--wait-interval=0.2",
            "staging",
            "--",
            "echo",
            "b ran",
        ])
        .spawn_guarded();
    // Waiting once it watches the key (the holder's keeper watches too).
    wait_until(PATIENCE, "the waiter's watch", || e.watchers() >= 2);
    let mut waiter = waiter;
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (mut err, said) = (waiter.0.stderr.take().unwrap(), said.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                said.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    send_signal(e.pid(), Signal::SIGSTOP);
    // Stopped until the waiter says it lost etcd and retries.
    wait_until(PATIENCE, "the waiter's retry notice", || {
        said.lock()
            .unwrap()
            .contains("; retrying until the wait's limit\n")
    });
    send_signal(e.pid(), Signal::SIGCONT);
    fs::write(&go, "").unwrap();
    finish(holder).code(0);
    let out = finish(waiter);
    out.any_code();
    reader.join().unwrap();
    let out = crate::harness::Out::new(
        out.stdout.clone(),
        said.lock().unwrap().clone(),
        out.code,
        out.signal,
    );
    out.code(0).any_stderr();
    assert_eq!(out.stdout, "b ran\n");
    assert!(
        out.stderr.contains("; retrying until the wait's limit\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("WARNING: the lock store answers again\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn wait_on_another_machine_ends_at_the_release_and_unlock_id_spares_a_new_holder() {
    let e = need_etcd!("wait_on_another_machine_ends_at_the_release");
    let prefix = etcd_support::prefix("cli-wait");
    let (a, b) = (Machine::new(e, &prefix), Machine::new(e, &prefix));
    let (pidfile, go) = (a.path("pid"), a.path("go"));
    let script = format!(
        "echo $$ > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"; while [ ! -e {} ]; do sleep 0.02; done",
        go.display()
    );
    let holder = arg(
        a.dl(&["run", "staging", "--", "sh", "-c", &script, "_"]),
        &pidfile,
    )
    .spawn_guarded();
    pid_in(&pidfile);
    let first_id = b.status_json()["holder"]["lock_id"]
        .as_str()
        .unwrap()
        .to_string();
    let waiter = b.dl(&["wait", "staging"]).spawn_guarded();
    // Released once the waiter saw it held and watches it.
    etcd_support::wait_for_thread(waiter.0.id() as i32, "etcd-wait");
    fs::write(&go, "").unwrap();
    finish(holder).code(0);
    let out = finish(waiter);
    out.code(0);
    assert!(out.stdout.ends_with("✓ Lock released!\n"), "{}", out.stdout);
    // A new holder: an unlock of the first lock id leaves it alone.
    fs::remove_file(&go).unwrap();
    fs::remove_file(&pidfile).unwrap();
    let holder = arg(
        a.dl(&["run", "staging", "--", "sh", "-c", &script, "_"]),
        &pidfile,
    )
    .spawn_guarded();
    let pid2 = pid_in(&pidfile);
    // Its record names its command shortly after the start.
    wait_until(PATIENCE, "the second holder", || {
        let h = &b.status_json()["holder"];
        h["lock_id"].as_str().is_some_and(|id| id != first_id) && h["pid"] == pid2
    });
    let second = b.status_json()["holder"].clone();
    let out = b
        .dl(&["unlock", "staging", "--yes", "--id", &first_id])
        .run();
    // Issue 21: an id that is not the lock's is said at once, with the
    // lock's own id.
    out.code(75).stdout("").stderr(&format!(
        "ERROR: {first_id} is not the staging lock's id: its id is {} (deploy-lock status staging shows who holds it); nothing changed\n",
        second["lock_id"].as_str().unwrap()
    ));
    assert_eq!(b.status_json()["verdict"], "held");
    fs::write(&go, "").unwrap();
    finish(holder).code(0);
}

/// Issue 20's team trail: with the etcd backend every audit event is also
/// copied to etcd, and `log` on one machine shows the other's acquisitions
/// and releases (each once, its own not doubled).
#[test]
fn log_shows_the_other_machines_events_through_etcd() {
    let e = need_etcd!("etcd_cli::log_shows_the_other_machines_events_through_etcd");
    let prefix = etcd_support::prefix("team-log");
    let (a, b) = (Machine::new(e, &prefix), Machine::new(e, &prefix));
    a.dl(&["run", "staging", "--", "true"])
        .run()
        .code(0)
        .stderr("");
    b.dl(&["run", "production", "--", "sh", "-c", "exit 3"])
        .run()
        .code(3)
        .stderr("");
    let recorded = |m: &Machine| -> Vec<serde_json::Value> {
        m.w.audit_log()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let (from_a, from_b) = (recorded(&a), recorded(&b));
    assert_eq!(from_a.len(), 2, "{from_a:?}");
    assert_eq!(from_b.len(), 2, "{from_b:?}");
    for m in [&a, &b] {
        let out = m.dl(&["log", "--json"]).run();
        out.code(0).stderr("");
        let shown: Vec<serde_json::Value> = out
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(shown.len(), 4, "{}", out.stdout);
        // Each recorded event is shown once, as recorded (plus the fields
        // `log --json` adds).
        for event in from_a.iter().chain(&from_b) {
            let fields = event.as_object().unwrap();
            let matching = shown
                .iter()
                .filter(|s| fields.iter().all(|(k, v)| s.get(k) == Some(v)))
                .count();
            assert_eq!(matching, 1, "{event} in {}", out.stdout);
        }
    }
    // The other machine's release, as the text log words it.
    let text = a.dl(&["log", "production"]).run();
    text.code(0).stderr("");
    let lines: Vec<&str> = text.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", text.stdout);
    assert!(
        lines[0].contains(" production   acquire "),
        "{}",
        text.stdout
    );
    assert!(
        lines[1].contains(" release ") && lines[1].contains("exit 3"),
        "{}",
        text.stdout
    );
}
