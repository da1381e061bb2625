//! Signals under `deploy-lock run`, with real processes and a real pty. The
//! command is tests/fixtures/sig-child.sh, a bash script that appends the
//! name of every signal it receives to a file and says when its traps are
//! set. A signal that arrives twice shows as a repeated line: after each
//! signal the test waits for its line before sending the next, and the last
//! one works as a barrier for any repeat of the ones before.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;

use nix::sys::signal::Signal;

use crate::harness::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn status_json(w: &World) -> serde_json::Value {
    let out = w.deploy_lock(&["status", "staging", "--json"]).run();
    out.code(0);
    serde_json::from_str(&out.stdout).unwrap()
}

/// The mask bit of `sig` in /proc/PID/status's SigBlk and SigIgn.
fn bit(sig: Signal) -> u64 {
    1 << (sig as i32 - 1)
}

#[test]
fn term_from_a_process_in_the_same_group_reaches_the_command_once_and_the_lock_outlives_its_handler()
 {
    let w = World::new();
    let script = sig_child(&w);
    let p = Probe::new(&w, "child");
    let lock = w.lock_path("staging");
    // Spawned the way a script's `deploy-lock ... &` is: in the test
    // process's own process group, which then sends the TERM (`kill $!`).
    let wrapper = w
        .deploy_lock(&["run", "staging", "--", s(&script), s(&p.dir)])
        .env("SIG_CHILD_TERM", "hold")
        .env("SIG_CHILD_LOCK", &lock)
        .spawn_guarded();
    let pid = p.wait_ready();
    wait_recorded(&w, pid);
    send_signal(wrapper.pid(), Signal::SIGTERM);
    assert_eq!(p.wait_lines(1), ["TERM"]);
    // The command's TERM handler is running: the lock is still held, by it.
    let v = status_json(&w);
    assert_eq!(v["verdict"], "held");
    assert_eq!(v["holder_alive"], true);
    assert_eq!(v["holder"]["pid"], pid);
    assert!(lock.is_dir());
    fs::write(p.path("go"), "").unwrap();
    finish(wrapper).code(42).stdout("").stderr("");
    assert_eq!(p.lines(), ["TERM", "lock held"]);
    assert_released(&w);
}

#[test]
fn signals_sent_to_the_wrapper_arrive_once_each_in_order() {
    let w = World::new();
    let script = sig_child(&w);
    let p = Probe::new(&w, "child");
    // Spawned the way an interactive shell starts a job: in a process group
    // of its own.
    let mut c = w.deploy_lock(&["run", "staging", "--", s(&script), s(&p.dir)]);
    c.cmd.process_group(0);
    let wrapper = c.spawn_guarded();
    p.wait_ready();
    use Signal::*;
    // The final HUP is the barrier for a repeated TERM.
    let sent = [
        SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT, SIGWINCH, SIGINT, SIGTERM, SIGHUP,
    ];
    for (i, sig) in sent.iter().enumerate() {
        send_signal(wrapper.pid(), *sig);
        p.wait_lines(i + 1);
    }
    p.send("exit 0");
    finish(wrapper).code(0).stdout("").stderr("");
    let names: Vec<String> = sent
        .iter()
        .map(|s| s.as_str().trim_start_matches("SIG").to_string())
        .collect();
    assert_eq!(p.lines(), names);
    assert_released(&w);
}

#[test]
fn a_signal_the_command_sends_to_its_own_group_is_not_sent_back_to_it() {
    let w = World::new();
    let script = sig_child(&w);
    let p = Probe::new(&w, "child");
    // Its own group: the command's `kill 0` must not reach this test.
    let mut c = w.deploy_lock(&["run", "staging", "--", s(&script), s(&p.dir)]);
    c.cmd.process_group(0);
    let wrapper = c.spawn_guarded();
    p.wait_ready();
    p.send("group USR1");
    p.wait_for("USR1");
    send_signal(wrapper.pid(), Signal::SIGUSR2);
    p.wait_for("USR2");
    p.send("exit 0");
    finish(wrapper).code(0);
    assert_eq!(p.lines(), ["USR1", "USR2"]);
}

#[test]
fn ctrl_c_typed_in_a_terminal_reaches_the_command_once() {
    let w = World::new();
    let script = sig_child(&w);
    let p = Probe::new(&w, "child");
    let mut pty = w
        .deploy_lock(&["run", "staging", "--", s(&script), s(&p.dir)])
        .spawn_pty();
    p.wait_ready();
    pty.send(b"\x03");
    p.wait_for("INT");
    send_signal(pty.child.id() as i32, Signal::SIGUSR1);
    p.wait_for("USR1");
    p.send("exit 0");
    assert_eq!(pty.wait(PATIENCE).code(), Some(0), "{}", pty.text());
    assert_eq!(p.lines(), ["INT", "USR1"]);
    assert_released(&w);
}

#[test]
fn a_command_killed_by_ctrl_c_takes_the_wrapper_down_with_sigint() {
    let w = World::new();
    let ready = w.tmp.path().join("ready");
    let mut pty = w
        .deploy_lock(&[
            "run",
            "staging",
            "--",
            "sh",
            "-c",
            "echo $$ > \"$0\"; exec sleep 600",
            s(&ready),
        ])
        .spawn_pty();
    wait_until(PATIENCE, "the command to start", || ready.exists());
    pty.send(b"\x03");
    let st = pty.wait(PATIENCE);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(Signal::SIGINT as i32), "{st:?}");
    assert_released(&w);
}

#[test]
fn an_interactive_command_reads_what_is_typed_in_the_terminal() {
    let w = World::new();
    let mut pty = w
        .deploy_lock(&[
            "run",
            "staging",
            "--",
            "bash",
            "-c",
            "read -r -p 'Proceed? ' answer; echo \"got <$answer>\"",
        ])
        .spawn_pty();
    pty.expect("Proceed? ", PATIENCE);
    pty.send(b"yes please\r");
    pty.expect("got <yes please>", PATIENCE);
    assert_eq!(pty.wait(PATIENCE).code(), Some(0), "{}", pty.text());
    assert_released(&w);
}

#[test]
fn a_sigkilled_wrapper_takes_its_command_down_and_the_lock_is_recoverable() {
    let w = World::new();
    let script = sig_child(&w);
    let p = Probe::new(&w, "child");
    // bash, made a child subreaper, stands in for an init that reaps
    // orphans: the command outlives the wrapper by its TERM handler.
    let body = format!(
        r#""{BIN}" run staging -- "{script}" "{dir}" & echo $! > "{dir}/wrapper"
wait
while [ ! -e "{dir}/done" ]; do sleep 0.02; done"#,
        script = script.display(),
        dir = p.dir.display()
    );
    let mut c = w.cmd("bash").env("SIG_CHILD_TERM", "exit");
    c.cmd.args(["-c", &body]);
    // SAFETY: prctl only, between fork and exec.
    unsafe {
        c.cmd
            .pre_exec(|| nix::sys::prctl::set_child_subreaper(true).map_err(std::io::Error::from));
    }
    let mut reaper = c.spawn_guarded();
    let pid = p.wait_ready();
    wait_recorded(&w, pid);
    let wrapper: i32 = fs::read_to_string(p.path("wrapper"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    send_signal(wrapper, Signal::SIGKILL);
    // PR_SET_PDEATHSIG: the command gets TERM; its handler exits.
    p.nudging("the command to be gone", || proc_state(pid).is_none());
    assert_eq!(p.lines(), ["TERM"]);

    // Left behind by a dead holder: young, so taken only with --force.
    let v = status_json(&w);
    assert_eq!(v["verdict"], "orphaned");
    assert_eq!(v["holder_alive"], false);
    let before = now();
    let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    let after = now();
    out.code(75).stdout("");
    assert!(
        out.stderr.contains(&format!(
            "Not running (pid {pid} is gone), but the lock is younger than 30 minutes"
        )),
        "{}",
        out.stderr
    );
    // Whole, one candidate per clock second the run spanned (the lock's age).
    let at = epoch(w.state_json()["lock"]["locked_at"].as_str().unwrap());
    let who = format!("tester@{}", hostname());
    out.stderr_one_of(&per_second(before, after, |t| {
        dead_young_refusal(&who, at, t, pid, "30 minutes")
    }));
    w.deploy_lock(&["run", "--force", "staging", "--", "true"])
        .run()
        .code(0)
        .stderr(&format!(
            "WARNING: took over the staging lock left by tester@{} (pid {pid}, not running)\n",
            hostname()
        ));
    assert_released(&w);
    fs::write(p.path("done"), "").unwrap();
    assert!(wait_exit(&mut reaper.0).success());
}

#[test]
fn term_while_waiting_for_the_lock_ends_by_term_and_never_runs_the_command() {
    let w = World::new();
    let (holder, hp, _) = hold_lock(&w, "holder");
    let marker = w.tmp.path().join("ran");
    let waiter = w
        .deploy_lock(&["run", "--wait", "staging", "--", "touch", s(&marker)])
        .spawn_guarded();
    let wpid = waiter.pid();
    // Once TERM is blocked it is read from the signalfd, not a default death.
    wait_until(PATIENCE, "the waiter to set up its signals", || {
        blocked_signals(wpid) & bit(Signal::SIGTERM) != 0
    });
    send_signal(wpid, Signal::SIGTERM);
    // Issue 12: ended by TERM itself (as flock(1)), so a calling script stops.
    let out = finish(waiter);
    assert_eq!((out.code, out.signal), (None, Some(15)), "{out:?}");
    out.any_code().stdout("").stderr_after_waiting("");
    assert!(!marker.exists());
    // The holder was not disturbed.
    assert_eq!(status_json(&w)["verdict"], "held");
    hp.send("exit 0");
    finish(holder).code(0);
    assert!(!marker.exists());
    assert_released(&w);
}

#[test]
fn a_terminal_resize_while_waiting_for_the_lock_does_not_end_the_wait() {
    let w = World::new();
    let (holder, hp, _) = hold_lock(&w, "holder");
    let marker = w.tmp.path().join("ran");
    let waiter = w
        .deploy_lock(&["run", "--wait", "staging", "--", "touch", s(&marker)])
        .spawn_guarded();
    let wpid = waiter.pid();
    wait_until(PATIENCE, "the waiter to set up its signals", || {
        blocked_signals(wpid) & bit(Signal::SIGWINCH) != 0
    });
    send_signal(wpid, Signal::SIGWINCH);
    hp.send("exit 0");
    finish(holder).code(0);
    finish(waiter).code(0).stdout("").stderr_after_waiting("");
    assert!(marker.exists());
    assert_released(&w);
}

#[test]
fn started_with_sigint_or_sigchld_ignored_the_status_still_passes_through() {
    let w = World::new();
    // INT ignored on entry (`nohup`, `&` in a script): it stays ignored, in
    // the wrapper and the command, and the status passes through.
    let ign_int = w.install_fixture("ignore-int.sh", "bin/ignore-int.sh");
    let mut c = w.cmd(&ign_int);
    c.cmd.args([
        BIN,
        "run",
        "staging",
        "--",
        "sh",
        "-c",
        "grep '^SigIgn:' /proc/self/status; exit 3",
    ]);
    let out = c.run();
    out.code(3).stderr("");
    let ign =
        u64::from_str_radix(out.stdout.trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
    assert_ne!(ign & bit(Signal::SIGINT), 0, "{}", out.stdout);
    assert_released(&w);

    // An INT sent to such a wrapper neither ends it nor reaches the command.
    let script = sig_child(&w);
    let p = Probe::new(&w, "child");
    let mut c = w.cmd(&ign_int);
    c.cmd
        .args([BIN, "run", "staging", "--", s(&script), s(&p.dir)])
        .process_group(0);
    let wrapper = c.spawn_guarded();
    p.wait_ready();
    send_signal(wrapper.pid(), Signal::SIGINT);
    send_signal(wrapper.pid(), Signal::SIGUSR1);
    p.wait_for("USR1");
    p.send("exit 6");
    finish(wrapper).code(6);
    assert_eq!(p.lines(), ["USR1"]);

    // SIGCHLD ignored on entry would make the kernel reap the command and
    // lose its status: the wrapper resets it.
    let ignore_chld = |c: &mut Cmd| {
        // SAFETY: signal(2) only, between fork and exec.
        unsafe {
            c.cmd.pre_exec(|| {
                nix::sys::signal::signal(Signal::SIGCHLD, nix::sys::signal::SigHandler::SigIgn)
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
    };
    let mut probe = w.cmd("grep");
    probe.cmd.args(["^SigIgn:", "/proc/self/status"]);
    ignore_chld(&mut probe);
    let out = probe.run();
    let ign =
        u64::from_str_radix(out.stdout.trim().trim_start_matches("SigIgn:").trim(), 16).unwrap();
    assert_ne!(
        ign & bit(Signal::SIGCHLD),
        0,
        "the setup works: {}",
        out.stdout
    );
    let mut c = w.deploy_lock(&[
        "run",
        "staging",
        "--",
        "sh",
        "-c",
        "(exit 4); echo sub=$?; exit 3",
    ]);
    ignore_chld(&mut c);
    c.run().code(3).stdout("sub=4\n").stderr("");
    let mut c = w.deploy_lock(&["run", "staging", "--", "sh", "-c", "kill -KILL $$"]);
    ignore_chld(&mut c);
    let out = c.run();
    out.any_code().any_stderr();
    assert!(
        out.signal == Some(9) || out.code == Some(137),
        "want death by SIGKILL or 137: {out:?}"
    );
    assert_released(&w);
}

#[test]
fn ctrl_z_under_an_interactive_bash_stops_both_and_fg_resumes_them() {
    let w = World::new();
    let script = sig_child(&w);
    let p = Probe::new(&w, "child");
    let mut c = w
        .cmd("bash")
        .env("PS1", "PROMPT$ ")
        .env("TERM", "dumb")
        .env("INPUTRC", "/dev/null");
    c.cmd.args(["--norc", "--noprofile", "-i"]);
    let mut pty = c.spawn_pty();
    pty.expect("PROMPT$ ", PATIENCE);
    pty.send(format!("'{BIN}' run staging -- '{}' '{}'\n", s(&script), s(&p.dir)).as_bytes());
    let pid = p.wait_ready();
    wait_recorded(&w, pid);
    let wrapper = w.state_json()["lock"]["holder_pid"].as_i64().unwrap() as i32;
    assert_ne!(wrapper, pid);

    pty.send(b"\x1a");
    pty.expect("Stopped", PATIENCE);
    wait_until(PATIENCE, "wrapper and command to be stopped", || {
        proc_state(pid) == Some('T') && proc_state(wrapper) == Some('T')
    });
    // Stopped, not dead: the lock is still theirs.
    assert_eq!(status_json(&w)["verdict"], "held");

    pty.send(b"fg\n");
    wait_until(PATIENCE, "wrapper and command to run again", || {
        !matches!(proc_state(pid), Some('T') | None)
            && !matches!(proc_state(wrapper), Some('T') | None)
    });
    // Both work again: a signal is relayed, and the command's status comes back.
    send_signal(wrapper, Signal::SIGUSR1);
    p.wait_for("USR1");
    p.send("exit 5");
    pty.send(b"echo \"status=$?\"\n");
    pty.expect("status=5", PATIENCE);
    pty.send(b"exit\n");
    pty.wait(PATIENCE);
    assert_eq!(p.lines(), ["USR1"]);
    assert_released(&w);
}
