//! A real etcd on loopback for the etcd tests: one per test run, started on
//! first use on free ports with a throwaway data folder and short raft
//! timers, killed at exit. Each test gets its own key prefix. Without etcd,
//! a visible SKIP line (a failure under CI=true).

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use deploy_lock::etcd::{Client, ClientConfig, EtcdStore};

pub const ETCD: &str = "/usr/bin/etcd";

/// Returns from the test (with a SKIP line) when etcd cannot run here.
macro_rules! need_etcd {
    ($test:expr) => {
        match crate::etcd_support::shared($test) {
            Some(e) => e,
            None => return,
        }
    };
}
pub(crate) use need_etcd;

/// One running etcd.
pub struct Etcd {
    pub endpoint: String,
    /// The CA that signed its certificate, when it speaks https.
    pub ca_file: Option<PathBuf>,
    pub dir: PathBuf,
    pid: i32,
    /// Killed and removed on drop (the shared one is cleaned up at exit).
    owned: bool,
    /// A cluster member's command line, to start it again after a kill.
    args: Vec<String>,
}

impl Etcd {
    /// A client of its own: one "machine".
    pub fn client(&self) -> Client {
        Client::connect(&self.config()).unwrap()
    }

    pub fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(vec![self.endpoint.clone()]);
        c.ca_file = self.ca_file.clone();
        c
    }

    /// Two stores, as two machines, on one prefix.
    pub fn two_machines(&self, test: &str, ttl: Duration) -> (EtcdStore, EtcdStore) {
        let p = prefix(test);
        (
            EtcdStore::new(self.client(), &p, ttl),
            EtcdStore::new(self.client(), &p, ttl),
        )
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn stop(&self) {
        stop(self.pid, &self.dir);
    }

    /// How many watches this member serves now (etcd's own gauge on
    /// /metrics; 0 when it does not answer): a waiter's or a keeper's watch
    /// is an observable event to wait for.
    pub fn watchers(&self) -> u64 {
        let Ok(resp) = ureq::get(format!("{}/metrics", self.endpoint))
            .config()
            .timeout_global(Some(Duration::from_millis(500)))
            .build()
            .call()
        else {
            return 0;
        };
        let text = resp.into_body().read_to_string().unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("etcd_debugging_mvcc_watcher_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map_or(0, |v| v as u64)
    }

    /// SIGSTOP (hung: connections are accepted, nothing answers), waiting
    /// until every thread is stopped.
    pub fn pause(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGSTOP,
        );
        wait_stopped(self.pid);
    }

    /// SIGCONT after [`Etcd::pause`].
    pub fn resume(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGCONT,
        );
    }

    /// A cluster member: SIGKILL, keeping its data.
    pub fn kill(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        // Reaped by nobody (the child was forgotten): gone once a zombie.
        let dead = || {
            fs::read_to_string(format!("/proc/{}/stat", self.pid)).map_or(true, |s| {
                s.rfind(')')
                    .is_some_and(|i| s[i + 1..].trim_start().starts_with('Z'))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dead() {
            assert!(Instant::now() < deadline, "etcd {} did not die", self.pid);
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// A cluster member killed by [`Etcd::kill`] started again on its data
    /// (`--initial-cluster-state` is ignored once the data exists).
    pub fn restart(&mut self) {
        assert!(!self.args.is_empty(), "only a cluster member restarts");
        let log = fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("etcd.log"))
            .unwrap();
        self.pid = spawn_member(&self.args, log);
    }
}

fn spawn_member(args: &[String], log: fs::File) -> i32 {
    let mut cmd = Command::new(ETCD);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    let pid = child.id() as i32;
    std::mem::forget(child);
    pid
}

impl Drop for Etcd {
    fn drop(&mut self) {
        if self.owned {
            stop(self.pid, &self.dir);
        }
    }
}

/// `/it/TEST/N-PID`: unique per test and per run.
pub fn prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "/it/{test}/{}-{}",
        N.fetch_add(1, Ordering::Relaxed),
        std::process::id()
    )
}

fn stop(pid: i32, dir: &Path) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = fs::remove_dir_all(dir);
}

/// Why etcd cannot run here, if it cannot.
pub fn missing() -> Option<String> {
    (!Path::new(ETCD).exists())
        .then(|| format!("{ETCD} is not installed (apt-get install etcd-server)"))
}

/// A visible line (libtest captures print!, not direct writes to stderr);
/// under CI a failure instead, since .ci/run installs what the tests need.
pub fn skip(test: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none_or(|v| v.is_empty()),
        "{test}: {why}, and CI must not skip it (.ci/run installs it)"
    );
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
}

static SHARED: OnceLock<Option<Etcd>> = OnceLock::new();

extern "C" fn stop_shared() {
    if let Some(Some(e)) = SHARED.get() {
        stop(e.pid, &e.dir);
    }
}

/// The etcd the tests share; None, with a SKIP line, when it cannot run.
pub fn shared(test: &str) -> Option<&'static Etcd> {
    if let Some(why) = missing() {
        skip(test, &why);
        return None;
    }
    let e = SHARED.get_or_init(|| {
        // Spawned from a thread that never ends, so PR_SET_PDEATHSIG (which
        // follows the spawning thread) fires only when the test process
        // dies; a normal exit stops it through atexit.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let started = std::panic::catch_unwind(|| start_process(false));
            let ok = started.is_ok();
            let _ = tx.send(started.map(|(e, child)| {
                std::mem::forget(child);
                e
            }));
            if ok {
                loop {
                    std::thread::park();
                }
            }
        });
        let mut e = match rx.recv().unwrap() {
            Ok(e) => e,
            Err(_) => panic!("etcd fixture did not start (see the panic above)"),
        };
        e.owned = false;
        unsafe {
            nix::libc::atexit(stop_shared);
        }
        Some(e)
    });
    e.as_ref()
}

/// An etcd of the test's own (to stop, or to enable auth on), killed when
/// dropped. None, with a SKIP line, when etcd cannot run.
pub fn own(test: &str) -> Option<Etcd> {
    if let Some(why) = missing() {
        skip(test, &why);
        return None;
    }
    let (e, child) = start_process(false);
    std::mem::forget(child);
    Some(e)
}

/// An etcd of the test's own on https, its certificate signed by a CA of
/// its own (`ca_file`). None, with a SKIP line, without etcd or openssl.
pub fn own_tls(test: &str) -> Option<Etcd> {
    if let Some(why) = missing() {
        skip(test, &why);
        return None;
    }
    if !Path::new("/usr/bin/openssl").exists() {
        skip(test, "openssl is not installed (apt-get install openssl)");
        return None;
    }
    let (e, child) = start_process(true);
    std::mem::forget(child);
    Some(e)
}

/// `etcdctl ARGS` against `e`; panics on failure. None (with a SKIP line)
/// without etcdctl.
pub fn etcdctl(test: &str, e: &Etcd, args: &[&str]) -> Option<String> {
    if !Path::new("/usr/bin/etcdctl").exists() {
        skip(
            test,
            "/usr/bin/etcdctl is not installed (apt-get install etcd-client)",
        );
        return None;
    }
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", e.endpoint))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl.
fn make_certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=deploy-lock-it CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

/// A port no other test process will hand out, below the kernel's
/// ephemeral range (so no outgoing connection takes it either): each is
/// reserved by an flock on `/tmp/deploy-lock-it-ports/PORT` that this test
/// process holds until it exits, and was bindable when reserved. etcd binds
/// its own sockets, so a listener of ours cannot be handed over; the
/// reservation keeps every test process (ours and other checkouts' runs of
/// this suite) off the port until etcd has it.
pub fn free_port() -> u16 {
    use std::os::fd::AsRawFd;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static HELD: std::sync::Mutex<Vec<fs::File>> = std::sync::Mutex::new(Vec::new());
    const LOW: u32 = 20000;
    const SPAN: u32 = 12000; // 20000..32000, below ip_local_port_range's 32768
    let dir = Path::new("/tmp/deploy-lock-it-ports");
    let _ = fs::create_dir_all(dir);
    // Each test process starts somewhere else in the span.
    let start = (std::process::id() * 97) % SPAN;
    for _ in 0..SPAN {
        let port = (LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % SPAN) as u16;
        let Ok(f) = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        // SAFETY: flock on a descriptor we own.
        let locked =
            unsafe { nix::libc::flock(f.as_raw_fd(), nix::libc::LOCK_EX | nix::libc::LOCK_NB) }
                == 0;
        if locked && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            HELD.lock().unwrap().push(f);
            return port;
        }
    }
    panic!("no free port in 20000..32000");
}

/// A TCP forwarder from a loopback port to `target` that can go dark: while
/// dark it forwards nothing in either direction and accepts but never
/// answers new connections, without closing anything (a network path that
/// drops packets, as opposed to a member that refuses).
pub struct Forwarder {
    pub endpoint: String,
    dark: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Forwarder {
    pub fn new(target: &str) -> Forwarder {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let target = target
            .trim_start_matches("http://")
            .trim_start_matches("https://")
            .to_string();
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", l.local_addr().unwrap());
        let dark = Arc::new(AtomicBool::new(false));
        let d = dark.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(client) = conn else { continue };
                let (target, dark) = (target.clone(), d.clone());
                std::thread::spawn(move || {
                    // A connection made while dark stays silent until light.
                    while dark.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let Ok(server) = std::net::TcpStream::connect(&target) else {
                        return;
                    };
                    let pumps = [
                        (client.try_clone().unwrap(), server.try_clone().unwrap()),
                        (server, client),
                    ];
                    for (from, to) in pumps {
                        let dark = dark.clone();
                        std::thread::spawn(move || pump(from, to, &dark));
                    }
                });
            }
        });
        Forwarder { endpoint, dark }
    }

    /// Stops forwarding (true) or resumes (false).
    pub fn set_dark(&self, dark: bool) {
        self.dark.store(dark, Ordering::Relaxed);
    }
}

fn pump(
    mut from: std::net::TcpStream,
    mut to: std::net::TcpStream,
    dark: &std::sync::atomic::AtomicBool,
) {
    use std::io::Read;
    let _ = from.set_read_timeout(Some(Duration::from_millis(20)));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if dark.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

fn start_process(tls: bool) -> (Etcd, Child) {
    let dir = tempfile::Builder::new()
        .prefix("deploy-lock-etcd.")
        .tempdir()
        .unwrap()
        .keep();
    let log = dir.join("etcd.log");
    let certs = tls.then(|| make_certs(&dir));
    for _attempt in 0..5 {
        let (client, peer) = (free_port(), free_port());
        let scheme = if tls { "https" } else { "http" };
        let endpoint = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let mut cmd = Command::new(ETCD);
        cmd.arg("--name=it")
            .arg(format!("--data-dir={}", dir.join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=it={peer_url}"))
            .args([
                "--heartbeat-interval=10",
                "--election-timeout=100",
                "--log-level=warn",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap());
        if let Some((_, cert, key)) = &certs {
            cmd.arg(format!("--cert-file={}", cert.display()))
                .arg(format!("--key-file={}", key.display()));
        }
        unsafe {
            cmd.pre_exec(|| {
                nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut cfg = ClientConfig::new(vec![endpoint.clone()]);
            cfg.connect_budget = Duration::from_millis(500);
            cfg.ca_file = certs.as_ref().map(|c| c.0.clone());
            if Client::connect(&cfg).is_ok() {
                let e = Etcd {
                    endpoint,
                    ca_file: cfg.ca_file,
                    dir: dir.clone(),
                    pid: child.id() as i32,
                    owned: true,
                    args: Vec::new(),
                };
                return (e, child);
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let text = fs::read_to_string(&log).unwrap_or_default();
                if text.contains("address already in use") {
                    let _ = fs::remove_dir_all(dir.join("data"));
                    break;
                }
                panic!("etcd did not start:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    panic!("etcd found no free ports in 5 attempts");
}

/// A cluster of `n` members of the test's own (each killed when dropped).
/// None, with a SKIP line, when etcd cannot run.
pub fn cluster(test: &str, n: usize) -> Option<Vec<Etcd>> {
    cluster_with(test, n, &[])
}

/// [`cluster`] with more etcd flags for every member.
pub fn cluster_with(test: &str, n: usize, extra: &[&str]) -> Option<Vec<Etcd>> {
    if let Some(why) = missing() {
        skip(test, &why);
        return None;
    }
    let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect();
    let mut members = Vec::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        let endpoint = format!("http://127.0.0.1:{client}");
        // One folder each: a member's drop removes its own.
        let member_dir = tempfile::Builder::new()
            .prefix("deploy-lock-etcd-member.")
            .tempdir()
            .unwrap()
            .keep();
        let args: Vec<String> = vec![
            format!("--name=m{i}"),
            format!("--data-dir={}", member_dir.join("data").display()),
            format!("--listen-client-urls={endpoint}"),
            format!("--advertise-client-urls={endpoint}"),
            format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
            format!("--initial-cluster={}", initial.join(",")),
            "--initial-cluster-state=new".into(),
            "--heartbeat-interval=10".into(),
            "--election-timeout=100".into(),
            "--log-level=warn".into(),
        ]
        .into_iter()
        .chain(extra.iter().map(|a| a.to_string()))
        .collect();
        let pid = spawn_member(
            &args,
            fs::File::create(member_dir.join("etcd.log")).unwrap(),
        );
        members.push(Etcd {
            endpoint,
            ca_file: None,
            dir: member_dir,
            pid,
            owned: true,
            args,
        });
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    for m in &members {
        loop {
            let mut cfg = m.config();
            cfg.connect_budget = Duration::from_millis(500);
            // Ready once it serves a linearizable read (it has a leader).
            let ready = Client::connect(&cfg)
                .is_ok_and(|c| c.get(b"/ready", Duration::from_millis(200)).is_ok());
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "etcd member {} did not start:\n{}",
                m.endpoint,
                fs::read_to_string(m.dir.join("etcd.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Some(members)
}

/// Waits until every thread of `pid` is stopped (state `T` in
/// /proc/PID/task/*/stat), so a SIGSTOPped server answers nothing more.
pub fn wait_stopped(pid: i32) {
    let all_stopped = || {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
                s.rfind(')')
                    .is_some_and(|i| s[i + 1..].trim_start().starts_with('T'))
            })
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !all_stopped() {
        assert!(
            std::time::Instant::now() < deadline,
            "etcd (pid {pid}) did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Waits until process `pid` has a thread named `name` (/proc/PID/task/*/comm):
/// a step the program takes only at a known point (the CLI's `etcd-wait`
/// thread exists once it saw the lock held and started watching it).
pub fn wait_for_thread(pid: i32, name: &str) {
    let has = || {
        std::fs::read_dir(format!("/proc/{pid}/task")).is_ok_and(|tasks| {
            tasks.flatten().any(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
            })
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !has() {
        assert!(
            Instant::now() < deadline,
            "pid {pid} never started a thread {name}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// This thread's id, for [`wait_in_poll`] from another thread.
pub fn tid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Waits until thread `tid` of this process sleeps in read(2) or
/// recvfrom(2) (a blocking socket read: the library's etcd watch reads its
/// stream so), or in poll(2) or ppoll(2): the request before it was sent.
pub fn wait_in_read(tid: i32) {
    // read 0 / 63, recvfrom 45 / 207, poll 7 / -, ppoll 271 / 73.
    wait_in_syscall(
        tid,
        &["0", "45", "7", "271"],
        &["63", "207", "73"],
        "on a read",
    );
}

/// Waits until thread `tid` of this process sleeps in poll(2) or ppoll(2)
/// (/proc/self/task/TID/syscall): the thread is then inside its wait, so
/// what the caller does next happens during that wait, not before it.
pub fn wait_in_poll(tid: i32) {
    // poll 7 (x86_64 only), ppoll 271 / 73.
    wait_in_syscall(tid, &["7", "271"], &["73"], "in poll");
}

/// Waits until thread `tid` of this process sleeps in one of the system
/// calls numbered `x86_64` (or `aarch64` there).
fn wait_in_syscall(tid: i32, x86_64: &[&str], aarch64: &[&str], what: &str) {
    let numbers = if cfg!(target_arch = "x86_64") {
        x86_64
    } else {
        aarch64
    };
    let waiting = || {
        std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall"))
            .is_ok_and(|s| numbers.contains(&s.split_whitespace().next().unwrap_or("")))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !waiting() {
        assert!(
            Instant::now() < deadline,
            "thread {tid} never waited {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
