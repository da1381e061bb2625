//! A reader that went away, and a signal while waiting for a held guard.

use std::fs;
use std::time::{Duration, Instant};

use crate::harness::*;

/// `status | head -1` where head exits first: a broken pipe ends the output
/// quietly (all output goes through `writeln!` with `?`; it once panicked in
/// `print!`, SIGABRT in the release build).
#[test]
fn status_into_a_closed_pipe_exits_quietly() {
    let w = World::new();
    for args in [&["status", "staging", "--json"][..], &["status", "staging"]] {
        // stdout is a pipe whose reader is already gone.
        let (r, wr) = nix::unistd::pipe().unwrap();
        drop(r);
        let mut c = w.deploy_lock(args);
        c.cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::from(wr))
            .stderr(std::process::Stdio::piped());
        let out = c.cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(
            out.status.code().is_some()
                || std::os::unix::process::ExitStatusExt::signal(&out.status)
                    == Some(nix::libc::SIGPIPE),
            "{args:?}: {:?}",
            out.status
        );
    }
}

/// Anyone who can open the guard file (world-readable in /tmp) can flock it
/// and hold it. `run` waits for it with INT and TERM blocked for its
/// signalfd, so the wait itself must notice a signal: it ends 128+N without
/// starting anything (README), instead of only when the holder lets go.
fn libc_sigint() -> u32 {
    nix::sys::signal::Signal::SIGINT as u32
}

#[test]
fn a_signal_ends_a_run_that_waits_for_a_held_guard() {
    let w = World::new();
    let guard_path = w.locks.join("togather-deploy-staging.guard");
    let guard = fs::File::create(&guard_path).unwrap();
    guard.lock().unwrap();
    let marker = w.tmp.path().join("ran");
    let child = w
        .deploy_lock(&["run", "staging", "--", "touch", marker.to_str().unwrap()])
        .spawn();
    let pid = child.id() as i32;
    // Waiting for our flock with its signals blocked (so SIGINT cannot kill
    // it by default action: it must notice it), and still not started.
    wait_until(Duration::from_secs(20), "run to block its signals", || {
        fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|st| {
            st.lines()
                .find_map(|l| l.strip_prefix("SigBlk:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .is_some_and(|mask| mask & (1 << (libc_sigint() - 1)) != 0)
        })
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut child = child;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(guard);
    let Some(status) = status else {
        let late = child.wait().unwrap();
        panic!(
            "SIGINT did not end run within 5 s; it ended ({late:?}) only once the guard was let go"
        );
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(!marker.exists());
}
