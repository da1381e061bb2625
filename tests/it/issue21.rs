//! Issue 21: one decision rendered by every view, a CLI that behaves in CI,
//! and a suite that neither depends on nor leaks into the caller's process.

use std::fs;

use crate::harness::*;

/// SigIgn and SigBlk of a process's /proc status, as hex masks.
fn sig_masks(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap()
    };
    (field("SigIgn:"), field("SigBlk:"))
}

/// A harness command starts with no signal ignored or blocked, whatever the
/// test runner inherited (this test ignores INT and blocks USR1 in the
/// spawning thread to stand in for `nohup` or a CI runner), and in a
/// process group of its own.
#[test]
fn issue_21_harness_commands_start_with_default_signals_in_their_own_group() {
    let w = World::new();
    let out = std::thread::spawn(move || {
        use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, pthread_sigmask, signal};
        let mut usr1 = SigSet::empty();
        usr1.add(Signal::SIGUSR1);
        pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&usr1), None).unwrap();
        // SAFETY: SIG_IGN for a signal this process never relies on
        // receiving (restored at once below).
        let old = unsafe { signal(Signal::SIGURG, SigHandler::SigIgn) }.unwrap();
        let out = w
            .cmd("sh")
            .env("X", "1")
            .cmd
            .args([
                "-c",
                "cat /proc/self/status; echo pgid $(ps -o pgid= -p $$) pid $$",
            ])
            .output()
            .unwrap();
        unsafe { signal(Signal::SIGURG, old) }.unwrap();
        (out, w)
    })
    .join()
    .unwrap();
    let (out, _w) = out;
    let text = String::from_utf8(out.stdout).unwrap();
    // `cat` is the shell's child: it inherits what the shell started with.
    assert_eq!(sig_masks(&text), (0, 0), "{text}");
    let last = text.lines().last().unwrap();
    let words: Vec<&str> = last.split_whitespace().collect();
    assert_eq!(words[1], words[3], "{last}");
}

/// A world that ends (here by a panicking test) kills what its commands
/// left running, including a background job that moved to a session of
/// its own.
#[test]
fn issue_21_a_dropped_world_leaves_no_process_behind() {
    let w = World::new();
    let pidfile = w.tmp.path().join("pids");
    w.cmd("sh")
        .cmd
        .args([
            "-c",
            &format!(
                "sleep 600 & echo $! > {p}; setsid sleep 600 & echo $! >> {p}",
                p = pidfile.display()
            ),
        ])
        .status()
        .unwrap();
    let pids: Vec<i32> = fs::read_to_string(&pidfile)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    for &pid in &pids {
        assert!(proc_state(pid).is_some_and(|s| s != 'Z'), "{pid}");
    }
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _w = w;
        panic!("a failing test");
    }));
    assert!(dropped.is_err());
    for &pid in &pids {
        wait_until(PATIENCE, "the leftover sleep to be gone", || {
            proc_state(pid).is_none_or(|s| s == 'Z')
        });
    }
}
