//! Issue 18: deploy-lock beside the legacy deploy.sh run directly (not
//! wrapped) and beside what the legacy reads: a queued `run --wait` starts
//! only once deploy.sh has exited (whose trap releases twice on TERM/INT);
//! the state file's top-level `environment` is never rewritten; deploy.sh
//! gets exactly one environment word; a `.deploy.conf.ENV` naming a server
//! is refused; status and run agree beside another environment's holder; a
//! state file rewritten non-atomically is never called corrupt.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::harness::*;

fn install_legacy(w: &World) -> PathBuf {
    w.install_fixture("legacy-deploy.sh", "deploy/scripts/deploy.sh")
}

/// Whether the main thread of `pid` is blocked in poll (a `run --wait`
/// waiting for the lock, after its first look).
fn in_poll(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/wchan")).is_ok_and(|w| w.contains("poll"))
}

/// A command for under the lock: logs `start waiter NANOS`, `DEPLOY_ALIVE`
/// if the process in `deploy_pid` still runs (not a zombie), `LOST` if the
/// lock directory no longer names its lock id at its end, `end waiter NANOS`.
fn waiter_command(log: &Path, lock: &Path, deploy_pid: &Path) -> String {
    format!(
        r#"echo "start waiter $(date +%s%N)" >> "{log}"
p=$(cat "{pid}")
if [ -r "/proc/$p/stat" ] && [ "$(cut -d' ' -f3 "/proc/$p/stat")" != Z ]; then echo "DEPLOY_ALIVE $p" >> "{log}"; fi
sleep 0.3
if grep -q "\"lock_id\": \"$DEPLOY_LOCK_HELD\"" "{lock}/owner.json" 2>/dev/null; then echo "kept waiter" >> "{log}"; else echo "LOST waiter" >> "{log}"; fi
echo "end waiter $(date +%s%N)" >> "{log}""#,
        log = log.display(),
        pid = deploy_pid.display(),
        lock = lock.display()
    )
}

#[derive(Clone, Copy, Debug)]
enum End {
    Signal(Signal),
    Normal,
}

/// `rounds` of: the legacy deploy.sh run directly holds the lock; a `run
/// --wait` queues behind it; deploy.sh ends by `end`. The waiter's command
/// starts after deploy.sh's last trap mark, finds deploy.sh gone, and keeps
/// its lock directory (never removed, never restored) to its end.
fn direct_rounds(end: End, rounds: usize) {
    direct_rounds_for(end, rounds, "staging");
}

/// [`direct_rounds`] with the waiter running `waiter_env` (another
/// environment: it waits on the checkout's one state record).
fn direct_rounds_for(end: End, rounds: usize, waiter_env: &str) {
    let w = World::new();
    let deploy_sh = install_legacy(&w);
    let lock = w.lock_path(waiter_env);
    let mut gaps_ms = Vec::new();
    for round in 0..rounds {
        let d = w.tmp.path().join(format!("round-{round}"));
        fs::create_dir(&d).unwrap();
        let (log, ready, ctl) = (d.join("log"), d.join("ready"), d.join("ctl"));
        nix::unistd::mkfifo(&ctl, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let mut deploy = w
            .cmd(&deploy_sh)
            .env("FIXTURE_READY", &ready)
            .env("FIXTURE_MARK", &log)
            .env("FIXTURE_TAIL_MS", "80");
        deploy.cmd.arg("staging");
        if let End::Signal(_) = end {
            deploy = deploy.env("FIXTURE_WORK", "sleep");
        } else {
            deploy = deploy.env("FIXTURE_CTL", &ctl);
        }
        let deploy = deploy.spawn_guarded();
        wait_until(PATIENCE, "deploy.sh to take its lock", || ready.exists());
        let cs = waiter_command(&log, &lock, &ready);
        let waiter = w
            .deploy_lock(&["run", "--wait", waiter_env, "--", "sh", "-c", &cs])
            .spawn_guarded();
        wait_until(PATIENCE, "the waiter to wait", || in_poll(waiter.pid()));
        match end {
            End::Signal(sig) => send_signal(deploy.pid(), sig),
            End::Normal => fs::write(&ctl, "go\n").unwrap(),
        }
        let out = finish(deploy);
        out.any_stderr().any_code();
        // Its stderr says it waited for deploy.sh to end, when it had not
        // yet when the lock went.
        finish(waiter).code(0).any_stderr();
        let text = fs::read_to_string(&log).unwrap();
        assert!(
            !text.contains("DEPLOY_ALIVE"),
            "round {round}: the waiter's command started while deploy.sh ran:\n{text}"
        );
        assert!(
            text.contains("kept waiter"),
            "round {round}: the waiter lost its lock:\n{text}"
        );
        let stamp = |what: &str| -> Vec<u128> {
            text.lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    (f.len() == 3 && f[0] == what).then(|| f[2].parse().unwrap())
                })
                .collect()
        };
        let last_exit = *stamp("exit").iter().max().expect("deploy.sh's exit mark");
        let waiter_start = text
            .lines()
            .find_map(|l| l.strip_prefix("start waiter "))
            .map(|t| t.parse::<u128>().unwrap())
            .expect("the waiter's start mark");
        assert!(
            waiter_start > last_exit,
            "round {round}: the waiter started before deploy.sh's last exit mark:\n{text}"
        );
        gaps_ms.push((waiter_start - last_exit) / 1_000_000);
        assert!(!lock.exists(), "round {round}: a lock was left behind");
        assert!(
            !w.lock_path("staging").exists(),
            "round {round}: deploy.sh's lock was left behind"
        );
    }
    // No lock directory of the waiter's was ever removed under it and
    // restored.
    for line in w.audit_log().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_ne!(v["event"], "restore", "{line}");
    }
    eprintln!(
        "legacy direct {end:?}, waiter {waiter_env}: {rounds} rounds; the waiter's command started {:?} ms after deploy.sh's last exit mark",
        gaps_ms
    );
}

#[test]
fn issue_18_a_waiter_behind_a_direct_legacy_deploy_term() {
    direct_rounds(End::Signal(Signal::SIGTERM), 10);
}

#[test]
fn issue_18_a_waiter_behind_a_direct_legacy_deploy_int() {
    direct_rounds(End::Signal(Signal::SIGINT), 10);
}

#[test]
fn issue_18_a_waiter_behind_a_direct_legacy_deploy_normal_exit() {
    direct_rounds(End::Normal, 10);
}

/// A waiter of another environment, held back by the checkout's one state
/// record, likewise starts only once deploy.sh has exited.
#[test]
fn issue_18_a_waiter_of_another_environment_behind_a_direct_legacy_deploy() {
    direct_rounds_for(End::Signal(Signal::SIGTERM), 5, "production");
}

/// The state file's `environment` stays what the legacy wrote when it
/// created the file, through runs of other environments and --dry-run.
#[test]
fn issue_18_environment_is_never_rewritten() {
    let w = World::new();
    let deploy_sh = install_legacy(&w);
    let mut legacy = w.cmd(&deploy_sh).env("FIXTURE_TAIL_MS", "0");
    legacy.cmd.arg("staging");
    legacy.run().code(0).any_stderr();
    assert_eq!(w.state_json()["environment"], "staging");
    for args in [
        &["run", "production", "--", "true"][..],
        &["production", "--dry-run"],
        &["development"],
    ] {
        w.deploy_lock(args)
            .env("FIXTURE_TAIL_MS", "0")
            .run()
            .code(0)
            .any_stderr();
        assert_eq!(w.state_json()["environment"], "staging", "after {args:?}");
    }
    // The next legacy staging deploy releases its own lock, not another's.
    let mut legacy = w.cmd(&deploy_sh).env("FIXTURE_TAIL_MS", "0");
    legacy.cmd.arg("staging");
    legacy.run().code(0).any_stderr();
    assert!(!w.lock_path("staging").exists());
    // A file deploy-lock creates gets the environment it locked.
    let w = World::new();
    w.deploy_lock(&["run", "production", "--", "true"])
        .run()
        .code(0);
    assert_eq!(w.state_json()["environment"], "production");
}

/// deploy.sh takes its last word as the environment: a second one is
/// refused before anything starts, exit 2, deploy.sh never run.
#[test]
fn issue_18_a_second_environment_word_is_refused() {
    let w = World::new();
    install_legacy(&w);
    let argv = w.tmp.path().join("argv");
    for words in [
        &["staging", "production", "--skip-migrations"][..],
        &["staging", "--dry-run", "production"],
        &["run", "staging", "development"],
    ] {
        let out = w.deploy_lock(words).env("FIXTURE_ARGV", &argv).run();
        let other = words
            .iter()
            .rev()
            .find(|w| ["production", "development"].contains(w))
            .unwrap();
        out.code(2).stdout("").stderr(&format!(
            "ERROR: deploy.sh would get \"{other}\" as its environment (it takes its last word that is not an option), but the lock is staging's; give exactly one environment: deploy-lock run staging [DEPLOY_SH_ARGS...]\n"
        ));
        assert!(!argv.exists(), "deploy.sh ran for {words:?}");
        assert!(!w.lock_path("staging").exists());
    }
    // The value of --branch is not an environment word.
    w.deploy_lock(&["staging", "--branch", "production"])
        .env("FIXTURE_ARGV", &argv)
        .env("FIXTURE_TAIL_MS", "0")
        .run()
        .code(0)
        .any_stderr();
    assert_eq!(
        fs::read_to_string(&argv).unwrap(),
        "staging\n--force\n--branch\nproduction\n"
    );
}

/// `.deploy.conf.ENV` with SSH_HOST makes deploy.sh deploy to that server:
/// refused (exit 2) with the way to check the server's lock; with --remote
/// the server's lock is what is checked.
#[test]
fn issue_18_a_deploy_conf_naming_a_server_is_refused() {
    let w = World::new();
    install_legacy(&w);
    let argv = w.tmp.path().join("argv");
    let conf = w.root.join(".deploy.conf.staging");
    fs::write(
        &conf,
        "NODE_DOMAIN=staging.example\nSSH_HOST=togather\nSSH_USER=deploy\n",
    )
    .unwrap();
    w.deploy_lock(&["staging"])
        .env("FIXTURE_ARGV", &argv)
        .run()
        .code(2)
        .stdout("")
        .stderr(&format!(
            "ERROR: {} names SSH_HOST=togather: deploy.sh would deploy staging to that server, whose lock deploy-lock does not take (it would hold only this host's); run deploy-lock run staging --remote USER@togather to check the server's lock, or move the file aside to deploy here\n",
            conf.display()
        ));
    assert!(!argv.exists());
    // Another environment's file says nothing about this one.
    w.deploy_lock(&["production"])
        .env("FIXTURE_TAIL_MS", "0")
        .run()
        .code(0)
        .any_stderr();
}

/// A status call while the legacy rewrites the state file as `mv` across
/// file systems does (unlink, then a copy in two steps, 2 ms apart; every
/// 15 ms, far more often than a deploy does): never "not valid JSON" (65),
/// never advice to reset a live lock.
#[test]
fn issue_18_status_during_non_atomic_rewrites_never_calls_the_file_corrupt() {
    use std::io::Write;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let w = World::new();
    let t = now() - 60;
    w.legacy_lock("staging", t);
    let mut deploy = crate::legacy_status::fake_deploy(&w);
    w.legacy_state("staging", t, &deploy.id().to_string(), &hostname());
    let bytes = fs::read(w.state_path()).unwrap();
    let path = w.state_path();
    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicUsize::new(0));
    let (s, n) = (stop.clone(), writes.clone());
    let writer = std::thread::spawn(move || {
        while !s.load(Ordering::SeqCst) {
            let _ = fs::remove_file(&path);
            let mut f = fs::File::create(&path).unwrap();
            let half = bytes.len() / 2;
            f.write_all(&bytes[..half]).unwrap();
            std::thread::sleep(Duration::from_millis(2));
            f.write_all(&bytes[half..]).unwrap();
            drop(f);
            n.fetch_add(1, Ordering::SeqCst);
            // Still dozens of rewrites a second: the legacy makes a handful
            // per deploy.
            std::thread::sleep(Duration::from_millis(15));
        }
    });
    let (mut exit65, mut reset_advised, mut calls) = (0, 0, 0);
    let mut codes = std::collections::BTreeMap::new();
    for _ in 0..500 {
        let out = w.deploy_lock(&["status", "staging"]).run();
        out.any_code().any_stderr();
        calls += 1;
        *codes.entry(out.code).or_insert(0) += 1;
        if out.code == Some(65) {
            exit65 += 1;
        }
        if out.stderr.contains("--reset-state") {
            reset_advised += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    deploy.kill().unwrap();
    deploy.wait().unwrap();
    eprintln!(
        "status during non-atomic rewrites: {calls} calls, {} rewrites, exit 65: {exit65}, --reset-state advised: {reset_advised}, exit codes {codes:?}",
        writes.load(Ordering::SeqCst)
    );
    assert!(writes.load(Ordering::SeqCst) > 0);
    assert_eq!((exit65, reset_advised), (0, 0));
}

/// Beside a legacy deploy.sh of another environment holding the checkout's
/// one state record: `status --quiet`, the verdict line and the JSON say a
/// run would not start, and `run` refuses; the holder's own environment
/// shows it as its holder (alive), even when the file's top-level
/// `environment` names a third one.
#[test]
fn issue_18_status_and_run_agree_beside_another_environments_legacy_holder() {
    let w = World::new();
    let deploy_sh = install_legacy(&w);
    // The file was created by a development deploy long ago.
    w.write_state("{\"environment\": \"development\", \"lock\": {\"locked\": false}}\n");
    let d = w.tmp.path().join("legacy");
    fs::create_dir(&d).unwrap();
    let (ready, ctl) = (d.join("ready"), d.join("ctl"));
    nix::unistd::mkfifo(&ctl, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let mut legacy = w
        .cmd(&deploy_sh)
        .env("FIXTURE_READY", &ready)
        .env("FIXTURE_CTL", &ctl)
        .env("FIXTURE_TAIL_MS", "0");
    legacy.cmd.arg("staging");
    let legacy = legacy.spawn_guarded();
    wait_until(PATIENCE, "deploy.sh to take its lock", || ready.exists());
    let pid = legacy.pid();
    assert_eq!(w.state_json()["environment"], "development");
    // Its own environment: held by it, alive (not "unknown").
    let v: serde_json::Value = serde_json::from_str(
        &w.deploy_lock(&["status", "staging", "--json"])
            .run()
            .code(0)
            .stdout,
    )
    .unwrap();
    assert_eq!(
        (&v["verdict"], &v["holder_alive"], &v["holder"]["pid"]),
        (
            &serde_json::json!("held"),
            &serde_json::json!(true),
            &serde_json::json!(pid)
        )
    );
    w.deploy_lock(&["status", "staging", "--quiet"])
        .run()
        .code(75);
    // Another environment: its lock is free, but a run would not start.
    w.deploy_lock(&["status", "production", "--quiet"])
        .run()
        .code(75);
    let out = w.deploy_lock(&["status", "production", "--json"]).run();
    let v: serde_json::Value = serde_json::from_str(&out.code(0).stdout).unwrap();
    assert_eq!(v["verdict"], "blocked");
    assert_eq!(
        v["record_held_by"],
        serde_json::json!({"environment": "staging", "pid": pid, "locked_by": format!("tester@{}", hostname())})
    );
    let text = w.deploy_lock(&["status", "production"]).run();
    assert!(
        text.code(0).stdout.contains(&format!(
            "Verdict: blocked: no lock directory, but this checkout's one state record is the live staging lock's (tester@{h}, pid {pid}); a production deploy waits until it is released (a checkout records one lock at a time)\n",
            h = hostname()
        )),
        "{}",
        text.stdout
    );
    w.deploy_lock(&["run", "production", "--", "true"])
        .run()
        .code(75)
        .stdout("")
        .stderr(&format!(
            "ERROR: the state file's lock record belongs to a live staging deployment (tester@{}, pid {pid}); one checkout records one lock at a time: wait for it to finish or deploy from another checkout\n",
            hostname()
        ));
    fs::write(&ctl, "go\n").unwrap();
    finish(legacy).code(0).any_stderr();
    // Released: both agree again.
    w.deploy_lock(&["status", "production", "--quiet"])
        .run()
        .code(0);
    w.deploy_lock(&["run", "production", "--", "true"])
        .run()
        .code(0);
    assert_eq!(w.state_json()["environment"], "development");
}

/// A legacy deploy.sh killed during `migrate up` leaves its migration lock:
/// both status views show it on a line after the block, the JSON names it,
/// unlock removes it (the very directory shown), and the next deploy migrates.
#[test]
fn issue_18_the_migration_lock_is_shown_and_removable() {
    let w = World::new();
    let deploy_sh = install_legacy(&w);
    let mut legacy = w
        .cmd(&deploy_sh)
        .env("FIXTURE_MIGRATIONS", "1")
        .env("FIXTURE_MIGRATE_CRASH", "1");
    legacy.cmd.arg("staging");
    let out = legacy.run();
    assert_eq!(out.signal, Some(9));
    out.any_code().any_stderr();
    let m = w.locks.join("togather-migration-staging.lock");
    assert!(m.is_dir());
    // The crashed deploy's own lock is removed by the first unlock; the
    // migration lock alone is what the rest is about.
    w.unlock_sh(&["staging", "--force"])
        .stdin(b"yes\n")
        .run()
        .code(0)
        .any_stderr();
    assert!(
        !m.exists(),
        "unlock.sh --force removes the migration lock it showed"
    );
    fs::create_dir(&m).unwrap();
    let line = |how: &str, out: &str| {
        let prefix = format!("⚠ Migration lock: {}, 0m ", m.display());
        let tail = format!(
            "s old; deploy.sh's migrations fail \"Lock already held\" while it is there. If no deploy is migrating, remove it: {how}\n\n"
        );
        let i = out
            .find(&prefix)
            .unwrap_or_else(|| panic!("no migration line in:\n{out}"));
        let rest = &out[i + prefix.len()..];
        let j = rest.find(&tail).unwrap_or_else(|| panic!("{out}"));
        assert!(rest[..j].chars().all(|c| c.is_ascii_digit()), "{out}");
        // After the block, which ends with its empty line.
        assert!(out[..i].ends_with("\n\n"), "{out}");
        i
    };
    let legacy_out = w.unlock_sh(&["staging"]).run();
    let i = line("unlock.sh staging --force", &legacy_out.code(0).stdout);
    // The block before it is the legacy's alone.
    assert_eq!(
        &legacy_out.stdout[..i],
        format!(
            "Deployment Lock Status: staging\n============================================\nLock directory: Not found (unlocked)\n\nState file info:\n  Locked: false\n  Locked by: tester@{h}\n  Locked at: {at}\n  Deployment ID: N/A\n  PID: {pid}\n  Hostname: {h}\n  ⚠ Process {pid} is not running (deployment may have crashed)\n\n",
            h = hostname(),
            at = w.state_json()["lock"]["locked_at"].as_str().unwrap(),
            pid = w.state_json()["lock"]["pid"],
        )
    );
    let modern = w.deploy_lock(&["status", "staging"]).run();
    line("deploy-lock unlock staging", &modern.code(0).stdout);
    let v: serde_json::Value = serde_json::from_str(
        &w.deploy_lock(&["status", "staging", "--json"])
            .run()
            .code(0)
            .stdout,
    )
    .unwrap();
    assert_eq!(v["migration_lock"]["path"], m.to_str().unwrap());
    // The lock is free, but there is a migration lock to remove.
    let out = w.deploy_lock(&["unlock", "staging", "--yes"]).run();
    out.code(0).any_stderr();
    assert!(
        out.stdout
            .contains(&format!("  3. Remove migration lock: {}\n", m.display()))
            && out.stdout.contains("✓ Migration lock removed\n"),
        "{}",
        out.stdout
    );
    assert!(!m.exists());
    w.deploy_lock(&["status", "staging", "--json"])
        .run()
        .code(0);
    // The next wrapped deploy migrates.
    w.deploy_lock(&["staging"])
        .env("FIXTURE_MIGRATIONS", "1")
        .env("FIXTURE_TAIL_MS", "0")
        .run()
        .code(0)
        .any_stderr();
}

/// `unlock.sh --wait` and `deploy-lock wait` end the moment the lock goes,
/// as before; once it has, they say on stderr that deploy.sh still runs.
#[test]
fn issue_18_wait_says_the_released_holder_still_runs_without_waiting_for_it() {
    let w = World::new();
    let deploy_sh = install_legacy(&w);
    let d = w.tmp.path().join("legacy");
    fs::create_dir(&d).unwrap();
    let (ready, ctl, log) = (d.join("ready"), d.join("ctl"), d.join("log"));
    nix::unistd::mkfifo(&ctl, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // It logs on for 3 s after its release.
    let mut legacy = w
        .cmd(&deploy_sh)
        .env("FIXTURE_READY", &ready)
        .env("FIXTURE_CTL", &ctl)
        .env("FIXTURE_MARK", &log)
        .env("FIXTURE_TAIL_MS", "3000");
    legacy.cmd.arg("staging");
    let legacy = legacy.spawn_guarded();
    wait_until(PATIENCE, "deploy.sh to take its lock", || ready.exists());
    let pid = legacy.pid();
    let waiters = [
        w.unlock_sh(&["staging", "--wait"]).spawn_guarded(),
        w.deploy_lock(&["wait", "staging"]).spawn_guarded(),
    ];
    for waiter in &waiters {
        wait_until(PATIENCE, "the waiter to wait", || in_poll(waiter.pid()));
    }
    fs::write(&ctl, "go\n").unwrap();
    for waiter in waiters {
        let out = finish(waiter);
        out.code(0);
        assert!(out.stdout.ends_with("✓ Lock released!\n"), "{}", out.stdout);
        out.stderr(&format!(
            "WARNING: the staging lock was released, but its holder bash (deploy.sh) (pid {pid}) still runs (a legacy deploy.sh releases before it exits, and again on TERM/INT); `deploy-lock run --wait staging` waits for it to end before it takes the lock\n"
        ));
    }
    // Both ended while deploy.sh still ran.
    let text = fs::read_to_string(&log).unwrap();
    assert!(!text.contains("exit "), "{text}");
    finish(legacy).code(0).any_stderr();
}
