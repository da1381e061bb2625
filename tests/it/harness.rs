//! The small harness every integration test uses: a temp checkout with the
//! real binary symlinked as deploy/scripts/unlock.sh, an isolated lock folder
//! and HOME, commands built like sentences, and a real pty for prompts.

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_deploy-lock");

/// A lock on the machine's system folders: held exclusively while a test has
/// deploy-lock installed there (the .deb test), shared by tests that need a
/// machine with none (a server with no deploy-lock on its PATH). A file
/// lock, so that it also holds between test processes.
///
/// Every taker passes a gate (a second file, held exclusively for a moment)
/// first, and the exclusive taker holds it while it waits: shared holders
/// that come after it queue behind it instead of starving it (flock alone
/// lets new shared holders in past a waiting exclusive one; the .deb test
/// waited most of a run for back-to-back ssh tests).
pub fn system_install_lock(exclusive: bool) -> nix::fcntl::Flock<fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let take = |name: &str, arg: nix::fcntl::FlockArg| {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o666)
            .open(std::env::temp_dir().join(name))
            .unwrap();
        nix::fcntl::Flock::lock(f, arg).map_err(|(_, e)| e).unwrap()
    };
    let gate = take(
        "deploy-lock-it-system-install.gate",
        nix::fcntl::FlockArg::LockExclusive,
    );
    let arg = if exclusive {
        nix::fcntl::FlockArg::LockExclusive
    } else {
        nix::fcntl::FlockArg::LockShared
    };
    let held = take("deploy-lock-it-system-install.lock", arg);
    drop(gate);
    held
}

/// Skips the rest of a test for a reason the machine has (a tool that is
/// not installed, not being root): a visible `SKIP` line on stderr (libtest
/// captures `print!`, not direct writes), and under `CI=true` (or any
/// non-empty `CI`) a failure instead, since .ci/run provides all of them.
macro_rules! skip {
    ($($why:tt)*) => {
        $crate::harness::skipping(module_path!(), &format!($($why)*))
    };
}
pub(crate) use skip;

#[track_caller]
pub fn skipping(test: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "{test}: {why}, and CI must not skip (.ci/run installs what the tests need)"
    );
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
}

/// One test's world. Dropped, it removes everything it made.
pub struct World {
    pub tmp: tempfile::TempDir,
    /// The temp checkout (project root).
    pub root: PathBuf,
    /// What DEPLOY_LOCK_DIR points at.
    pub locks: PathBuf,
    pub home: PathBuf,
}

impl World {
    pub fn new() -> World {
        let tmp = tempfile::Builder::new()
            .prefix("deploy-lock-it.")
            .tempdir()
            .unwrap();
        let root = tmp.path().join("checkout");
        let locks = tmp.path().join("locks");
        let home = tmp.path().join("home");
        for d in [
            root.join("deploy/scripts"),
            root.join("deploy/config"),
            locks.clone(),
            home.clone(),
        ] {
            fs::create_dir_all(d).unwrap();
        }
        std::os::unix::fs::symlink(BIN, root.join("deploy/scripts/unlock.sh")).unwrap();
        World {
            tmp,
            root,
            locks,
            home,
        }
    }

    /// A command with the test environment: our lock folder and HOME, UTC,
    /// the C locale, no inherited colour or DEPLOY_LOCK_* settings.
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Cmd {
        let mut c = command(program);
        for (k, _) in std::env::vars_os() {
            let k_s = k.to_string_lossy();
            if k_s.starts_with("DEPLOY_LOCK_") || k_s == "NO_COLOR" || k_s == "CLICOLOR_FORCE" {
                c.env_remove(&k);
            }
        }
        c.env("DEPLOY_LOCK_DIR", &self.locks)
            .env("FIXTURE_LOCK_ROOT", &self.locks)
            .env("HOME", &self.home)
            .env("TZ", "UTC")
            .env("LC_ALL", "C")
            .env("USER", "tester")
            .current_dir(&self.root);
        Cmd {
            cmd: c,
            stdin: None,
            own_group: true,
        }
    }

    /// `./deploy/scripts/unlock.sh ARGS` from the checkout.
    pub fn unlock_sh(&self, args: &[&str]) -> Cmd {
        let mut c = self.cmd("./deploy/scripts/unlock.sh");
        c.cmd.args(args);
        c
    }

    /// `./deploy/scripts/unlock.sh ARGS` under `strace -f -qq -e TRACE`:
    /// its Out and strace's log of the calls traced.
    pub fn strace_unlock_sh(&self, trace: &str, args: &[&str]) -> (Out, String) {
        self.strace(trace, "./deploy/scripts/unlock.sh", args)
    }

    /// `PROGRAM ARGS` from the checkout under `strace -f -qq -e TRACE`.
    pub fn strace(&self, trace: &str, program: &str, args: &[&str]) -> (Out, String) {
        let log = self.tmp.path().join("strace.out");
        let mut c = self.cmd("strace");
        c.cmd
            .args(["-f", "-qq", "-e", trace, "-o"])
            .arg(&log)
            .arg(program)
            .args(args);
        let out = c.run();
        let calls = fs::read_to_string(&log).unwrap();
        (out, calls)
    }

    /// `deploy-lock ARGS` (the binary under its own name).
    pub fn deploy_lock(&self, args: &[&str]) -> Cmd {
        let mut c = self.cmd(BIN);
        c.cmd.args(args);
        c
    }

    pub fn state_path(&self) -> PathBuf {
        self.root.join("deploy/config/deployment-state.json")
    }

    pub fn write_state(&self, json: &str) {
        fs::write(self.state_path(), json).unwrap();
    }

    pub fn state(&self) -> String {
        fs::read_to_string(self.state_path()).unwrap()
    }

    pub fn state_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.state()).unwrap()
    }

    pub fn lock_path(&self, env: &str) -> PathBuf {
        self.locks.join(format!("togather-deploy-{env}.lock"))
    }

    /// A lock directory as the legacy deploy.sh leaves it: the directory and
    /// `locked_at` with the given epoch seconds.
    pub fn legacy_lock(&self, env: &str, locked_at: i64) -> PathBuf {
        let p = self.lock_path(env);
        fs::create_dir(&p).unwrap();
        fs::write(p.join("locked_at"), format!("{locked_at}\n")).unwrap();
        p
    }

    /// The legacy state record for a lock taken `age` seconds ago by `pid`.
    pub fn legacy_state(&self, env: &str, locked_at: i64, pid: &str, hostname: &str) {
        self.write_state(&format!(
            r#"{{
  "environment": "{env}",
  "lock": {{
    "locked": true,
    "lock_id": "lock_1890d66a41888860_47448a50c1f61cc6be49eaf4",
    "deployment_id": "dep_1890d66a41888860_47448a50c1f61cc6be49eaf4",
    "locked_by": "deploy@localhost",
    "locked_at": "{}",
    "lock_expires_at": "{}",
    "pid": {pid},
    "hostname": "{hostname}"
  }},
  "deployments": [{{"id": 1, "ok": true}}]
}}
"#,
            iso(locked_at),
            iso(locked_at + 1800)
        ));
    }

    /// The checkout's audit log, beside its state file.
    pub fn audit_log_path(&self) -> PathBuf {
        self.root.join("deploy/config/deployment-audit.log")
    }

    pub fn audit_log(&self) -> String {
        fs::read_to_string(self.audit_log_path()).unwrap_or_default()
    }

    /// Writes an executable script into the checkout.
    ///
    /// The text is written to a plain file first and then copied executable
    /// by `install(1)` (see [`World::install_executable`]), so no test thread
    /// ever holds a writable descriptor of the script a test will run.
    pub fn script(&self, rel: &str, body: &str) -> PathBuf {
        let draft = self
            .tmp
            .path()
            .join(format!("script-draft-{}", rel.replace('/', "_")));
        fs::write(&draft, body).unwrap();
        let p = self.install_executable(&draft, rel);
        fs::remove_file(&draft).unwrap();
        p
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `2026-02-03T20:25:46Z` for epoch seconds.
pub fn iso(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .unwrap()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Candidates for a text that shows a lock's age from the clock: one per
/// clock second from `before` to `after`, `make(t)` being the text read at `t`.
pub fn per_second(before: i64, after: i64, make: impl Fn(i64) -> String) -> Vec<String> {
    (before..=after).map(make).collect()
}

/// The first line of `deploy-lock run`'s refusal of the staging lock `who`
/// took at `at`, read at clock second `t`.
fn held_line(who: &str, at: i64, t: i64) -> String {
    let age = t - at;
    format!(
        "ERROR: the staging lock is held by {who} since {} ({}m {}s ago).\n",
        iso(at),
        age / 60,
        age % 60
    )
}

/// `deploy-lock run`'s refusal, read at `t`, of the staging lock `who` took
/// at `at`, whose holder `comm` (`pid`) runs on this host: `wait` is the
/// retry offered; `kill` whether "or stop it" is (the caller's own holder).
pub fn live_refusal(
    who: &str,
    at: i64,
    t: i64,
    comm: &str,
    pid: impl std::fmt::Display,
    wait: &str,
    kill: bool,
) -> String {
    let stop = if kill {
        format!("  or stop it:       kill {pid}\n")
    } else {
        String::new()
    };
    format!(
        "{}Running on this host: {comm} (pid {pid}); a running holder's lock is never taken over.\n  \
         wait for it:      {wait}\n  \
         details:          deploy-lock status staging\n{stop}",
        held_line(who, at, t)
    )
}

/// The refusal of `deploy-lock run staging -- true` at epoch second `t` for
/// `who`'s lock taken at `at` by `pid`, which no longer runs, younger than
/// `stale`.
pub fn dead_young_refusal(
    who: &str,
    at: i64,
    t: i64,
    pid: impl std::fmt::Display,
    stale: &str,
) -> String {
    format!(
        "{}Not running (pid {pid} is gone), but the lock is younger than {stale}, after which it is taken over automatically.\n  \
         wait for that:    deploy-lock run --wait staging -- true\n  \
         take it over now: deploy-lock run --force staging -- true\n  \
         details:          deploy-lock status staging\n",
        held_line(who, at, t)
    )
}

/// unlock.sh's error and recovery steps for an unusable state file.
pub fn legacy_unusable(p: &Path, what: &str) -> String {
    let p = p.display();
    let steps = if what.starts_with("is not valid JSON") {
        format!(
            "# repair the JSON at the position above, then reset the lock record:\n  \
             jq '.lock.locked = false' {p} > {p}.tmp && mv {p}.tmp {p}\n"
        )
    } else if what.contains("\"lock\" is") {
        format!(
            "# reset the lock record:\n  \
             jq '.lock = {{\"locked\": false}}' {p} > {p}.tmp && mv {p}.tmp {p}\n"
        )
    } else {
        format!(
            "# restore it from a backup or version control, or start afresh (other keys are lost):\n  \
             echo '{{\"lock\": {{\"locked\": false}}}}' > {p}\n"
        )
    };
    format!(
        "ERROR: state file {p} {what}\n\
         To recover (see \"state file not JSON\" in man unlock.sh):\n  \
         cp {p}{{,.backup}}\n  \
         {steps}"
    )
}

/// deploy-lock's error for an unusable state file (issue 12): recovery that
/// works on a file that is not JSON.
pub fn modern_unusable(p: &Path, what: &str) -> String {
    let at = what
        .split_once("(line ")
        .and_then(|(_, rest)| rest.split_once(','))
        .map(|(line, _)| format!(" +{line}"))
        .unwrap_or_default();
    let p = p.display();
    format!(
        "ERROR: state file {p} {what}\n\
         To recover, either:\n  \
         repair it by hand:   cp {p} {p}.backup && ${{EDITOR:-vi}}{at} {p}\n  \
         or start afresh:     deploy-lock unlock staging --reset-state   (keeps the file beside it as a backup, releases the lock)\n"
    )
}

/// What real `ls -ld PATH` prints (C locale, TZ given).
pub fn real_ls_ld(path: &Path, tz: &str) -> String {
    let out = Command::new("ls")
        .arg("-ld")
        .arg(path)
        .env("LC_ALL", "C")
        .env("TZ", tz)
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_string()
}

/// A command being built. It starts in a process group of its own (so
/// that a guard can end it with everything it started), with default signal
/// dispositions and an empty signal mask whatever the test runner inherited.
pub struct Cmd {
    pub cmd: Command,
    stdin: Option<Vec<u8>>,
    /// Applied when it is spawned (`grouped`): `spawn_pty` clears it, since
    /// the session it makes is a group of its own already (and `setsid`
    /// fails for a group leader).
    own_group: bool,
}

/// `Command::new(program)` whose child starts with every catchable signal
/// at its default disposition and none blocked: a test run with SIGINT
/// ignored (`nohup`, a script's background job, some CI runners) or from a
/// thread with signals blocked must not hand that to the processes it
/// tests, whose signal handling it asserts.
///
/// Blocked signals: std clears the child's mask on every spawn. Ignored
/// ones survive exec, so this process itself stops ignoring them (only
/// SIGPIPE stays ignored, as the Rust runtime set it, and std resets it in
/// the child). Doing it here rather than in a `pre_exec` hook keeps spawns
/// on std's posix_spawn (vfork) path: a hook forces fork(), which copies
/// this large multi-threaded test process's page tables for every command
/// and was a third of the suite's CPU time. A test that wants a signal
/// ignored in a child says so in its own `pre_exec`.
pub fn command(program: impl AsRef<OsStr>) -> Command {
    default_dispositions();
    Command::new(program)
}

/// Every ignored signal of this process back to its default, SIGPIPE
/// excepted. Cheap (one sigaction per signal) and done for every command,
/// so that a disposition a test changed on purpose does not leak either.
fn default_dispositions() {
    use nix::libc;
    for signo in 1..=libc::SIGRTMAX() {
        // 32 and 33 are glibc's own (it refuses them, and handles both).
        if matches!(
            signo,
            libc::SIGKILL | libc::SIGSTOP | libc::SIGPIPE | 32 | 33
        ) {
            continue;
        }
        // SAFETY: reading, then at most resetting, a disposition; no
        // handler of ours is installed or removed.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signo, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
            {
                let mut new: libc::sigaction = std::mem::zeroed();
                new.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signo, &new, std::ptr::null_mut());
            }
        }
    }
}

impl Cmd {
    /// The command, in a process group of its own unless `spawn_pty` made
    /// it a session: what every spawn goes through.
    pub fn grouped(&mut self) -> &mut Command {
        if self.own_group {
            self.cmd.process_group(0);
        }
        &mut self.cmd
    }

    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> Cmd {
        self.cmd.env(k, v);
        self
    }
    pub fn env_remove(mut self, k: &str) -> Cmd {
        self.cmd.env_remove(k);
        self
    }
    pub fn dir(mut self, d: impl AsRef<Path>) -> Cmd {
        self.cmd.current_dir(d);
        self
    }
    pub fn stdin(mut self, bytes: &[u8]) -> Cmd {
        self.stdin = Some(bytes.to_vec());
        self
    }

    /// Runs to completion with stdin at /dev/null: an answer that is EOF
    /// from the start, whatever the machine's load.
    #[track_caller]
    pub fn run_without_stdin(mut self) -> Out {
        self.grouped()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = self.cmd.output().unwrap();
        Out::new(
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
            std::os::unix::process::ExitStatusExt::signal(&out.status),
        )
    }

    /// Runs to completion (stdin empty unless given).
    #[track_caller]
    pub fn run(mut self) -> Out {
        self.grouped()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().unwrap();
        let mut sin = child.stdin.take().unwrap();
        let input = self.stdin.take().unwrap_or_default();
        let writer = std::thread::spawn(move || {
            let _ = sin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        Out::new(
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            out.status.code(),
            std::os::unix::process::ExitStatusExt::signal(&out.status),
        )
    }

    pub fn spawn(mut self) -> Child {
        self.grouped()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.cmd.spawn().unwrap()
    }

    /// Runs under a new pty as its controlling terminal (stdin, stdout and
    /// stderr all the pty), in a session of its own.
    pub fn spawn_pty(mut self) -> Pty {
        let pty = nix::pty::openpty(None, None).unwrap();
        let slave = pty.slave;
        let s = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        self.own_group = false;
        self.cmd
            .stdin(s(&slave))
            .stdout(s(&slave))
            .stderr(s(&slave));
        unsafe {
            self.cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = self.cmd.spawn().unwrap();
        drop(slave);
        Pty::new(pty.master, child)
    }
}

/// A finished command. Like just's `Test`, it expects exit 0 and an empty
/// stderr unless the test says otherwise: `.code(n)` / `.stderr(text)` /
/// `.stderr_one_of(texts)` assert whole values (a failure's exit code does
/// not excuse its message: a test states that too), `.any_code()` /
/// `.any_stderr()` waive them for a test that looks at them its own way,
/// saying why. What was not asserted is
/// checked when the value is dropped, naming the line that ran the command.
#[derive(Debug)]
pub struct Out {
    pub stdout: String,
    pub stderr: String,
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// Where the command ran, for the drop-time check.
    pub at: &'static std::panic::Location<'static>,
    code_seen: std::cell::Cell<bool>,
    stderr_seen: std::cell::Cell<bool>,
}

impl Out {
    #[track_caller]
    pub fn new(stdout: String, stderr: String, code: Option<i32>, signal: Option<i32>) -> Out {
        Out {
            stdout,
            stderr,
            code,
            signal,
            at: std::panic::Location::caller(),
            code_seen: false.into(),
            stderr_seen: false.into(),
        }
    }

    #[track_caller]
    pub fn code(&self, want: i32) -> &Out {
        self.code_seen.set(true);
        assert_eq!(
            self.code,
            Some(want),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
    #[track_caller]
    pub fn stdout(&self, want: &str) -> &Out {
        assert_text(&self.stdout, want, "stdout", &self.stderr);
        self
    }
    #[track_caller]
    pub fn stderr(&self, want: &str) -> &Out {
        self.stderr_seen.set(true);
        assert_text(&self.stderr, want, "stderr", &self.stdout);
        self
    }
    /// The test judges the exit status itself (or expects a signal).
    pub fn any_code(&self) -> &Out {
        self.code_seen.set(true);
        self
    }
    /// The test judges stderr itself.
    pub fn any_stderr(&self) -> &Out {
        self.stderr_seen.set(true);
        self
    }
    /// stderr equals one of `wants` (a refusal gives the lock's age from the
    /// clock, which may tick during the run): judged whole.
    #[track_caller]
    pub fn stderr_one_of(&self, wants: &[String]) -> &Out {
        self.stderr_seen.set(true);
        assert_one_of(&self.stderr, wants, "stderr", &self.stdout);
        self
    }
    /// stderr is `run --wait`'s progress lines (printed off a terminal at
    /// every interval, as many as the machine's pace gave) followed by
    /// exactly `want`.
    #[track_caller]
    pub fn stderr_after_waiting(&self, want: &str) -> &Out {
        self.stderr_seen.set(true);
        let mut rest = self.stderr.as_str();
        while let Some((line, tail)) = rest.split_once('\n') {
            if !is_waiting_line(line) {
                break;
            }
            rest = tail;
        }
        assert_text(rest, want, "stderr after the progress lines", &self.stdout);
        self
    }
    /// stdout equals one of `wants` (a clock second may tick during the run).
    #[track_caller]
    pub fn stdout_one_of(&self, wants: &[String]) -> &Out {
        assert_one_of(&self.stdout, wants, "stdout", &self.stderr);
        self
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if !self.code_seen.get() && self.code != Some(0) {
            panic!(
                "command run at {} exited {:?} (signal {:?}), and the test expects 0 unless it says otherwise\n--- stdout\n{}\n--- stderr\n{}",
                self.at, self.code, self.signal, self.stdout, self.stderr
            );
        }
        if !self.stderr_seen.get() && !self.stderr.is_empty() {
            panic!(
                "command run at {} wrote to stderr, and the test expects nothing there unless it says otherwise\n--- stderr\n{}\n--- stdout\n{}",
                self.at, self.stderr, self.stdout
            );
        }
    }
}

/// `Waiting for the ENV lock (WHO)... Nm Ss`: run --wait's progress line.
pub fn is_waiting_line(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("Waiting for the ") else {
        return false;
    };
    let Some((_, time)) = rest.rsplit_once(")... ") else {
        return false;
    };
    let mut words = time.split(' ');
    let ok = |w: Option<&str>, unit: char| {
        w.and_then(|w| w.strip_suffix(unit))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    ok(words.next(), 'm') && ok(words.next(), 's') && words.next().is_none()
}

/// `got` is one of `wants`; otherwise the diff against the first.
#[track_caller]
fn assert_one_of(got: &str, wants: &[String], what: &str, other: &str) {
    if !wants.iter().any(|w| w == got) {
        assert_text(
            got,
            &wants[0],
            &format!("{what} (none of the candidates)"),
            other,
        );
    }
}

#[track_caller]
pub fn assert_text(got: &str, want: &str, what: &str, other: &str) {
    if got != want {
        panic!(
            "{what} differs\n--- want\n{want}\n--- got\n{got}\n--- (other stream)\n{other}\n--- first difference at line {}",
            got.lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .map(|i| i + 1)
                .unwrap_or_else(|| got.lines().count().min(want.lines().count()) + 1)
        );
    }
}

/// A child on a real terminal: read what it shows, type into it.
pub struct Pty {
    pub master: fs::File,
    pub child: Child,
    rx: mpsc::Receiver<Vec<u8>>,
    pub seen: Vec<u8>,
}

impl Pty {
    fn new(master: OwnedFd, child: Child) -> Pty {
        let master = fs::File::from(master);
        let mut reader = master.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Pty {
            master,
            child,
            rx,
            seen: Vec::new(),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen).into_owned()
    }

    /// Waits until the screen output contains `needle`.
    #[track_caller]
    pub fn expect(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.text().contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(chunk) => self.seen.extend(chunk),
                Err(_) => panic!("pty never showed {needle:?}; saw:\n{}", self.text()),
            }
        }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).unwrap();
        self.master.flush().unwrap();
    }

    /// Waits for the child to exit, then collects the rest of its output.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // Everything it wrote: the reader ends (EIO) once nothing
                // holds the terminal any more, however slowly a loaded
                // machine hands the last bytes over; a descendant that keeps
                // it open is given a few seconds.
                let drained = Instant::now() + Duration::from_secs(5);
                loop {
                    let left = drained.saturating_duration_since(Instant::now());
                    match self.rx.recv_timeout(left) {
                        Ok(chunk) => self.seen.extend(chunk),
                        Err(_) => break,
                    }
                }
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("child did not exit; saw:\n{}", self.text());
            }
            while let Ok(chunk) = self.rx.try_recv() {
                self.seen.extend(chunk);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Polls `cond` until true or `timeout`; for waiting on files a child writes
/// (a ready file), never for asserting timing.
///
/// It looks every 5 ms, or four times as long as a look took: a look that
/// starts a process (a `status --json`) then costs at most a fifth of a
/// core, where at a fixed 5 ms a few waiting tests kept the machine busy.
#[track_caller]
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let look = Instant::now();
        if cond() {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        let pause =
            (look.elapsed() * 4).clamp(Duration::from_millis(5), Duration::from_millis(100));
        std::thread::sleep(pause);
    }
}

// ---------------------------------------------------------------------------
// For the run_* tests: fixtures, a child's talk-back folder, process helpers.

/// How long anything may take before a test gives up. Only so that a hang
/// fails instead of blocking; nothing asserts how fast things happen.
pub const PATIENCE: Duration = Duration::from_secs(30);

impl World {
    /// Installs tests/fixtures/NAME into the checkout at REL, executable.
    pub fn install_fixture(&self, name: &str, rel: &str) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name);
        self.install_executable(&src, rel)
    }

    /// Copies SRC into the checkout at REL, mode 0755, with `install(1)`: a
    /// file this multi-threaded test process wrote itself could still be
    /// open for writing in a child another test just forked (until that
    /// child's exec), and running it would fail with ETXTBSY.
    pub fn install_executable(&self, src: &Path, rel: &str) -> PathBuf {
        let dst = self.root.join(rel);
        let st = Command::new("install")
            .args(["-D", "-m", "0755"])
            .arg(src)
            .arg(&dst)
            .status()
            .unwrap();
        assert!(st.success(), "install {} {}", src.display(), dst.display());
        dst
    }
}

/// A folder a child under test talks through: `ctl`, a fifo it reads
/// commands from; `ready`, its pid once it is set up; `trap`, one line per
/// signal it received (see tests/fixtures/sig-child.sh).
pub struct Probe {
    pub dir: PathBuf,
}

impl Probe {
    pub fn new(w: &World, name: &str) -> Probe {
        let dir = w.tmp.path().join(name);
        fs::create_dir(&dir).unwrap();
        nix::unistd::mkfifo(
            &dir.join("ctl"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        Probe { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The child's pid once it has written `ready`.
    #[track_caller]
    pub fn wait_ready(&self) -> i32 {
        let p = self.path("ready");
        wait_until(PATIENCE, &format!("{} to be written", p.display()), || {
            p.exists()
        });
        fs::read_to_string(&p).unwrap().trim().parse().unwrap()
    }

    /// Writes one line to `ctl` without ever blocking: a child that is gone
    /// (no reader) is an error, not a hang.
    #[track_caller]
    pub fn send(&self, line: &str) {
        if let Err(e) = self.try_send(line) {
            panic!("cannot write to {}: {e}", self.path("ctl").display());
        }
    }

    fn try_send(&self, line: &str) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(self.path("ctl"))?
            .write_all(format!("{line}\n").as_bytes())
    }

    /// The lines of `trap` so far.
    pub fn lines(&self) -> Vec<String> {
        fs::read_to_string(self.path("trap"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Waits until `trap` has at least `n` lines, and returns them.
    #[track_caller]
    pub fn wait_lines(&self, n: usize) -> Vec<String> {
        let what = format!("{n} line(s) in {}/trap", self.dir.display());
        self.nudging(&what, || self.lines().len() >= n);
        self.lines()
    }

    /// Polls `cond`, writing `nop` to `ctl` every 50 ms meanwhile: bash runs
    /// a trap that went pending just before it blocked in read(2), or a
    /// SIGWINCH trap, only once its read returns.
    #[track_caller]
    pub fn nudging(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let mut polls = 0u32;
        wait_until(PATIENCE, what, || {
            polls += 1;
            if polls.is_multiple_of(10) {
                // The child may be gone already (no reader): that is fine.
                let _ = self.try_send("nop");
            }
            cond()
        });
    }
}

/// Waits for `child` to exit; kills it and panics after `PATIENCE`.
#[track_caller]
pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pid {} did not exit", child.id());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Waits for a child from `Cmd::spawn` and collects what it printed.
#[track_caller]
pub fn finish(mut child: impl AsMut<Child>) -> Out {
    let child = child.as_mut();
    let status = wait_exit(child);
    let read = |r: Option<&mut dyn Read>| {
        let mut s = Vec::new();
        if let Some(r) = r {
            r.read_to_end(&mut s).unwrap();
        }
        String::from_utf8_lossy(&s).into_owned()
    };
    let stdout = read(child.stdout.as_mut().map(|r| r as &mut dyn Read));
    let stderr = read(child.stderr.as_mut().map(|r| r as &mut dyn Read));
    Out::new(
        stdout,
        stderr,
        status.code(),
        std::os::unix::process::ExitStatusExt::signal(&status),
    )
}

/// Sends `sig` to `pid` (from this test process).
pub fn send_signal(pid: i32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap();
}

/// The state letter of /proc/PID/stat (R, S, T, Z...), None once gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

/// The signal mask /proc/PID/status shows (SigBlk), 0 when unreadable.
pub fn blocked_signals(pid: i32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("SigBlk:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// A pid that certainly does not run: a child we started and reaped.
pub fn reaped_pid() -> i32 {
    let mut c = Command::new("true").spawn().unwrap();
    let pid = c.id() as i32;
    c.wait().unwrap();
    pid
}

/// [`reaped_pid`] as the `u32` that std's `Child::id` uses.
pub fn dead_pid() -> u32 {
    reaped_pid() as u32
}

/// A child killed (and reaped) when the test ends, even by a panic, so a
/// failed test leaves no process behind (a wrapper SIGKILLed this way sends
/// its command SIGTERM; sig-child.sh then sees it was orphaned and ends).
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl KillOnDrop {
    /// Reads the child's stdout until it has shown `needle` (a waiter's
    /// "waiting" line: the event a test synchronises on), and returns what
    /// it read; the rest stays for [`finish`]. Panics after `PATIENCE`.
    #[track_caller]
    pub fn stdout_until(&mut self, needle: &str) -> String {
        let mut stdout = self.0.stdout.take().expect("stdout is piped");
        let want = needle.as_bytes().to_vec();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut byte = [0u8; 1];
            // One byte at a time, so nothing past the needle is consumed.
            while !seen.ends_with(&want) {
                match stdout.read(&mut byte) {
                    Ok(1) => seen.push(byte[0]),
                    _ => break,
                }
            }
            let _ = tx.send((seen, stdout));
        });
        let (seen, stdout) = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|_| panic!("stdout never showed {needle:?}"));
        let text = String::from_utf8_lossy(&seen).into_owned();
        assert!(
            text.ends_with(needle),
            "stdout ended before {needle:?}:\n{text}"
        );
        self.0.stdout = Some(stdout);
        text
    }
}

impl AsMut<Child> for KillOnDrop {
    fn as_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Cmd {
    /// `spawn`, killed when the test ends (see `KillOnDrop`).
    pub fn spawn_guarded(self) -> KillOnDrop {
        KillOnDrop(self.spawn())
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill_group_of(&mut self.0);
    }
}

/// SIGKILLs `child`'s process group (the group harness commands start) and
/// reaps `child`. Only while `child` is not reaped yet: until then its pid,
/// and so the group's id, cannot belong to anyone else. What outlives a
/// reaped leader is found by [`World`]'s drop instead.
fn kill_group_of(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        if nix::unistd::getpgid(Some(pid)) == Ok(pid) {
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        } else {
            let _ = child.kill();
        }
    }
    let _ = child.wait();
}

impl Drop for Pty {
    fn drop(&mut self) {
        kill_group_of(&mut self.child);
    }
}

impl Drop for World {
    /// Ends every process this world's commands started that still runs:
    /// each carries `DEPLOY_LOCK_DIR` naming this world's own temp folder in
    /// its environment (inherited by everything it starts, whatever process
    /// group or session it moved to), so a failed or panicking test leaves
    /// nothing behind and a recycled pid is never mistaken for ours.
    fn drop(&mut self) {
        let mark = {
            let mut m = b"DEPLOY_LOCK_DIR=".to_vec();
            m.extend_from_slice(self.locks.as_os_str().as_encoded_bytes());
            m
        };
        let me = std::process::id() as i32;
        // Again until none is left: one may fork while the others die.
        for _ in 0..50 {
            let ours = processes_with_env(&mark, me);
            if ours.is_empty() {
                return;
            }
            for pid in ours {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Live (not zombie) processes other than `me` whose environment has the
/// entry `entry` exactly.
fn processes_with_env(entry: &[u8], me: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me && !matches!(proc_state(pid), None | Some('Z') | Some('X')))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == entry))
        })
        .collect()
}

/// Sets a path's access and modification times to epoch seconds `t`.
pub fn set_mtime(path: &Path, t: i64) {
    let ts = nix::sys::time::TimeSpec::new(t, 0);
    nix::sys::stat::utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &ts,
        &ts,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// Epoch seconds of a `2026-02-03T20:25:46Z` time.
pub fn epoch(iso_time: &str) -> i64 {
    iso_time
        .parse::<jiff::Timestamp>()
        .unwrap_or_else(|e| panic!("{iso_time}: {e}"))
        .as_second()
}

/// The audit log's events, in order.
pub fn audit_events(w: &World) -> Vec<String> {
    w.audit_log()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["event"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

impl Probe {
    /// Waits until `trap` has the line `want`, and returns all lines.
    #[track_caller]
    pub fn wait_for(&self, want: &str) -> Vec<String> {
        let what = format!("{want:?} in {}/trap", self.dir.display());
        self.nudging(&what, || self.lines().iter().any(|l| l == want));
        self.lines()
    }
}

/// The pid the state file's lock record names, if any.
pub fn state_pid(w: &World) -> Option<i32> {
    let text = fs::read_to_string(w.state_path()).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["lock"]["pid"].as_i64().map(|p| p as i32)
}

/// Waits until the lock record names `pid` (`run` records the command's pid
/// just after starting it).
#[track_caller]
pub fn wait_recorded(w: &World, pid: i32) {
    wait_until(
        PATIENCE,
        "the state file to record the command's pid",
        || state_pid(w) == Some(pid),
    );
}

/// The staging lock directory is gone and the state record is what the
/// legacy's release writes.
#[track_caller]
pub fn assert_released(w: &World) {
    assert!(
        !w.lock_path("staging").exists(),
        "the lock directory was left behind"
    );
    let st = w.state_json();
    assert_eq!(
        st["lock"],
        serde_json::json!({ "locked": false }),
        "{}",
        w.state()
    );
    assert_eq!(st["environment"], "staging");
}

/// tests/fixtures/sig-child.sh installed in the checkout.
pub fn sig_child(w: &World) -> PathBuf {
    w.install_fixture("sig-child.sh", "bin/sig-child.sh")
}

/// `deploy-lock run staging -- sig-child.sh DIR` once the command runs and
/// the lock records it: (wrapper, probe, the command's pid).
pub fn hold_lock(w: &World, name: &str) -> (KillOnDrop, Probe, i32) {
    let script = sig_child(w);
    let probe = Probe::new(w, name);
    let wrapper = w
        .deploy_lock(&[
            "run",
            "staging",
            "--",
            script.to_str().unwrap(),
            probe.dir.to_str().unwrap(),
        ])
        .spawn_guarded();
    let pid = probe.wait_ready();
    wait_recorded(w, pid);
    (wrapper, probe, pid)
}
