//! Regression tests for issue 12 (part B): short refusals that keep the
//! user's command, signal deaths while waiting, timeouts on stderr, the
//! audit trail as `deploy-lock log`, remote commands against a server that
//! has nothing but its checkout, and man pages that render cleanly.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;

use crate::harness::*;
use crate::remote::{
    DEPLOY_ARGV, argv, assert_server_refusal, client_with_recording_deploy, deploy_lock_remote,
    held_by_live, one_line, remote_deploy, same_as_local, server_refusals, stop,
};
use crate::sshd::{self, TARGET};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The refusal of a run against a live holder, shorthand and `run -- CMD`:
/// at most 6 lines, the retry being the user's own words with `--wait`.
#[test]
fn issue_12_refusals_are_short_and_keep_the_users_command() {
    let w = World::new();
    w.script(
        "deploy/scripts/deploy.sh",
        "#!/bin/sh\necho deploy.sh ran\n",
    );
    let (holder, probe, pid) = hold_lock(&w, "holder");
    let at = epoch(w.state_json()["lock"]["locked_at"].as_str().unwrap());
    let by = w.state_json()["lock"]["locked_by"]
        .as_str()
        .unwrap()
        .to_string();
    for (args, retry) in [
        (
            &["run", "staging", "--", "make", "deploy"][..],
            "deploy-lock run --wait staging -- make deploy",
        ),
        (
            &["staging", "--branch", "hotfix"],
            "deploy-lock --wait staging --branch hotfix",
        ),
        (
            &["--lock-dir", s(&w.locks), "staging", "--dry-run"],
            &*format!(
                "deploy-lock --lock-dir {} --wait staging --dry-run",
                s(&w.locks)
            ),
        ),
    ] {
        let before = now();
        let out = w.deploy_lock(args).run();
        let wants = per_second(before, now(), |t| {
            live_refusal(&by, at, t, "sig-child.sh", pid, retry, true)
        });
        out.code(75).stdout("").stderr_one_of(&wants);
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert!(lines.len() <= 6, "{}", out.stderr);
        let age = |t: i64| format!("({}m {}s ago).", (t - at) / 60, (t - at) % 60);
        let first = format!("ERROR: the staging lock is held by {by} since {} ", iso(at));
        assert!(
            lines[0].starts_with(&first)
                && (lines[0].ends_with(&age(now())) || lines[0].ends_with(&age(now() - 1))),
            "{}",
            out.stderr
        );
        assert_eq!(
            lines[1..].join("\n"),
            format!(
                "Running on this host: sig-child.sh (pid {pid}); a running holder's lock is never taken over.\n  \
                 wait for it:      {retry}\n  \
                 details:          deploy-lock status staging\n  \
                 or stop it:       kill {pid}"
            ),
            "{args:?}"
        );
        // The suggested command works: it waits (here, until a deadline).
        assert!(!out.stderr.contains("Deployment Lock Status"));
    }
    probe.send("exit 0");
    finish(holder).code(0);
}

/// Someone else's process (another uid) is not ours to kill: no `kill`.
#[test]
fn issue_12_kill_is_suggested_only_for_the_callers_own_holder() {
    let w = World::new();
    if !nix::unistd::geteuid().is_root() {
        return skipping(
            "issue_12_kill_is_suggested_only_for_the_callers_own_holder",
            "not root (needs a process of another uid)",
        );
    }
    // A process of uid 65534 (nobody), recorded as the holder.
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "sleep",
        "60",
    ]);
    let other = KillOnDrop(c.spawn().unwrap());
    let pid = other.pid();
    wait_until(PATIENCE, "sleep to start", || {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "sleep\n")
    });
    let at = now() - 60;
    w.legacy_lock("staging", at);
    w.legacy_state("staging", at, &pid.to_string(), &hostname());
    let before = now();
    let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    let wants = per_second(before, now(), |t| {
        live_refusal(
            "deploy@localhost",
            at,
            t,
            "sleep",
            pid,
            "deploy-lock run --wait staging -- true",
            false,
        )
    });
    out.code(75).stdout("").stderr_one_of(&wants);
    assert!(!out.stderr.contains("kill"), "{}", out.stderr);
    assert!(
        out.stderr.ends_with(
            "  wait for it:      deploy-lock run --wait staging -- true\n  \
             details:          deploy-lock status staging\n"
        ),
        "{}",
        out.stderr
    );
}

/// `run --wait 5 staging` is refused naming `--wait=5`; `--wait=5` works.
#[test]
fn issue_12_wait_with_a_separate_number_names_the_spelling_that_works() {
    let w = World::new();
    let want = "ERROR: --wait takes its seconds after '=': write --wait=5 (a separate '5' would be read as the environment or a deploy.sh argument)\n";
    for args in [
        &["run", "--wait", "5", "staging", "--", "true"][..],
        &["--wait", "5", "staging"],
        &["staging", "--wait", "5"],
    ] {
        w.deploy_lock(args).run().code(2).stdout("").stderr(want);
    }
    w.deploy_lock(&["run", "--wait=5", "staging", "--", "true"])
        .run()
        .code(0)
        .stdout("")
        .stderr("");
}

/// Reads the child's stdout until `needle` shows (the wait is set up).
fn read_until(child: &mut std::process::Child, needle: &str) -> String {
    let mut got = String::new();
    let out = child.stdout.as_mut().unwrap();
    let mut buf = [0u8; 256];
    while !got.contains(needle) {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "ended before {needle:?}: {got}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    got
}

/// SIGINT while `wait` or `run --wait` waits: the parent sees a death by
/// SIGINT (as with flock(1)), not an exit status, so a calling script stops.
#[test]
fn issue_12_sigint_while_waiting_is_a_signal_death() {
    let w = World::new();
    let (holder, probe, _) = hold_lock(&w, "holder");
    let marker = w.tmp.path().join("ran");
    // wait: once its header is out it is waiting.
    let mut waiter = w
        .deploy_lock(&["wait", "staging"])
        .env("DEPLOY_LOCK_WAIT_INTERVAL", "60")
        .spawn_guarded();
    read_until(&mut waiter.0, "Press Ctrl+C to cancel\n");
    send_signal(waiter.pid(), Signal::SIGINT);
    let out = finish(waiter);
    assert_eq!((out.code, out.signal), (None, Some(2)), "{out:?}");
    out.any_code().stderr("");
    // run --wait: once INT is blocked, it is read from the signalfd.
    let runner = w
        .deploy_lock(&["run", "--wait", "staging", "--", "touch", s(&marker)])
        .spawn_guarded();
    let rpid = runner.pid();
    wait_until(PATIENCE, "run --wait to block INT", || {
        blocked_signals(rpid) & (1 << (Signal::SIGINT as i32 - 1)) != 0
    });
    send_signal(rpid, Signal::SIGINT);
    let out = finish(runner);
    assert_eq!((out.code, out.signal), (None, Some(2)), "{out:?}");
    out.any_code().stdout("").stderr_after_waiting("");
    assert!(!marker.exists());
    // A script sees the signal death (`set -m`: a background job of a
    // script without job control starts with INT ignored, and an ignored
    // signal is left ignored).
    let mut sh = w.cmd("bash").env("BIN", BIN).env("MARK", &marker);
    sh.cmd.args([
        "-c",
        "set -m; \"$BIN\" run --wait staging -- touch \"$MARK\" & p=$!; \
         while ! grep -q '^SigBlk:.*[2367abef]$' /proc/$p/status 2>/dev/null; do sleep 0.01; done; \
         kill -INT $p; wait $p; echo \"status $?\"",
    ]);
    let out = sh.run();
    out.stdout("status 130\n").any_stderr(); // bash's own job notice
    assert!(out.stderr.contains("Interrupt"), "{}", out.stderr);
    probe.send("exit 0");
    finish(holder).code(0);
}

/// Timeouts are said on stderr by every command (run --wait, wait).
#[test]
fn issue_12_timeouts_go_to_stderr() {
    let w = World::new();
    let (holder, probe, cmd) = hold_lock(&w, "holder");
    let run_pid = holder.pid();
    // Issue 21: off a terminal, one progress line per interval first.
    w.deploy_lock(&["run", "--wait=0.2", "staging", "--", "true"])
        .env("DEPLOY_LOCK_WAIT_INTERVAL", "60")
        .run()
        .code(124)
        .stdout("")
        .stderr(&format!(
            "Waiting for the staging lock (held by a deploy-lock run's command, pid {cmd}, under deploy-lock pid {run_pid})... 0m 0s\n\
             ERROR: gave up after 0.2 seconds waiting for the staging lock (held by a deploy-lock run's command, pid {cmd}, under deploy-lock pid {run_pid})\n"
        ));
    let out = w
        .deploy_lock(&["wait", "staging", "--wait-timeout=0.2"])
        .env("DEPLOY_LOCK_WAIT_INTERVAL", "60")
        .run();
    out.code(124).stderr(
        "ERROR: gave up after 0.2 seconds waiting for the staging lock (it is still held; if its deployment crashed: deploy-lock unlock staging)\n",
    );
    assert!(!out.stdout.contains("Timeout"), "{}", out.stdout);
    probe.send("exit 0");
    finish(holder).code(0);
}

/// `log` after several runs, a forced unlock and a damaged line.
#[test]
fn issue_12_log_shows_the_trail_with_damage_marked() {
    let w = World::new();
    for code in ["0", "3"] {
        w.deploy_lock(&["run", "staging", "--", "sh", "-c", &format!("exit {code}")])
            .run()
            .code(code.parse().unwrap());
    }
    w.deploy_lock(&["run", "production", "--", "true"])
        .run()
        .code(0);
    let log = w.audit_log_path();
    let mut text = fs::read_to_string(&log).unwrap();
    text.push_str("{\"time\": \"half a line\n");
    fs::write(&log, &text).unwrap();
    // A crashed deploy's lock, force-unlocked.
    let dead = reaped_pid();
    let at = now() - 60;
    w.legacy_lock("staging", at);
    w.legacy_state("staging", at, &dead.to_string(), "deadhost");
    w.deploy_lock(&["unlock", "staging", "--yes"]).run().code(0);

    let out = w.deploy_lock(&["log"]).run();
    out.code(0).stderr("");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{}", out.stdout);
    let host = hostname();
    let field = |l: &str, i: usize| {
        l.split("  ")
            .filter(|f| !f.is_empty())
            .nth(i)
            .map(str::trim)
            .map(String::from)
    };
    let kinds: Vec<String> = lines.iter().filter_map(|l| field(l, 2)).collect();
    assert_eq!(
        kinds[..5].to_vec(),
        ["acquire", "release", "acquire", "release", "acquire"]
    );
    assert!(
        lines[1].contains(&format!("tester@{host} (pid ")),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("  dep_"), "{}", lines[1]);
    // How the run ended and what was typed, on its release.
    assert!(
        ["0m 0s", "0m 1s"]
            .iter()
            .any(|held| lines[1].ends_with(&format!(
                "  held {held}  exit 0  $ {BIN} run staging -- sh -c 'exit 0'"
            ))),
        "{}",
        lines[1]
    );
    assert!(
        lines[3].contains("  exit 3  $ ") && lines[3].ends_with(" sh -c 'exit 3'"),
        "{}",
        lines[3]
    );
    assert!(
        lines[4].contains("  production   acquire  "),
        "{}",
        lines[4]
    );
    assert_eq!(
        lines[6],
        "line 7: damaged (not JSON (EOF while parsing a string at line 1 column 21)): {\"time\": \"half a line"
    );
    assert!(
        lines[7].contains("  staging      force_unlock     tester@")
            && lines[7].ends_with(&format!(
                "removed deploy@localhost (pid {dead})  $ {BIN} unlock staging --yes"
            )),
        "{}",
        lines[7]
    );

    // Filters: one environment, the last N, since a while ago; JSON lines.
    let out = w.deploy_lock(&["log", "production"]).run();
    out.code(0).stderr("");
    assert_eq!(out.stdout.lines().count(), 3, "{}", out.stdout); // 2 events + damage
    let out = w.deploy_lock(&["log", "-n", "2", "--json"]).run();
    out.code(0).stderr("");
    let rows: Vec<serde_json::Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["damaged"], true);
    assert_eq!(rows[0]["line"], 7);
    assert_eq!(rows[1]["event"], "force_unlock");
    let out = w.deploy_lock(&["log", "--since", "1h", "staging"]).run();
    out.code(0).stderr("");
    assert_eq!(out.stdout.lines().count(), 6);
    w.deploy_lock(&["log", "--since", "2000-01-01T00:00:00Z"])
        .run()
        .code(0);
    // A bad --since: one line naming the value and the forms, exit 2.
    w.deploy_lock(&["log", "--since", "yesterday"])
        .run()
        .code(2)
        .stdout("")
        .stderr("ERROR: invalid --since 'yesterday': give a duration back from now (90s, 30m, 2h, 1d, '1h 30m') or a UTC time (2026-02-03T20:00:00Z)\n");
    // No log yet: nothing on stdout, where it looked on stderr. Works from
    // outside any checkout.
    let fresh = World::new();
    fresh
        .deploy_lock(&["log"])
        .dir("/")
        .run()
        .code(0)
        .stdout("")
        .stderr(&format!(
            "no matching events in {}/.togather/logs/deployments/locks.log\n",
            fresh.home.display()
        ));
}

/// Every man page renders with `man -l` without a stray backslash.
#[test]
fn issue_12_man_pages_render_without_backslashes() {
    if sshd::which("man").is_none() {
        return skipping(
            "issue_12_man_pages_render_without_backslashes",
            "man is not installed (apt-get install man-db)",
        );
    }
    // `| col -b` where col is installed; the overstrikes are undone here too.
    let col = if sshd::which("col").is_some() {
        "| col -b"
    } else {
        ""
    };
    let man = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut pages: Vec<_> = fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    for page in pages {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("man -l \"$1\" {col}"))
            .arg("sh")
            .arg(&page)
            .env("MANWIDTH", "80")
            .env("LC_ALL", "C.UTF-8")
            .env_remove("MAN_KEEP_FORMATTING")
            .output()
            .unwrap();
        let mut text = String::new();
        for c in String::from_utf8_lossy(&out.stdout).chars() {
            if c == '\u{8}' {
                text.pop();
            } else {
                text.push(c);
            }
        }
        assert!(
            out.status.success() && !text.is_empty(),
            "{}",
            page.display()
        );
        assert!(
            !text.contains('\\'),
            "{} renders a backslash:\n{}",
            page.display(),
            text.lines()
                .filter(|l| l.contains('\\'))
                .collect::<Vec<_>>()
                .join("\n")
        );
        if page.file_name().unwrap() != "unlock.sh.1" {
            assert!(text.contains("deploy-lock("), "{}", page.display());
        }
    }
}

/// A server with no deploy-lock on its PATH whose checkout has only
/// `deploy/scripts/unlock.sh` linked to deploy-lock: status, wait, unlock and
/// the check before a remote deploy run it as deploy-lock.
#[test]
fn issue_12_remote_with_only_a_deploy_lock_link_in_the_checkout() {
    let name = "issue_12_remote_with_only_a_deploy_lock_link_in_the_checkout";
    if let Some(why) = sshd::missing() {
        return sshd::skip(name, &why);
    }
    if Path::new("/usr/local/bin/deploy-lock").exists() {
        return sshd::skip(name, "/usr/local/bin/deploy-lock exists");
    }
    let bare = sshd::own(false);
    let (w, c) = (World::new(), World::new());
    assert!(
        fs::symlink_metadata(w.root.join("deploy/scripts/unlock.sh"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    same_as_local(
        || w.deploy_lock(&["status", "staging", "--json"]),
        deploy_lock_remote(&c, &w, &bare, &w.root, &["status", "staging", "--json"]),
        b"",
    );
    let deploy = held_by_live(&w);
    same_as_local(
        || w.deploy_lock(&["status", "staging"]),
        deploy_lock_remote(&c, &w, &bare, &w.root, &["status", "staging"]),
        b"",
    );
    same_as_local(
        || {
            w.deploy_lock(&["wait", "staging"])
                .env("DEPLOY_LOCK_WAIT_TIMEOUT", "0.3")
                .env("DEPLOY_LOCK_WAIT_INTERVAL", "60")
        },
        deploy_lock_remote(&c, &w, &bare, &w.root, &["wait", "staging"])
            .env("DEPLOY_LOCK_WAIT_TIMEOUT", "0.3")
            .env("DEPLOY_LOCK_WAIT_INTERVAL", "60"),
        b"",
    );
    let client = client_with_recording_deploy();
    let before = now();
    let out = remote_deploy(&client, &w, &bare, &["--dry-run"]).run();
    let wants = server_refusals(&w, deploy.id(), before, now());
    out.stderr_one_of(&wants);
    assert_server_refusal(&out, &w, deploy.id(), &["--dry-run"]);
    assert_eq!(argv(&client), None);
    stop(deploy);
    let out = deploy_lock_remote(&c, &w, &bare, &w.root, &["unlock", "staging", "--yes"]).run();
    out.code(0);
    assert!(
        out.stdout.contains("✓ Lock forcefully released\n"),
        "{}",
        out.stdout
    );
    assert!(!w.lock_path("staging").exists());
    remote_deploy(&client, &w, &bare, &["--dry-run"])
        .run()
        .code(0)
        .stdout("deploy.sh ran\n")
        .stderr("");
    assert_eq!(argv(&client).as_deref(), Some(DEPLOY_ARGV));
}

/// The same server whose checkout has only the legacy bash unlock.sh (the
/// fixture): its status block is read back into text, JSON and verdicts;
/// wait runs its --wait, unlock its --force with the answer passed on.
#[test]
fn issue_12_remote_with_only_the_legacy_unlock_sh() {
    let name = "issue_12_remote_with_only_the_legacy_unlock_sh";
    if let Some(why) = sshd::missing() {
        return sshd::skip(name, &why);
    }
    if Path::new("/usr/local/bin/deploy-lock").exists() {
        return sshd::skip(name, "/usr/local/bin/deploy-lock exists");
    }
    if sshd::which("jq").is_none() {
        return sshd::skip(name, "jq is not installed (the legacy unlock.sh needs it)");
    }
    let bare = sshd::own(false);
    let (w, c) = (World::new(), World::new());
    fs::remove_file(w.root.join("deploy/scripts/unlock.sh")).unwrap();
    w.install_fixture("legacy-unlock.sh", "deploy/scripts/unlock.sh");
    let remote = |args: &[&str]| deploy_lock_remote(&c, &w, &bare, &w.root, args);
    let verdict_line =
        format!("Verdict: free (read from the legacy unlock.sh status block on {TARGET})\n");

    // Free: the block as the binary prints it, then where it was read.
    let local = w.deploy_lock(&["status", "staging"]).run();
    let block = local.stdout.rsplit_once("Verdict: ").unwrap().0.to_string();
    remote(&["status", "staging"])
        .run()
        .code(0)
        .stderr("")
        .stdout(&format!("{block}{verdict_line}"));
    let out = remote(&["status", "staging", "--json"]).run();
    out.code(0).stderr("");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["verdict"], "free");
    assert_eq!(v["read_from"], "legacy unlock.sh");
    assert_eq!(v["locked"], false);

    // Held by a live deploy: the verdict and holder from the block.
    let deploy = held_by_live(&w);
    let out = remote(&["status", "staging", "--json"]).run();
    out.code(0).stderr("");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let local: serde_json::Value =
        serde_json::from_str(&w.deploy_lock(&["status", "staging", "--json"]).run().stdout)
            .unwrap();
    for key in ["verdict", "locked", "lock_dir", "holder_alive", "stale"] {
        assert_eq!(v[key], local[key], "{key}: {v}");
    }
    for key in ["locked_by", "locked_at", "deployment_id", "pid", "hostname"] {
        assert_eq!(v["holder"][key], local["holder"][key], "{key}: {v}");
    }
    assert_eq!(v["verdict"], "held");
    // The check before a remote deploy refuses, showing the block.
    let client = client_with_recording_deploy();
    let before = now();
    let out = remote_deploy(&client, &w, &bare, &["--dry-run"]).run();
    let wants = server_refusals(&w, deploy.id(), before, now());
    out.stderr_one_of(&wants);
    assert_server_refusal(&out, &w, deploy.id(), &["--dry-run"]);
    assert_eq!(argv(&client), None);
    // unlock --id cannot be checked by the legacy script: refused, unchanged.
    let out = remote(&["unlock", "staging", "--yes", "--id", "lock_x"]).run();
    one_line(
        &out,
        74,
        &format!(
            "127.0.0.1 has only the legacy {d}/deploy/scripts/unlock.sh, which cannot check a lock id: unlock without --id (the status is shown before the question), or install deploy-lock there (./install.sh --project {d})",
            d = w.root.display()
        ),
    );
    assert!(w.lock_path("staging").exists());

    // wait: the legacy --wait, until the deploy's lock goes.
    let mut waiter = remote(&["wait", "staging"])
        .env("DEPLOY_LOCK_WAIT_INTERVAL", "0.1")
        .spawn_guarded();
    // The legacy --wait prints this after its status block, before its
    // first look at the lock directory.
    waiter.stdout_until("Waiting for deployment to complete...\n");
    stop(deploy);
    fs::remove_dir_all(w.lock_path("staging")).unwrap();
    let out = finish(waiter);
    out.code(0);
    assert!(out.stdout.contains("Lock released!"), "{}", out.stdout);

    // unlock --yes: the legacy --force, answered yes.
    let dead = reaped_pid();
    w.legacy_lock("staging", now() - 60);
    w.legacy_state("staging", now() - 60, &dead.to_string(), &hostname());
    let out = remote(&["unlock", "staging", "--yes"]).run();
    out.code(0);
    assert!(
        out.stdout.contains("Lock forcefully released"),
        "{}",
        out.stdout
    );
    assert!(!w.lock_path("staging").exists());
    assert_eq!(w.state_json()["lock"]["locked"], false);
    // Free again: the remote deploy goes ahead.
    remote_deploy(&client, &w, &bare, &["--dry-run"])
        .run()
        .code(0)
        .stdout("deploy.sh ran\n")
        .stderr("");
}

/// `unlock.sh --help` lists every flag its man page does; the usage alone
/// (no environment, exit 1) stays the legacy's.
#[test]
fn issue_12_unlock_sh_help_lists_every_flag_of_its_man_page() {
    let w = World::new();
    let flags = crate::completions::man_flags("unlock.sh.1");
    assert!(flags.contains("--remote-dir"), "{flags:?}");
    let help = w.unlock_sh(&["--help"]).run();
    help.code(0);
    for flag in &flags {
        assert!(
            help.stdout.contains(flag.as_str()),
            "unlock.sh --help lacks {flag}"
        );
    }
    let usage = w.unlock_sh(&[]).run();
    usage.code(1);
    assert!(!usage.stdout.contains("--remote"));
    assert!(help.stdout.starts_with(&usage.stdout));
}
