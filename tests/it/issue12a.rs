//! Issue 12, part A: status usable in scripts (`--quiet`), one look at every
//! environment, recovery from a corrupt state file, status outside a
//! checkout, the lock folder checked, and unlock without a terminal or with
//! nothing to unlock. Whole outputs and exit codes, through the real binary.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;

use serde_json::Value;

use crate::harness::*;

const HEADER: &str =
    "Deployment Lock Status: staging\n============================================\n";

/// `status staging --quiet`: nothing printed, and the exit status.
#[track_caller]
fn quiet(w: &World, want: i32, what: &str) {
    let out = w.deploy_lock(&["status", "staging", "--quiet"]).run();
    assert_eq!(out.code, Some(want), "{what}: {out:?}");
    out.any_code().stdout("").stderr("");
}

/// The legacy record of a dead holder, its lock taken `age` seconds ago.
fn dead_holder(w: &World, age: i64) -> u32 {
    let pid = dead_pid();
    let t = now() - age;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, &pid.to_string(), &hostname());
    pid
}

#[test]
fn quiet_answers_whether_a_run_would_start_now() {
    let w = World::new();
    quiet(&w, 0, "free");
    w.deploy_lock(&["status", "staging", "-q"]).run().stdout("");

    // A dead holder's stale lock: the next run takes it over.
    dead_holder(&w, 7200);
    quiet(&w, 0, "stale, dead holder");
    // ...unless it holds files a takeover would have to delete.
    fs::write(w.lock_path("staging").join("notes.txt"), "mine\n").unwrap();
    quiet(&w, 75, "stale, with foreign files");
    fs::remove_dir_all(w.lock_path("staging")).unwrap();

    // A dead holder's lock that is not stale yet.
    dead_holder(&w, 60);
    quiet(&w, 75, "orphaned");
    fs::remove_dir_all(w.lock_path("staging")).unwrap();
    fs::remove_file(w.state_path()).unwrap();

    // No record says who holds it: maybe a legacy deploy.sh just starting.
    w.legacy_lock("staging", now() - 60);
    quiet(&w, 75, "unknown");
    fs::remove_dir_all(w.lock_path("staging")).unwrap();

    // Something else at the lock path.
    fs::write(w.lock_path("staging"), "not a directory\n").unwrap();
    quiet(&w, 75, "obstructed");
    fs::remove_file(w.lock_path("staging")).unwrap();

    // A live holder; then the same run after a force-unlock: its directory
    // is gone but its kernel lock keeps every other run out until its
    // command ends (issue 21: the verdict says so too).
    let (_holder, probe, pid) = hold_lock(&w, "q");
    quiet(&w, 75, "held");
    w.deploy_lock(&["status", "--quiet"]).run().code(75);
    w.deploy_lock(&["unlock", "staging", "--yes"]).run();
    let out = w.deploy_lock(&["status", "staging", "--json"]).run();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "released_running");
    quiet(&w, 75, "force-unlocked run still running");
    let out = w.deploy_lock(&["list"]).run();
    assert!(
        out.stdout.contains(&format!(
            "\nstaging      released_running  deploy-lock run, pid {pid} (lock removed)  -    -        local\n"
        )),
        "{}",
        out.stdout
    );
    probe.send("exit 0");
    wait_until(std::time::Duration::from_secs(10), "the run ends", || {
        w.deploy_lock(&["status", "staging", "-q"])
            .run()
            .any_code()
            .code
            == Some(0)
    });
    // Every environment free: 0.
    w.deploy_lock(&["status", "--quiet"]).run().stdout("");
    w.deploy_lock(&["list", "-q"]).run().stdout("");
}

#[test]
fn quiet_and_json_do_not_mix_and_plain_status_stays_0() {
    let w = World::new();
    dead_holder(&w, 60);
    // The plain and JSON forms exit 0 whatever the verdict.
    w.deploy_lock(&["status", "staging"]).run();
    w.deploy_lock(&["status", "staging", "--json"]).run();
    let out = w
        .deploy_lock(&["status", "staging", "--quiet", "--json"])
        .run();
    out.code(2).stdout("").stderr(
        "ERROR: the argument '--quiet' cannot be used with '--json'\n\n\
         Usage: deploy-lock status --quiet <ENV>\n\n\
         For more information, try '--help'.\n",
    );
    assert!(
        out.stderr
            .starts_with("ERROR: the argument '--quiet' cannot be used with '--json'"),
        "{}",
        out.stderr
    );
}

/// `deploy-lock status` alone (and `list`): one line per environment.
#[test]
fn one_look_at_every_environment() {
    let w = World::new();
    let pid = dead_holder(&w, 7200);
    let lock = w.locks.join("togather-deploy-production.lock");
    fs::create_dir(&lock).unwrap();
    fs::write(lock.join("locked_at"), format!("{}\n", now() - 60)).unwrap();
    let holder = format!("deploy@localhost, pid {pid}");
    let table = |staging_age: &str, prod_age: &str| {
        let hw = holder.len();
        let aw = staging_age.len().max(prod_age.len()).max(3);
        format!(
            "ENVIRONMENT  VERDICT  {:<hw$}  {:<aw$}  WAITING  BACKEND\n\
             development  free     {:<hw$}  {:<aw$}  -        local\n\
             staging      stale    {:<hw$}  {:<aw$}  -        local\n\
             production   unknown  {:<hw$}  {:<aw$}  -        local\n",
            "HOLDER", "AGE", "-", "-", holder, staging_age, "unknown", prod_age
        )
    };
    let wants: Vec<String> = (0..3)
        .map(|d| table(&format!("120m {d}s"), &format!("1m {d}s")))
        .collect();
    for args in [&["status"][..], &["list"]] {
        w.deploy_lock(args).run().stdout_one_of(&wants);
    }
    // From outside any checkout too (the locks are in the lock folder).
    let out = w.deploy_lock(&["list", "--json"]).dir("/").run();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["schema"], 1);
    let envs = v["environments"].as_array().unwrap();
    let got: Vec<(&str, &str, &str)> = envs
        .iter()
        .map(|e| {
            (
                e["environment"].as_str().unwrap(),
                e["verdict"].as_str().unwrap(),
                e["backend"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("development", "free", "local"),
            ("staging", "free", "local"),
            ("production", "unknown", "local")
        ]
        .iter()
        .map(|(a, b, c)| (*a, if *a == "staging" { "stale" } else { *b }, *c))
        .collect::<Vec<_>>()
    );
    // Outside the checkout there is no state file: staging's record is not
    // seen, its lock still is.
    assert_eq!(envs[1]["state_file"], Value::Null);
    assert_eq!(envs[1]["lock_dir_exists"], true);
    assert_eq!(envs[1]["schema"], 1);
    // --quiet: 0 only when a run would start in every environment.
    w.deploy_lock(&["status", "-q"]).run().code(75).stdout("");
    fs::remove_dir_all(&lock).unwrap();
    w.deploy_lock(&["status", "-q"]).run().stdout("");
}

#[test]
fn status_and_wait_work_outside_a_checkout() {
    let w = World::new();
    w.deploy_lock(&["status", "staging"])
        .dir("/")
        .run()
        .stdout(&format!(
            "{HEADER}Lock directory: Not found (unlocked)\n\nState file: none (no checkout found from /)\n\nVerdict: free: no lock directory; a deploy may start\n"
        ));
    let out = w.deploy_lock(&["wait", "staging"]).dir("/").run();
    out.stdout(&format!(
        "The staging lock is free (no lock directory at {}); nothing to wait for.\n",
        w.lock_path("staging").display()
    ));
    w.legacy_lock("staging", now() - 60);
    let out = w
        .deploy_lock(&["status", "staging", "--json"])
        .dir("/")
        .run();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (&v["verdict"], &v["state_file"], &v["state_error"]),
        (&Value::from("unknown"), &Value::Null, &Value::Null)
    );
    w.deploy_lock(&["status", "staging", "-q"])
        .dir("/")
        .run()
        .code(75)
        .stdout("");
    // run still needs the checkout: one line, exit 2.
    w.deploy_lock(&["run", "staging", "--", "true"])
        .dir("/")
        .run()
        .code(2)
        .stderr(
            "ERROR: no checkout found: neither / nor any folder above it has deploy/scripts or deploy/config; run from inside the checkout, or pass --project-root DIR (or set DEPLOY_LOCK_PROJECT_ROOT)\n",
        );
}

#[test]
fn a_project_root_that_does_not_exist_is_refused_and_nothing_is_created() {
    let w = World::new();
    let gone = w.tmp.path().join("nope/checkout");
    let g = gone.to_str().unwrap();
    let err = format!(
        "ERROR: --project-root {g} does not exist; name a checkout (the folder that holds deploy/), or leave it unset to use the checkout around the working directory\n"
    );
    for args in [
        &["--project-root", g, "run", "staging", "--", "true"][..],
        &["status", "staging", "--project-root", g],
        &["unlock", "staging", "--yes", "--project-root", g],
    ] {
        w.deploy_lock(args).run().code(2).stdout("").stderr(&err);
    }
    w.deploy_lock(&["status", "staging"])
        .env("DEPLOY_LOCK_PROJECT_ROOT", &gone)
        .run()
        .code(2)
        .stdout("")
        .stderr(&err.replacen("--project-root", "DEPLOY_LOCK_PROJECT_ROOT", 1));
    // unlock.sh: the same refusal, its legacy exit 1.
    w.unlock_sh(&["staging", "--project-root", g])
        .run()
        .code(1)
        .stdout("")
        .stderr(&err);
    assert!(!w.tmp.path().join("nope").exists());
    assert!(!w.lock_path("staging").exists());
}

/// What every modern command says about a missing lock folder.
fn missing_folder_error(p: &Path) -> String {
    let p = p.display();
    format!(
        "ERROR: the lock folder {p} does not exist, so no lock can be taken or seen there; create it (mkdir -p {p}, writable by everyone who deploys), or point DEPLOY_LOCK_DIR (or --lock-dir) at the folder that holds the locks\n"
    )
}

const FOLDER_COMMANDS: [&[&str]; 7] = [
    &["status", "staging"],
    &["status", "staging", "--json"],
    &["status", "staging", "--quiet"],
    &["list"],
    &["wait", "staging"],
    &["unlock", "staging", "--yes"],
    &["run", "staging", "--", "true"],
];

#[test]
fn a_missing_lock_folder_is_an_error_never_free() {
    let w = World::new();
    let missing = w.tmp.path().join("missing-locks");
    for args in FOLDER_COMMANDS {
        w.deploy_lock(args)
            .env("DEPLOY_LOCK_DIR", &missing)
            .run()
            .code(74)
            .stdout("")
            .stderr(&missing_folder_error(&missing));
    }
    // The flag names the same folder the same way.
    w.deploy_lock(&["status", "staging", "--lock-dir", missing.to_str().unwrap()])
        .run()
        .code(74)
        .stderr(&missing_folder_error(&missing));
    // unlock.sh does not show it as "Not found (unlocked)" either: the same
    // line, its legacy exit 1 (the legacy's /tmp always exists).
    for args in [
        &["staging"][..],
        &["staging", "--force"],
        &["staging", "--wait"],
    ] {
        w.unlock_sh(args)
            .env("DEPLOY_LOCK_DIR", &missing)
            .stdin(b"yes\n")
            .run()
            .code(1)
            .stdout("")
            .stderr(&missing_folder_error(&missing));
    }
    assert!(!missing.exists());
}

#[test]
fn an_unwritable_lock_folder_is_an_error_never_free() {
    let w = World::new();
    let root = nix::unistd::geteuid().is_root();
    // As root, the commands run as nobody (the folders stay root's, 0755);
    // otherwise the folder is made read-only for its owner, us.
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten();
    if root && nobody.is_none() {
        skip!("no 'nobody' user to run as");
        return;
    }
    fs::set_permissions(w.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let mode = if root { 0o755 } else { 0o555 };
    fs::set_permissions(&w.locks, fs::Permissions::from_mode(mode)).unwrap();
    let meta = fs::metadata(&w.locks).unwrap();
    let name_of = |uid: u32| {
        nix::unistd::User::from_uid(uid.into())
            .unwrap()
            .unwrap()
            .name
    };
    let group = nix::unistd::Group::from_gid(meta.gid().into())
        .unwrap()
        .unwrap()
        .name;
    let (me, owner) = match &nobody {
        Some(n) if root => (n.name.clone(), name_of(meta.uid())),
        _ => (
            name_of(nix::unistd::geteuid().as_raw()),
            name_of(meta.uid()),
        ),
    };
    let err = format!(
        "ERROR: the lock folder {} is not writable by you ({me}): it is owned by {owner}:{group} with mode {mode:04o}; ask {owner} to let you write there (e.g. chgrp a group you are in, chmod g+w), or point DEPLOY_LOCK_DIR (or --lock-dir) at the folder that holds the locks\n",
        w.locks.display()
    );
    for args in FOLDER_COMMANDS {
        let mut c = w.deploy_lock(args);
        if root {
            c = as_nobody(c);
        }
        c.run().code(74).stdout("").stderr(&err);
    }
    assert_eq!(fs::read_dir(&w.locks).unwrap().count(), 0);
}

/// `c` run as the user nobody (the test runs as root).
fn as_nobody(mut c: Cmd) -> Cmd {
    let n = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    let (uid, gid) = (n.uid, n.gid);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.cmd.pre_exec(move || {
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(gid)?;
            nix::unistd::setuid(uid)?;
            Ok(())
        });
    }
    c
}

/// A stale lock another user owns in a sticky folder (as /tmp is) cannot be
/// taken over by us: --quiet says 75, as run would fail.
#[test]
fn quiet_is_75_for_a_stale_lock_we_may_not_remove() {
    let w = World::new();
    if !nix::unistd::geteuid().is_root()
        || nix::unistd::User::from_name("nobody")
            .ok()
            .flatten()
            .is_none()
    {
        skip!("needs root and a 'nobody' user to own a lock as someone else");
        return;
    }
    fs::set_permissions(w.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&w.locks, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::set_permissions(
        w.root.join("deploy/config"),
        fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    w.legacy_lock("staging", now() - 7200);
    // Root may remove it: a run would take it over.
    w.deploy_lock(&["status", "staging", "-q"]).run().stdout("");
    let out = as_nobody(w.deploy_lock(&["status", "staging", "-q"])).run();
    out.code(75).stdout("").stderr("");
    let out = as_nobody(w.deploy_lock(&["run", "staging", "--", "true"])).run();
    assert_ne!(out.code, Some(0), "{out:?}");
    out.any_code().any_stderr();
    assert!(w.lock_path("staging").join("locked_at").exists());
}

#[test]
fn unlock_with_nothing_locked_changes_nothing() {
    let w = World::new();
    let state = "{\"environment\": \"staging\", \"lock\": {\"locked\": false, \"locked_by\": \"x@y\"}, \"deployments\": [1, 2.50]}\n";
    w.write_state(state);
    let said = format!(
        "Nothing to unlock: the staging lock is free (no lock directory at {}); nothing changed.\n",
        w.lock_path("staging").display()
    );
    w.deploy_lock(&["unlock", "staging", "--yes"])
        .run()
        .stdout(&said);
    w.deploy_lock(&["unlock", "staging"])
        .run_without_stdin()
        .stdout(&said);
    assert_eq!(fs::read(w.state_path()).unwrap(), state.as_bytes());
    assert_eq!(w.audit_log(), "");
    // unlock.sh keeps the legacy output.
    let out = w.unlock_sh(&["staging", "--force"]).stdin(b"yes\n").run();
    assert!(
        out.stdout
            .ends_with("Lock directory does not exist (already removed)\n✓ State file updated to unlocked\n\n✓ Lock forcefully released\n\nNext deployment will proceed normally.\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn reset_state_keeps_the_corrupt_file_and_releases_the_lock() {
    let w = World::new();
    let broken = "{\n  \"environment\": \"staging\",\n  \"lock\": {\"locked\": tru\n";
    w.write_state(broken);
    let lock = w.legacy_lock("staging", now() - 100);
    let config = w.root.join("deploy/config");
    let p = w.state_path();
    let ls = real_ls_ld(&lock, "UTC");

    // No terminal, no answer: the holder line, how to confirm, no change.
    w.deploy_lock(&["unlock", "staging", "--reset-state"])
        .run_without_stdin()
        .code(1)
        .stdout("Holder: unknown (no record says who holds it)\n")
        .stderr("ERROR: no answer on stdin; pass --yes to confirm without a terminal\n");
    // Answered no: cancelled.
    let out = w
        .deploy_lock(&["unlock", "staging", "--reset-state"])
        .stdin(b"no\n")
        .run();
    out.code(1);
    assert!(out.stdout.ends_with("\nCancelled.\n"), "{}", out.stdout);
    assert_eq!(fs::read(&p).unwrap(), broken.as_bytes());
    assert!(lock.join("locked_at").exists());
    assert_eq!(w.audit_log(), "");

    let before = now();
    let out = w
        .deploy_lock(&["unlock", "staging", "--reset-state", "--yes"])
        .run();
    let after = now();
    let backups: Vec<String> = fs::read_dir(&config)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("deployment-state.json.corrupt-"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    let backup = config.join(&backups[0]);
    let stamps: Vec<String> = (before..=after)
        .map(|t| {
            jiff::Timestamp::from_second(t)
                .unwrap()
                .strftime("%Y%m%dT%H%M%SZ")
                .to_string()
        })
        .collect();
    assert!(
        stamps
            .iter()
            .any(|s| backups[0] == format!("deployment-state.json.corrupt-{s}")),
        "{backups:?} {stamps:?}"
    );
    let p_s = p.display();
    out.stdout(&format!(
        "{HEADER}Lock directory exists: {l}\n{ls}\n\n\
         Holder: unknown (no record says who holds it)\n\
         ⚠ state file {p_s} is not valid JSON: expected ident (line 3, column 24)\n\n\
         ⚠ RESET STATE\n\n\
         This will:\n  \
         1. Keep the state file as {p_s}.corrupt-<UTC time>\n  \
         2. Write a fresh state file with the lock released (other keys stay only in the backup)\n  \
         3. Remove lock directory: {l}\n\n\
         ✓ State file kept as {b}\n\
         ✓ Fresh state file written (lock released)\n\
         ✓ Lock directory removed\n",
        l = lock.display(),
        b = backup.display()
    ));
    // The backup is the corrupt file, byte for byte, with its mode.
    assert_eq!(fs::read(&backup).unwrap(), broken.as_bytes());
    assert_eq!(
        fs::metadata(&backup).unwrap().mode() & 0o777,
        fs::metadata(&p).unwrap().mode() & 0o777
    );
    assert_eq!(
        w.state(),
        "{\n  \"environment\": \"staging\",\n  \"lock\": {\n    \"locked\": false\n  }\n}\n"
    );
    assert!(!lock.exists());
    assert_eq!(audit_events(&w), ["reset_state"]);
    // Everything works again.
    w.deploy_lock(&["status", "staging", "-q"]).run();
    w.deploy_lock(&["run", "staging", "--", "true"]).run();
    // A usable file is not "reset": that would drop keys other tools own.
    w.deploy_lock(&["unlock", "staging", "--reset-state", "--yes"])
        .run()
        .code(2)
        .stdout("")
        .stderr(&format!(
            "ERROR: --reset-state is for a state file that is not valid JSON (or not the documented shape), and {p_s} is not one; to unlock, run deploy-lock unlock staging\n"
        ));
}
