//! One audit trail per checkout, shared by real accounts: two users deploying
//! from one checkout see each other's runs in `deploy-lock log`, with the
//! command and how it ended; a colleague's crashed lock in a sticky folder is
//! cleared with `sudo deploy-lock unlock`, audited under the sudo user.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::Value;

use crate::completions::available;
use crate::harness::*;

const GROUP: &str = "dlk-ops";
const OPS: [&str; 2] = ["dlk-ops1", "dlk-ops2"];

/// The accounts dlk-ops1 and dlk-ops2 (group dlk-ops, no home, no login),
/// created once per machine, under a lock so parallel runs cannot collide;
/// dlk-ops2 may run anything with sudo without a password. Their gid.
fn ops_accounts() -> u32 {
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("deploy-lock-it-dlk-ops-accounts.lock"))
        .unwrap();
    let _held = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .unwrap();
    let quiet = |program: &str, args: &[&str]| {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if nix::unistd::Group::from_name(GROUP).unwrap().is_none() {
        quiet("groupadd", &[GROUP]);
    }
    for user in OPS {
        if nix::unistd::User::from_name(user).unwrap().is_none() {
            quiet(
                "useradd",
                &["-M", "-N", "-g", GROUP, "-s", "/usr/sbin/nologin", user],
            );
        }
    }
    let sudoers = Path::new("/etc/sudoers.d/deploy-lock-it-dlk-ops2");
    if !sudoers.exists() {
        let draft = sudoers.with_extension("tmp");
        fs::write(&draft, "dlk-ops2 ALL=(root) NOPASSWD: ALL\n").unwrap();
        fs::set_permissions(&draft, fs::Permissions::from_mode(0o440)).unwrap();
        fs::rename(&draft, sudoers).unwrap();
    }
    nix::unistd::Group::from_name(GROUP)
        .unwrap()
        .unwrap()
        .gid
        .as_raw()
}

/// Root, setpriv, and the accounts; None (with a SKIP line) when missing.
fn team(test: &str) -> Option<u32> {
    if !nix::unistd::geteuid().is_root() {
        skip!("{test}: needs root to create the dlk-ops accounts");
        return None;
    }
    for tool in ["setpriv", "useradd", "groupadd"] {
        if !available(tool, test) {
            return None;
        }
    }
    Some(ops_accounts())
}

/// A checkout and lock folder both operators can use: the folders group
/// dlk-ops and group-writable, the state file too (as a team sets it up).
fn shared_world(gid: u32, sticky_locks: bool) -> World {
    let w = World::new();
    fs::set_permissions(w.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false}}\n");
    for d in [
        w.root.clone(),
        w.root.join("deploy"),
        w.root.join("deploy/scripts"),
    ] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let config = w.root.join("deploy/config");
    std::os::unix::fs::chown(&config, None, Some(gid)).unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o2775)).unwrap();
    for f in fs::read_dir(&config).unwrap() {
        let f = f.unwrap().path();
        std::os::unix::fs::chown(&f, None, Some(gid)).unwrap();
        fs::set_permissions(&f, fs::Permissions::from_mode(0o664)).unwrap();
    }
    if sticky_locks {
        // Like /tmp: anyone creates, only the owner (or root) removes.
        fs::set_permissions(&w.locks, fs::Permissions::from_mode(0o1777)).unwrap();
    } else {
        std::os::unix::fs::chown(&w.locks, None, Some(gid)).unwrap();
        fs::set_permissions(&w.locks, fs::Permissions::from_mode(0o2775)).unwrap();
    }
    w
}

/// `deploy-lock ARGS` as USER (real uid and gid, its groups), from the
/// checkout, with its own empty HOME and no USER variable: the name comes
/// from the account.
fn as_user(w: &World, user: &str, args: &[&str]) -> Cmd {
    let home = w.tmp.path().join(format!("home-{user}"));
    if !home.exists() {
        fs::create_dir(&home).unwrap();
        let uid = nix::unistd::User::from_name(user).unwrap().unwrap().uid;
        nix::unistd::chown(&home, Some(uid), None).unwrap();
    }
    let mut c = w
        .cmd("setpriv")
        .dir(&w.root)
        .env("HOME", &home)
        .env_remove("USER")
        .env_remove("LOGNAME");
    c.cmd
        .args(["--reuid", user, "--regid", GROUP, "--init-groups", "--"])
        .arg(BIN)
        .args(args);
    c
}

fn json_rows(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `log`'s text line for a row of `log --json`, built from the recorded
/// fields: the whole line is compared, not a part of it.
fn text_of(row: &Value) -> String {
    let s = |k: &str| row[k].as_str().unwrap_or_default().to_string();
    let mut parts = vec![
        s("time"),
        format!("{:<11}", s("environment")),
        format!("{:<15}", s("event")),
        format!(
            "{}@{} (pid {}){}",
            s("user"),
            s("host"),
            row["pid"],
            if row["sudo"] == true { " via sudo" } else { "" }
        ),
    ];
    if let Some(dep) = row["deployment_id"].as_str() {
        parts.push(dep.to_string());
    }
    if let Some(held) = row["held_seconds"].as_i64() {
        parts.push(format!("held {}m {}s", held / 60, held % 60));
    }
    if let Some(code) = row["exit_status"].as_i64() {
        parts.push(format!("exit {code}"));
    }
    if let Some(sig) = row["signal"].as_str() {
        parts.push(sig.to_string());
    }
    if let Some(h) = row["holder"].as_object() {
        parts.push(format!(
            "removed {} (pid {})",
            h["locked_by"].as_str().unwrap(),
            h["pid"]
        ));
    }
    let words: Vec<String> = row["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let w = w.as_str().unwrap();
            if w.contains(' ') {
                format!("'{w}'")
            } else {
                w.to_string()
            }
        })
        .collect();
    parts.push(format!("$ {}", words.join(" ")));
    parts.join("  ")
}

#[test]
fn two_accounts_sharing_a_checkout_see_one_log_with_commands_and_exit_statuses() {
    let Some(gid) = team("two_accounts_share_one_log") else {
        return;
    };
    let w = shared_world(gid, false);
    as_user(
        &w,
        "dlk-ops1",
        &["run", "staging", "--", "sh", "-c", "exit 3"],
    )
    .run()
    .code(3);
    as_user(&w, "dlk-ops2", &["run", "staging", "--", "true"])
        .run()
        .code(0);
    // A Ctrl-C'd deploy: the command dies of SIGINT, and so does deploy-lock.
    let out = as_user(
        &w,
        "dlk-ops2",
        &["run", "staging", "--", "sh", "-c", "kill -INT $$"],
    )
    .run();
    out.any_code().any_stderr();
    assert_eq!((out.code, out.signal), (None, Some(2)), "{}", out.stderr);

    // The log: one file beside the state file, the state file's group and
    // mode, so both may append; no per-user log was written.
    let log = w.audit_log_path();
    let meta = fs::metadata(&log).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o664);
    assert_eq!(meta.gid(), gid);
    for user in OPS {
        let home = w.tmp.path().join(format!("home-{user}"));
        assert!(
            !home.join(".togather").exists(),
            "{user} wrote a per-user log"
        );
    }

    // Each sees the same trail: both users, the commands, how they ended.
    let json = as_user(&w, "dlk-ops1", &["log", "--json"]).run();
    json.code(0).stderr("");
    let rows = json_rows(&json.stdout);
    let summary: Vec<(String, String, String)> = rows
        .iter()
        .map(|r| {
            let ended = match (&r["exit_status"], &r["signal"]) {
                (Value::Number(n), _) => format!("exit {n}"),
                (_, Value::String(s)) => s.clone(),
                _ => String::new(),
            };
            (
                r["user"].as_str().unwrap().to_string(),
                r["event"].as_str().unwrap().to_string(),
                ended,
            )
        })
        .collect();
    let row = |u: &str, e: &str, x: &str| (u.to_string(), e.to_string(), x.to_string());
    assert_eq!(
        summary,
        [
            row("dlk-ops1", "acquire", ""),
            row("dlk-ops1", "release", "exit 3"),
            row("dlk-ops2", "acquire", ""),
            row("dlk-ops2", "release", "exit 0"),
            row("dlk-ops2", "acquire", ""),
            row("dlk-ops2", "release", "SIGINT"),
        ]
    );
    assert_eq!(
        rows[1]["command"],
        serde_json::json!([BIN, "run", "staging", "--", "sh", "-c", "exit 3"])
    );
    let text: String = rows.iter().map(|r| text_of(r) + "\n").collect();
    for user in OPS {
        as_user(&w, user, &["log"])
            .run()
            .code(0)
            .stderr("")
            .stdout(&text);
    }
}

#[test]
fn sudo_unlock_of_a_colleagues_crashed_lock_is_audited_as_the_sudo_user() {
    let Some(gid) = team("sudo_unlock_is_audited") else {
        return;
    };
    if !available("sudo", "sudo_unlock_is_audited") {
        return;
    }
    let w = shared_world(gid, true);
    // dlk-ops1's deploy crashed (its pid is gone) holding the lock.
    let crashed = as_user(
        &w,
        "dlk-ops1",
        &["run", "staging", "--", "sh", "-c", "kill -KILL $PPID"],
    )
    .run();
    crashed.any_code().any_stderr();
    assert_eq!(
        (crashed.code, crashed.signal),
        (None, Some(9)),
        "{}",
        crashed.stderr
    );
    let lock = w.locks.join("togather-deploy-staging.lock");
    assert!(lock.is_dir());
    // dlk-ops2 cannot remove it from the sticky folder: the advice is sudo
    // deploy-lock, not rm -rf.
    let out = as_user(&w, "dlk-ops2", &["unlock", "staging", "--yes"]).run();
    // (stdout: the status block and the force-unlock warning, as always.)
    out.code(74).stderr(&format!(
        "ERROR: cannot remove {}: it belongs to dlk-ops1 and its folder only lets owners remove entries; ask dlk-ops1 to check it, or clear it as root, audited under your name: sudo deploy-lock unlock staging\n",
        lock.display()
    ));
    assert!(
        out.stdout.starts_with("Deployment Lock Status: staging\n"),
        "{}",
        out.stdout
    );
    assert!(lock.is_dir());

    // sudo (which resets the environment: the test's settings go through
    // env, sudo's SUDO_USER stays) clears it.
    let mut env_args: Vec<String> = vec!["-n".into(), "/usr/bin/env".into()];
    for k in ["DEPLOY_LOCK_DIR", "TZ", "LC_ALL"] {
        env_args.push(format!(
            "{k}={}",
            match k {
                "DEPLOY_LOCK_DIR" => w.locks.display().to_string(),
                "TZ" => "UTC".into(),
                _ => "C".into(),
            }
        ));
    }
    let home = w.tmp.path().join("home-dlk-ops2");
    let mut c = w
        .cmd("setpriv")
        .dir(&w.root)
        .env("HOME", &home)
        .env_remove("USER")
        .env_remove("LOGNAME");
    c.cmd
        .args([
            "--reuid",
            "dlk-ops2",
            "--regid",
            GROUP,
            "--init-groups",
            "--",
            "sudo",
        ])
        .args(&env_args)
        .arg(BIN)
        .args(["unlock", "staging", "--yes"]);
    let out = c.run();
    out.code(0).any_stderr();
    assert!(!lock.exists());

    let rows = json_rows(&w.audit_log());
    let last = rows.last().unwrap();
    assert_eq!(last["event"], "force_unlock");
    assert_eq!(last["user"], "dlk-ops2");
    assert_eq!(last["sudo"], true);
    assert_eq!(last["effective_user"], "root");
    assert_eq!(
        last["command"],
        serde_json::json!([BIN, "unlock", "staging", "--yes"])
    );
    // The log reads it back as such.
    let log = as_user(&w, "dlk-ops1", &["log", "-n", "1"]).run();
    log.code(0).stderr("");
    assert_eq!(log.stdout, text_of(last) + "\n");
    assert!(log.stdout.contains("dlk-ops2@"), "{}", log.stdout);
    assert!(log.stdout.contains(") via sudo  "), "{}", log.stdout);
}
