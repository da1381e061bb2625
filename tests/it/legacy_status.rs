//! unlock.sh's status block in every documented state (see src/cli/texts.rs),
//! compared whole.

use std::process::Child;

use serde_json::json;

use crate::harness::*;

const HEADER: &str =
    "Deployment Lock Status: staging\n============================================\n";

fn no_dir_line() -> &'static str {
    "Lock directory: Not found (unlocked)\n"
}

fn dir_lines(w: &World, env: &str) -> String {
    let p = w.lock_path(env);
    format!(
        "Lock directory exists: {}\n{}\n",
        p.display(),
        real_ls_ld(&p, "UTC")
    )
}

/// A live process whose command name is `deploy.sh`, like a real deploy.
pub fn fake_deploy(w: &World) -> Child {
    // Blocks on a fifo it holds open itself: no child process, so nothing is
    // left behind holding the test's output open once it is killed.
    let script = w.script(
        "bin/deploy.sh",
        "#!/bin/bash\nread -r -t 60 <> \"$0.fifo\"\n",
    );
    nix::unistd::mkfifo(
        &w.root.join("bin/deploy.sh.fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    // A harness command: ended with its world even if the test fails.
    let child = w
        .cmd(script)
        .cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    wait_until(
        std::time::Duration::from_secs(5),
        "deploy.sh to start",
        || std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "deploy.sh\n"),
    );
    child
}

#[test]
fn no_lock_and_no_state() {
    let w = World::new();
    w.unlock_sh(&["staging"]).run().code(0).stdout(&format!(
        "{HEADER}{}\nState file not found: {}\n\n",
        no_dir_line(),
        w.state_path().display()
    ));
}

#[test]
fn unlocked_state() {
    let w = World::new();
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false}}\n");
    w.unlock_sh(&["staging"]).run().code(0).stdout(&format!(
        "{HEADER}{}\nState file info:\n  Locked: false\n  Locked by: N/A\n  Locked at: N/A\n  Deployment ID: N/A\n  PID: N/A\n  Hostname: N/A\n\n",
        no_dir_line()
    ));
}

#[test]
fn state_without_lock_key() {
    let w = World::new();
    w.write_state("{\"deployments\": []}\n");
    w.unlock_sh(&["staging", "status"]).run().code(0).stdout(&format!(
        "{HEADER}{}\nState file info:\n  Locked: false\n  Locked by: N/A\n  Locked at: N/A\n  Deployment ID: N/A\n  PID: N/A\n  Hostname: N/A\n\n",
        no_dir_line()
    ));
}

/// The status block of a legacy lock taken at `locked_at` by `pid`, which
/// still runs, as shown at epoch second `t`.
fn held_and_alive_block(w: &World, pid: u32, locked_at: i64, t: i64) -> String {
    let age = t - locked_at;
    format!(
        "{HEADER}{}\nState file info:\n  Locked: true\n  Locked by: deploy@localhost\n  Locked at: {}\n  Deployment ID: dep_1890d66a41888860_47448a50c1f61cc6be49eaf4\n  PID: {pid}\n  Hostname: {}\n  Lock age: {}m {}s\n  ✓ Process {pid} is still running: deploy.sh\n\n",
        dir_lines(w, "staging"),
        iso(locked_at),
        hostname(),
        age / 60,
        age % 60
    )
}

/// A legacy lock of staging taken 195 s ago by a running deploy.sh:
/// that process, its pid and the lock's time.
fn held_by_a_live_legacy_deploy(w: &World) -> (Child, u32, i64) {
    let deploy = fake_deploy(w);
    let pid = deploy.id();
    let locked_at = now() - 195;
    w.legacy_lock("staging", locked_at);
    w.legacy_state("staging", locked_at, &pid.to_string(), &hostname());
    (deploy, pid, locked_at)
}

#[test]
fn held_and_alive() {
    let w = World::new();
    let (mut deploy, pid, locked_at) = held_by_a_live_legacy_deploy(&w);
    let before = now();
    let out = w.unlock_sh(&["staging", "--status"]).run();
    let after = now();
    deploy.kill().unwrap();
    deploy.wait().unwrap();
    out.code(0).stdout_one_of(&per_second(before, after, |t| {
        held_and_alive_block(&w, pid, locked_at, t)
    }));
}

/// One status is one look at the holder: its /proc/PID/stat is read once,
/// and the verdict, the JSON and the legacy "still running" line all judge
/// that reading (read once per judgement, a holder ending between two
/// reads was both running and dead in one status).
#[test]
fn a_status_reads_its_holders_proc_stat_once() {
    if !crate::completions::available("strace", "a_status_reads_its_holders_proc_stat_once") {
        return;
    }
    let w = World::new();
    let (mut deploy, pid, locked_at) = held_by_a_live_legacy_deploy(&w);
    let stat = format!("\"/proc/{pid}/stat\"");
    let opened = |calls: &str| calls.lines().filter(|l| l.contains(&stat)).count();

    let before = now();
    let (out, calls) = w.strace_unlock_sh("trace=open,openat", &["staging", "--status"]);
    let after = now();
    out.code(0).stdout_one_of(&per_second(before, after, |t| {
        held_and_alive_block(&w, pid, locked_at, t)
    }));
    assert_eq!(opened(&calls), 1, "{calls}");

    let (out, calls) = w.strace("trace=open,openat", BIN, &["status", "staging", "--json"]);
    out.code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (
            &v["verdict"],
            &v["holder"]["pid"],
            &v["holder"]["process_name"],
            &v["holder_alive"]
        ),
        (
            &json!("held"),
            &json!(pid),
            &json!("deploy.sh"),
            &json!(true)
        ),
        "{v}"
    );
    assert_eq!(opened(&calls), 1, "{calls}");
    deploy.kill().unwrap();
    deploy.wait().unwrap();
}

#[test]
fn stale_and_dead() {
    let w = World::new();
    let pid = dead_pid();
    let locked_at = now() - 72030;
    w.legacy_lock("staging", locked_at);
    w.legacy_state("staging", locked_at, &pid.to_string(), &hostname());
    let before = now();
    let out = w.unlock_sh(&["staging"]).run();
    let after = now();
    out.code(0).stdout_one_of(&per_second(before, after, |t| {
        let age = t - locked_at;
        format!(
            "{HEADER}{}\nState file info:\n  Locked: true\n  Locked by: deploy@localhost\n  Locked at: {}\n  Deployment ID: dep_1890d66a41888860_47448a50c1f61cc6be49eaf4\n  PID: {pid}\n  Hostname: {}\n  Lock age: {}m {}s\n  ⚠ Lock is stale (>30 minutes)\n  ⚠ Process {pid} is not running (deployment may have crashed)\n\n",
            dir_lines(&w, "staging"),
            iso(locked_at),
            hostname(),
            age / 60,
            age % 60
        )
    }));
}

#[test]
fn held_on_another_host_has_no_process_line() {
    let w = World::new();
    let locked_at = now() - 60;
    w.legacy_lock("staging", locked_at);
    w.legacy_state("staging", locked_at, "12345", "build-server-7");
    let before = now();
    let out = w.unlock_sh(&["staging"]).run();
    let after = now();
    out.code(0).stdout_one_of(&per_second(before, after, |t| {
        let age = t - locked_at;
        format!(
            "{HEADER}{}\nState file info:\n  Locked: true\n  Locked by: deploy@localhost\n  Locked at: {}\n  Deployment ID: dep_1890d66a41888860_47448a50c1f61cc6be49eaf4\n  PID: 12345\n  Hostname: build-server-7\n  Lock age: {}m {}s\n\n",
            dir_lines(&w, "staging"),
            iso(locked_at),
            age / 60,
            age % 60
        )
    }));
}

#[test]
fn orphaned_directory_with_unlocked_state() {
    let w = World::new();
    w.legacy_lock("staging", now() - 10);
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false}}\n");
    w.unlock_sh(&["staging"]).run().code(0).stdout(&format!(
        "{HEADER}{}\nState file info:\n  Locked: false\n  Locked by: N/A\n  Locked at: N/A\n  Deployment ID: N/A\n  PID: N/A\n  Hostname: N/A\n\n",
        dir_lines(&w, "staging")
    ));
    let json = w.deploy_lock(&["status", "staging", "--json"]).run();
    json.code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    // No record names a holder: unknown, never "not running" (issue 10).
    assert_eq!(v["verdict"], "unknown");
    assert_eq!(v["locked"], true);
    assert_eq!(v["holder"], serde_json::Value::Null);
    assert_eq!(v["holder_alive"], serde_json::Value::Null);
}

#[test]
fn usage_without_environment_names_the_invoked_path() {
    let w = World::new();
    let want = "Usage: ./deploy/scripts/unlock.sh ENVIRONMENT [--force|--wait|--status]

Environments: development, staging, production

Options:
  --status    Show lock status (default)
  --force     Force unlock (DANGEROUS - use only if deployment crashed)
  --wait      Wait for lock to be released naturally

Examples:
  ./deploy/scripts/unlock.sh staging                  # Show lock status
  ./deploy/scripts/unlock.sh staging --wait           # Wait for deployment to finish
  ./deploy/scripts/unlock.sh staging --force          # Force unlock (last resort)
";
    w.unlock_sh(&[]).run().code(1).stdout(want).stderr("");
    let abs = w.root.join("deploy/scripts/unlock.sh");
    w.cmd(&abs)
        .dir("/")
        .run()
        .code(1)
        .stdout(&want.replace("./deploy/scripts/unlock.sh", &abs.to_string_lossy()));
}

#[test]
fn invalid_environment_and_action() {
    let w = World::new();
    w.unlock_sh(&["bogus"]).run().code(1).stdout(
        "ERROR: Invalid environment 'bogus'\nMust be one of: development, staging, production\n",
    );
    w.unlock_sh(&["Staging"]).run().code(1).stdout(
        "ERROR: Invalid environment 'Staging'\nMust be one of: development, staging, production\n",
    );
    w.unlock_sh(&["staging", "--bogus"])
        .run()
        .code(1)
        .stdout("ERROR: Invalid action '--bogus'\nUse: --status, --wait, or --force\n");
    assert!(!w.lock_path("staging").exists());
}

#[test]
fn corrupted_state_file_is_an_error_and_untouched() {
    let w = World::new();
    let broken = "{\n  \"environment\": \"staging\",\n  \"lock\": {\"locked\": tru\n";
    w.write_state(broken);
    for action in ["--status", "--force", "--wait"] {
        w.unlock_sh(&["staging", action])
            .stdin(b"yes\n")
            .run()
            .code(1)
            .stdout("")
            .stderr(&legacy_unusable(
                &w.state_path(),
                "is not valid JSON: expected ident (line 3, column 24)",
            ));
        assert_eq!(w.state(), broken);
    }
    // deploy-lock's own advice: the by-hand repair or a fresh start.
    w.deploy_lock(&["status", "staging"])
        .run()
        .code(65)
        .stderr(&modern_unusable(
            &w.state_path(),
            "is not valid JSON: expected ident (line 3, column 24)",
        ));
}

#[test]
fn state_file_found_from_anywhere_through_the_script_path() {
    let w = World::new();
    w.write_state("{\"lock\": {\"locked\": false}}\n");
    let abs = w.root.join("deploy/scripts/unlock.sh");
    let out = {
        let mut c = w.cmd(&abs).dir("/").env("PWD", "/");
        c.cmd.arg("staging");
        c.run()
    };
    out.code(0);
    assert!(
        out.stdout.contains("State file info:\n  Locked: false\n"),
        "{}",
        out.stdout
    );
}

#[test]
fn unlock_sh_on_path_uses_the_working_directory_checkout() {
    let w = World::new();
    let bin = w.tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("unlock.sh")).unwrap();
    w.write_state("{\"lock\": {\"locked\": false}}\n");
    let sub = w.root.join("deploy/config");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let mut c = w.cmd("unlock.sh").dir(&sub).env("PATH", &path);
    c.cmd.arg("staging");
    let out = c.run();
    out.code(0);
    assert!(out.stdout.contains("  Locked: false\n"), "{}", out.stdout);
    // Outside any checkout: one clear error.
    let mut c = w.cmd("unlock.sh").dir(w.tmp.path()).env("PATH", &path);
    c.cmd.arg("staging");
    c.run().code(1).stdout("").stderr(&format!(
        "ERROR: no checkout found: neither {} nor any folder above it has deploy/scripts or deploy/config; run from inside the checkout, or pass --project-root DIR (or set DEPLOY_LOCK_PROJECT_ROOT)\n",
        w.tmp.path().display()
    ));
}

/// The `ls -ld` line equals real `ls -ld` over modes, owners, times and zones.
#[test]
fn ls_line_matches_real_ls_over_a_table_of_cases() {
    let w = World::new();
    let lock = w.lock_path("staging");
    let day = 86_400;
    let cases: &[(u32, Option<u32>, i64)] = &[
        (0o775, None, -3600),
        (0o700, None, -200 * day),
        (0o1777, None, day),
        (0o2755, None, -10 * 365 * day),
        (0o4755, Some(54321), -60),
        (0o1776, Some(54321), 3650 * day),
        (0o2745, None, -(15_778_476 + 100)),
    ];
    let zones = [
        "UTC",
        "America/New_York",
        "Asia/Kolkata",
        "Australia/Lord_Howe",
    ];
    let root = nix::unistd::geteuid().is_root();
    for (mode, owner, offset) in cases {
        let _ = std::fs::remove_dir(&lock);
        std::fs::create_dir(&lock).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&lock, std::fs::Permissions::from_mode(*mode)).unwrap();
        if let Some(uid) = owner {
            if !root {
                skip!("chown to an unknown uid needs root");
                continue;
            }
            std::os::unix::fs::chown(&lock, Some(*uid), Some(*uid)).unwrap();
        }
        let t = now() + offset;
        let ts = nix::sys::time::TimeSpec::new(t, 0);
        nix::sys::stat::utimensat(
            nix::fcntl::AT_FDCWD,
            &lock,
            &ts,
            &ts,
            nix::sys::stat::UtimensatFlags::NoFollowSymlink,
        )
        .unwrap();
        for tz in zones {
            let out = w.unlock_sh(&["staging"]).env("TZ", tz).run();
            let line = out.stdout.lines().nth(3).unwrap_or("").to_string();
            assert_eq!(
                line,
                real_ls_ld(&lock, tz),
                "mode {mode:o} offset {offset} TZ={tz}"
            );
        }
    }
}

#[test]
fn colour_only_on_request_or_terminal() {
    let w = World::new();
    let plain = w.unlock_sh(&["staging"]).run();
    assert!(!plain.stdout.contains('\x1b'));
    let forced = w.unlock_sh(&["staging"]).env("CLICOLOR_FORCE", "1").run();
    assert!(
        forced
            .stdout
            .starts_with("\x1b[34mDeployment Lock Status: staging\x1b[39m\n"),
        "{:?}",
        forced.stdout
    );
    assert!(
        forced
            .stdout
            .contains("Lock directory: \x1b[32mNot found (unlocked)\x1b[39m\n")
    );
    let no = w
        .unlock_sh(&["staging"])
        .env("CLICOLOR_FORCE", "1")
        .env("NO_COLOR", "1")
        .run();
    assert_eq!(no.stdout, plain.stdout);
    let mut tty = w.unlock_sh(&["staging"]).spawn_pty();
    assert!(tty.wait(std::time::Duration::from_secs(10)).success());
    assert!(
        tty.text()
            .contains("\x1b[34mDeployment Lock Status: staging"),
        "{:?}",
        tty.text()
    );
}

/// The `ls -ld` line names an owner that /etc/passwd and /etc/group do not
/// have (here a systemd userdb drop-in, as an LDAP or SSSD user would be) as
/// the system's NSS does, in process (getpwuid_r through nix): no program
/// is started for it. strace -f shows no execve, clone or fork, both for
/// that NSS-only owner and for ids no source knows (shown as numbers, as
/// ls does).
#[test]
fn owner_names_come_from_nss_in_process_without_a_fork() {
    if !nix::unistd::geteuid().is_root() {
        skip!("needs root to give the lock folder an owner the files do not have");
        return;
    }
    if !crate::completions::available("strace", "owner_names_come_from_nss") {
        return;
    }
    let w = World::new();
    let locked_at = now() - 60;
    let p = w.legacy_lock("staging", locked_at);
    w.legacy_state("staging", locked_at, "12345", "build-server-7");
    let trace =
        |w: &World| w.strace_unlock_sh("trace=execve,clone,clone3,fork,vfork", &["staging"]);
    let expect = |ls_line: &str, t: i64| {
        let age = t - locked_at;
        format!(
            "{HEADER}Lock directory exists: {}\n{ls_line}\n\nState file info:\n  Locked: true\n  Locked by: deploy@localhost\n  Locked at: {}\n  Deployment ID: dep_1890d66a41888860_47448a50c1f61cc6be49eaf4\n  PID: 12345\n  Hostname: build-server-7\n  Lock age: {}m {}s\n\n",
            p.display(),
            iso(locked_at),
            age / 60,
            age % 60
        )
    };

    let check = |w: &World, ls: &str| {
        let before = now();
        let (out, calls) = trace(w);
        let after = now();
        out.code(0)
            .stdout_one_of(&per_second(before, after, |t| expect(ls, t)));
        // One execve: strace starting unlock.sh itself; nothing after it.
        let lines: Vec<&str> = calls.lines().collect();
        assert_eq!(lines.len(), 1, "{calls}");
        assert!(
            lines[0].contains("execve(\"./deploy/scripts/unlock.sh\""),
            "{calls}"
        );
    };
    // Ids no source knows: the numbers, as ls prints them.
    let (uid, gid) = (3_999_999_001u32, 3_999_999_002u32);
    nix::unistd::chown(
        &p,
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
    )
    .unwrap();
    let ls = real_ls_ld(&p, "UTC");
    assert!(ls.contains(&format!(" {uid} {gid} ")), "{ls}");
    check(&w, &ls);

    // An owner only NSS knows: a systemd userdb drop-in (nss-systemd reads
    // /run/userdb without systemd-userdbd). One id per test process, so
    // parallel runs never share a record; removed when done.
    let id = 4_200_000 + std::process::id() % 100_000;
    let name = format!("dlk-nss{id}");
    let Some(_records) = NssOnlyAccount::create(&name, id) else {
        skip!(
            "nss-systemd does not answer for /run/userdb records here (passwd: files systemd in nsswitch.conf, libnss-systemd)"
        );
        return;
    };
    assert!(
        !std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains(&format!(":{id}:")),
        "uid {id} is in /etc/passwd"
    );
    nix::unistd::chown(
        &p,
        Some(nix::unistd::Uid::from_raw(id)),
        Some(nix::unistd::Gid::from_raw(id)),
    )
    .unwrap();
    let ls = real_ls_ld(&p, "UTC");
    // GNU ls (glibc's NSS) names it; ours must print the same line.
    assert!(ls.contains(&format!(" {name} {name} ")), "{ls}");
    check(&w, &ls);
}

/// A user and group known only to NSS (nss-systemd's drop-in records in
/// /run/userdb), removed on drop.
struct NssOnlyAccount {
    files: Vec<std::path::PathBuf>,
}

impl NssOnlyAccount {
    fn create(name: &str, id: u32) -> Option<NssOnlyAccount> {
        let dir = std::path::Path::new("/run/userdb");
        std::fs::create_dir_all(dir).ok()?;
        let mut files = Vec::new();
        for (kind, body) in [
            (
                "user",
                format!(r#"{{"userName":"{name}","uid":{id},"gid":{id}}}"#),
            ),
            ("group", format!(r#"{{"groupName":"{name}","gid":{id}}}"#)),
        ] {
            let f = dir.join(format!("{name}.{kind}"));
            std::fs::write(&f, body).ok()?;
            files.push(f);
            let l = dir.join(format!("{id}.{kind}"));
            let _ = std::fs::remove_file(&l);
            std::os::unix::fs::symlink(format!("{name}.{kind}"), &l).ok()?;
            files.push(l);
        }
        let made = NssOnlyAccount { files };
        let known = std::process::Command::new("getent")
            .args(["passwd", &id.to_string()])
            .output()
            .is_ok_and(|o| o.status.success());
        known.then_some(made)
    }
}

impl Drop for NssOnlyAccount {
    fn drop(&mut self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}
