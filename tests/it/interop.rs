//! Issue 10: deploy-lock beside the legacy deploy.sh (tests/fixtures/
//! legacy-deploy.sh, the legacy script's lock code; its header lists what it
//! reproduces): a signal to a wrapped deploy, the 30-minute rule, a legacy --force
//! run, unlock raced against a change of holder, unknown and zombie holders,
//! settings too large to mean anything. Every lock-holding command logs
//! `start|end NAME NANOS` lines to one file; intervals must never overlap.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::harness::*;

fn install_legacy(w: &World) -> PathBuf {
    w.install_fixture("legacy-deploy.sh", "deploy/scripts/deploy.sh")
}

/// A command for under the lock: logs its start and end (nanoseconds) to
/// `log`, checks at its end that the lock directory still names its own
/// lock id (`kept` or `LOST`), and says whether `deploy_pid` (a file holding
/// the wrapped deploy.sh's pid) still ran when it started.
fn logged(name: &str, log: &Path, lock: &Path, deploy_pid: Option<&Path>, work: &str) -> String {
    let alive_check = match deploy_pid {
        Some(p) => format!(
            r#"if [ -e "/proc/$(cat "{p}")" ]; then echo "DEPLOY_ALIVE {name}" >> "{log}"; fi"#,
            p = p.display(),
            log = log.display()
        ),
        None => String::new(),
    };
    format!(
        r#"echo "start {name} $(date +%s%N)" >> "{log}"
echo "id {name} $DEPLOY_LOCK_HELD" >> "{log}"
{alive_check}
{work}
if grep -q "\"lock_id\": \"$DEPLOY_LOCK_HELD\"" "{lock}/owner.json" 2>/dev/null; then echo "kept {name}" >> "{log}"; else echo "LOST {name}" >> "{log}"; fi
echo "end {name} $(date +%s%N)" >> "{log}""#,
        log = log.display(),
        lock = lock.display()
    )
}

/// The log's intervals (`start`..`end`, or deploy.sh's `start`..last `exit`),
/// asserted never to overlap; returns them in start order.
#[track_caller]
fn assert_no_overlaps(log: &Path) -> Vec<(String, u128, u128)> {
    let text = fs::read_to_string(log).unwrap_or_default();
    assert!(!text.contains("LOST"), "a holder lost its lock:\n{text}");
    assert!(
        !text.contains("DEPLOY_ALIVE"),
        "a command started while deploy.sh ran:\n{text}"
    );
    let mut spans: Vec<(String, u128, u128)> = Vec::new();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        match w[..] {
            ["start", name, t] => spans.push((name.to_string(), t.parse().unwrap(), u128::MAX)),
            ["end" | "exit", name, t] => {
                let s = spans
                    .iter_mut()
                    .rev()
                    .find(|s| s.0 == name)
                    .unwrap_or_else(|| panic!("{line} without a start:\n{text}"));
                // deploy.sh writes `exit` twice on a signal: the last counts.
                s.2 = t.parse().unwrap();
            }
            _ => {}
        }
    }
    spans.sort_by_key(|s| s.1);
    for pair in spans.windows(2) {
        assert!(pair[0].2 != u128::MAX, "{} never ended:\n{text}", pair[0].0);
        assert!(
            pair[0].2 < pair[1].1,
            "{} and {} overlap:\n{text}",
            pair[0].0,
            pair[1].0
        );
    }
    spans
}

/// `deploy-lock run staging -- sh -c ...` again and again until stopped:
/// a stream of third runs. Returns how many ran and how many were refused.
struct Stream {
    stop: Arc<AtomicBool>,
    /// Third runs finished so far (the stream is under way once it is 1).
    done: Arc<std::sync::atomic::AtomicUsize>,
    handle: std::thread::JoinHandle<(usize, usize)>,
}

impl Stream {
    fn start(w: &World, log: &Path, lock: &Path, tag: &str) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let d = done.clone();
        let mut cmds = Vec::new();
        // Built here: World is not Send.
        for i in 0..400 {
            let name = format!("third-{tag}-{i}");
            let cs = logged(&name, log, lock, None, "sleep 0.02");
            cmds.push(
                w.deploy_lock(&["run", "staging", "--", "sh", "-c", &cs])
                    .cmd,
            );
        }
        let handle = std::thread::spawn(move || {
            let (mut ran, mut refused) = (0, 0);
            for mut c in cmds {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let st = c
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .unwrap();
                match st.code() {
                    Some(0) => ran += 1,
                    Some(75) => refused += 1,
                    other => panic!("a third run ended {other:?}"),
                }
                d.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
            (ran, refused)
        });
        Stream { stop, done, handle }
    }

    fn stop(self) -> (usize, usize) {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().unwrap()
    }
}

/// The number of threads of `pid` (a `run --wait` blocked on another run's
/// kernel lock has a second one).
fn threads(pid: i32) -> usize {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Issue 10, item 1: TERM or INT to `deploy-lock staging` wrapping the legacy
/// deploy.sh, whose trap releases twice and logs on; a queued `run --wait`
/// and a stream of third runs. Never two holders; the waiter starts only
/// once deploy.sh has exited, and keeps its lock to its end.
fn signal_rounds(sig: Signal, rounds: usize) {
    let w = World::new();
    install_legacy(&w);
    let lock = w.lock_path("staging");
    let mut stats = (0, 0);
    for round in 0..rounds {
        let d = w.tmp.path().join(format!("round-{round}"));
        fs::create_dir(&d).unwrap();
        let log = d.join("log");
        let ready = d.join("ready");
        let holder = w
            .deploy_lock(&["staging"])
            .env("FIXTURE_WORK", "sleep")
            .env("FIXTURE_READY", &ready)
            .env("FIXTURE_MARK", &log)
            .env("FIXTURE_TAIL_MS", "80")
            .spawn_guarded();
        wait_until(PATIENCE, "deploy.sh to start", || ready.exists());
        let cs = logged("waiter", &log, &lock, Some(&ready), "sleep 0.05");
        let waiter = w
            .deploy_lock(&["run", "--wait", "staging", "--", "sh", "-c", &cs])
            .spawn_guarded();
        // Queued: blocked on the holder's kernel lock in its waiter thread.
        wait_until(PATIENCE, "the waiter to queue", || {
            threads(waiter.pid()) >= 2
        });
        let stream = Stream::start(&w, &log, &lock, &round.to_string());
        // The third runs are under way (one has come and gone) before the
        // signal, so they race the holder's end and the waiter's start.
        wait_until(PATIENCE, "the first third run", || {
            stream.done.load(Ordering::SeqCst) >= 1
        });
        send_signal(holder.pid(), sig);
        let h = finish(holder);
        let want = 128 + sig as i32;
        h.any_stderr().code(want);
        let wout = finish(waiter);
        wout.code(0).stderr_after_waiting("");
        let ran_refused = stream.stop();
        stats.0 += ran_refused.0;
        stats.1 += ran_refused.1;
        let spans = assert_no_overlaps(&log);
        let deploy = spans.iter().position(|s| s.0.parse::<i32>().is_ok());
        let waiter_at = spans.iter().position(|s| s.0 == "waiter");
        assert!(
            deploy.is_some() && waiter_at > deploy,
            "round {round}: {spans:?}"
        );
        assert!(!lock.exists(), "round {round}: the lock was left behind");
    }
    // Nothing ever removed a waiter's or a third run's lock under it: the
    // only restores are of the wrapped deploy.sh's locks.
    let mut ids = Vec::new();
    for round in 0..rounds {
        let log = w.tmp.path().join(format!("round-{round}/log"));
        for l in fs::read_to_string(log).unwrap().lines() {
            if let ["id", _, id] = l.split_whitespace().collect::<Vec<_>>()[..] {
                ids.push(id.to_string());
            }
        }
    }
    assert!(ids.len() >= rounds);
    for line in w.audit_log().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["event"] == "restore" {
            let id = v["lock_id"].as_str().unwrap();
            assert!(!ids.iter().any(|i| i == id), "{line}");
        }
    }
    eprintln!(
        "interop {sig:?}: {rounds} rounds, 0 overlaps; third runs: {} ran after, {} refused",
        stats.0, stats.1
    );
}

/// 20 rounds as two worlds of 10 side by side (each its own lock folder
/// and checkout): a round is mostly the legacy script's sleeps.
fn twenty_signal_rounds(sig: Signal) {
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(move || signal_rounds(sig, 10));
        }
    });
}

#[test]
fn issue_10_term_to_a_wrapped_legacy_deploy_never_lets_a_second_deploy_in() {
    twenty_signal_rounds(Signal::SIGTERM);
}

#[test]
fn issue_10_int_to_a_wrapped_legacy_deploy_never_lets_a_second_deploy_in() {
    twenty_signal_rounds(Signal::SIGINT);
}

/// Item 2: the legacy's takeover rule at 5 s and deploy-lock's stale timeout
/// at 8 s (heartbeat every 2 s): a legacy run never takes a live holder's lock.
#[test]
fn issue_10_a_legacy_run_never_takes_a_live_holders_lock() {
    let w = World::new();
    let legacy = install_legacy(&w);
    let (wrapper, probe, _) = {
        let script = sig_child(&w);
        let probe = Probe::new(&w, "holder");
        let wrapper = w
            .deploy_lock(&[
                "run",
                "staging",
                "--",
                script.to_str().unwrap(),
                probe.dir.to_str().unwrap(),
            ])
            .env("DEPLOY_LOCK_STALE_SECS", "8")
            .spawn_guarded();
        let pid = probe.wait_ready();
        wait_recorded(&w, pid);
        (wrapper, probe, pid)
    };
    let started = Instant::now();
    let mut tries = 0;
    let lock = w.lock_path("staging");
    let locked_at = || -> i64 {
        fs::read_to_string(lock.join("locked_at"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    // Past the legacy's 5 s and deploy-lock's 8 s.
    while started.elapsed() < Duration::from_secs(9) {
        let mut c = w.cmd(&legacy).env("FIXTURE_LOCK_TIMEOUT", "5");
        c.cmd.arg("staging");
        // The legacy ages the lock by locked_at, which the holder's
        // heartbeat refreshes meanwhile: every age the clocks allow.
        let (before, first) = (now(), locked_at());
        let out = c.run();
        let (after, last) = (now(), locked_at());
        let mut wants = Vec::new();
        for t in before..=after {
            for l in first..=last {
                wants.push(format!(
                    "ERROR: Deployment already in progress for staging (lock: {}, {}s old)\n",
                    lock.display(),
                    t - l
                ));
            }
        }
        out.code(1).stderr_one_of(&wants);
        assert!(
            out.stderr
                .starts_with("ERROR: Deployment already in progress for staging"),
            "after {:?}: {}",
            started.elapsed(),
            out.stderr
        );
        tries += 1;
        std::thread::sleep(Duration::from_millis(500));
    }
    // The state record still says when the lock was taken, and every
    // message ages it from then.
    let v: serde_json::Value = serde_json::from_str(
        &w.deploy_lock(&["status", "staging", "--json"])
            .env("DEPLOY_LOCK_STALE_SECS", "8")
            .run()
            .stdout,
    )
    .unwrap();
    assert!(v["age_seconds"].as_i64().unwrap() >= 9, "{v}");
    assert_eq!(v["verdict"], "held");
    let age_file = fs::read_to_string(w.lock_path("staging").join("locked_at")).unwrap();
    assert!(now() - age_file.trim().parse::<i64>().unwrap() <= 3);
    probe.send("exit 0");
    finish(wrapper).code(0);
    assert_released(&w);
    eprintln!("interop: {tries} legacy runs over 9 s, none took the live holder's lock");
}

/// Item 3: a legacy `deploy.sh --force` run directly beside a holder deletes
/// the lock at its exit; the holder restores it within a second, and no
/// other deploy-lock run starts meanwhile.
#[test]
fn issue_10_a_legacy_force_run_beside_a_holder_is_restored_within_a_second() {
    let w = World::new();
    let legacy = install_legacy(&w);
    let lock = w.lock_path("staging");
    let d = w.tmp.path().join("cs");
    fs::create_dir(&d).unwrap();
    let log = d.join("log");
    let go = d.join("go");
    let cs = logged(
        "holder",
        &log,
        &lock,
        None,
        &format!(r#"while [ ! -e "{}" ]; do sleep 0.01; done"#, go.display()),
    );
    let holder = w
        .deploy_lock(&["run", "staging", "--", "sh", "-c", &cs])
        .spawn_guarded();
    wait_until(PATIENCE, "the holder to start", || {
        fs::read_to_string(&log).is_ok_and(|l| l.contains("start holder"))
    });
    let lock_id = w.state_json()["lock"]["lock_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ours = |w: &World| {
        fs::read_to_string(lock.join("owner.json"))
            .is_ok_and(|o| o.contains(&format!("\"lock_id\": \"{lock_id}\"")))
            && w.state_json()["lock"]["lock_id"] == lock_id.as_str()
            && w.state_json()["lock"]["locked"] == true
    };
    let stream = Stream::start(&w, &log, &lock, "f");
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let mut c = w.cmd(&legacy).env("FIXTURE_TAIL_MS", "0");
        c.cmd.args(["staging", "--force"]);
        let out = c.run();
        let gone_at = Instant::now();
        out.code(0)
            .stderr("WARNING: Force flag set - skipping deployment lock\n");
        wait_until(PATIENCE, "the lock to be restored", || ours(&w));
        worst = worst.max(gone_at.elapsed());
    }
    // The keeper looks every 100 ms: alone this measures 30-80 ms (the
    // figure the notes and README report). The bound is loose on purpose,
    // a sanity check that the keeper did not stall, not a timing target:
    // under a parallel suite on 2 cores a scheduler delay is not a defect.
    assert!(worst < Duration::from_secs(3), "restored after {worst:?}");
    let (ran, refused) = stream.stop();
    fs::write(&go, "").unwrap();
    let h = finish(holder);
    h.code(0).any_stderr();
    assert_eq!(ran, 0, "a third run started beside the holder");
    assert!(refused > 0);
    assert_no_overlaps(&log);
    assert_released(&w);
    let restores = audit_events(&w).iter().filter(|e| *e == "restore").count();
    assert!(restores >= 5, "{}", w.audit_log());
    assert!(
        h.stderr.lines().all(|l| l.starts_with("WARNING: the staging ")
            && l.contains(" vanished while the command runs, removed by something other than a deploy-lock unlock")),
        "{}",
        h.stderr
    );
    eprintln!(
        "interop: legacy --force beside a holder: 5 removals, each restored within {worst:?}; {refused} third runs refused, 0 overlaps"
    );
}

/// Holds the staging lock with sig-child.sh; returns (wrapper, probe).
fn holder(w: &World, name: &str) -> (KillOnDrop, Probe) {
    let (wrapper, probe, _) = hold_lock(w, name);
    (wrapper, probe)
}

/// Item 4: the unlock shows holder A; A ends and B takes the lock before
/// `yes` arrives: B's lock survives, one line says so, non-zero exit.
fn unlock_race(persona: &str, via_pty: bool) {
    let w = World::new();
    let (a, a_probe) = holder(&w, "a");
    let mut unlock_cmd = if persona == "unlock.sh" {
        w.unlock_sh(&["staging", "--force"])
    } else {
        w.deploy_lock(&["unlock", "staging"])
    };
    let want_code = if persona == "unlock.sh" { 1 } else { 75 };
    let swap = |w: &World| {
        a_probe.send("exit 0");
        // A's kernel lock goes when A's process does, just after its release.
        let a_pid = a.pid();
        wait_until(PATIENCE, "A to end", || {
            matches!(proc_state(a_pid), None | Some('Z'))
        });
        assert!(!w.lock_path("staging").exists());
        holder(w, "b")
    };
    let (b, b_probe, out, code) = if via_pty {
        let mut pty = unlock_cmd.spawn_pty();
        pty.expect("(type 'yes' to confirm): ", PATIENCE);
        let (b, b_probe) = swap(&w);
        pty.send(b"yes\n");
        let st = pty.wait(PATIENCE);
        (b, b_probe, pty.text(), st.code())
    } else {
        unlock_cmd
            .cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = unlock_cmd.grouped().spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                s2.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        wait_until(PATIENCE, "the warning before the question", || {
            String::from_utf8_lossy(&seen.lock().unwrap()).contains("Only do this if:")
        });
        let (b, b_probe) = swap(&w);
        stdin.write_all(b"yes\n").unwrap();
        drop(stdin);
        let st = wait_exit(&mut child);
        reader.join().unwrap();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let text = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned() + &err;
        (b, b_probe, text, st.code())
    };
    assert_eq!(code, Some(want_code), "{persona} via pty={via_pty}:\n{out}");
    let want = if persona == "unlock.sh" {
        "ERROR: The lock changed hands since it was shown (now held by tester@"
    } else {
        "ERROR: the staging lock changed hands since it was shown: it is held by tester@"
    };
    assert!(out.contains(want), "{out}");
    assert!(!out.contains("Lock forcefully released"), "{out}");
    // A was alive when shown: the question was preceded by a line saying so.
    assert!(out.contains("is still running"), "{out}");
    // B's lock is intact, and B still holds it.
    let bpid = b_probe.wait_ready();
    assert_eq!(state_pid(&w), Some(bpid));
    let v: serde_json::Value =
        serde_json::from_str(&w.deploy_lock(&["status", "staging", "--json"]).run().stdout)
            .unwrap();
    assert_eq!(v["verdict"], "held");
    assert_eq!(v["holder"]["pid"], bpid);
    b_probe.send("exit 0");
    finish(b).code(0);
    assert_released(&w);
}

#[test]
fn issue_10_unlock_sh_through_a_pipe_never_removes_a_new_holders_lock() {
    unlock_race("unlock.sh", false);
}

#[test]
fn issue_10_unlock_sh_through_a_pty_never_removes_a_new_holders_lock() {
    unlock_race("unlock.sh", true);
}

#[test]
fn issue_10_deploy_lock_unlock_through_a_pipe_never_removes_a_new_holders_lock() {
    unlock_race("deploy-lock", false);
}

#[test]
fn issue_10_deploy_lock_unlock_through_a_pty_never_removes_a_new_holders_lock() {
    unlock_race("deploy-lock", true);
}

/// `deploy-lock unlock ENV --id LOCK_ID` removes only that lock.
#[test]
fn issue_10_unlock_by_id_removes_only_that_lock() {
    let w = World::new();
    let (a, a_probe) = holder(&w, "a");
    let id = w.state_json()["lock"]["lock_id"]
        .as_str()
        .unwrap()
        .to_string();
    let status = w.deploy_lock(&["status", "staging"]).run();
    assert!(
        status.stdout.contains(&format!("\nLock ID: {id}\n")),
        "{}",
        status.stdout
    );
    let out = w
        .deploy_lock(&[
            "unlock",
            "staging",
            "--yes",
            "--id",
            "lock_0000000000000000_000000000000000000000000",
        ])
        .run();
    // Issue 21: a wrong id is said at once (no banner, nothing asked),
    // with the lock's own id.
    out.code(75).stdout("").stderr(&format!(
        "ERROR: lock_0000000000000000_000000000000000000000000 is not the staging lock's id: its id is {id} (deploy-lock status staging shows who holds it); nothing changed\n"
    ));
    let cmd_pid = state_pid(&w).unwrap();
    assert!(w.lock_path("staging").exists());
    let unlocked = w
        .deploy_lock(&["unlock", "staging", "--yes", "--id", &id])
        .run();
    unlocked.code(0);
    // Issue 21: not "proceed normally": the run goes on, and its lock with it.
    let run_words = format!(
        "the deploy-lock run's command (pid {cmd_pid}, under deploy-lock pid {}) still runs",
        a.pid()
    );
    assert!(
        unlocked.stdout.ends_with(&format!(
            "✓ Lock forcefully released\n\nNot free yet: {run_words}; the lock frees when it ends (status says released_running until then).\n"
        )),
        "{}",
        unlocked.stdout
    );
    assert!(!w.lock_path("staging").exists());
    // Its run goes on and still keeps other deploy-lock runs out, which
    // `status`, its JSON, --quiet and a refused `run` all say.
    let status = w.deploy_lock(&["status", "staging"]).run();
    assert!(
        status.stdout.ends_with(&format!(
            "Verdict: released_running: the lock was force-unlocked, but {run_words}; the lock frees when it ends (no deploy-lock run starts before)\n"
        )),
        "{}",
        status.stdout
    );
    let json = w.deploy_lock(&["status", "staging", "--json"]).run();
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["verdict"], "released_running");
    assert_eq!(v["holder"], serde_json::Value::Null);
    assert_eq!(
        v["run"],
        serde_json::json!({"pid": cmd_pid, "deploy_lock_pid": a.pid(), "lock_id": id, "frees": "when it ends"})
    );
    w.deploy_lock(&["status", "staging", "--quiet"])
        .run()
        .code(75)
        .stdout("");
    let refused = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    refused.code(75).stderr(&format!(
        "ERROR: the staging lock is held by a deploy-lock run's command, pid {cmd_pid}, under deploy-lock pid {}; it frees when that process ends.\n  \
         wait for it:      deploy-lock run --wait staging -- true\n  \
         details:          deploy-lock status staging\n",
        a.pid()
    ));
    // The holder learns it was announced, says so once, and is not restored.
    a_probe.send("exit 0");
    let out = finish(a);
    out.code(0).any_stderr();
    assert!(
        out.stderr
            .contains("WARNING: the staging lock was force-unlocked by tester@"),
        "{}",
        out.stderr
    );
    assert!(!w.lock_path("staging").exists());
    assert!(!audit_events(&w).contains(&"restore".to_string()));
}

/// Item 5: a lock directory without a record: holder unknown, not taken by
/// --force until stale, removed by unlock.
#[test]
fn issue_10_an_unknown_holder_is_not_taken_by_force() {
    let w = World::new();
    let at = now();
    w.legacy_lock("staging", at);
    let before = now();
    let out = w
        .deploy_lock(&["run", "--force", "staging", "--", "true"])
        .run();
    let wants: Vec<String> = (before..=now())
        .map(|t| {
            format!(
                "ERROR: the staging lock's holder is unknown (no record says who holds it: maybe a legacy deploy.sh that has not written it yet); the lock is {}m {}s old.\n\
                 It is taken over automatically once older than 30 minutes; --force does not take an unknown holder's lock.\n  \
                 wait for it:      deploy-lock run --force --wait staging -- true\n  \
                 once you know nobody deploys: deploy-lock unlock staging\n  \
                 details:          deploy-lock status staging\n",
                (t - at) / 60,
                (t - at) % 60
            )
        })
        .collect();
    out.code(75).stderr_one_of(&wants);
    assert!(
        out.stderr
            .contains("ERROR: the staging lock's holder is unknown (no record says who holds it"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not running"), "{}", out.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&w.deploy_lock(&["status", "staging", "--json"]).run().stdout)
            .unwrap();
    assert_eq!(v["verdict"], "unknown");
    assert!(w.lock_path("staging").exists());
    // Stale: the plain rule takes it.
    fs::write(
        w.lock_path("staging").join("locked_at"),
        format!("{}\n", now() - 4000),
    )
    .unwrap();
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(0)
        .stderr("WARNING: took over the staging lock directory, which recorded no holder\n");
    // And unlock can always remove one.
    w.legacy_lock("staging", now());
    w.deploy_lock(&["unlock", "staging", "--yes"]).run().code(0);
    assert!(!w.lock_path("staging").exists());
}

/// Item 5: a zombie holder is not running, in both personas.
#[test]
fn issue_10_a_zombie_holder_is_reported_dead() {
    let w = World::new();
    let mut zombie = std::process::Command::new("true").spawn().unwrap();
    let pid = zombie.id() as i32;
    wait_until(PATIENCE, "a zombie", || proc_state(pid) == Some('Z'));
    let t = now() - 60;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, &pid.to_string(), &hostname());
    let legacy = w.unlock_sh(&["staging"]).run();
    legacy.code(0);
    assert!(
        legacy.stdout.contains(&format!(
            "  ⚠ Process {pid} is not running (deployment may have crashed)\n"
        )),
        "{}",
        legacy.stdout
    );
    let v: serde_json::Value =
        serde_json::from_str(&w.deploy_lock(&["status", "staging", "--json"]).run().stdout)
            .unwrap();
    assert_eq!(v["holder_alive"], false);
    assert_eq!(v["verdict"], "orphaned");
    // `wait` on a dead holder's lock says so at once.
    let started = Instant::now();
    let out = w.deploy_lock(&["wait", "staging"]).run();
    out.code(75).stderr(&format!(
        "ERROR: the staging lock's holder (pid {pid}) is not running, so waiting would never end; clear it with `deploy-lock unlock staging`, or take it over with `deploy-lock run --force staging`\n"
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        out.stderr.contains(&format!(
            "ERROR: the staging lock's holder (pid {pid}) is not running, so waiting would never end; clear it with `deploy-lock unlock staging`"
        )),
        "{}",
        out.stderr
    );
    zombie.wait().unwrap();
}

/// Item 5: settings too large to mean anything are refused, naming them.
#[test]
fn issue_10_overflowing_settings_are_refused() {
    let w = World::new();
    let huge = "9223372036854775808";
    let out = w
        .deploy_lock(&["status", "staging"])
        .env("DEPLOY_LOCK_STALE_SECS", huge)
        .run();
    out.code(2).stdout("").stderr(&format!(
        "ERROR: invalid DEPLOY_LOCK_STALE_SECS '{huge}': expected a whole number of seconds from 0 to 1000000000, e.g. 1800\n"
    ));
    let out = w
        .unlock_sh(&["staging"])
        .env("DEPLOY_LOCK_STALE_SECS", huge)
        .run();
    out.code(1).stdout("").stderr(&format!(
        "ERROR: invalid DEPLOY_LOCK_STALE_SECS '{huge}': expected a whole number of seconds from 0 to 1000000000, e.g. 1800\n"
    ));
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("DEPLOY_LOCK_STALE_SECS"),
        "{}",
        out.stderr
    );
    let out = w
        .deploy_lock(&["run", "--wait=1e300", "staging", "--", "true"])
        .run();
    out.code(2).stderr(
        "ERROR: invalid --wait '1e300': expected a number of seconds from 0 to 1000000000, such as 5 or 0.25\n",
    );
    assert!(out.stderr.contains("--wait"), "{}", out.stderr);
    let out = w
        .deploy_lock(&["status", "staging", "--stale-secs", "18446744073709551616"])
        .run();
    out.code(2).stderr(
        "ERROR: invalid --stale-secs '18446744073709551616': expected a whole number of seconds from 0 to 1000000000, e.g. 1800\n",
    );
    assert!(out.stderr.contains("--stale-secs"), "{}", out.stderr);
    let out = w
        .deploy_lock(&["status", "staging"])
        .env("DEPLOY_LOCK_WAIT_TIMEOUT", "1e19")
        .run();
    out.code(2).stderr(
        "ERROR: invalid DEPLOY_LOCK_WAIT_TIMEOUT '1e19': expected a number of seconds from 0 to 1000000000, such as 5 or 0.25\n",
    );
    assert!(
        out.stderr.contains("DEPLOY_LOCK_WAIT_TIMEOUT"),
        "{}",
        out.stderr
    );
}

/// Item 1: a `run --wait` blocked on another run's kernel lock keeps the
/// progress line (on a terminal), its timeout and its signals.
#[test]
fn issue_10_a_waiter_on_the_kernel_lock_keeps_progress_timeout_and_signals() {
    let w = World::new();
    let (h, h_probe, cmd) = hold_lock(&w, "holder");
    let wrapper = h.pid();
    // Progress on a terminal, naming the run that holds it.
    let mut pty = w
        .deploy_lock(&["run", "--wait=1", "staging", "--", "true"])
        .env("DEPLOY_LOCK_WAIT_INTERVAL", "0.2")
        .spawn_pty();
    pty.expect(
        &format!(
            "Waiting for the staging lock (held by a deploy-lock run's command, pid {cmd}, under deploy-lock pid {wrapper})... 0m 0s"
        ),
        PATIENCE,
    );
    let st = pty.wait(PATIENCE);
    assert_eq!(st.code(), Some(124), "{}", pty.text());
    assert!(
        pty.text().contains(&format!(
            "ERROR: gave up after 1 second waiting for the staging lock (held by a deploy-lock run's command, pid {cmd}, under deploy-lock pid {wrapper})"
        )),
        "{}",
        pty.text()
    );
    // A signal while blocked on it: ends at once, nothing started.
    let marker = w.tmp.path().join("ran");
    let waiter = w
        .deploy_lock(&[
            "run",
            "--wait",
            "staging",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ])
        .spawn_guarded();
    wait_until(PATIENCE, "the waiter to queue", || {
        threads(waiter.pid()) >= 2
    });
    let t = Instant::now();
    send_signal(waiter.pid(), Signal::SIGTERM);
    let out = finish(waiter);
    out.any_code().any_stderr();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(out.code == Some(143) || out.signal == Some(15), "{out:?}");
    assert!(!marker.exists());
    // The holder is untouched.
    h_probe.send("exit 0");
    finish(h).code(0);
    assert_released(&w);
}

/// Item 5: one age for a lock in every message. A dead holder's record says
/// 31 minutes, its lock directory a second (a legacy lock re-made since):
/// the block, the error and the JSON all use the directory's age.
#[test]
fn issue_10_every_message_uses_one_age() {
    let w = World::new();
    let dead = reaped_pid();
    w.legacy_state("staging", now() - 1900, &dead.to_string(), &hostname());
    let at = now() - 1;
    w.legacy_lock("staging", at);
    // Issue 12: the refusal is short; the block is status's. Its age is
    // the block's, which may tick between the looks of a loaded machine:
    // anything from the block's age before the refusal to the one after.
    let block_age = || {
        let status = w.deploy_lock(&["status", "staging"]).run();
        status
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("  Lock age: "))
            .unwrap_or_else(|| panic!("{}", status.stdout))
            .to_string()
    };
    let secs = |age: &str| {
        let (m, s) = age.split_once("m ").unwrap();
        m.parse::<i64>().unwrap() * 60 + s.strip_suffix('s').unwrap().parse::<i64>().unwrap()
    };
    let age_before = block_age();
    let before = now();
    let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    let age_after = block_age();
    let wants: Vec<String> = (before..=now())
        .map(|t| dead_young_refusal("deploy@localhost", at, t, dead, "30 minutes"))
        .collect();
    out.code(75).stderr_one_of(&wants);
    assert!(!out.stderr.contains("stale"), "{}", out.stderr);
    let said = (secs(&age_before)..=secs(&age_after)).any(|t| {
        out.stderr
            .contains(&format!(" ({}m {}s ago).\n", t / 60, t % 60))
    });
    assert!(
        said && out
            .stderr
            .contains("but the lock is younger than 30 minutes"),
        "{age_before}..{age_after}: {}",
        out.stderr
    );
    let v: serde_json::Value =
        serde_json::from_str(&w.deploy_lock(&["status", "staging", "--json"]).run().stdout)
            .unwrap();
    assert!(v["age_seconds"].as_i64().unwrap() < 60, "{v}");
    assert_eq!(v["stale"], false);
}

/// Item 3: someone else holds the path by the time the holder looks (a
/// legacy deploy.sh's stale takeover: rm -rf, mkdir, its own record): one
/// loud warning naming them, audited, never fought over.
#[test]
fn issue_10_a_lock_taken_by_someone_else_meanwhile_is_named_not_fought() {
    let w = World::new();
    let (h, h_probe, _) = hold_lock(&w, "holder");
    let lock = w.lock_path("staging");
    let me = std::process::id();
    fs::remove_dir_all(&lock).unwrap();
    w.legacy_lock("staging", now());
    w.legacy_state("staging", now(), &me.to_string(), &hostname());
    wait_until(PATIENCE, "the holder to notice", || {
        audit_events(&w).contains(&"lost".to_string())
    });
    h_probe.send("exit 0");
    let out = finish(h);
    out.code(0).stdout("").stderr(&format!(
        "WARNING: the staging lock was removed while the command runs and is now held by deploy@localhost, pid {me}; not taken back. No other deploy-lock run starts until this one ends.\nWARNING: the staging lock is held by deploy@localhost now; left it alone\n"
    ));
    // Theirs is intact.
    assert!(lock.join("locked_at").exists());
    assert_eq!(state_pid(&w), Some(me as i32));
    assert_eq!(audit_events(&w), ["acquire", "lost", "release_skipped"]);
}
