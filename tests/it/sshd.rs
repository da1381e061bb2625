//! A real OpenSSH server on loopback for the remote tests: throwaway host and
//! client keys, a free port, `AcceptEnv DEPLOY_LOCK_*` (so a test's lock
//! folder reaches the server with `-o SendEnv`), and a PATH whose first
//! folder has `deploy-lock`, a link to the binary under test. Never a fake
//! ssh: the client is the system's ssh, the server the system's sshd.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::skip;

use crate::harness::BIN;

pub const SSHD: &str = "/usr/sbin/sshd";
/// Tests run as root (here and in CI), so they log in as root.
pub const TARGET: &str = "root@127.0.0.1";

/// One running sshd and what a client needs to reach it.
pub struct Sshd {
    pub port: u16,
    /// The fixture's folder (keys, config, log, server HOME, PATH folder).
    pub dir: PathBuf,
    /// The client key the server accepts.
    pub key: PathBuf,
    /// A client key the server does not know.
    pub stranger_key: PathBuf,
    /// The server session's HOME (so audit lines land here, not in /root).
    pub home: PathBuf,
    pid: i32,
    /// For a server with no deploy-lock on its PATH: no test installs one
    /// into /usr/bin meanwhile (the .deb test).
    _no_system_install: Option<nix::fcntl::Flock<fs::File>>,
    /// Killed and removed on drop (the shared one is cleaned up at exit).
    owned: bool,
}

impl Sshd {
    /// `DEPLOY_LOCK_SSH` for this server, logging in with `key`.
    pub fn ssh_command_with(&self, key: &Path) -> String {
        format!(
            "ssh -F /dev/null -p {} -i {} -o IdentitiesOnly=yes -o IdentityAgent=none \
             -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR \
             -o 'SendEnv=DEPLOY_LOCK_*'",
            self.port,
            key.display()
        )
    }

    pub fn ssh_command(&self) -> String {
        self.ssh_command_with(&self.key)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if self.owned {
            stop(self.pid, &self.dir);
        }
    }
}

fn stop(pid: i32, dir: &Path) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = fs::remove_dir_all(dir);
}

/// Why these tests cannot run here, if they cannot.
pub fn missing() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (sshd needs root to log a user in)".into());
    }
    for tool in ["ssh", "ssh-keygen"] {
        if which(tool).is_none() {
            return Some(format!(
                "{tool} is not installed (apt-get install openssh-client)"
            ));
        }
    }
    if !Path::new(SSHD).exists() {
        return Some(format!(
            "{SSHD} is not installed (apt-get install openssh-server)"
        ));
    }
    None
}

pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// A visible SKIP line (a failure under CI).
pub fn skip(test: &str, why: &str) {
    skip!("{test}: {why}");
}

static SHARED: OnceLock<Option<Sshd>> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(Some(s)) = SHARED.get() {
        stop(s.pid, &s.dir);
    }
}

/// The server the module's tests share (tests run in parallel; each has its
/// own World and lock folder). None, with a SKIP line, when it cannot run.
pub fn shared(test: &str) -> Option<&'static Sshd> {
    if let Some(why) = missing() {
        skip(test, &why);
        return None;
    }
    let s = SHARED.get_or_init(|| {
        // Spawned from a thread that never ends, so PR_SET_PDEATHSIG (which
        // follows the spawning thread) fires only when the test process
        // dies; a normal exit stops it through atexit.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let started = std::panic::catch_unwind(|| start_process(true));
            let ok = started.is_ok();
            let _ = tx.send(started.map(|(s, child)| {
                std::mem::forget(child);
                s
            }));
            if ok {
                loop {
                    std::thread::park();
                }
            }
        });
        let mut s = match rx.recv().unwrap() {
            Ok(s) => s,
            Err(_) => panic!("sshd fixture did not start (see the panic above)"),
        };
        s.owned = false;
        unsafe {
            nix::libc::atexit(stop_shared);
        }
        Some(s)
    });
    s.as_ref()
}

/// A server of the test's own, stopped when dropped; `with_deploy_lock`
/// false gives a server with no deploy-lock anywhere on its PATH.
pub fn own(with_deploy_lock: bool) -> Sshd {
    let guard = (!with_deploy_lock).then(|| crate::harness::system_install_lock(false));
    let (mut s, child) = start_process(with_deploy_lock);
    std::mem::forget(child);
    s._no_system_install = guard;
    s
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "deploy-lock-it",
            "-f",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "ssh-keygen failed");
}

fn config(dir: &Path, port: u16, penalties_off: bool) -> String {
    let d = dir.display();
    let mut c = format!(
        "ListenAddress 127.0.0.1
Port {port}
HostKey {d}/host_key
AuthorizedKeysFile {d}/authorized_keys
PidFile {d}/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
MaxStartups 200
AcceptEnv DEPLOY_LOCK_*
SetEnv PATH={d}/bin:/usr/bin:/bin HOME={d}/home TZ=UTC LC_ALL=C
"
    );
    if penalties_off {
        // OpenSSH 9.8+ would shut out 127.0.0.1 after the wrong-key test.
        c.push_str("PerSourcePenalties no\n");
    }
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_process(with_deploy_lock: bool) -> (Sshd, Child) {
    fs::create_dir_all("/run/sshd").unwrap();
    let dir = tempfile::Builder::new()
        .prefix("deploy-lock-sshd.")
        .tempdir()
        .unwrap()
        .keep();
    let (key, stranger_key) = (dir.join("client_key"), dir.join("stranger_key"));
    keygen(&dir.join("host_key"));
    keygen(&key);
    keygen(&stranger_key);
    fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
    let home = dir.join("home");
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::create_dir_all(&home).unwrap();
    if with_deploy_lock {
        std::os::unix::fs::symlink(BIN, dir.join("bin/deploy-lock")).unwrap();
    }
    let cfg = dir.join("sshd_config");
    let log = dir.join("sshd.log");
    // PerSourcePenalties exists from OpenSSH 9.8 on; older servers reject it.
    fs::write(&cfg, config(&dir, 22, true)).unwrap();
    let check = Command::new(SSHD)
        .arg("-t")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    let penalties_off = check.status.success();
    for _attempt in 0..5 {
        let port = free_port();
        fs::write(&cfg, config(&dir, port, penalties_off)).unwrap();
        let mut cmd = Command::new(SSHD);
        cmd.args(["-D", "-e", "-f"])
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        unsafe {
            cmd.pre_exec(|| {
                nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGTERM);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let ready = format!("Server listening on 127.0.0.1 port {port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if fs::read_to_string(&log).is_ok_and(|l| l.contains(&ready)) {
                let s = Sshd {
                    port,
                    dir: dir.clone(),
                    key,
                    stranger_key,
                    home,
                    pid: child.id() as i32,
                    _no_system_install: None,
                    owned: true,
                };
                return (s, child);
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let text = fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Address already in use") {
                    break;
                }
                panic!("sshd did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    panic!("sshd found no free port in 5 attempts");
}
