//! `unlock.sh ENV --force` and `deploy-lock unlock ENV [--yes]`: the warning,
//! the confirmation (pipe and real terminal), the removal report, the state
//! rewrite that keeps everything it does not own, and the audit line.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

const LOCK_ID: &str = "lock_1890d66a41888860_47448a50c1f61cc6be49eaf4";
const DEP_ID: &str = "dep_1890d66a41888860_47448a50c1f61cc6be49eaf4";

fn header(env: &str) -> String {
    format!("Deployment Lock Status: {env}\n============================================\n")
}

/// The status block's lock-directory lines, taken while the directory exists.
fn dir_lines(w: &World, env: &str) -> String {
    let p = w.lock_path(env);
    format!(
        "Lock directory exists: {}\n{}\n",
        p.display(),
        real_ls_ld(&p, "UTC")
    )
}

const NO_DIR: &str = "Lock directory: Not found (unlocked)\n";

fn warning(w: &World, env: &str) -> String {
    format!(
        "⚠ FORCE UNLOCK - This is dangerous!

This will:
  1. Remove lock directory: {}
  2. Update state file to unlocked

Only do this if:
  - The deployment process crashed
  - You've verified no deployment is running
  - The lock is stale (>30 minutes old)

",
        w.lock_path(env).display()
    )
}

const PROMPT: &str = "Are you sure you want to force unlock? (type 'yes' to confirm): ";

const RELEASED_TAIL: &str =
    "\n✓ Lock forcefully released\n\nNext deployment will proceed normally.\n";

/// A crashed legacy deploy's holder (a dead pid on this host, two hours ago).
struct Crashed {
    pid: u32,
    locked_at: i64,
}

/// The legacy state record, with keys we do not own around the lock record
/// (and an unknown field inside it).
fn crashed_state_json(env: &str, locked_at: i64, pid: u32, host: &str) -> String {
    format!(
        r#"{{
  "schema": 2,
  "environment": "{env}",
  "lock": {{
    "locked": true,
    "lock_id": "{LOCK_ID}",
    "deployment_id": "{DEP_ID}",
    "locked_by": "deploy@localhost",
    "locked_at": "{}",
    "lock_expires_at": "{}",
    "pid": {pid},
    "hostname": "{host}",
    "note": "kept as is"
  }},
  "deployments": [{{"id": 1, "commit": "abc123", "seconds": 12.50}}],
  "slots": {{"blue": "active", "green": null}},
  "counter": 123456789012345678901234567890
}}
"#,
        iso(locked_at),
        iso(locked_at + 1800)
    )
}

/// A crashed legacy deploy: its lock directory and state file.
fn crashed(w: &World, env: &str) -> Crashed {
    let pid = dead_pid();
    let locked_at = now() - 7230;
    w.legacy_lock(env, locked_at);
    w.write_state(&crashed_state_json(env, locked_at, pid, &hostname()));
    Crashed { pid, locked_at }
}

/// The state-file part of the status block for `crashed`, at clock second `t`.
fn crashed_info(c: &Crashed, t: i64) -> String {
    let age = t - c.locked_at;
    format!(
        "State file info:
  Locked: true
  Locked by: deploy@localhost
  Locked at: {}
  Deployment ID: {DEP_ID}
  PID: {pid}
  Hostname: {}
  Lock age: {}m {}s
  ⚠ Lock is stale (>30 minutes)
  ⚠ Process {pid} is not running (deployment may have crashed)
",
        iso(c.locked_at),
        hostname(),
        age / 60,
        age % 60,
        pid = c.pid,
    )
}

/// Whole-output candidates, one per clock second the run may have spanned.
fn candidates(before: i64, after: i64, make: impl Fn(i64) -> String) -> Vec<String> {
    (before..=after).map(make).collect()
}

/// What must stay exactly as it was when nothing may change.
struct Snapshot {
    state: Option<Vec<u8>>,
    lock_ino: Option<u64>,
    locked_at: Option<Vec<u8>>,
    audit: String,
}

fn snapshot(w: &World, env: &str) -> Snapshot {
    let lock = w.lock_path(env);
    Snapshot {
        state: fs::read(w.state_path()).ok(),
        lock_ino: fs::symlink_metadata(&lock).ok().map(|m| m.ino()),
        locked_at: fs::read(lock.join("locked_at")).ok(),
        audit: w.audit_log(),
    }
}

#[track_caller]
fn assert_unchanged(w: &World, env: &str, before: &Snapshot, what: &str) {
    let now = snapshot(w, env);
    assert!(now.state == before.state, "{what}: state file changed");
    assert_eq!(
        now.lock_ino, before.lock_ino,
        "{what}: lock directory changed"
    );
    assert_eq!(now.locked_at, before.locked_at, "{what}: locked_at changed");
    assert_eq!(now.audit, before.audit, "{what}: audit log changed");
}

fn keys(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The state file after a force-unlock: `locked` false, `deployment_id`
/// null, everything else (values, digits, key order) as it was.
#[track_caller]
fn assert_force_unlocked_state(w: &World, original: &str) {
    let before: Value = serde_json::from_str(original).unwrap();
    let mut want = before.clone();
    want["lock"]["locked"] = json!(false);
    want["lock"]["deployment_id"] = Value::Null;
    let got = w.state_json();
    assert_eq!(got, want, "state after force unlock:\n{}", w.state());
    assert_eq!(keys(&got), keys(&before), "top-level key order");
    assert_eq!(keys(&got["lock"]), keys(&before["lock"]), "lock key order");
    // Numbers keep their exact digits (arbitrary precision compares text).
    assert_eq!(got["counter"].to_string(), "123456789012345678901234567890");
    assert_eq!(got["deployments"][0]["seconds"].to_string(), "12.50");
}

/// The audit lines written so far, parsed.
fn audit_lines(w: &World) -> Vec<Value> {
    w.audit_log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn state_holder(c: &Crashed) -> Value {
    json!({
        "source": "state_file",
        "lock_id": LOCK_ID,
        "deployment_id": DEP_ID,
        "locked_by": "deploy@localhost",
        "locked_at": iso(c.locked_at),
        "pid": c.pid,
        "hostname": hostname(),
    })
}

/// The one audit line of a force-unlock, its clock-dependent fields checked
/// apart and the rest compared whole.
#[track_caller]
fn assert_one_force_audit(w: &World, holder: Value, dir_removed: bool, state_updated: bool) {
    let mut lines = audit_lines(w);
    assert_eq!(lines.len(), 1, "audit log:\n{}", w.audit_log());
    let line = lines.remove(0);
    let mut rest = line.as_object().unwrap().clone();
    let time = rest.remove("time").unwrap();
    let t = time
        .as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_second();
    assert!((now() - t).abs() <= 5, "audit time {time}");
    assert!(rest.remove("pid").unwrap().as_u64().is_some_and(|p| p > 0));
    // The command as typed: unlock.sh by its path, the environment, its
    // flag or action.
    let command = rest.remove("command").unwrap();
    let command: Vec<&str> = command
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        command[0].ends_with("unlock.sh") || command[0].ends_with("deploy-lock"),
        "{command:?}"
    );
    assert!(command.contains(&"staging"), "{command:?}");
    assert_eq!(
        Value::Object(rest),
        json!({
            "event": "force_unlock",
            "environment": "staging",
            "user": "tester",
            "host": hostname(),
            "holder": holder,
            "lock_dir_removed": dir_removed,
            "state_updated": state_updated,
        })
    );
}

#[test]
fn yes_through_a_pipe_removes_the_lock_and_keeps_the_rest_of_the_state() {
    let w = World::new();
    let c = crashed(&w, "staging");
    fs::set_permissions(w.state_path(), fs::Permissions::from_mode(0o640)).unwrap();
    let original = w.state();
    let dir = dir_lines(&w, "staging");
    let before = now();
    let out = w.unlock_sh(&["staging", "--force"]).stdin(b"yes\n").run();
    let after = now();
    out.code(0).stderr("").stdout_one_of(&candidates(before, after, |t| {
        format!(
            "{}{dir}\n{}\n\n{}⚠ Could not remove lock directory (may not be empty)\n  Trying force remove...\n✓ Lock directory force removed\n✓ State file updated to unlocked\n{RELEASED_TAIL}",
            header("staging"),
            crashed_info(&c, t),
            warning(&w, "staging"),
        )
    }));
    assert!(!w.lock_path("staging").exists());
    assert_force_unlocked_state(&w, &original);
    let mode = fs::metadata(w.state_path()).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o640, "state file mode {mode:o}");
    // No temp file left behind beside the state file.
    let mut names: Vec<String> = fs::read_dir(w.root.join("deploy/config"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".json.lock"))
        .collect();
    names.sort();
    // (The audit log lives there too, with the state file's mode.)
    assert_eq!(names, ["deployment-audit.log", "deployment-state.json"]);
    let mode = fs::metadata(w.audit_log_path()).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o640, "audit log mode {mode:o}");
    assert_one_force_audit(&w, state_holder(&c), true, true);
}

#[test]
fn anything_but_yes_cancels_and_changes_nothing() {
    let w = World::new();
    let c = crashed(&w, "staging");
    let dir = dir_lines(&w, "staging");
    for input in [
        &b"no\n"[..],
        b"",
        b"yess\n",
        b"YES\n",
        b"y\n",
        b"yes please\n",
        b"\nyes\n",
        b"yes\r\n",
    ] {
        let what = format!("stdin {:?}", String::from_utf8_lossy(input));
        let snap = snapshot(&w, "staging");
        let before = now();
        let out = w.unlock_sh(&["staging", "--force"]).stdin(input).run();
        let after = now();
        out.code(0)
            .stderr("")
            .stdout_one_of(&candidates(before, after, |t| {
                format!(
                    "{}{dir}\n{}\n\n{}Cancelled.\n",
                    header("staging"),
                    crashed_info(&c, t),
                    warning(&w, "staging"),
                )
            }));
        assert_unchanged(&w, "staging", &snap, &what);
    }
    assert_eq!(w.audit_log(), "");
}

#[test]
fn yes_with_surrounding_blanks_or_without_newline_counts() {
    for input in [&b" yes \n"[..], b"\tyes\t\n", b"yes", b"yes\nno\n"] {
        let what = format!("stdin {:?}", String::from_utf8_lossy(input));
        let w = World::new();
        let c = crashed(&w, "staging");
        let original = w.state();
        let dir = dir_lines(&w, "staging");
        let before = now();
        let out = w.unlock_sh(&["staging", "force"]).stdin(input).run();
        let after = now();
        out.code(0).stderr("").stdout_one_of(&candidates(before, after, |t| {
            format!(
                "{}{dir}\n{}\n\n{}⚠ Could not remove lock directory (may not be empty)\n  Trying force remove...\n✓ Lock directory force removed\n✓ State file updated to unlocked\n{RELEASED_TAIL}",
                header("staging"),
                crashed_info(&c, t),
                warning(&w, "staging"),
            )
        }));
        assert!(!w.lock_path("staging").exists(), "{what}");
        assert_force_unlocked_state(&w, &original);
    }
}

/// Pty output is the program's text with `\n` shown as `\r\n`.
fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

#[test]
fn prompt_and_answer_on_a_real_terminal() {
    // `yes` typed: the prompt is on the screen, the typed line echoes, unlocked.
    let w = World::new();
    let c = crashed(&w, "staging");
    let original = w.state();
    let dir = dir_lines(&w, "staging");
    let before = now();
    let mut tty = w
        .unlock_sh(&["staging", "--force"])
        .env("NO_COLOR", "1")
        .spawn_pty();
    tty.expect(PROMPT, Duration::from_secs(10));
    tty.send(b"yes\r");
    let st = tty.wait(Duration::from_secs(10));
    let after = now();
    assert_eq!(st.code(), Some(0), "{}", tty.text());
    let wants = candidates(before, after, |t| {
        crlf(&format!(
            "{}{dir}\n{}\n\n{}{PROMPT}yes\n⚠ Could not remove lock directory (may not be empty)\n  Trying force remove...\n✓ Lock directory force removed\n✓ State file updated to unlocked\n{RELEASED_TAIL}",
            header("staging"),
            crashed_info(&c, t),
            warning(&w, "staging"),
        ))
    });
    if !wants.contains(&tty.text()) {
        assert_text(&tty.text(), &wants[0], "pty", "");
    }
    assert!(!w.lock_path("staging").exists());
    assert_force_unlocked_state(&w, &original);

    // `no` typed, in colour (a terminal): cancelled, nothing changed.
    let w = World::new();
    crashed(&w, "staging");
    let snap = snapshot(&w, "staging");
    let mut tty = w.unlock_sh(&["staging", "--force"]).spawn_pty();
    tty.expect(PROMPT, Duration::from_secs(10));
    assert!(
        tty.text()
            .contains("\x1b[33m⚠ FORCE UNLOCK - This is dangerous!\x1b[39m\r\n"),
        "{:?}",
        tty.text()
    );
    tty.send(b"no\r");
    let st = tty.wait(Duration::from_secs(10));
    assert_eq!(st.code(), Some(0), "{}", tty.text());
    assert!(
        tty.text()
            .ends_with(&format!("{PROMPT}no\r\nCancelled.\r\n")),
        "{:?}",
        tty.text()
    );
    assert_unchanged(&w, "staging", &snap, "typed no");
}

#[test]
fn missing_lock_directory_is_reported_and_the_state_still_updated() {
    let w = World::new();
    let (t0, pid) = (now() - 60, dead_pid());
    let json = crashed_state_json("staging", t0, pid, "build-server-7");
    w.write_state(&json);
    let locked_at = iso(t0);
    let before = now();
    let out = w.unlock_sh(&["staging", "--force"]).stdin(b"yes\n").run();
    let after = now();
    out.code(0).stderr("").stdout_one_of(&candidates(before, after, |t| {
        format!(
            "{}{NO_DIR}\nState file info:
  Locked: true
  Locked by: deploy@localhost
  Locked at: {locked_at}
  Deployment ID: {DEP_ID}
  PID: {pid}
  Hostname: build-server-7
  Lock age: {}m {}s

\n{}Lock directory does not exist (already removed)\n✓ State file updated to unlocked\n{RELEASED_TAIL}",
            header("staging"),
            (t - t0) / 60,
            (t - t0) % 60,
            warning(&w, "staging"),
        )
    }));
    assert_force_unlocked_state(&w, &json);
    // No lock directory, so no holder to name.
    assert_one_force_audit(&w, Value::Null, false, true);
}

#[test]
fn missing_state_file_is_reported_and_not_created() {
    let w = World::new();
    w.legacy_lock("staging", now() - 60);
    let dir = dir_lines(&w, "staging");
    w.unlock_sh(&["staging", "--force"])
        .stdin(b"yes\n")
        .run()
        .code(0)
        .stderr("")
        .stdout(&format!(
            "{}{dir}\nState file not found: {}\n\n\n{}⚠ Could not remove lock directory (may not be empty)\n  Trying force remove...\n✓ Lock directory force removed\nState file does not exist\n{RELEASED_TAIL}",
            header("staging"),
            w.state_path().display(),
            warning(&w, "staging"),
        ));
    assert!(!w.lock_path("staging").exists());
    assert!(!w.state_path().exists());
    assert_one_force_audit(&w, Value::Null, true, false);
}

#[test]
fn nothing_there_at_all() {
    let w = World::new();
    w.unlock_sh(&["staging", "--force"])
        .stdin(b"yes\n")
        .run()
        .code(0)
        .stderr("")
        .stdout(&format!(
            "{}{NO_DIR}\nState file not found: {}\n\n\n{}Lock directory does not exist (already removed)\nState file does not exist\n{RELEASED_TAIL}",
            header("staging"),
            w.state_path().display(),
            warning(&w, "staging"),
        ));
    assert!(!w.lock_path("staging").exists());
    assert!(!w.state_path().exists());
}

/// The force-unlock output for a lock directory holding entries that are not
/// ours, with no state file (so the whole text is fixed).
fn foreign_output(w: &World, dir: &str) -> String {
    format!(
        "{}{dir}\nState file not found: {}\n\n\n{}⚠ Could not remove lock directory (may not be empty)\n  Trying force remove...\n✓ Lock directory force removed\nState file does not exist\n{RELEASED_TAIL}",
        header("staging"),
        w.state_path().display(),
        warning(w, "staging"),
    )
}

#[test]
fn foreign_file_in_the_lock_directory_takes_the_force_remove_lines() {
    let w = World::new();
    let lock = w.legacy_lock("staging", now() - 60);
    fs::write(lock.join("notes.txt"), "someone's file\n").unwrap();
    fs::create_dir(lock.join("sub")).unwrap();
    fs::write(lock.join("sub/deeper"), "x").unwrap();
    let dir = dir_lines(&w, "staging");
    w.unlock_sh(&["staging", "--force"])
        .stdin(b"yes\n")
        .run()
        .code(0)
        .stderr("")
        .stdout(&foreign_output(&w, &dir));
    assert!(!lock.exists());
}

#[test]
fn symlink_inside_the_lock_directory_is_removed_not_followed() {
    let w = World::new();
    let outside = w.tmp.path().join("precious");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("data.txt"), "keep me\n").unwrap();
    fs::create_dir(outside.join("nested")).unwrap();
    fs::write(outside.join("nested/more.txt"), "and me\n").unwrap();
    let lock = w.legacy_lock("staging", now() - 60);
    std::os::unix::fs::symlink(&outside, lock.join("link")).unwrap();
    std::os::unix::fs::symlink(outside.join("data.txt"), lock.join("file-link")).unwrap();
    let dir = dir_lines(&w, "staging");
    w.unlock_sh(&["staging", "--force"])
        .stdin(b"yes\n")
        .run()
        .code(0)
        .stderr("")
        .stdout(&foreign_output(&w, &dir));
    assert!(!lock.exists());
    assert_eq!(
        fs::read_to_string(outside.join("data.txt")).unwrap(),
        "keep me\n"
    );
    assert_eq!(
        fs::read_to_string(outside.join("nested/more.txt")).unwrap(),
        "and me\n"
    );
}

#[test]
fn any_file_gives_the_legacy_three_lines_and_an_empty_directory_one() {
    // The legacy's rmdir fails on any file, ours (locked_at, owner.json)
    // included: its three lines, whatever the files are.
    let w = World::new();
    let lock = w.legacy_lock("staging", now() - 60);
    fs::write(lock.join("owner.json"), "{}").unwrap();
    let dir = dir_lines(&w, "staging");
    w.unlock_sh(&["staging", "--force"])
        .stdin(b"yes\n")
        .run()
        .code(0)
        .stdout(&format!(
            "{}{dir}\nState file not found: {}\n\n\n{}⚠ Could not remove lock directory (may not be empty)\n  Trying force remove...\n✓ Lock directory force removed\nState file does not exist\n{RELEASED_TAIL}",
            header("staging"),
            w.state_path().display(),
            warning(&w, "staging"),
        ));
    assert!(!lock.exists());
    // An empty directory: the legacy's rmdir succeeds, one line.
    fs::create_dir(&lock).unwrap();
    let dir = dir_lines(&w, "staging");
    w.unlock_sh(&["staging", "--force"])
        .stdin(b"yes\n")
        .run()
        .code(0)
        .stdout(&format!(
            "{}{dir}\nState file not found: {}\n\n\n{}✓ Lock directory removed\nState file does not exist\n{RELEASED_TAIL}",
            header("staging"),
            w.state_path().display(),
            warning(&w, "staging"),
        ));
    assert!(!lock.exists());
}

/// Waits for `child` up to `limit`; kills it and fails if it does not exit.
fn wait_or_kill(child: &mut std::process::Child, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn deploy_lock_unlock_yes_never_reads_stdin() {
    let w = World::new();
    let c = crashed(&w, "staging");
    let original = w.state();
    let dir = dir_lines(&w, "staging");
    // stdin is a pipe we keep open and never write: reading it would hang.
    let mut cmd = w.deploy_lock(&["unlock", "staging", "--yes"]).cmd;
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let before = now();
    let mut child = cmd.spawn().unwrap();
    let stdin = child.stdin.take().unwrap();
    wait_or_kill(
        &mut child,
        Duration::from_secs(10),
        "deploy-lock unlock --yes",
    );
    let after = now();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let wants = candidates(before, after, |t| {
        format!(
            "{}{dir}\n{}\nLock ID: {LOCK_ID}\n\n{}✓ Lock directory removed\n✓ State file updated to unlocked\n{RELEASED_TAIL}",
            header("staging"),
            crashed_info(&c, t),
            warning(&w, "staging"),
        )
    });
    if !wants.contains(&stdout) {
        assert_text(
            &stdout,
            &wants[0],
            "stdout",
            &String::from_utf8_lossy(&out.stderr),
        );
    }
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(!w.lock_path("staging").exists());
    assert_force_unlocked_state(&w, &original);
    assert_one_force_audit(&w, state_holder(&c), true, true);

    // -y is the same flag, and an answer on stdin is not consulted.
    let w = World::new();
    crashed(&w, "staging");
    w.deploy_lock(&["unlock", "staging", "-y"])
        .stdin(b"no\n")
        .run()
        .code(0);
    assert!(!w.lock_path("staging").exists());
}

#[test]
fn deploy_lock_unlock_without_yes_asks_and_no_exits_1() {
    let w = World::new();
    let c = crashed(&w, "staging");
    let dir = dir_lines(&w, "staging");
    let snap = snapshot(&w, "staging");
    for input in [&b"no\n"[..], b"\n"] {
        let before = now();
        let out = w.deploy_lock(&["unlock", "staging"]).stdin(input).run();
        let after = now();
        out.code(1)
            .stderr("")
            .stdout_one_of(&candidates(before, after, |t| {
                format!(
                    "{}{dir}\n{}\nLock ID: {LOCK_ID}\n\n{}Cancelled.\n",
                    header("staging"),
                    crashed_info(&c, t),
                    warning(&w, "staging"),
                )
            }));
        assert_unchanged(&w, "staging", &snap, "deploy-lock unlock, answered no");
    }
    // Issue 12: no terminal and no answer at all (EOF): the banner is only
    // the holder line, and the error says how to confirm; nothing changes.
    w.deploy_lock(&["unlock", "staging"])
        .run_without_stdin()
        .code(1)
        .stdout(&format!(
            "Holder: deploy@localhost, pid {} (not running), locked at {}, lock id {LOCK_ID}\n",
            c.pid,
            iso(c.locked_at)
        ))
        .stderr("ERROR: no answer on stdin; pass --yes to confirm without a terminal\n");
    assert_unchanged(&w, "staging", &snap, "deploy-lock unlock, EOF");
    // And `yes` on stdin does it, exit 0.
    w.deploy_lock(&["unlock", "staging"])
        .stdin(b"yes\n")
        .run()
        .code(0);
    assert!(!w.lock_path("staging").exists());
}

#[test]
fn force_unlock_touches_only_its_environment() {
    let w = World::new();
    crashed(&w, "staging");
    let prod = w.legacy_lock("production", now() - 60);
    w.unlock_sh(&["staging", "--force"])
        .stdin(b"yes\n")
        .run()
        .code(0);
    assert!(!w.lock_path("staging").exists());
    assert!(prod.join("locked_at").exists());
    assert!(prod.is_dir());
}

/// SECURITY.md: a symlink or file at the lock path is never followed or
/// removed; force-unlock refuses after the confirmation, the state untouched.
/// (The legacy `rm -rf`'d a symlink and skipped a file; this is on purpose.)
#[test]
fn a_non_directory_at_the_lock_path_is_refused_and_left_alone() {
    let w = World::new();
    let target = w.tmp.path().join("target");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("f"), "x").unwrap();
    let lock = w.lock_path("staging");
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false}}\n");
    let state = w.state();
    let refusal = |what: &str| {
        format!(
            "ERROR: {l} is {what}, not a lock directory; deploy-lock never follows or removes it: check what it is (ls -la {l}) and remove it by hand\n",
            l = lock.display()
        )
    };
    let block = format!(
        "{}Lock directory exists: {}\n{}\n\nState file info:\n  Locked: false\n  Locked by: N/A\n  Locked at: N/A\n  Deployment ID: N/A\n  PID: N/A\n  Hostname: N/A\n\n",
        header("staging"),
        lock.display(),
        real_ls_ld(&lock, "UTC")
    );
    let link = refusal(&format!("a symbolic link to {}", target.display()));
    w.unlock_sh(&["staging", "--force"])
        .stdin(b"yes\n")
        .run()
        .code(1)
        .stdout(&format!("{block}\n{}", warning(&w, "staging")))
        .stderr(&link);
    w.deploy_lock(&["unlock", "staging", "--yes"])
        .run()
        .code(75)
        .stderr(&link);
    assert_eq!(fs::read_link(&lock).unwrap(), target);
    assert_eq!(fs::read_to_string(target.join("f")).unwrap(), "x");
    assert_eq!(w.state(), state);

    fs::remove_file(&lock).unwrap();
    fs::write(&lock, "squatter\n").unwrap();
    w.unlock_sh(&["staging", "--force"])
        .stdin(b"yes\n")
        .run()
        .code(1)
        .stderr(&refusal("a regular file"));
    assert_eq!(fs::read_to_string(&lock).unwrap(), "squatter\n");
    assert_eq!(w.state(), state);
    assert_eq!(w.audit_log(), "");
}

/// As the legacy's `jq '.lock.locked = false | .lock.deployment_id = null'`:
/// a state file without a lock record gets one, appended after the other keys.
#[test]
fn a_state_without_a_lock_record_gets_the_unlocked_one() {
    for (before, after) in [
        (
            "{\"deployments\": [1, 2.50], \"slot\": \"blue\"}\n",
            "{\n  \"deployments\": [\n    1,\n    2.50\n  ],\n  \"slot\": \"blue\",\n  \"lock\": {\n    \"locked\": false,\n    \"deployment_id\": null\n  }\n}\n",
        ),
        (
            "{\"lock\": null, \"slot\": \"green\"}\n",
            "{\n  \"lock\": {\n    \"locked\": false,\n    \"deployment_id\": null\n  },\n  \"slot\": \"green\"\n}\n",
        ),
    ] {
        let w = World::new();
        w.write_state(before);
        w.unlock_sh(&["staging", "--force"])
            .stdin(b"yes\n")
            .run()
            .code(0)
            .stderr("");
        assert_eq!(w.state(), after, "from {before:?}");
    }
}
