//! `deploy-lock run` and the `deploy-lock ENV` shorthand with real processes:
//! the command's status passed through, the lock held while it runs and
//! released after, liveness first and age second when a lock is taken over,
//! release only of what is ours, and the legacy deploy.sh under deploy-lock.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::harness::*;

const HEADER: &str =
    "Deployment Lock Status: staging\n============================================\n";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The status block for the lock the state file records, held by the live
/// process `pid` named `comm`, as rendered at epoch second `t`.
fn held_block(w: &World, t: i64, pid: i32, comm: &str) -> String {
    let st = w.state_json();
    let at = st["lock"]["locked_at"].as_str().unwrap();
    let age = t - epoch(at);
    let lock = w.lock_path("staging");
    let host = hostname();
    format!(
        "{HEADER}Lock directory exists: {}\n{}\n\nState file info:\n  Locked: true\n  Locked by: {}\n  Locked at: {at}\n  Deployment ID: {}\n  PID: {pid}\n  Hostname: {host}\n  Lock age: {}m {}s\n  ✓ Process {pid} is still running: {comm}\n\n",
        lock.display(),
        real_ls_ld(&lock, "UTC"),
        st["lock"]["locked_by"].as_str().unwrap(),
        st["lock"]["deployment_id"].as_str().unwrap(),
        age / 60,
        age % 60
    )
}

#[test]
fn exit_statuses_pass_through_and_the_lock_is_released_after_each() {
    let w = World::new();
    let lock = w.lock_path("staging");
    // Each command first checks that the lock is held while it runs.
    for code in [0, 3, 255] {
        w.deploy_lock(&[
            "run",
            "staging",
            "--",
            "sh",
            "-c",
            &format!("[ -d \"$0\" ] || exit 99; exit {code}"),
            s(&lock),
        ])
        .run()
        .code(code)
        .stdout("")
        .stderr("");
        assert_released(&w);
    }
    let out = w
        .deploy_lock(&[
            "run",
            "staging",
            "--",
            "sh",
            "-c",
            "[ -d \"$0\" ] || exit 99; kill -KILL $$",
            s(&lock),
        ])
        .run();
    out.any_code();
    assert!(
        out.signal == Some(9) || out.code == Some(137),
        "want death by SIGKILL or 137: {out:?}"
    );
    assert_eq!(out.stdout, "");
    assert_eq!(out.stderr, "");
    assert_released(&w);
    assert_eq!(audit_events(&w), ["acquire", "release"].repeat(4));
}

#[test]
fn a_second_run_is_refused_with_the_status_while_a_live_run_holds_the_lock() {
    let w = World::new();
    let (wrapper, probe, pid) = hold_lock(&w, "holder");
    let marker = w.tmp.path().join("second-ran");
    let before = now();
    let out = w
        .deploy_lock(&["run", "staging", "--", "touch", s(&marker)])
        .run();
    let after = now();
    out.code(75).stdout("");
    assert!(!marker.exists());
    // Issue 12: at most 6 lines, the retry being the user's own command.
    let at = epoch(w.state_json()["lock"]["locked_at"].as_str().unwrap());
    let who = w.state_json()["lock"]["locked_by"]
        .as_str()
        .unwrap()
        .to_string();
    let retry = format!("deploy-lock run --wait staging -- touch {}", s(&marker));
    out.stderr_one_of(&per_second(before, after, |t| {
        live_refusal(&who, at, t, "sig-child.sh", pid, &retry, true)
    }));
    assert!(out.stderr.lines().count() <= 6);

    // The legacy status and the JSON show the command, not deploy-lock.
    let before = now();
    let legacy = w.unlock_sh(&["staging"]).run();
    let after = now();
    legacy.code(0).stdout_one_of(
        &(before..=after)
            .map(|t| held_block(&w, t, pid, "sig-child.sh"))
            .collect::<Vec<_>>(),
    );
    let json = w.deploy_lock(&["status", "staging", "--json"]).run();
    json.code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["verdict"], "held");
    assert_eq!(v["holder_alive"], true);
    assert_eq!(v["holder"]["pid"], pid);
    assert_eq!(v["holder"]["process_name"], "sig-child.sh");

    probe.send("exit 0");
    finish(wrapper).code(0).stdout("").stderr("");
    assert_released(&w);
    assert_eq!(audit_events(&w), ["acquire", "release"]);
}

#[test]
fn a_live_holder_is_never_taken_over_however_old_even_with_force() {
    let w = World::new();
    let holder = KillOnDrop(Command::new("sleep").arg("600").spawn().unwrap());
    let pid = holder.pid();
    wait_until(PATIENCE, "sleep to start", || {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
    });
    let at = now() - 3 * 3600;
    let lock = w.legacy_lock("staging", at);
    w.legacy_state("staging", at, &pid.to_string(), &hostname());
    let state = w.state();
    let ino = fs::metadata(&lock).unwrap().ino();
    let marker = w.tmp.path().join("ran");
    for force in [false, true] {
        let mut args = vec!["run"];
        if force {
            args.push("--force");
        }
        args.extend(["staging", "--", "touch", s(&marker)]);
        let before = now();
        let out = w.deploy_lock(&args).run();
        let after = now();
        out.code(75).stdout("");
        let wait = if force {
            "run --force --wait"
        } else {
            "run --wait"
        };
        let retry = format!("deploy-lock {wait} staging -- touch {}", s(&marker));
        out.stderr_one_of(&per_second(before, after, |t| {
            live_refusal("deploy@localhost", at, t, "sleep", pid, &retry, true)
        }));
        assert!(
            out.stderr.contains(&format!(
                " ago).\nRunning on this host: sleep (pid {pid}); a running holder's lock is never taken over.\n"
            )) && out.stderr.starts_with(&format!("ERROR: the staging lock is held by deploy@localhost since {} (180m ", iso(at))),
            "--force {force}:\n{}",
            out.stderr
        );
        assert!(!marker.exists());
        assert_eq!(w.state(), state);
        assert_eq!(fs::metadata(&lock).unwrap().ino(), ino);
        assert_eq!(
            fs::read_to_string(lock.join("locked_at")).unwrap(),
            format!("{at}\n")
        );
        assert_eq!(fs::read_dir(&lock).unwrap().count(), 1);
    }
    assert_eq!(audit_events(&w), Vec::<String>::new());
}

#[test]
fn a_dead_holders_young_lock_is_taken_only_with_force() {
    let w = World::new();
    let pid = reaped_pid();
    let at = now() - 120;
    w.legacy_lock("staging", at);
    w.legacy_state("staging", at, &pid.to_string(), &hostname());
    let state = w.state();
    let before = now();
    let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    let after = now();
    out.code(75).stdout("");
    out.stderr_one_of(&per_second(before, after, |t| {
        dead_young_refusal("deploy@localhost", at, t, pid, "30 minutes")
    }));
    assert!(
        out.stderr.starts_with(&format!(
            "ERROR: the staging lock is held by deploy@localhost since {} (2m ",
            iso(at)
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with(&format!(
            " ago).\nNot running (pid {pid} is gone), but the lock is younger than 30 minutes, after which it is taken over automatically.\n  \
             wait for that:    deploy-lock run --wait staging -- true\n  \
             take it over now: deploy-lock run --force staging -- true\n  \
             details:          deploy-lock status staging\n"
        )),
        "{}",
        out.stderr
    );
    assert_eq!(w.state(), state);

    let lock = w.lock_path("staging");
    w.deploy_lock(&[
        "run",
        "--force",
        "staging",
        "--",
        "sh",
        "-c",
        "[ -d \"$0\" ]",
        s(&lock),
    ])
    .run()
    .code(0)
    .stdout("")
    .stderr(&format!(
        "WARNING: took over the staging lock left by deploy@localhost (pid {pid}, not running)\n"
    ));
    assert_released(&w);
    // Keys deploy-lock does not own are kept.
    assert_eq!(
        w.state_json()["deployments"],
        json!([{"id": 1, "ok": true}])
    );
    assert_eq!(audit_events(&w), ["takeover", "release"]);
    let first: serde_json::Value =
        serde_json::from_str(w.audit_log().lines().next().unwrap()).unwrap();
    assert_eq!(first["holder"]["pid"], pid);
    assert_eq!(first["holder"]["locked_by"], "deploy@localhost");
}

#[test]
fn a_dead_holders_stale_lock_is_taken_automatically() {
    let w = World::new();
    let took_over = |pid: i32| {
        format!(
            "WARNING: took over the staging lock left by deploy@localhost (pid {pid}, not running)\n"
        )
    };
    // Older than the default 30 minutes.
    let pid = reaped_pid();
    let at = now() - 7200;
    w.legacy_lock("staging", at);
    w.legacy_state("staging", at, &pid.to_string(), &hostname());
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(0)
        .stdout("")
        .stderr(&took_over(pid));
    assert_released(&w);

    // DEPLOY_LOCK_STALE_SECS moves the line: 5 minutes is past 60 s...
    let pid = reaped_pid();
    let at = now() - 300;
    w.legacy_lock("staging", at);
    w.legacy_state("staging", at, &pid.to_string(), &hostname());
    w.deploy_lock(&["run", "staging", "--", "true"])
        .env("DEPLOY_LOCK_STALE_SECS", "60")
        .run()
        .code(0)
        .stderr(&took_over(pid));
    assert_released(&w);

    // ...30 seconds is not.
    let pid = reaped_pid();
    let at = now() - 30;
    w.legacy_lock("staging", at);
    w.legacy_state("staging", at, &pid.to_string(), &hostname());
    let before = now();
    let out = w
        .deploy_lock(&["run", "staging", "--", "true"])
        .env("DEPLOY_LOCK_STALE_SECS", "60")
        .run();
    let after = now();
    out.code(75).stdout("");
    out.stderr_one_of(&per_second(before, after, |t| {
        dead_young_refusal("deploy@localhost", at, t, pid, "1 minute")
    }));
    assert!(
        out.stderr.contains(
            "but the lock is younger than 1 minute, after which it is taken over automatically.\n"
        ),
        "{}",
        out.stderr
    );
    assert!(w.lock_path("staging").join("locked_at").exists());
    assert_eq!(
        audit_events(&w),
        ["takeover", "release", "takeover", "release"]
    );
}

#[test]
fn a_lock_directory_without_locked_at_is_aged_by_its_mtime() {
    let w = World::new();
    let lock = w.lock_path("staging");
    let pid = reaped_pid();
    // The state record says two hours, but the directory is new: the
    // directory's age decides.
    fs::create_dir(&lock).unwrap();
    w.legacy_state("staging", now() - 7200, &pid.to_string(), &hostname());
    let before = now();
    let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    let after = now();
    out.code(75).stdout("");
    let made = fs::metadata(&lock).unwrap().mtime();
    out.stderr_one_of(&per_second(before, after, |t| {
        dead_young_refusal("deploy@localhost", made, t, pid, "30 minutes")
    }));
    assert!(
        out.stderr.contains(" (0m ") && out.stderr.contains(" ago).\nNot running (pid "),
        "{}",
        out.stderr
    );
    assert!(lock.exists());

    set_mtime(&lock, now() - 7200);
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(0)
        .stderr(&format!(
            "WARNING: took over the staging lock left by deploy@localhost (pid {pid}, not running)\n"
        ));
    assert_released(&w);

    // Nothing but an old, empty directory: no holder at all, aged by mtime.
    fs::remove_file(w.state_path()).unwrap();
    fs::create_dir(&lock).unwrap();
    let before = now();
    let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    let after = now();
    out.code(75).stdout("");
    let made = fs::metadata(&lock).unwrap().mtime();
    out.stderr_one_of(
        &(before..=after)
            .map(|t| {
                let age = t - made;
                format!(
                    "ERROR: the staging lock's holder is unknown (no record says who holds it: maybe a legacy deploy.sh that has not written it yet); the lock is {}m {}s old.\n\
                     It is taken over automatically once older than 30 minutes; --force does not take an unknown holder's lock.\n  \
                     wait for it:      deploy-lock run --wait staging -- true\n  \
                     once you know nobody deploys: deploy-lock unlock staging\n  \
                     details:          deploy-lock status staging\n",
                    age / 60,
                    age % 60
                )
            })
            .collect::<Vec<_>>(),
    );
    set_mtime(&lock, now() - 7200);
    let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    out.code(0).any_stderr();
    assert!(
        out.stderr
            .starts_with("WARNING: took over the staging lock"),
        "{}",
        out.stderr
    );
    assert_released(&w);
    assert_eq!(
        audit_events(&w),
        ["takeover", "release", "takeover", "release"]
    );
}

#[test]
fn a_holder_that_exited_but_is_not_reaped_yet_is_not_alive() {
    let w = World::new();
    // A child of this test that has exited and is not waited for: a zombie,
    // as a crashed deploy stays where nothing reaps orphans.
    let mut zombie = Command::new("true").spawn().unwrap();
    let pid = zombie.id() as i32;
    wait_until(PATIENCE, "the zombie", || proc_state(pid) == Some('Z'));
    let at = now() - 7200;
    w.legacy_lock("staging", at);
    w.legacy_state("staging", at, &pid.to_string(), &hostname());
    let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    zombie.wait().unwrap();
    out.code(0).stderr(&format!(
        "WARNING: took over the staging lock left by deploy@localhost (pid {pid}, not running)\n"
    ));
    assert_released(&w);
}

#[test]
fn a_force_unlocked_run_keeps_others_out_and_its_release_leaves_a_new_lock_alone() {
    let w = World::new();
    let legacy = install_legacy(&w);
    let p = Probe::new(&w, "legacy");
    let d = w.tmp.path();
    // The command force-unlocks its own lock, tries a second deploy-lock run
    // (refused: this run still holds its kernel lock), then a legacy
    // deploy.sh run directly takes the free lock directory.
    let body = format!(
        r#"set -e
echo yes | ./deploy/scripts/unlock.sh staging --force > "{d}/unlock.out" 2>&1
"{bin}" run staging -- true > "{d}/b.out" 2> "{d}/b.err" || echo $? > "{d}/b.rc"
FIXTURE_READY="{ready}" FIXTURE_CTL="{ctl}" "{legacy}" staging > "{d}/legacy.out" 2>&1 &
for _ in $(seq 3000); do
    [ -e "{ready}" ] && break
    sleep 0.01
done
"#,
        d = d.display(),
        bin = BIN,
        legacy = legacy.display(),
        ready = p.path("ready").display(),
        ctl = p.path("ctl").display(),
    );
    let a = w
        .deploy_lock(&["run", "staging", "--", "bash", "-c", &body])
        .run();
    let host = hostname();
    let lines: Vec<&str> = a.stderr.lines().collect();
    a.code(0).stdout("").any_stderr();
    assert_eq!(lines.len(), 2, "{}", a.stderr);
    assert!(
        lines[0].starts_with(&format!(
            "WARNING: the staging lock was force-unlocked by tester@{host} (pid "
        )) && lines[0]
            .ends_with("; the command goes on, and no other deploy-lock run starts until it ends."),
        "{}",
        a.stderr
    );
    assert_eq!(
        lines[1],
        format!("WARNING: the staging lock is held by tester@{host} now; left it alone")
    );
    assert!(
        fs::read_to_string(d.join("unlock.out"))
            .unwrap()
            .contains("✓ Lock forcefully released\n")
    );
    // The second deploy-lock run never started beside the first.
    assert_eq!(fs::read_to_string(d.join("b.rc")).unwrap(), "75\n");
    let b_err = fs::read_to_string(d.join("b.err")).unwrap();
    assert!(
        b_err.contains("ERROR: the staging lock is held by a deploy-lock run's command, pid "),
        "{b_err}"
    );
    // The legacy's lock is intact: its directory, its state record.
    let lpid = p.wait_ready();
    assert_eq!(state_pid(&w), Some(lpid));
    assert!(w.lock_path("staging").join("locked_at").exists());
    assert_eq!(
        audit_events(&w),
        ["acquire", "force_unlock", "release_skipped"]
    );
    p.send("go");
    wait_until(PATIENCE, "the legacy deploy to release", || {
        fs::read_to_string(d.join("legacy.out")).is_ok_and(|s| s.contains("log written"))
    });
    assert_released(&w);
}

fn install_legacy(w: &World) -> PathBuf {
    w.install_fixture("legacy-deploy.sh", "deploy/scripts/deploy.sh")
}

const SKIPPING: &str = "WARNING: Force flag set - skipping deployment lock\n";

/// What deploy-lock says when it restores the lock the wrapped legacy
/// deploy.sh's exit trap removed while deploy.sh still runs.
const RESTORED: &str = "WARNING: the staging lock directory and state record vanished while the command runs, removed by something other than a deploy-lock unlock (the legacy deploy.sh's exit trap does this); restored, same lock id\n";

/// A wrapped legacy run's stderr: its warning, and the restore line when
/// deploy-lock got to restore before deploy.sh exited (it logs 150 ms).
/// Usually both parts are put back in one restore; when a loaded machine
/// delays the keeper's look into the middle of the release, the part gone
/// by then is restored alone (seen: the directory, beside two busy loops).
#[track_caller]
fn assert_wrapped_stderr(out: &Out) {
    out.any_stderr();
    let restored = |what: &str| RESTORED.replace("lock directory and state record", what);
    let with: Vec<String> = [
        "lock directory and state record",
        "lock directory",
        "state record",
    ]
    .iter()
    .map(|what| format!("{SKIPPING}{}", restored(what)))
    .collect();
    if !with.contains(&out.stderr) {
        out.stderr(SKIPPING);
    }
}

/// The audit events but the restores (see `assert_wrapped_stderr`).
fn events_but_restores(w: &World) -> Vec<String> {
    audit_events(w)
        .into_iter()
        .filter(|e| e != "restore")
        .collect()
}

#[test]
fn the_legacy_deploy_sh_runs_under_deploy_lock_which_holds_the_lock_for_it() {
    let w = World::new();
    install_legacy(&w);
    let p = Probe::new(&w, "deploy");
    let run = w
        .deploy_lock(&["staging"])
        .env("FIXTURE_READY", p.path("ready"))
        .env("FIXTURE_CTL", p.path("ctl"))
        .spawn_guarded();
    let pid = p.wait_ready();
    wait_recorded(&w, pid);
    let before = now();
    let status = w.unlock_sh(&["staging"]).run();
    let after = now();
    status.code(0).stdout_one_of(
        &(before..=after)
            .map(|t| held_block(&w, t, pid, "bash"))
            .collect::<Vec<_>>(),
    );
    // `#!/usr/bin/env bash`: the kernel's name is bash, which the legacy
    // persona shows as the legacy did; deploy-lock names the script too.
    assert!(
        status
            .stdout
            .contains(&format!("  ✓ Process {pid} is still running: bash\n"))
    );
    let modern = w.deploy_lock(&["status", "staging"]).run();
    assert!(
        modern.stdout.contains(&format!(
            "  ✓ Process {pid} is still running: bash (deploy.sh)\n"
        )) && modern.stdout.contains(&format!(
            "Verdict: held: bash (deploy.sh) (pid {pid}) is running"
        )),
        "{}",
        modern.stdout
    );
    p.send("go");
    let out = finish(run);
    out.code(0).stdout(&format!(
        "deployed staging (pid {pid})\nlock released\nlog written\n"
    ));
    assert_wrapped_stderr(&out);
    assert_released(&w);
    assert_eq!(events_but_restores(&w), ["acquire", "release"]);

    // deploy.sh's own status is deploy-lock's.
    let out = w.deploy_lock(&["staging"]).env("FIXTURE_EXIT", "3").run();
    out.code(3);
    assert_wrapped_stderr(&out);
    assert_released(&w);
}

/// Issue 10: the legacy deploy.sh's exit trap releases even under --force,
/// and goes on running a while: deploy-lock restores its lock meanwhile
/// (same ids), says so once, and releases it after deploy.sh has exited.
/// The trap's steps (state record, then `rm -rf`) may be far apart on a
/// loaded machine: still one restore of both. deploy.sh logs until the
/// restored record is there (an event; the real one logs 80-500 ms).
#[test]
fn the_wrapped_legacy_release_is_restored_until_deploy_sh_exits() {
    let w = World::new();
    install_legacy(&w);
    let out = w
        .deploy_lock(&["staging"])
        .env(
            "FIXTURE_TAIL_UNTIL",
            w.lock_path("staging").join("owner.json"),
        )
        .run();
    out.code(0).stderr(&format!("{SKIPPING}{RESTORED}"));
    assert_released(&w);
    assert_eq!(audit_events(&w), ["acquire", "restore", "release"]);
    let log: Vec<serde_json::Value> = w
        .audit_log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(log[1]["lock_id"], log[0]["lock_id"]);
    assert_eq!(log[1]["restored"], "lock directory and state record");
    assert_eq!(log[2]["note"], serde_json::Value::Null);
}

#[test]
fn the_legacy_deploy_sh_and_deploy_lock_exclude_each_other() {
    let w = World::new();
    let script = install_legacy(&w);
    // A legacy deploy (run directly, taking the lock itself) holds it.
    let p = Probe::new(&w, "legacy");
    let mut c = w
        .cmd(&script)
        .env("FIXTURE_READY", p.path("ready"))
        .env("FIXTURE_CTL", p.path("ctl"));
    c.cmd.arg("staging");
    let legacy = c.spawn_guarded();
    let pid = p.wait_ready();
    assert_eq!(state_pid(&w), Some(pid));
    for args in [
        &["staging"][..],
        &["run", "--force", "staging", "--", "true"],
    ] {
        let before = now();
        let out = w.deploy_lock(args).run();
        let after = now();
        out.code(75).stdout("");
        let st = w.state_json();
        // The lock's age comes from the lock folder's locked_at, which the
        // legacy writes a moment before its record (whose locked_at is a
        // second later when a clock second ticks between, as it did on a
        // loaded machine).
        let at: i64 = std::fs::read_to_string(w.lock_path("staging").join("locked_at"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let wait = if args.len() == 1 {
            "deploy-lock --wait staging".to_string()
        } else {
            "deploy-lock run --force --wait staging -- true".to_string()
        };
        let who = st["lock"]["locked_by"].as_str().unwrap();
        out.stderr_one_of(&per_second(before, after, |t| {
            live_refusal(who, at, t, "bash (deploy.sh)", pid, &wait, true)
        }));
        assert!(
            out.stderr.contains(&format!(
                "Running on this host: bash (deploy.sh) (pid {pid}); a running holder's lock is never taken over.\n"
            )),
            "{args:?}:\n{}",
            out.stderr
        );
    }
    p.send("go");
    finish(legacy)
        .code(0)
        .stdout(&format!(
            "deployed staging (pid {pid})\nlock released\nlog written\n"
        ))
        .stderr("");
    assert_released(&w);

    // deploy-lock holds it: the legacy deploy.sh cannot take it.
    let (wrapper, probe, _) = hold_lock(&w, "holder");
    let mut c = w.cmd(&script);
    c.cmd.arg("staging");
    let lock = w.lock_path("staging");
    let at: i64 = fs::read_to_string(lock.join("locked_at"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let before = now();
    let out = c.run();
    let after = now();
    out.code(1).stdout("");
    // The fixture ages the lock by `date +%s`: one candidate per second.
    out.stderr_one_of(
        &(before..=after)
            .map(|t| {
                format!(
                    "ERROR: Deployment already in progress for staging (lock: {}, {}s old)\n",
                    lock.display(),
                    t - at
                )
            })
            .collect::<Vec<_>>(),
    );
    assert!(
        out.stderr
            .starts_with("ERROR: Deployment already in progress for staging"),
        "{}",
        out.stderr
    );
    probe.send("exit 0");
    finish(wrapper).code(0);
    assert_released(&w);
}

#[test]
fn the_shorthand_hands_deploy_sh_its_flags_unchanged() {
    let w = World::new();
    install_legacy(&w);
    let argv = w.tmp.path().join("argv");
    let saw = w.tmp.path().join("saw-lock");
    let run = |args: &[&str]| {
        w.deploy_lock(args)
            .env("FIXTURE_ARGV", &argv)
            .env("FIXTURE_SAW_LOCK", &saw)
            .run()
    };
    let read = |p: &Path| fs::read_to_string(p).unwrap();

    let out = run(&[
        "staging",
        "--dry-run",
        "--branch",
        "x",
        "--version",
        "y",
        "--env-diff",
        "--skip-migrations",
    ]);
    out.code(0);
    assert_wrapped_stderr(&out);
    assert_eq!(
        read(&argv),
        "staging\n--force\n--dry-run\n--branch\nx\n--version\ny\n--env-diff\n--skip-migrations\n"
    );
    assert_eq!(read(&saw), "held\n");

    assert_wrapped_stderr(&run(&["staging", "--force"]));
    assert_eq!(read(&argv), "staging\n--force\n");
    assert_eq!(read(&saw), "held\n");
    assert_released(&w);
    let events = audit_events(&w);

    // --help takes no lock and writes nothing.
    let state = w.state();
    let usage = "Usage: deploy.sh ENVIRONMENT [--force] [--remote USER@HOST] [--dry-run] [--skip-migrations] [--version COMMIT] [--branch BRANCH] [--env-diff] [--help]\n";
    run(&["staging", "--help"]).code(0).stdout(usage).stderr("");
    assert_eq!(read(&argv), "staging\n--help\n");
    assert_eq!(read(&saw), "free\n");
    assert_eq!(w.state(), state);
    assert_eq!(audit_events(&w), events);

    // ...and runs even while a live deployment holds the lock.
    let (wrapper, probe, _) = hold_lock(&w, "holder");
    run(&["staging", "--help"]).code(0).stdout(usage);
    assert_eq!(read(&saw), "held\n");
    probe.send("exit 0");
    finish(wrapper).code(0);
    assert_released(&w);
}

#[test]
fn the_demo_deploy_sh_runs_under_deploy_lock() {
    let w = World::new();
    w.install_executable(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/scripts/deploy.sh"),
        "deploy/scripts/deploy.sh",
    );
    let out = w.deploy_lock(&["staging"]).env("DEMO_STEP_SECS", "0").run();
    out.code(0).stderr("");
    assert!(
        out.stdout
            .starts_with("==> Running under deploy-lock's staging lock (lock_")
            && out
                .stdout
                .contains(")\n==> Deploying staging: branch main, version HEAD (pid "),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("\n==> Deployed staging (log: "),
        "{}",
        out.stdout
    );
    assert_released(&w);
    assert_eq!(audit_events(&w), ["acquire", "release"]);
}

/// The command learns it runs under the lock, and which one: the ids it sees
/// are the ones the state file and the audit log record.
#[test]
fn the_command_sees_the_lock_ids_in_its_environment() {
    let w = World::new();
    let out = w
        .deploy_lock(&[
            "run",
            "staging",
            "--",
            "sh",
            "-c",
            "printf '%s %s\\n' \"$DEPLOY_LOCK_HELD\" \"$DEPLOY_LOCK_DEPLOYMENT_ID\"; jq -r '.lock.lock_id + \" \" + .lock.deployment_id' deploy/config/deployment-state.json",
        ])
        .run();
    out.code(0).stderr("");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert_eq!(lines[0], lines[1]);
    assert!(
        lines[0].starts_with("lock_") && lines[0].contains(" dep_"),
        "{}",
        out.stdout
    );
    // Without the lock (deploy.sh --help), nothing claims it is held.
    w.script(
        "deploy/scripts/deploy.sh",
        "#!/bin/bash\necho \"held=${DEPLOY_LOCK_HELD-unset}\"\n",
    );
    w.deploy_lock(&["staging", "--help"])
        .run()
        .code(0)
        .stdout("held=unset\n");
}

/// The demo deploy.sh run directly (as the guide's "Let deploy.sh handle it"
/// does) hands itself to deploy-lock when it is on PATH: a dead holder's
/// stale lock is taken over, and a live holder's is never pre-empted.
#[test]
fn the_demo_deploy_sh_run_directly_hands_itself_to_deploy_lock() {
    let w = World::new();
    let deploy = w.install_executable(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/scripts/deploy.sh"),
        "deploy/scripts/deploy.sh",
    );
    let bin = w.tmp.path().join("bin");
    fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("deploy-lock")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let stale = now() - 7200;
    w.legacy_lock("staging", stale);
    w.legacy_state("staging", stale, &dead_pid().to_string(), &hostname());
    let mut c = w.cmd(&deploy);
    c.cmd.arg("staging");
    let out = c
        .dir("/")
        .env("PATH", &path)
        .env("DEMO_STEP_SECS", "0")
        .stdin(b"")
        .run();
    out.code(0).any_stderr();
    assert!(
        out.stderr
            .starts_with("WARNING: took over the staging lock left by deploy@localhost (pid "),
        "{}",
        out.stderr
    );
    assert!(
        out.stdout
            .starts_with("==> Running under deploy-lock's staging lock (lock_"),
        "{}",
        out.stdout
    );
    assert_released(&w);
    assert_eq!(audit_events(&w), ["takeover", "release"]);
}
