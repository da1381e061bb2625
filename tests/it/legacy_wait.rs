//! `unlock.sh ENV --wait` and `deploy-lock wait ENV`: the header, the
//! progress lines (one per interval; rewritten in place on a terminal), the
//! release noticed at once, the timeout, and Ctrl-C.

use std::fs;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigHandler, Signal};

use crate::harness::*;

/// Every wait below uses a 60 s interval, so exactly one progress line shows
/// before the release or timeout the test causes.
const INTERVAL: &str = "60";

const WAIT_HEADER: &str = "Waiting for deployment to complete...\nPress Ctrl+C to cancel\n\n";

const TIMEOUT_TAIL: &str = "Waiting... 0m 0s\n\nTimeout after 0.3 seconds. Lock still exists.\nConsider using --force if deployment crashed.\n";

/// The status block for a lock directory and no state file (all fixed text).
fn held_block(w: &World, env: &str) -> String {
    let p = w.lock_path(env);
    format!(
        "Deployment Lock Status: {env}\n============================================\nLock directory exists: {}\n{}\n\nState file not found: {}\n\n",
        p.display(),
        real_ls_ld(&p, "UTC"),
        w.state_path().display()
    )
}

fn free_block(w: &World, env: &str) -> String {
    format!(
        "Deployment Lock Status: {env}\n============================================\nLock directory: Not found (unlocked)\n\nState file not found: {}\n\n",
        w.state_path().display()
    )
}

/// The legacy deploy.sh releasing its lock.
fn release(w: &World, env: &str) {
    let p = w.lock_path(env);
    fs::remove_file(p.join("locked_at")).unwrap();
    fs::remove_dir(&p).unwrap();
}

/// A waiter on pipes whose stdout is read as it comes, so the test can act
/// when a given line has been printed.
struct Waiter {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    reader: Option<JoinHandle<()>>,
}

impl Waiter {
    fn spawn(cmd: Cmd) -> Waiter {
        let mut child = cmd.spawn();
        let mut stdout = child.stdout.take().unwrap();
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match stdout.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
        });
        Waiter {
            child,
            out,
            reader: Some(reader),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    #[track_caller]
    fn wait_for_output(&mut self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.text().contains(needle) {
            if Instant::now() > deadline || self.child.try_wait().unwrap().is_some() {
                let _ = self.child.kill();
                panic!("waiter never printed {needle:?}; printed:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for the exit, at most `limit` (a generous bound: a waiter that
    /// fails to wake is killed and the test fails instead of hanging).
    #[track_caller]
    fn finish(mut self, limit: Duration) -> Out {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "waiter still running {limit:?} later; printed:\n{}",
                    self.text()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        self.reader.take().unwrap().join().unwrap();
        let mut stderr = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        Out::new(self.text(), stderr, status.code(), status.signal())
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

const PERSONAS: [&str; 2] = ["unlock.sh", "deploy-lock"];

/// The waiter as each persona is typed (`unlock.sh staging --wait` with the
/// interval from the variable, `deploy-lock wait staging` from the flag).
fn waiter(w: &World, persona: &str) -> Cmd {
    match persona {
        "unlock.sh" => w
            .unlock_sh(&["staging", "--wait"])
            .env("DEPLOY_LOCK_WAIT_INTERVAL", INTERVAL),
        _ => w.deploy_lock(&["wait", "staging", "--wait-interval", INTERVAL]),
    }
}

#[test]
fn released_mid_wait_is_noticed_at_once() {
    for persona in PERSONAS {
        let w = World::new();
        w.legacy_lock("staging", now() - 30);
        let block = held_block(&w, "staging");
        let mut waiter = Waiter::spawn(waiter(&w, persona));
        waiter.wait_for_output("Waiting... 0m 0s\n");
        release(&w, "staging");
        // The interval is 60 s: only the release wakes it within 5 s.
        let out = waiter.finish(Duration::from_secs(5));
        out.code(0).stderr("").stdout(&format!(
            "{block}{WAIT_HEADER}Waiting... 0m 0s\n✓ Lock released!\n"
        ));
        assert!(!w.lock_path("staging").exists(), "{persona}");
    }
}

/// The removal itself is the release (an inotify event on the lock's folder),
/// even if the next deploy has re-created the directory before the waiter
/// looks again.
#[test]
fn a_release_counts_even_when_the_next_deploy_relocks_at_once() {
    let w = World::new();
    w.legacy_lock("staging", now() - 30);
    let block = held_block(&w, "staging");
    let mut waiter = Waiter::spawn(
        w.unlock_sh(&["staging", "wait"])
            .env("DEPLOY_LOCK_WAIT_INTERVAL", INTERVAL),
    );
    waiter.wait_for_output("Waiting... 0m 0s\n");
    release(&w, "staging");
    w.legacy_lock("staging", now());
    waiter
        .finish(Duration::from_secs(5))
        .code(0)
        .stderr("")
        .stdout(&format!(
            "{block}{WAIT_HEADER}Waiting... 0m 0s\n✓ Lock released!\n"
        ));
}

#[test]
fn timeout_message_and_exit_codes() {
    let w = World::new();
    w.legacy_lock("staging", now() - 30);
    let block = held_block(&w, "staging");
    let want = format!("{block}{WAIT_HEADER}{TIMEOUT_TAIL}");
    w.unlock_sh(&["staging", "--wait"])
        .env("DEPLOY_LOCK_WAIT_INTERVAL", INTERVAL)
        .env("DEPLOY_LOCK_WAIT_TIMEOUT", "0.3")
        .run()
        .code(1)
        .stderr("")
        .stdout(&want);
    // deploy-lock: GNU timeout's 124, by variables or by flags; the timeout
    // is said on stderr (issue 12), stdout keeps the status and progress.
    let modern_out = format!("{block}{WAIT_HEADER}Waiting... 0m 0s\n");
    let modern_err = "ERROR: gave up after 0.3 seconds waiting for the staging lock (it is still held; if its deployment crashed: deploy-lock unlock staging)\n";
    w.deploy_lock(&["wait", "staging"])
        .env("DEPLOY_LOCK_WAIT_INTERVAL", INTERVAL)
        .env("DEPLOY_LOCK_WAIT_TIMEOUT", "0.3")
        .run()
        .code(124)
        .stderr(modern_err)
        .stdout(&modern_out);
    w.deploy_lock(&[
        "wait",
        "staging",
        "--wait-interval",
        INTERVAL,
        "--wait-timeout",
        "0.3",
    ])
    .run()
    .code(124)
    .stderr(modern_err)
    .stdout(&modern_out);
    // A timeout leaves the lock alone.
    assert!(w.lock_path("staging").join("locked_at").exists());
}

#[test]
fn no_lock_at_start_is_released_at_once() {
    let w = World::new();
    let want = format!(
        "{}{WAIT_HEADER}✓ Lock released!\n",
        free_block(&w, "staging")
    );
    // Issue 21: deploy-lock says it in one line.
    let modern = format!(
        "The staging lock is free (no lock directory at {}); nothing to wait for.\n",
        w.lock_path("staging").display()
    );
    for persona in PERSONAS {
        // Default one-hour timeout: any wait at all would show as a hang.
        let out = Waiter::spawn(waiter(&w, persona)).finish(Duration::from_secs(10));
        let want = if persona == "deploy-lock" {
            &modern
        } else {
            &want
        };
        out.code(0).stderr("").stdout(want);
        assert!(!w.lock_path("staging").exists(), "{persona}");
    }
}

/// Pty output is the program's text with `\n` shown as `\r\n`.
fn crlf(s: &str) -> String {
    s.replace('\n', "\r\n")
}

#[test]
fn on_a_terminal_progress_is_rewritten_in_place_and_release_gets_its_own_line() {
    let w = World::new();
    w.legacy_lock("staging", now() - 30);
    let block = held_block(&w, "staging");
    let mut tty = w
        .unlock_sh(&["staging", "--wait"])
        .env("DEPLOY_LOCK_WAIT_INTERVAL", INTERVAL)
        .env("NO_COLOR", "1")
        .spawn_pty();
    tty.expect("\rWaiting... 0m 0s", Duration::from_secs(10));
    release(&w, "staging");
    let st = tty.wait(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{:?}", tty.text());
    assert_text(
        &tty.text(),
        &(crlf(&format!("{block}{WAIT_HEADER}"))
            + "\rWaiting... 0m 0s\x1b[K\r\n✓ Lock released!\r\n"),
        "pty",
        "",
    );

    // In colour (the default on a terminal) only the release line is painted.
    let w = World::new();
    w.legacy_lock("staging", now() - 30);
    let mut tty = w
        .deploy_lock(&["wait", "staging", "--wait-interval", INTERVAL])
        .spawn_pty();
    tty.expect("\rWaiting... 0m 0s", Duration::from_secs(10));
    release(&w, "staging");
    let st = tty.wait(Duration::from_secs(5));
    assert_eq!(st.code(), Some(0), "{:?}", tty.text());
    assert!(
        tty.text().ends_with(
            "Press Ctrl+C to cancel\r\n\r\n\rWaiting... 0m 0s\x1b[K\r\n\x1b[32m✓ Lock released!\x1b[39m\r\n"
        ),
        "{:?}",
        tty.text()
    );
}

#[test]
fn ctrl_c_on_the_terminal_stops_the_waiter_and_leaves_the_lock() {
    for persona in PERSONAS {
        let w = World::new();
        let lock = w.legacy_lock("staging", now() - 30);
        let mut cmd = waiter(&w, persona);
        // SIGINT's default action, whatever the test runner inherited (a
        // shell's background job runs with SIGINT ignored, and an ignored
        // signal stays ignored across exec).
        unsafe {
            cmd.cmd.pre_exec(|| {
                nix::sys::signal::signal(Signal::SIGINT, SigHandler::SigDfl)
                    .map(drop)
                    .map_err(std::io::Error::from)
            });
        }
        let mut tty = cmd.spawn_pty();
        tty.expect("\rWaiting... 0m 0s", Duration::from_secs(10));
        tty.send(b"\x03");
        let st = tty.wait(Duration::from_secs(5));
        assert!(
            st.signal() == Some(nix::libc::SIGINT) || st.code() == Some(130),
            "{persona}: {st:?}; saw {:?}",
            tty.text()
        );
        assert!(!tty.text().contains("Lock released"), "{:?}", tty.text());
        assert!(lock.join("locked_at").exists(), "{persona}");
    }
}
