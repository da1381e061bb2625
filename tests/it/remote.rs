//! Remote locks over ssh, against a real OpenSSH server on loopback (see
//! sshd.rs): the server's output and exit code passed through whole, the
//! piped and typed confirmations, the lock check before a remote deploy,
//! hostile directory names, and one clear line per ssh failure.
//!
//! The "server checkout" is a World's checkout (deploy/scripts/unlock.sh is
//! the binary under test) reached with --remote-dir; the World's lock folder
//! reaches the server as DEPLOY_LOCK_DIR through `-o SendEnv`.

use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::legacy_status::fake_deploy;
use crate::sshd::{self, Sshd, TARGET};

const PROMPT: &str = "Are you sure you want to force unlock? (type 'yes' to confirm): ";

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `unlock.sh ARGS --remote root@127.0.0.1 --remote-dir DIR` through `ssh`,
/// run in the `client` checkout with the `server` World's lock folder (sent
/// to the server). A client apart from the server means a run that ignored
/// --remote would show the client's state file, not the server's.
pub fn unlock_remote(client: &World, server: &World, ssh: &Sshd, dir: &Path, args: &[&str]) -> Cmd {
    let dir = s(dir);
    let mut all = args.to_vec();
    all.extend(["--remote", TARGET, "--remote-dir", &dir]);
    client
        .unlock_sh(&all)
        .env("DEPLOY_LOCK_SSH", ssh.ssh_command())
        .env("DEPLOY_LOCK_DIR", &server.locks)
}

/// `deploy-lock ARGS --remote root@127.0.0.1 --remote-dir DIR`, likewise.
pub fn deploy_lock_remote(
    client: &World,
    server: &World,
    ssh: &Sshd,
    dir: &Path,
    args: &[&str],
) -> Cmd {
    let dir = s(dir);
    let mut all = args.to_vec();
    all.extend(["--remote", TARGET, "--remote-dir", &dir]);
    client
        .deploy_lock(&all)
        .env("DEPLOY_LOCK_SSH", ssh.ssh_command())
        .env("DEPLOY_LOCK_DIR", &server.locks)
}

/// Runs `local` before and after `remote` and asserts the remote run printed
/// what the local one did (stdout one of the two, for the clock second that
/// may tick in between) and exited the same; returns the local stdout.
#[track_caller]
pub fn same_as_local(local: impl Fn() -> Cmd, remote: Cmd, stdin: &[u8]) -> String {
    let before = local().stdin(stdin).run();
    let got = remote.stdin(stdin).run();
    let after = local().stdin(stdin).run();
    // The local runs are the reference, whatever they say.
    before.any_code().any_stderr();
    after.any_code().any_stderr();
    assert_eq!(
        before.code, after.code,
        "local runs differ: {before:?} {after:?}"
    );
    got.code(before.code.unwrap()).stderr(&before.stderr);
    // The remote run came between the two local ones: each age it shows
    // lies between theirs (however many seconds ssh took on a loaded
    // machine); every other line is the same.
    if !ages_between(&got.stdout, &before.stdout, &after.stdout) {
        got.stdout_one_of(&[before.stdout.clone(), after.stdout.clone()]);
    }
    before.stdout.clone()
}

/// `got` is `before` line for line, but for age lines (`Lock age:`, the
/// JSON's `age_seconds`) whose age lies between `before`'s and `after`'s.
pub fn ages_between(got: &str, before: &str, after: &str) -> bool {
    let n = got.lines().count();
    n == before.lines().count()
        && n == after.lines().count()
        && got.ends_with('\n') == before.ends_with('\n')
        && got
            .lines()
            .zip(before.lines().zip(after.lines()))
            .all(|(g, (b, a))| {
                g == b
                    || matches!(
                        (age_secs(g), age_secs(b), age_secs(a)),
                        (Some(g), Some(b), Some(a)) if (b..=a).contains(&g)
                    )
            })
}

/// The seconds of a status block's `  Lock age: Nm Ss` line or of the
/// JSON's `  "age_seconds": N,` line.
fn age_secs(l: &str) -> Option<i64> {
    if let Some(n) = l.strip_prefix("  \"age_seconds\": ") {
        return n.strip_suffix(',')?.parse().ok();
    }
    let (m, s) = l.strip_prefix("  Lock age: ")?.split_once("m ")?;
    Some(m.parse::<i64>().ok()? * 60 + s.strip_suffix('s')?.parse::<i64>().ok()?)
}

/// A live holder: a running `deploy.sh` recorded in the lock and state.
pub fn held_by_live(w: &World) -> Child {
    let deploy = fake_deploy(w);
    let locked_at = now() - 195;
    w.legacy_lock("staging", locked_at);
    w.legacy_state("staging", locked_at, &deploy.id().to_string(), &hostname());
    deploy
}

pub fn stop(mut child: Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A crashed deploy's lock (dead pid, 2 hours old), its directory's mtime
/// set to `locked_at` so two Worlds made alike list it alike.
fn crashed(w: &World, pid: u32, locked_at: i64) {
    let dir = w.legacy_lock("staging", locked_at);
    w.legacy_state("staging", locked_at, &pid.to_string(), &hostname());
    let st = Command::new("touch")
        .arg("-m")
        .arg("-d")
        .arg(format!("@{locked_at}"))
        .arg(&dir)
        .status()
        .unwrap();
    assert!(st.success());
}

/// `got` equals `want` but for `Lock age:` lines, which may be one clock
/// second apart (two runs, one after the other).
#[track_caller]
pub fn same_but_age(got: &str, want: &str) {
    // One was read before the other, as many seconds apart as ssh took on
    // a loaded machine.
    let close = got.lines().count() == want.lines().count()
        && got.ends_with('\n') == want.ends_with('\n')
        && got.lines().zip(want.lines()).all(|(a, b)| {
            a == b
                || matches!((age_secs(a), age_secs(b)), (Some(x), Some(y)) if (x - y).abs() <= PATIENCE.as_secs() as i64)
        });
    if !close {
        assert_text(got, want, "stdout (ages aside)", "");
    }
}

#[test]
fn remote_status_is_the_local_status() {
    let Some(ssh) = sshd::shared("remote_status_is_the_local_status") else {
        return;
    };
    let (w, c) = (World::new(), World::new());
    let remote = |args: &[&str]| unlock_remote(&c, &w, ssh, &w.root, args);

    // Nothing locked, no state file.
    let out = same_as_local(|| w.unlock_sh(&["staging"]), remote(&["staging"]), b"");
    assert!(
        out.contains("Lock directory: Not found (unlocked)"),
        "{out}"
    );

    // Held by a live deploy.sh: the server sees the process running.
    let deploy = held_by_live(&w);
    let pid = deploy.id();
    let out = same_as_local(
        || w.unlock_sh(&["staging", "--status"]),
        remote(&["staging", "--status"]),
        b"",
    );
    assert!(
        out.contains(&format!("  ✓ Process {pid} is still running: deploy.sh\n")),
        "{out}"
    );
    // The same through deploy-lock status, block and JSON.
    let remote_dl = |args: &[&str]| deploy_lock_remote(&c, &w, ssh, &w.root, args);
    same_as_local(
        || w.deploy_lock(&["status", "staging"]),
        remote_dl(&["status", "staging"]),
        b"",
    );
    let json = same_as_local(
        || w.deploy_lock(&["status", "staging", "--json"]),
        remote_dl(&["status", "staging", "--json"]),
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["verdict"], "held");
    assert_eq!(v["holder_alive"], true);
    assert_eq!(v["holder"]["pid"], pid);
    stop(deploy);

    // The deploy died: stale and dead, seen alike.
    fs::remove_dir_all(w.lock_path("staging")).unwrap();
    crashed(&w, dead_pid(), now() - 7230);
    let out = same_as_local(|| w.unlock_sh(&["staging"]), remote(&["staging"]), b"");
    assert!(out.contains("⚠ Lock is stale (>30 minutes)"), "{out}");
}

#[test]
fn force_unlock_through_ssh_with_piped_yes() {
    let Some(ssh) = sshd::shared("force_unlock_through_ssh_with_piped_yes") else {
        return;
    };
    // Two Worlds in the same state: A unlocked through ssh, B locally.
    let (a, b, c) = (World::new(), World::new(), World::new());
    let (pid, locked_at) = (dead_pid(), now() - 7230);
    crashed(&a, pid, locked_at);
    crashed(&b, pid, locked_at);
    let remote = unlock_remote(&c, &a, ssh, &a.root, &["staging", "--force"])
        .stdin(b"yes\n")
        .run();
    let local = b.unlock_sh(&["staging", "--force"]).stdin(b"yes\n").run();
    local.code(0).stderr("");
    remote.code(0).stderr("");
    let a_tmp = s(a.tmp.path());
    let b_tmp = s(b.tmp.path());
    same_but_age(&remote.stdout, &local.stdout.replace(&b_tmp, &a_tmp));
    assert!(
        remote.stdout.ends_with(
            "  - The lock is stale (>30 minutes old)\n\n⚠ Could not remove lock directory (may not be empty)\n  Trying force remove...\n✓ Lock directory force removed\n✓ State file updated to unlocked\n\n✓ Lock forcefully released\n\nNext deployment will proceed normally.\n"
        ),
        "{}",
        remote.stdout
    );
    // Removed on the "server".
    assert!(!a.lock_path("staging").exists());
    assert_eq!(a.state_json()["lock"]["locked"], false);

    // deploy-lock unlock --remote, piped yes: the same on the server.
    crashed(&a, pid, now() - 7230);
    crashed(&b, pid, now() - 7230);
    let remote = deploy_lock_remote(&c, &a, ssh, &a.root, &["unlock", "staging"])
        .stdin(b"yes\n")
        .run();
    let local = b.deploy_lock(&["unlock", "staging"]).stdin(b"yes\n").run();
    local.code(0);
    remote.code(0).stderr(&local.stderr.replace(&b_tmp, &a_tmp));
    same_but_age(&remote.stdout, &local.stdout.replace(&b_tmp, &a_tmp));
    assert!(!a.lock_path("staging").exists());
}

#[test]
fn force_unlock_answered_no_is_cancelled() {
    let Some(ssh) = sshd::shared("force_unlock_answered_no_is_cancelled") else {
        return;
    };
    let (w, c) = (World::new(), World::new());
    crashed(&w, dead_pid(), now() - 7230);
    let state = w.state();
    let out = same_as_local(
        || w.unlock_sh(&["staging", "--force"]),
        unlock_remote(&c, &w, ssh, &w.root, &["staging", "--force"]),
        b"no\n",
    );
    assert!(
        out.ends_with("  - The lock is stale (>30 minutes old)\n\nCancelled.\n"),
        "{out}"
    );
    // deploy-lock unlock: cancelled is exit 1, passed through.
    same_as_local(
        || w.deploy_lock(&["unlock", "staging"]),
        deploy_lock_remote(&c, &w, ssh, &w.root, &["unlock", "staging"]),
        b"no\n",
    );
    w.deploy_lock(&["unlock", "staging"])
        .stdin(b"no\n")
        .run()
        .code(1);
    assert!(w.lock_path("staging").exists());
    assert_eq!(w.state(), state);
}

#[test]
fn exit_codes_pass_through() {
    let Some(ssh) = sshd::shared("exit_codes_pass_through") else {
        return;
    };
    let (w, c) = (World::new(), World::new());
    // Usage errors: the same text and code 1.
    same_as_local(
        || w.unlock_sh(&["staging", "bogus"]),
        unlock_remote(&c, &w, ssh, &w.root, &["staging", "bogus"]),
        b"",
    );
    w.unlock_sh(&["staging", "bogus"]).run().code(1).stderr("");

    // A wait that times out on the server: 1 (unlock.sh), 124 (deploy-lock),
    // the timeout reaching the server as DEPLOY_LOCK_WAIT_TIMEOUT.
    let deploy = held_by_live(&w);
    let out = same_as_local(
        || {
            w.unlock_sh(&["staging", "--wait"])
                .env("DEPLOY_LOCK_WAIT_TIMEOUT", "0.3")
                .env("DEPLOY_LOCK_WAIT_INTERVAL", "60")
        },
        unlock_remote(&c, &w, ssh, &w.root, &["staging", "--wait"])
            .env("DEPLOY_LOCK_WAIT_TIMEOUT", "0.3")
            .env("DEPLOY_LOCK_WAIT_INTERVAL", "60"),
        b"",
    );
    assert!(
        out.ends_with("Timeout after 0.3 seconds. Lock still exists.\nConsider using --force if deployment crashed.\n"),
        "{out}"
    );
    w.unlock_sh(&["staging", "--wait"])
        .env("DEPLOY_LOCK_WAIT_TIMEOUT", "0.3")
        .run()
        .code(1)
        .stderr("");
    same_as_local(
        || {
            w.deploy_lock(&["wait", "staging"])
                .env("DEPLOY_LOCK_WAIT_TIMEOUT", "0.3")
                .env("DEPLOY_LOCK_WAIT_INTERVAL", "60")
        },
        deploy_lock_remote(&c, &w, ssh, &w.root, &["wait", "staging"])
            .env("DEPLOY_LOCK_WAIT_TIMEOUT", "0.3")
            .env("DEPLOY_LOCK_WAIT_INTERVAL", "60"),
        b"",
    );
    w.deploy_lock(&["wait", "staging"])
        .env("DEPLOY_LOCK_WAIT_TIMEOUT", "0.3")
        .run()
        .code(124)
        .stderr(
            "ERROR: gave up after 0.3 seconds waiting for the staging lock (it is still held; if its deployment crashed: deploy-lock unlock staging)\n",
        );
    stop(deploy);

    // A state file that is not JSON: 65 from deploy-lock, 1 from unlock.sh,
    // with the server's error text on stderr.
    fs::remove_dir_all(w.lock_path("staging")).unwrap();
    w.write_state("{\"lock\": {\"locked\": tru\n");
    same_as_local(
        || w.deploy_lock(&["status", "staging"]),
        deploy_lock_remote(&c, &w, ssh, &w.root, &["status", "staging"]),
        b"",
    );
    w.deploy_lock(&["status", "staging"])
        .run()
        .code(65)
        .stderr(&modern_unusable(
            &w.state_path(),
            "is not valid JSON: expected ident (line 1, column 23)",
        ));
    same_as_local(
        || w.unlock_sh(&["staging"]),
        unlock_remote(&c, &w, ssh, &w.root, &["staging"]),
        b"",
    );
    w.unlock_sh(&["staging"])
        .run()
        .code(1)
        .stderr(&legacy_unusable(
            &w.state_path(),
            "is not valid JSON: expected ident (line 1, column 23)",
        ));
}

/// A client checkout whose deploy.sh records its arguments and its stdin.
pub fn client_with_recording_deploy() -> World {
    let client = World::new();
    client.script(
        "deploy/scripts/deploy.sh",
        "#!/bin/sh\nd=$(dirname \"$0\")\nprintf '%s\\n' \"$@\" > \"$d/argv\"\ncat > \"$d/stdin\"\necho deploy.sh ran\n",
    );
    client
}

pub fn argv(client: &World) -> Option<String> {
    fs::read_to_string(client.root.join("deploy/scripts/argv")).ok()
}

/// `deploy-lock staging --remote root@127.0.0.1 --remote-dir SERVER ARGS`
/// from the client checkout; the server's lock folder is the server World's.
pub fn remote_deploy(client: &World, server: &World, ssh: &Sshd, args: &[&str]) -> Cmd {
    let dir = s(&server.root);
    let mut all = vec!["staging", "--remote", TARGET, "--remote-dir", &dir];
    all.extend(args);
    client
        .deploy_lock(&all)
        .env("DEPLOY_LOCK_SSH", ssh.ssh_command())
        .env("DEPLOY_LOCK_DIR", &server.locks)
}

/// The refusal of `deploy-lock staging --remote ... --dry-run` while the
/// server's live `deploy` holds its lock, read between the clock seconds
/// `before` and `after`: whole, as `assert_server_refusal` checks it in
/// parts.
pub fn server_refusals(server: &World, deploy: u32, before: i64, after: i64) -> Vec<String> {
    let at = server.state_json()["lock"]["locked_at"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = s(&server.root);
    (before..=after)
        .map(|t| {
            let age = t - epoch(&at);
            format!(
                "ERROR: the staging lock on {TARGET} is held by deploy@localhost since {at} ({}m {}s ago).\n\
                 Running there: deploy.sh (pid {deploy}); a running holder's lock is never taken over.\n  \
                 wait for it:      deploy-lock --wait staging --remote {TARGET} --remote-dir {dir} --dry-run\n  \
                 details:          deploy-lock status staging --remote {TARGET} --remote-dir '{dir}'\n",
                age / 60,
                age % 60
            )
        })
        .collect()
}

/// The refusal of `deploy-lock staging --remote ... ARGS` while a live
/// deploy (pid `pid`) holds the server's lock (issue 12: short, the retry
/// being the user's own words with --wait).
#[track_caller]
pub fn assert_server_refusal(out: &Out, server: &World, pid: u32, args: &[&str]) {
    let dir = s(&server.root);
    out.code(75).stdout("");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 4, "{}", out.stderr);
    assert!(
        lines[0].starts_with(&format!(
            "ERROR: the staging lock on {TARGET} is held by deploy@localhost since "
        )),
        "{}",
        out.stderr
    );
    assert!(
        lines[1].starts_with("Running there: ")
            && lines[1].ends_with(&format!(
                " (pid {pid}); a running holder's lock is never taken over."
            )),
        "{}",
        out.stderr
    );
    assert_eq!(
        lines[2..].join("\n"),
        format!(
            "  wait for it:      deploy-lock --wait staging --remote {TARGET} --remote-dir {dir} {}\n  \
             details:          deploy-lock status staging --remote {TARGET} --remote-dir '{dir}'",
            args.join(" ")
        )
    );
}

/// The legacy deploy.sh's EXIT trap: lock directory gone, state unlocked.
pub fn release(server: &World) {
    fs::remove_dir_all(server.lock_path("staging")).unwrap();
    server.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false}}\n");
}

pub const DEPLOY_ARGV: &str = "staging\n--remote\nroot@127.0.0.1\n--dry-run\n";

#[test]
fn remote_deploy_is_refused_while_the_server_lock_is_held() {
    let Some(ssh) = sshd::shared("remote_deploy_is_refused_while_the_server_lock_is_held") else {
        return;
    };
    let (client, server) = (client_with_recording_deploy(), World::new());
    let deploy = held_by_live(&server);
    let before = now();
    let out = remote_deploy(&client, &server, ssh, &["--dry-run"]).run();
    let after = now();
    assert_server_refusal(&out, &server, deploy.id(), &["--dry-run"]);
    // Whole, for each clock second the run spanned (the lock's age).
    out.stderr_one_of(&server_refusals(&server, deploy.id(), before, after));
    assert_eq!(argv(&client), None, "deploy.sh ran while the lock was held");

    // The holder died, its lock left behind: no live deployment holds it.
    stop(deploy);
    remote_deploy(&client, &server, ssh, &["--dry-run"])
        .run()
        .code(0)
        .stdout("deploy.sh ran\n")
        .stderr("");
    assert_eq!(argv(&client).as_deref(), Some(DEPLOY_ARGV));
    fs::remove_file(client.root.join("deploy/scripts/argv")).unwrap();

    // Released: deploy.sh runs with the remote flags, --remote-dir kept back.
    release(&server);
    remote_deploy(&client, &server, ssh, &["--dry-run"])
        .run()
        .code(0)
        .stdout("deploy.sh ran\n")
        .stderr("");
    assert_eq!(argv(&client).as_deref(), Some(DEPLOY_ARGV));
}

#[test]
fn remote_deploy_with_wait_proceeds_after_the_release() {
    let Some(ssh) = sshd::shared("remote_deploy_with_wait_proceeds_after_the_release") else {
        return;
    };
    let (client, server) = (client_with_recording_deploy(), World::new());
    let deploy = held_by_live(&server);
    let block = server.unlock_sh(&["staging"]).run().stdout.clone();
    // stdin is deploy.sh's: the wait on the server must not read it.
    let mut child = remote_deploy(&client, &server, ssh, &["--wait", "--dry-run"])
        .env("DEPLOY_LOCK_WAIT_INTERVAL", "60")
        .cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"typed for deploy.sh\n").unwrap();
    drop(stdin);
    let err = Arc::new(Mutex::new(String::new()));
    let reader = {
        let mut pipe = child.stderr.take().unwrap();
        let err = err.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => err
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        })
    };
    // The server's wait has shown its first progress line: release there.
    wait_until(Duration::from_secs(10), "the server's wait", || {
        err.lock().unwrap().contains("Waiting... 0m 0s\n")
    });
    assert_eq!(argv(&client), None, "deploy.sh ran before the release");
    stop(deploy);
    release(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "still waiting after the release");
        std::thread::sleep(Duration::from_millis(10));
    };
    reader.join().unwrap();
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{}", err.lock().unwrap());
    assert_eq!(stdout, "deploy.sh ran\n");
    // What the server's wait printed, on stderr (stdout is deploy.sh's).
    let err = err.lock().unwrap().clone();
    let tail = "Waiting for deployment to complete...\nPress Ctrl+C to cancel\n\nWaiting... 0m 0s\n✓ Lock released!\n";
    let head = err.strip_suffix(tail).unwrap_or_else(|| panic!("{err}"));
    // The block may be a clock second older than the one taken before.
    same_but_age(head, &block);
    assert_eq!(argv(&client).as_deref(), Some(DEPLOY_ARGV));
    assert_eq!(
        fs::read_to_string(client.root.join("deploy/scripts/stdin")).unwrap(),
        "typed for deploy.sh\n"
    );
}

#[test]
fn odd_directory_names_are_quoted_and_inject_nothing() {
    let Some(ssh) = sshd::shared("odd_directory_names_are_quoted_and_inject_nothing") else {
        return;
    };
    let (w, c) = (World::new(), World::new());
    let names = [
        "odd dir; echo INJECTED",
        "q'uote\"s $(cd; touch INJECTED) `cd; touch INJECTED`; cd; touch INJECTED; echo INJECTED",
    ];
    for name in names {
        let odd = w.tmp.path().join(name);
        fs::create_dir_all(odd.join("deploy/scripts")).unwrap();
        fs::create_dir_all(odd.join("deploy/config")).unwrap();
        std::os::unix::fs::symlink(BIN, odd.join("deploy/scripts/unlock.sh")).unwrap();
        fs::write(
            odd.join("deploy/config/deployment-state.json"),
            "{\"environment\": \"staging\", \"lock\": {\"locked\": false}}\n",
        )
        .unwrap();
        let out = same_as_local(
            || w.unlock_sh(&["staging"]).dir(&odd),
            unlock_remote(&c, &w, ssh, &odd, &["staging"]),
            b"",
        );
        assert!(
            out.contains("State file info:\n  Locked: false\n  Locked by: N/A\n"),
            "{out}"
        );
        let json = same_as_local(
            || w.deploy_lock(&["status", "staging", "--json"]).dir(&odd),
            deploy_lock_remote(&c, &w, ssh, &odd, &["status", "staging", "--json"]),
            b"",
        );
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(
            v["state_file"],
            s(&odd.join("deploy/config/deployment-state.json"))
        );
        for text in [&out, &json] {
            assert!(
                !text.lines().any(|l| l.trim() == "INJECTED"),
                "injected: {text}"
            );
        }
    }
    // Anything injected would have touched INJECTED in the server's HOME or
    // its login folder.
    assert!(!ssh.home.join("INJECTED").exists());
    assert!(!Path::new("/root/INJECTED").exists());

    // `~/DIR` is the server user's home, as scp reads it.
    let name = format!(
        "checkout-{}",
        w.tmp.path().file_name().unwrap().to_string_lossy()
    );
    let in_home = ssh.home.join(&name);
    fs::create_dir_all(in_home.join("deploy/scripts")).unwrap();
    std::os::unix::fs::symlink(BIN, in_home.join("deploy/scripts/unlock.sh")).unwrap();
    let tilde = format!("~/{name}");
    let out = same_as_local(
        || w.unlock_sh(&["staging"]).dir(&in_home),
        unlock_remote(&c, &w, ssh, Path::new(&tilde), &["staging"]),
        b"",
    );
    fs::remove_dir_all(&in_home).unwrap();
    assert!(out.contains(&s(&in_home)), "{out}");
}

/// One error line, nothing on stdout, the given code.
#[track_caller]
pub fn one_line(out: &Out, code: i32, line: &str) {
    out.code(code)
        .stdout("")
        .stderr(&format!("ERROR: {line}\n"));
}

const UNREACHABLE_FIX: &str = "check the host name, the network and that sshd runs there";

#[test]
fn unreachable_host_fails_fast_with_one_line() {
    if let Some(why) = sshd::missing() {
        return sshd::skip("unreachable_host_fails_fast_with_one_line", &why);
    }
    let w = World::new();
    // A loopback port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ssh_cmd = format!("ssh -F /dev/null -p {port} -o StrictHostKeyChecking=no");
    let want = format!(
        "cannot reach 127.0.0.1 (connect to host 127.0.0.1 port {port}: Connection refused): {UNREACHABLE_FIX}"
    );
    let t = Instant::now();
    let out = w
        .unlock_sh(&["staging", "--remote", TARGET])
        .env("DEPLOY_LOCK_SSH", &ssh_cmd)
        .run();
    let refused = t.elapsed();
    one_line(&out, 1, &want);
    let out = w
        .deploy_lock(&["status", "staging", "--remote", TARGET])
        .env("DEPLOY_LOCK_SSH", &ssh_cmd)
        .run();
    one_line(&out, 74, &want);
    assert!(refused < Duration::from_secs(15), "{refused:?}");

    // A host that accepts the connection and then says nothing: the connect
    // timeout (10 s) ends it.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let conn = silent.accept();
        std::thread::sleep(Duration::from_secs(20));
        drop(conn);
    });
    let t = Instant::now();
    let out = w
        .unlock_sh(&["staging", "--remote", TARGET])
        .env(
            "DEPLOY_LOCK_SSH",
            format!("ssh -F /dev/null -p {port} -o StrictHostKeyChecking=no"),
        )
        .run();
    let silent_took = t.elapsed();
    one_line(
        &out,
        1,
        &format!(
            "cannot reach 127.0.0.1 (Connection to 127.0.0.1 port {port} timed out): {UNREACHABLE_FIX}"
        ),
    );
    assert!(silent_took < Duration::from_secs(15), "{silent_took:?}");
    drop(holder);
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("MEASURED: connection refused {refused:?}; silent host {silent_took:?}\n")
            .as_bytes(),
    );
}

#[test]
fn refused_login_and_unknown_host_key_are_one_line_each() {
    let Some(ssh) = sshd::shared("refused_login_and_unknown_host_key_are_one_line_each") else {
        return;
    };
    let w = World::new();
    let out = w
        .unlock_sh(&["staging", "--remote", TARGET])
        .env("DEPLOY_LOCK_SSH", ssh.ssh_command_with(&ssh.stranger_key))
        .run();
    one_line(
        &out,
        1,
        "127.0.0.1 refused the ssh login (root@127.0.0.1: Permission denied (publickey)): check the user name and your key (ssh-add -l), or set DEPLOY_LOCK_SSH=\"ssh -i KEY\"",
    );
    let strict = ssh
        .ssh_command()
        .replace("StrictHostKeyChecking=no", "StrictHostKeyChecking=yes");
    let out = w
        .deploy_lock(&["status", "staging", "--remote", TARGET])
        .env("DEPLOY_LOCK_SSH", strict)
        .run();
    one_line(
        &out,
        74,
        "127.0.0.1's host key is not trusted (Host key verification failed): connect once with ssh 127.0.0.1 to check and accept it, or fix ~/.ssh/known_hosts",
    );
}

#[test]
fn missing_checkout_and_missing_program_are_one_line_each() {
    let Some(ssh) = sshd::shared("missing_checkout_and_missing_program_are_one_line_each") else {
        return;
    };
    let (w, c) = (World::new(), World::new());
    let gone = w.tmp.path().join("no such checkout");
    let want = format!(
        "no checkout at {} on 127.0.0.1: pass the server's checkout with --remote-dir DIR",
        gone.display()
    );
    one_line(
        &unlock_remote(&c, &w, ssh, &gone, &["staging"]).run(),
        1,
        &want,
    );
    one_line(
        &deploy_lock_remote(&c, &w, ssh, &gone, &["status", "staging"]).run(),
        74,
        &want,
    );
    // A folder that is not a deploy-lock checkout.
    let bare = w.tmp.path().join("bare");
    fs::create_dir(&bare).unwrap();
    one_line(
        &unlock_remote(&c, &w, ssh, &bare, &["staging", "--force"])
            .stdin(b"yes\n")
            .run(),
        1,
        &format!(
            "127.0.0.1 has no {0}/deploy/scripts/unlock.sh: install deploy-lock there (./install.sh --project {0}) or pass the right --remote-dir",
            bare.display()
        ),
    );
}

#[test]
fn no_deploy_lock_on_the_server_is_one_line() {
    if let Some(why) = sshd::missing() {
        return sshd::skip("no_deploy_lock_on_the_server_is_one_line", &why);
    }
    // The remote script also looks in /usr/local/bin: a machine with
    // deploy-lock installed there cannot show this.
    if Path::new("/usr/local/bin/deploy-lock").exists() {
        return sshd::skip(
            "no_deploy_lock_on_the_server_is_one_line",
            "/usr/local/bin/deploy-lock exists",
        );
    }
    let bare = sshd::own(false);
    let (w, c) = (World::new(), World::new());
    // Issue 12: the checkout's unlock.sh would do; this one has none.
    fs::remove_file(w.root.join("deploy/scripts/unlock.sh")).unwrap();
    let none = "127.0.0.1 has no deploy-lock on its PATH, in ~/.local/bin or in /usr/local/bin, and no {dir}/deploy/scripts/unlock.sh: install deploy-lock there (./install.sh), or pass the right --remote-dir"
        .replace("{dir}", &s(&w.root));
    let out = deploy_lock_remote(&c, &w, &bare, &w.root, &["status", "staging", "--json"]).run();
    one_line(&out, 74, &none);
    // And a remote deploy cannot check the lock, so it does not start.
    let client = client_with_recording_deploy();
    let out = remote_deploy(&client, &w, &bare, &["--dry-run"]).run();
    one_line(&out, 74, &none);
    assert_eq!(argv(&client), None);
}

#[test]
fn ssh_command_missing_is_one_line() {
    let w = World::new();
    for (custom, program) in [
        ("/nonexistent/ssh -p 2222", "/nonexistent/ssh"),
        ("LC_ALL=C no-such-ssh -p 2222", "no-such-ssh"),
    ] {
        let want = format!(
            "DEPLOY_LOCK_SSH runs '{program}', which is not installed or not on PATH: fix DEPLOY_LOCK_SSH (e.g. DEPLOY_LOCK_SSH=\"ssh -p 2222\") or unset it to use ssh"
        );
        let out = w
            .unlock_sh(&["staging", "--remote", TARGET])
            .env("DEPLOY_LOCK_SSH", custom)
            .run();
        one_line(&out, 1, &want);
        let out = w
            .deploy_lock(&["wait", "staging", "--remote", TARGET])
            .env("DEPLOY_LOCK_SSH", custom)
            .run();
        one_line(&out, 74, &want);
    }
}

#[test]
fn no_ssh_installed_is_one_line() {
    let w = World::new();
    // A PATH without ssh, and no DEPLOY_LOCK_SSH (the harness clears it).
    let empty = w.tmp.path().join("empty-path");
    fs::create_dir(&empty).unwrap();
    let want = "ssh is not installed: install the OpenSSH client (e.g. apt-get install openssh-client) or set DEPLOY_LOCK_SSH to the ssh command to use";
    let out = w
        .unlock_sh(&["staging", "--remote", TARGET])
        .env("PATH", &empty)
        .run();
    one_line(&out, 1, want);
    let client = client_with_recording_deploy();
    let out = client
        .deploy_lock(&["staging", "--remote", TARGET, "--dry-run"])
        .env("PATH", &empty)
        .run();
    one_line(&out, 74, want);
    assert_eq!(argv(&client), None);
}

#[test]
fn force_on_a_terminal_gets_a_remote_tty() {
    let Some(ssh) = sshd::shared("force_on_a_terminal_gets_a_remote_tty") else {
        return;
    };
    let (w, c) = (World::new(), World::new());
    crashed(&w, dead_pid(), now() - 7230);
    let mut tty = unlock_remote(&c, &w, ssh, &w.root, &["staging", "--force"])
        .env("NO_COLOR", "1")
        .spawn_pty();
    tty.expect(PROMPT, Duration::from_secs(15));
    // The remote side is a terminal: its warning came in colour (NO_COLOR
    // stays here), and what we type is echoed by the remote tty.
    assert!(
        tty.text()
            .contains("\x1b[33m⚠ FORCE UNLOCK - This is dangerous!"),
        "{:?}",
        tty.text()
    );
    tty.send(b"yes\r");
    let st = tty.wait(Duration::from_secs(15));
    assert_eq!(st.code(), Some(0), "{}", tty.text());
    let text = tty.text();
    assert!(text.contains(&format!("{PROMPT}yes\r\n")), "{text:?}");
    assert!(text.contains("Lock forcefully released"), "{text:?}");
    assert!(!w.lock_path("staging").exists());

    // On a terminal the remote script prints no marker: the code tells.
    let gone = w.tmp.path().join("gone");
    let mut tty = unlock_remote(&c, &w, ssh, &gone, &["staging"])
        .env("NO_COLOR", "1")
        .spawn_pty();
    let st = tty.wait(Duration::from_secs(15));
    assert_eq!(st.code(), Some(1), "{}", tty.text());
    assert_eq!(
        tty.text(),
        format!(
            "ERROR: no checkout at {} on 127.0.0.1: pass the server's checkout with --remote-dir DIR\r\n",
            gone.display()
        )
    );
}

#[test]
fn ctrl_c_on_a_remote_tty_ends_the_wait_like_a_local_one() {
    let Some(ssh) = sshd::shared("ctrl_c_on_a_remote_tty_ends_the_wait_like_a_local_one") else {
        return;
    };
    let (w, c) = (World::new(), World::new());
    let deploy = held_by_live(&w);
    let mut tty = unlock_remote(&c, &w, ssh, &w.root, &["staging", "--wait"])
        .env("NO_COLOR", "1")
        .spawn_pty();
    tty.expect("Waiting... 0m 0s", Duration::from_secs(15));
    tty.send(b"\x03");
    let st = tty.wait(Duration::from_secs(15));
    stop(deploy);
    // The remote wait died of SIGINT: 130, and no ssh error on top.
    assert_eq!(st.code(), Some(130), "{}", tty.text());
    assert!(!tty.text().contains("ERROR"), "{:?}", tty.text());
    assert!(w.lock_path("staging").exists());
}

/// The age rule of `same_as_local`: a remote run between two local ones may
/// show any age between theirs, in the block and in the JSON alike, and
/// nothing else may differ.
#[test]
fn ages_between_the_local_runs_are_the_same_output() {
    let block = |s: u32| format!("Locked: true\n  Lock age: 3m {s}s\n");
    let json = |s: u32| format!("{{\n  \"age_seconds\": {s},\n  \"stale\": false\n}}\n");
    assert!(ages_between(&block(19), &block(18), &block(20)));
    assert!(ages_between(&json(199), &json(198), &json(200)));
    assert!(!ages_between(&json(201), &json(198), &json(200)));
    assert!(!ages_between(&block(17), &block(18), &block(20)));
    assert!(!ages_between(
        &json(199).replace("false", "true"),
        &json(198),
        &json(200)
    ));
}
