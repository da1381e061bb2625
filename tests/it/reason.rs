//! Issue 22, item 1 through the binary: `run --reason` is stored with the
//! holder and shown by status (text and JSON), refusals, wait progress and
//! the log, on the local store and on a real etcd; the unlock.sh persona
//! shows none of it.

use std::fs;

use crate::etcd_support::{self, Etcd};
use crate::harness::{Cmd, KillOnDrop, PATIENCE, World, wait_until};

/// Where the lock lives for one test: this host's folder, or a real etcd.
pub enum Store {
    Local,
    Etcd { endpoint: String, prefix: String },
}

impl Store {
    pub fn etcd(e: &Etcd, test: &str) -> Store {
        Store::Etcd {
            endpoint: e.endpoint.clone(),
            prefix: etcd_support::prefix(test),
        }
    }

    /// `deploy-lock ARGS` in `w` against this store.
    pub fn dl(&self, w: &World, args: &[&str]) -> Cmd {
        let cmd = w.deploy_lock(args);
        match self {
            Store::Local => cmd,
            Store::Etcd { endpoint, prefix } => cmd
                .env("DEPLOY_LOCK_BACKEND", "etcd")
                .env("DEPLOY_LOCK_ETCD_ENDPOINTS", endpoint)
                .env("DEPLOY_LOCK_ETCD_PREFIX", prefix),
        }
    }

    pub fn status_json(&self, w: &World) -> serde_json::Value {
        let out = self.dl(w, &["status", "staging", "--json"]).run();
        out.code(0);
        serde_json::from_str(&out.stdout).unwrap()
    }
}

/// `run staging --reason REASON -- sleep` once its holder record names the
/// command: (the run, the command's pid, the lock id).
fn hold_with_reason(w: &World, store: &Store, reason: &str) -> (KillOnDrop, i32, String) {
    let pid_file = w.tmp.path().join("holder.pid");
    let script = format!("echo $$ > {}; exec sleep 60", pid_file.display());
    let run = store
        .dl(
            w,
            &[
                "run", "staging", "--reason", reason, "--", "sh", "-c", &script,
            ],
        )
        .spawn_guarded();
    wait_until(PATIENCE, "the command's pid file", || {
        fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut id = String::new();
    wait_until(PATIENCE, "the holder record to name the command", || {
        let v = store.status_json(w);
        id = v["holder"]["lock_id"].as_str().unwrap_or_default().into();
        v["holder"]["pid"] == pid
    });
    (run, pid, id)
}

fn reason_everywhere(store: Store) {
    let w = World::new();
    let (_run, pid, id) = hold_with_reason(&w, &store, "hotfix #123");

    // status: the reason after the legacy block, then the lock id and
    // verdict as before.
    let out = store.dl(&w, &["status", "staging"]).run();
    out.code(0);
    let tail: Vec<&str> = out.stdout.lines().rev().take(4).collect();
    assert_eq!(
        tail,
        [
            format!(
                "Verdict: held: sleep (pid {pid}) is running; it is never taken over while alive"
            )
            .as_str(),
            &format!("Lock ID: {id}"),
            "Reason: hotfix #123",
            "",
        ],
        "{}",
        out.stdout
    );
    // status --json: a key in the holder.
    assert_eq!(store.status_json(&w)["holder"]["reason"], "hotfix #123");

    // A refusal says why the lock is held, under its first line.
    let out = store.dl(&w, &["run", "staging", "--", "true"]).run();
    out.code(75).any_stderr();
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines[1], "Reason: hotfix #123", "{}", out.stderr);

    // run --wait's progress lines.
    let out = store
        .dl(&w, &["run", "staging", "--wait=2", "--", "true"])
        .run();
    out.code(124).any_stderr();
    let first = out.stderr.lines().next().unwrap_or_default();
    let held_by = match store {
        Store::Local => format!(
            "a deploy-lock run's command, pid {pid}, under deploy-lock pid {}",
            _run.pid()
        ),
        // etcd's busy answer names the live holder it sees.
        Store::Etcd { .. } => format!("sleep, pid {pid}"),
    };
    assert_eq!(
        first,
        format!("Waiting for the staging lock (held by {held_by}; reason: hotfix #123)... 0m 0s"),
        "{}",
        out.stderr
    );

    // wait's progress lines (the deploy-lock persona).
    let out = store
        .dl(&w, &["wait", "staging", "--wait-timeout", "2"])
        .run();
    out.code(124).any_stderr();
    assert!(
        out.stdout
            .contains("\nWaiting... 0m 0s (reason: hotfix #123)\n"),
        "{}",
        out.stdout
    );

    // The log's acquire event, text and JSON.
    let out = w.deploy_lock(&["log", "--json"]).run();
    out.code(0);
    let acquire: serde_json::Value = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "acquire")
        .expect("an acquire event");
    assert_eq!(acquire["reason"], "hotfix #123");
    // (On etcd, the event is the host's own leg of the lock, with its own id.)
    if let Store::Local = store {
        assert_eq!(acquire["lock_id"], id.as_str());
    }
    let out = w.deploy_lock(&["log"]).run();
    out.code(0);
    assert!(
        out.stdout.contains("  reason: hotfix #123  $ "),
        "{}",
        out.stdout
    );
}

#[test]
fn reason_is_shown_by_status_refusals_waits_and_log_local() {
    reason_everywhere(Store::Local);
}

#[test]
fn reason_is_shown_by_status_refusals_waits_and_log_etcd() {
    let e = etcd_support::need_etcd!("reason_etcd");
    reason_everywhere(Store::etcd(e, "reason_etcd"));
}

/// The unlock.sh persona's status is the legacy's, byte for byte: no reason
/// line; and the legacy state file never gets a reason key.
#[test]
fn unlock_sh_and_the_state_file_never_see_the_reason() {
    let w = World::new();
    let (_run, _pid, _id) = hold_with_reason(&w, &Store::Local, "hotfix #123");
    let out = w.unlock_sh(&["staging"]).run();
    out.code(0);
    assert!(!out.stdout.contains("Reason"), "{}", out.stdout);
    assert!(!w.state().contains("reason"), "{}", w.state());
    let owner = fs::read_to_string(w.lock_path("staging").join("owner.json")).unwrap();
    let owner: serde_json::Value = serde_json::from_str(&owner).unwrap();
    assert_eq!(owner["reason"], "hotfix #123");
}

/// A reason is foreign text to whoever looks: control characters are `?`
/// in text and escaped in JSON.
#[test]
fn reason_is_sanitised() {
    let w = World::new();
    let (_run, _pid, _id) = hold_with_reason(&w, &Store::Local, "evil\x1b[2Jline\nVerdict: free");
    let out = w.deploy_lock(&["status", "staging"]).run();
    out.code(0);
    assert!(
        out.stdout
            .contains("\nReason: evil?[2Jline?Verdict: free\nLock ID: "),
        "{}",
        out.stdout
    );
    let out = w.deploy_lock(&["status", "staging", "--json"]).run();
    out.code(0);
    assert!(
        out.stdout
            .contains(r#""reason": "evil\u001b[2Jline\nVerdict: free""#),
        "{}",
        out.stdout
    );
}

/// Longer than 200 characters: one line naming the flag, exit 2, nothing
/// taken.
#[test]
fn too_long_a_reason_is_a_usage_error() {
    let w = World::new();
    let long = "x".repeat(201);
    let out = w
        .deploy_lock(&["run", "staging", "--reason", &long, "--", "true"])
        .run();
    out.code(2).stderr(
        "ERROR: --reason (or DEPLOY_LOCK_REASON) is 201 characters long; give at most 200 (a ticket or a link says more)\n",
    );
    let out = w
        .deploy_lock(&["run", "staging", "--", "true"])
        .env("DEPLOY_LOCK_REASON", &long)
        .run();
    out.code(2).any_stderr();
    assert!(!w.lock_path("staging").exists());
    // 200 is fine, from the variable too.
    let out = w
        .deploy_lock(&["run", "staging", "--", "true"])
        .env("DEPLOY_LOCK_REASON", "x".repeat(200))
        .run();
    out.code(0);
}
