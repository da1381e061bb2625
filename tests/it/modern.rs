//! `deploy-lock` itself: `status --json` in every verdict, the human status
//! with its verdict line, clap's usage errors, settings from variables and
//! flags, the checkout choice, and a corrupted state file.

use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::*;

const LOCK_ID: &str = "lock_1890d66a41888860_47448a50c1f61cc6be49eaf4";
const DEP_ID: &str = "dep_1890d66a41888860_47448a50c1f61cc6be49eaf4";

const HEADER: &str =
    "Deployment Lock Status: staging\n============================================\n";
const NO_DIR: &str = "Lock directory: Not found (unlocked)\n";

/// The documented keys of `status --json`, in the order printed.
const JSON_KEYS: [&str; 18] = [
    "schema",
    "environment",
    "locked",
    "verdict",
    "lock_dir",
    "lock_dir_exists",
    "state_file",
    "state_file_exists",
    "state_error",
    "holder",
    "holder_alive",
    "age_seconds",
    "stale",
    "stale_after_seconds",
    "record_held_by",
    "migration_lock",
    "run",
    "waiters",
];

/// A live process whose command name is `deploy.sh`, like a real deploy (the
/// idea of `legacy_status::fake_deploy`), in a process group of its own and
/// with no inherited output: dropped, the whole group is killed, so no
/// orphaned `sleep` keeps the test's output pipe open for a minute.
struct Running(Child);

impl Running {
    fn deploy(w: &World) -> Running {
        let script = w.script("bin/deploy.sh", "#!/bin/bash\nsleep 60 &\nwait\n");
        let child = Command::new(script)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let running = Running(child);
        let pid = running.0.id();
        wait_until(Duration::from_secs(5), "deploy.sh to start", || {
            fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "deploy.sh\n")
        });
        running
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.0.wait();
    }
}

fn dir_lines(w: &World) -> String {
    let p = w.lock_path("staging");
    format!(
        "Lock directory exists: {}\n{}\n",
        p.display(),
        real_ls_ld(&p, "UTC")
    )
}

/// `status staging --json` (plus `extra` arguments): the parsed object and
/// the clock seconds around the run.
fn status_json(w: &World, extra: &[&str]) -> (Value, i64, i64) {
    let mut args = vec!["status", "staging", "--json"];
    args.extend_from_slice(extra);
    let before = now();
    let out = w.deploy_lock(&args).run();
    let after = now();
    out.code(0).stderr("");
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout));
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, JSON_KEYS, "{}", out.stdout);
    (v, before, after)
}

/// Checks `age_seconds` against the clock (`taken` is when the lock was
/// taken), then compares the rest of the object whole with `want`.
#[track_caller]
fn assert_status(got: (Value, i64, i64), taken: Option<i64>, want: Value) {
    let (mut v, before, after) = got;
    let age = v["age_seconds"].take();
    match taken {
        None => assert_eq!(age, Value::Null),
        Some(t) => {
            let age = age.as_i64().unwrap_or_else(|| panic!("age {age}"));
            assert!(
                (before - t..=after - t).contains(&age),
                "age {age} outside {}..={}",
                before - t,
                after - t
            );
        }
    }
    let mut want = want;
    want["age_seconds"] = Value::Null;
    assert_eq!(v, want);
}

/// What every status object of a lock directory plus a legacy state file has.
fn base(w: &World, verdict: &str, holder: Value, alive: Value, stale: bool) -> Value {
    json!({
        "schema": 1,
        "environment": "staging",
        "locked": true,
        "verdict": verdict,
        "lock_dir": w.lock_path("staging").to_str().unwrap(),
        "lock_dir_exists": true,
        "state_file": w.state_path().to_str().unwrap(),
        "state_file_exists": true,
        "state_error": null,
        "holder": holder,
        "holder_alive": alive,
        "age_seconds": null,
        "stale": stale,
        "stale_after_seconds": 1800,
        "record_held_by": null,
        "migration_lock": null,
        "run": null,
        "waiters": [],
    })
}

fn state_holder(locked_at: i64, pid: Value, host: &str, process_name: Value) -> Value {
    json!({
        "source": "state_file",
        "lock_id": LOCK_ID,
        "deployment_id": DEP_ID,
        "locked_by": "deploy@localhost",
        "locked_at": iso(locked_at),
        "pid": pid,
        "hostname": host,
        "process_name": process_name,
        // A legacy holder gives no reason and is no freeze (issue 22).
        "reason": null,
        "freeze": null,
    })
}

#[test]
fn status_json_free_is_the_whole_documented_object() {
    let w = World::new();
    let out = w.deploy_lock(&["status", "staging", "--json"]).run();
    out.code(0).stderr("").stdout(&format!(
        r#"{{
  "schema": 1,
  "environment": "staging",
  "locked": false,
  "verdict": "free",
  "lock_dir": "{}",
  "lock_dir_exists": false,
  "state_file": "{}",
  "state_file_exists": false,
  "state_error": null,
  "holder": null,
  "holder_alive": null,
  "age_seconds": null,
  "stale": false,
  "stale_after_seconds": 1800,
  "record_held_by": null,
  "migration_lock": null,
  "run": null,
  "waiters": []
}}
"#,
        w.lock_path("staging").display(),
        w.state_path().display()
    ));
    // An unlocked state file changes only state_file_exists.
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false}}\n");
    let (v, ..) = status_json(&w, &[]);
    assert_eq!(v["state_file_exists"], true);
    assert_eq!(v["verdict"], "free");
    assert_eq!(v["holder"], Value::Null);
}

#[test]
fn status_json_held_by_a_live_deploy() {
    let w = World::new();
    let deploy = Running::deploy(&w);
    let pid = deploy.pid();
    let t = now() - 195;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, &pid.to_string(), &hostname());
    assert_status(
        status_json(&w, &[]),
        Some(t),
        base(
            &w,
            "held",
            state_holder(t, json!(pid), &hostname(), json!("deploy.sh")),
            json!(true),
            false,
        ),
    );
    // Liveness first, age second: two hours old and alive is still held.
    let w = World::new();
    let t = now() - 7200;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, &pid.to_string(), &hostname());
    assert_status(
        status_json(&w, &[]),
        Some(t),
        base(
            &w,
            "held",
            state_holder(t, json!(pid), &hostname(), json!("deploy.sh")),
            json!(true),
            true,
        ),
    );
}

#[test]
fn status_json_stale_and_orphaned_dead_holders() {
    let w = World::new();
    let pid = dead_pid();
    let t = now() - 7200;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, &pid.to_string(), &hostname());
    assert_status(
        status_json(&w, &[]),
        Some(t),
        base(
            &w,
            "stale",
            state_holder(t, json!(pid), &hostname(), Value::Null),
            json!(false),
            true,
        ),
    );

    // Dead but young: orphaned, not stale.
    let w = World::new();
    let t = now() - 120;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, &pid.to_string(), &hostname());
    assert_status(
        status_json(&w, &[]),
        Some(t),
        base(
            &w,
            "orphaned",
            state_holder(t, json!(pid), &hostname(), Value::Null),
            json!(false),
            false,
        ),
    );
}

#[test]
fn status_json_orphaned_directory_with_an_unlocked_state() {
    let w = World::new();
    let t = now() - 10;
    w.legacy_lock("staging", t);
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false}}\n");
    assert_status(
        status_json(&w, &[]),
        Some(t),
        base(&w, "unknown", Value::Null, Value::Null, false),
    );
}

#[test]
fn status_json_held_from_another_host() {
    let w = World::new();
    let t = now() - 60;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, "12345", "build-server-7");
    assert_status(
        status_json(&w, &[]),
        Some(t),
        base(
            &w,
            "held",
            state_holder(t, json!(12345), "build-server-7", Value::Null),
            Value::Null,
            false,
        ),
    );
    // Older than the stale timeout, another host's lock is stale.
    let w = World::new();
    let t = now() - 7200;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, "12345", "build-server-7");
    assert_status(
        status_json(&w, &[]),
        Some(t),
        base(
            &w,
            "stale",
            state_holder(t, json!(12345), "build-server-7", Value::Null),
            Value::Null,
            true,
        ),
    );
}

#[test]
fn status_json_obstructed_by_a_file() {
    let w = World::new();
    fs::write(w.lock_path("staging"), "not a directory\n").unwrap();
    let (v, ..) = status_json(&w, &[]);
    assert_eq!(
        v,
        json!({
            "schema": 1,
            "environment": "staging",
            "locked": true,
            "verdict": "obstructed",
            "lock_dir": w.lock_path("staging").to_str().unwrap(),
            "lock_dir_exists": false,
            "state_file": w.state_path().to_str().unwrap(),
            "state_file_exists": false,
            "state_error": null,
            "holder": null,
            "holder_alive": null,
            "age_seconds": null,
            "stale": false,
            "stale_after_seconds": 1800,
            "record_held_by": null,
            "migration_lock": null,
            "run": null,
            "waiters": [],
        })
    );
}

/// The legacy state lines for `legacy_state(.., t, pid, this host)` at clock
/// second `now_s`, with the stale line for `stale_span` when older than it.
fn state_info(t: i64, pid: u32, now_s: i64, stale_span: Option<&str>, alive: bool) -> String {
    let age = now_s - t;
    let mut s = format!(
        "State file info:\n  Locked: true\n  Locked by: deploy@localhost\n  Locked at: {}\n  Deployment ID: {DEP_ID}\n  PID: {pid}\n  Hostname: {}\n  Lock age: {}m {}s\n",
        iso(t),
        hostname(),
        age / 60,
        age % 60
    );
    if let Some(span) = stale_span {
        s += &format!("  ⚠ Lock is stale (>{span})\n");
    }
    if alive {
        s += &format!("  ✓ Process {pid} is still running: deploy.sh\n");
    } else {
        s += &format!("  ⚠ Process {pid} is not running (deployment may have crashed)\n");
    }
    s
}

#[test]
fn human_status_ends_with_the_verdict_line() {
    let w = World::new();
    w.deploy_lock(&["status", "staging"])
        .run()
        .code(0)
        .stderr("")
        .stdout(&format!(
            "{HEADER}{NO_DIR}\nState file not found: {}\n\nVerdict: free: no lock directory; a deploy may start\n",
            w.state_path().display()
        ));

    let pid = dead_pid();
    let t = now() - 7200;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, &pid.to_string(), &hostname());
    let dir = dir_lines(&w);
    let before = now();
    let out = w.deploy_lock(&["status", "staging"]).run();
    let after = now();
    out.code(0).stderr("").stdout_one_of(
        &(before..=after)
            .map(|s| {
                format!(
                    "{HEADER}{dir}\n{}\nLock ID: {LOCK_ID}\nVerdict: stale: older than 30 minutes and its holder is not running here; the next deploy takes it over\n",
                    state_info(t, pid, s, Some("30 minutes"), false)
                )
            })
            .collect::<Vec<_>>(),
    );

    let w = World::new();
    let deploy = Running::deploy(&w);
    let pid = deploy.pid();
    let t = now() - 60;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, &pid.to_string(), &hostname());
    let dir = dir_lines(&w);
    let before = now();
    let out = w.deploy_lock(&["status", "staging"]).run();
    let after = now();
    out.code(0).stderr("").stdout_one_of(
        &(before..=after)
            .map(|s| {
                format!(
                    "{HEADER}{dir}\n{}\nLock ID: {LOCK_ID}\nVerdict: held: deploy.sh (pid {pid}) is running; it is never taken over while alive\n",
                    state_info(t, pid, s, None, true)
                )
            })
            .collect::<Vec<_>>(),
    );
}

#[test]
fn usage_errors_exit_2() {
    let w = World::new();
    w.deploy_lock(&["status", "bogus"])
        .run()
        .code(2)
        .stdout("")
        .stderr(
            "ERROR: invalid value 'bogus' for '[ENV]'\n  [possible values: development, staging, production]\n\nFor more information, try '--help'.\n",
        );
    w.deploy_lock(&["unlock"]).run().code(2).stdout("").stderr(
        "ERROR: the following required arguments were not provided:\n  <ENV>\n\nUsage: deploy-lock unlock <ENV>\n\nFor more information, try '--help'.\n",
    );
    w.deploy_lock(&["bogus"]).run().code(2).stdout("").stderr(
        "ERROR: 'bogus' is neither an environment (development, staging, production) nor a command; see deploy-lock --help\n",
    );
    // Environments are exact, as in unlock.sh.
    w.deploy_lock(&["status", "Staging"]).run().code(2).stderr(
        "ERROR: invalid value 'Staging' for '[ENV]'\n  [possible values: development, staging, production]\n\n  tip: a similar value exists: 'staging'\n\nFor more information, try '--help'.\n",
    );
    w.deploy_lock(&["status", "staging", "--stale-secs", "soon"])
        .run()
        .code(2)
        .stdout("")
        .stderr(
            "ERROR: invalid --stale-secs 'soon': expected a whole number of seconds from 0 to 1000000000, e.g. 1800\n",
        );
    assert!(!w.lock_path("staging").exists());
}

#[test]
fn help_exits_0_on_stdout() {
    let w = World::new();
    let out = w.deploy_lock(&["--help"]).run();
    out.code(0).stderr("");
    assert!(
        out.stdout.contains("\nUsage: deploy-lock "),
        "{}",
        out.stdout
    );
    for cmd in ["status", "wait", "unlock", "run"] {
        assert!(
            out.stdout.contains(&format!("\n  {cmd} ")),
            "no {cmd} in:\n{}",
            out.stdout
        );
    }
    assert!(
        out.stdout.contains(
            "Exit status: 0 success; 1 unlock cancelled or unanswered; 2 usage error; 65\n\
             state file not valid; 74 I/O error; 75 lock held; 76 lock lost while\n\
             running; 124 wait timed out; 126, 127 command not executable / not found;\n\
             128+N signal N while waiting; run: the command's own status;\n\
             --conflict-exit-code N instead of 75, 124, 76. Every case in full: EXIT\n\
             STATUS in deploy-lock(1)."
        ),
        "{}",
        out.stdout
    );
    let sub = w.deploy_lock(&["status", "--help"]).run();
    sub.code(0).stderr("");
    assert!(
        sub.stdout
            .contains("Usage: deploy-lock status [OPTIONS] [ENV]"),
        "{}",
        sub.stdout
    );
}

#[test]
fn a_bad_setting_is_one_line_naming_the_variable_and_value() {
    let w = World::new();
    let line = "ERROR: invalid DEPLOY_LOCK_STALE_SECS 'soon': expected a whole number of seconds from 0 to 1000000000, e.g. 1800\n";
    w.unlock_sh(&["staging"])
        .env("DEPLOY_LOCK_STALE_SECS", "soon")
        .run()
        .code(1)
        .stdout("")
        .stderr(line);
    w.deploy_lock(&["status", "staging"])
        .env("DEPLOY_LOCK_STALE_SECS", "soon")
        .run()
        .code(2)
        .stdout("")
        .stderr(line);
    w.unlock_sh(&["staging", "--wait"])
        .env("DEPLOY_LOCK_WAIT_INTERVAL", "0")
        .run()
        .code(1)
        .stdout("")
        .stderr(
            "ERROR: invalid DEPLOY_LOCK_WAIT_INTERVAL '0': expected a number of seconds greater than 0\n",
        );
    w.deploy_lock(&["wait", "staging"])
        .env("DEPLOY_LOCK_WAIT_TIMEOUT", "an hour")
        .run()
        .code(2)
        .stdout("")
        .stderr(
            "ERROR: invalid DEPLOY_LOCK_WAIT_TIMEOUT 'an hour': expected a number of seconds from 0 to 1000000000, such as 5 or 0.25\n",
        );
    // A bad setting stops a force-unlock before it asks or touches anything.
    let lock = w.legacy_lock("staging", now() - 60);
    w.unlock_sh(&["staging", "--force"])
        .env("DEPLOY_LOCK_STALE_SECS", "soon")
        .stdin(b"yes\n")
        .run()
        .code(1)
        .stdout("")
        .stderr(line);
    assert!(lock.join("locked_at").exists());
}

#[test]
fn stale_secs_flag_overrides_the_variable() {
    let w = World::new();
    let pid = dead_pid();
    let t = now() - 120;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, &pid.to_string(), &hostname());
    let holder = state_holder(t, json!(pid), &hostname(), Value::Null);
    // Two minutes old: orphaned by default and with the variable at an hour.
    assert_status(
        status_json(&w, &[]),
        Some(t),
        base(&w, "orphaned", holder.clone(), json!(false), false),
    );
    let run = |args: &[&str], var: Option<&str>| {
        let mut a = vec!["status", "staging", "--json"];
        a.extend_from_slice(args);
        let mut c = w.deploy_lock(&a);
        if let Some(v) = var {
            c = c.env("DEPLOY_LOCK_STALE_SECS", v);
        }
        let before = now();
        let out = c.run();
        let after = now();
        out.code(0).stderr("");
        (
            serde_json::from_str::<Value>(&out.stdout).unwrap(),
            before,
            after,
        )
    };
    let mut want_stale = base(&w, "stale", holder.clone(), json!(false), true);
    want_stale["stale_after_seconds"] = json!(60);
    assert_status(
        run(&["--stale-secs", "60"], Some("3600")),
        Some(t),
        want_stale.clone(),
    );
    assert_status(run(&["--stale-secs=60"], None), Some(t), want_stale.clone());
    assert_status(run(&[], Some("60")), Some(t), want_stale);
    let mut want_orphaned = base(&w, "orphaned", holder, json!(false), false);
    want_orphaned["stale_after_seconds"] = json!(3600);
    assert_status(
        run(&["--stale-secs", "3600"], Some("60")),
        Some(t),
        want_orphaned,
    );

    // unlock.sh reads the variable, and the stale line names the span.
    let dir = dir_lines(&w);
    let before = now();
    let out = w
        .unlock_sh(&["staging"])
        .env("DEPLOY_LOCK_STALE_SECS", "60")
        .run();
    let after = now();
    out.code(0).stdout_one_of(
        &(before..=after)
            .map(|s| {
                format!(
                    "{HEADER}{dir}\n{}\n",
                    state_info(t, pid, s, Some("1 minute"), false)
                )
            })
            .collect::<Vec<_>>(),
    );
}

/// A second checkout whose state file says who it is.
fn other_checkout(w: &World, name: &str, locked_by: &str) -> std::path::PathBuf {
    let root = w.tmp.path().join(name);
    fs::create_dir_all(root.join("deploy/config")).unwrap();
    fs::write(
        root.join("deploy/config/deployment-state.json"),
        format!("{{\"lock\": {{\"locked\": false, \"locked_by\": \"{locked_by}\"}}}}\n"),
    )
    .unwrap();
    root
}

fn unlocked_block(locked_by: &str) -> String {
    format!(
        "{HEADER}{NO_DIR}\nState file info:\n  Locked: false\n  Locked by: {locked_by}\n  Locked at: N/A\n  Deployment ID: N/A\n  PID: N/A\n  Hostname: N/A\n\n"
    )
}

#[test]
fn project_root_flag_and_variable_pick_the_state_file() {
    let w = World::new();
    w.write_state("{\"lock\": {\"locked\": false, \"locked_by\": \"main@checkout\"}}\n");
    let other = other_checkout(&w, "other", "other@checkout");
    let third = other_checkout(&w, "third", "third@checkout");
    let other_s = other.to_str().unwrap();
    let third_s = third.to_str().unwrap();
    let main_block = unlocked_block("main@checkout");
    let other_block = unlocked_block("other@checkout");
    let free = "Verdict: free: no lock directory; a deploy may start\n";

    // unlock.sh: the script's own checkout unless told otherwise.
    w.unlock_sh(&["staging"]).run().code(0).stdout(&main_block);
    w.unlock_sh(&["staging", "--project-root", other_s])
        .run()
        .code(0)
        .stdout(&other_block);
    w.unlock_sh(&["--project-root", other_s, "staging", "--status"])
        .run()
        .code(0)
        .stdout(&other_block);
    w.unlock_sh(&["staging", &format!("--project-root={other_s}")])
        .run()
        .code(0)
        .stdout(&other_block);
    w.unlock_sh(&["staging"])
        .env("DEPLOY_LOCK_PROJECT_ROOT", &other)
        .run()
        .code(0)
        .stdout(&other_block);
    // The flag beats the variable.
    w.unlock_sh(&["staging", "--project-root", other_s])
        .env("DEPLOY_LOCK_PROJECT_ROOT", &third)
        .run()
        .code(0)
        .stdout(&other_block);

    // deploy-lock: the working directory's checkout unless told otherwise.
    w.deploy_lock(&["status", "staging"])
        .run()
        .code(0)
        .stdout(&format!("{main_block}{free}"));
    w.deploy_lock(&["status", "staging", "--project-root", other_s])
        .run()
        .code(0)
        .stdout(&format!("{other_block}{free}"));
    w.deploy_lock(&["status", "staging"])
        .env("DEPLOY_LOCK_PROJECT_ROOT", &other)
        .run()
        .code(0)
        .stdout(&format!("{other_block}{free}"));
    w.deploy_lock(&["status", "staging", "--project-root", other_s])
        .env("DEPLOY_LOCK_PROJECT_ROOT", &third)
        .run()
        .code(0)
        .stdout(&format!("{other_block}{free}"));
    let (v, ..) = status_json(&w, &["--project-root", third_s]);
    assert_eq!(
        v["state_file"],
        third
            .join("deploy/config/deployment-state.json")
            .to_str()
            .unwrap()
    );
    // Issue 12: a root that is not a checkout (no deploy/) is refused, and
    // nothing is created in it.
    let empty = w.tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    w.deploy_lock(&["status", "staging"])
        .env("DEPLOY_LOCK_PROJECT_ROOT", &empty)
        .dir("/")
        .run()
        .code(2)
        .stdout("")
        .stderr(&format!(
            "ERROR: DEPLOY_LOCK_PROJECT_ROOT {} has no deploy/ folder; name a checkout (the folder that holds deploy/), or leave it unset to use the checkout around the working directory\n",
            empty.display()
        ));
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
}

/// Issue 12: outside any checkout, status and wait work (the lock lives in
/// the lock folder); run still needs the checkout and says so in one line.
#[test]
fn outside_any_checkout_run_is_one_clear_error() {
    let w = World::new();
    let outside = fs::canonicalize(w.tmp.path()).unwrap();
    w.deploy_lock(&["run", "staging", "--", "true"])
        .dir(&outside)
        .run()
        .code(2)
        .stdout("")
        .stderr(&format!(
            "ERROR: no checkout found: neither {} nor any folder above it has deploy/scripts or deploy/config; run from inside the checkout, or pass --project-root DIR (or set DEPLOY_LOCK_PROJECT_ROOT)\n",
            outside.display()
        ));
    // From a subfolder of the checkout, the checkout is found.
    w.deploy_lock(&["status", "staging", "--json"])
        .dir(w.root.join("deploy/config"))
        .run()
        .code(0);
}

/// Issue 12: a corrupt state file does not hide the lock: status shows the
/// lock directory and who holds it, then the error (65), with advice that
/// works on a file that is not JSON; nothing is touched.
#[test]
fn corrupted_state_file_exits_65_and_is_never_touched() {
    let w = World::new();
    let broken = "{\n  \"environment\": \"staging\",\n  \"lock\": {\"locked\": tru\n";
    w.write_state(broken);
    let lock = w.legacy_lock("staging", now() - 7200);
    let p = w.state_path();
    let p = p.display();
    let err = modern_unusable(
        &w.state_path(),
        "is not valid JSON: expected ident (line 3, column 24)",
    );
    let lock_part = format!(
        "{HEADER}Lock directory exists: {l}\n{ls}\n\nHolder: unknown (no record says who holds it)\n\n",
        l = lock.display(),
        ls = real_ls_ld(&lock, "UTC")
    );
    for (args, stdout) in [
        (&["status", "staging"][..], lock_part.as_str()),
        (&["status", "staging", "--json"], ""),
        (&["unlock", "staging", "--yes"], ""),
        (&["wait", "staging"], ""),
    ] {
        let out = w.deploy_lock(args).stdin(b"yes\n").run();
        out.code(65).stderr(&err);
        if args.contains(&"--json") {
            let v: Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(v["verdict"], "stale");
            assert_eq!(v["lock_dir_exists"], true);
            assert_eq!(v["state_file_exists"], false);
            assert_eq!(
                v["state_error"],
                format!("state file {p} is not valid JSON: expected ident (line 3, column 24)")
            );
        } else {
            out.stdout(stdout);
        }
        assert_eq!(
            fs::read(w.state_path()).unwrap(),
            broken.as_bytes(),
            "{args:?}"
        );
        assert!(lock.join("locked_at").exists(), "{args:?}");
    }
    assert_eq!(w.audit_log(), "");

    // Valid JSON of the wrong shape is 65 too.
    w.write_state("{\"lock\": [1, 2]}\n");
    let out = w.deploy_lock(&["unlock", "staging", "--yes"]).run();
    out.code(65).stdout("");
    assert!(
        out.stderr.starts_with(&format!(
            "ERROR: state file {p} is not usable: \"lock\" is an array, expected an object\n"
        )),
        "{}",
        out.stderr
    );
    out.stderr(&modern_unusable(
        &w.state_path(),
        "is not usable: \"lock\" is an array, expected an object",
    ));
    assert_eq!(w.state(), "{\"lock\": [1, 2]}\n");
    assert!(lock.join("locked_at").exists());
}

/// The settings are global flags; `--help` shows them before the command
/// (`deploy-lock [OPTIONS] ...`), so that is where people type them.
#[test]
fn global_flags_before_the_subcommand() {
    let w = World::new();
    let other = other_checkout(&w, "other", "other@checkout");
    w.deploy_lock(&[
        "--project-root",
        other.to_str().unwrap(),
        "status",
        "staging",
    ])
    .run()
    .code(0)
    .stdout(&format!(
        "{}Verdict: free: no lock directory; a deploy may start\n",
        unlocked_block("other@checkout")
    ));
    let out = w
        .deploy_lock(&["--stale-secs", "60", "status", "staging", "--json"])
        .run();
    out.code(0).stderr("");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["stale_after_seconds"], 60);
}

/// Local settings flags do not travel with `--remote`: said once, before ssh
/// runs (here `false` stands in for ssh, so no server is needed; its exit
/// status 1 comes back as the remote one would).
#[test]
fn local_settings_with_remote_get_a_warning() {
    let w = World::new();
    let out = w
        .deploy_lock(&[
            "status",
            "staging",
            "--stale-secs",
            "60",
            "--remote",
            "deploy@h",
        ])
        .env("DEPLOY_LOCK_SSH", "false")
        .run();
    out.code(1).stdout("");
    assert!(
        out.stderr.starts_with(
            "WARNING: --lock-dir, --project-root, --stale-secs and --wait-* apply to local locks; deploy@h uses its own settings (set DEPLOY_LOCK_* there, or pass them with ssh's SendEnv)\n"
        ),
        "{}",
        out.stderr
    );
    // Only the warning: `false` (standing in for ssh) says nothing.
    out.stderr(
        "WARNING: --lock-dir, --project-root, --stale-secs and --wait-* apply to local locks; deploy@h uses its own settings (set DEPLOY_LOCK_* there, or pass them with ssh's SendEnv)\n",
    );
    let plain = w
        .deploy_lock(&["status", "staging", "--remote", "deploy@h"])
        .env("DEPLOY_LOCK_SSH", "false")
        .run();
    plain.code(1);
    assert!(!plain.stderr.contains("WARNING:"), "{}", plain.stderr);
    plain.stderr("");
}
