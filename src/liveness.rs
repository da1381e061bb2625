//! Is a recorded holder still running? Answered from /proc without spawning
//! `ps`, and never for a pid that is not a positive integer.

use std::fs;

use serde_json::Value;

/// What /proc says about one live process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    /// The kernel's command name (at most 15 bytes), as `ps -o comm=` starts it.
    pub comm: String,
    /// Field 22 of /proc/PID/stat: start time in clock ticks after boot.
    pub start_ticks: u64,
    /// Field 3: R, S, D, Z, T, ...
    pub state: char,
    /// Field 4: the parent's pid.
    pub ppid: i32,
    /// Field 20: the number of threads (None if the line lacks it).
    pub threads: Option<u64>,
}

impl ProcInfo {
    /// The name exactly as `ps -o comm=` prints it: control characters shown as
    /// `?`, and ` <defunct>` after a zombie.
    pub fn ps_comm(&self) -> String {
        let mut s: String = self
            .comm
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        if self.state == 'Z' {
            s.push_str(" <defunct>");
        }
        s
    }
}

/// Interpreters whose scripts show as the interpreter in /proc's comm.
const INTERPRETERS: &[&str] = &[
    "bash", "sh", "dash", "zsh", "ksh", "fish", "python", "python3", "perl", "ruby", "node",
];

/// The name the `deploy-lock` persona shows for a running process: its comm,
/// and for an interpreter the script it runs, from /proc/PID/cmdline:
/// `bash (deploy.sh)` (a `#!/usr/bin/env bash` script's comm is `bash`).
pub fn display_name(pid: i32, comm: &str) -> String {
    let base = comm.trim_end_matches(" <defunct>");
    if !INTERPRETERS.contains(&base) {
        return comm.to_string();
    }
    let script = fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|raw| {
            let args: Vec<&[u8]> = raw.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
            // After the interpreter, skip its options (`bash -e x.sh`, `-c`
            // means no script file).
            let mut rest = args.iter().skip(1);
            loop {
                let a = rest.next()?;
                if a == b"-c" {
                    return None;
                }
                if !a.starts_with(b"-") {
                    let name =
                        std::path::Path::new(std::ffi::OsStr::new(std::str::from_utf8(a).ok()?))
                            .file_name()?
                            .to_string_lossy()
                            .chars()
                            .map(|c| if c.is_control() { '?' } else { c })
                            .collect::<String>();
                    return Some(name);
                }
            }
        });
    match script {
        Some(s) => format!("{comm} ({s})"),
        None => comm.to_string(),
    }
}

/// A pid from a state file, if it is one we may probe: a JSON integer in
/// 1..=i32::MAX (a string of digits, which hand-edits produce, is accepted too).
/// Zero, negatives, fractions and anything else would make kill(2) or /proc
/// address something other than one process.
pub fn valid_pid(v: &Value) -> Option<i32> {
    let n: i64 = match v {
        Value::Number(n) => n.as_i64()?,
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()?
        }
        _ => return None,
    };
    i32::try_from(n).ok().filter(|p| *p > 0)
}

/// Reads /proc/PID/stat. None when no such process exists (or it is a thread
/// id rather than a process id, which `ps -p` would not list either).
pub fn probe(pid: i32) -> Option<ProcInfo> {
    if pid <= 0 {
        return None;
    }
    parse_stat(&read_proc_file(&format!("/proc/{pid}/stat"))?)
}

/// A /proc file read whole in as few reads as it allows: the kernel reports
/// size 0 for these, so `fs::read` would start with 32-byte reads and double
/// (seven reads for one stat line, which status makes on every call).
fn read_proc_file(path: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::with_capacity(1024);
    fs::File::open(path)
        .ok()?
        .take(1 << 20)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// The processes one look at a lock has seen: each pid's /proc/PID/stat is
/// read once per look, so the verdict, the holder's liveness and the legacy
/// "Process N is still running" line judge one reading of it. (Read twice, a
/// holder ending between the reads was both running and dead in one status.)
#[derive(Default)]
pub struct Sightings {
    seen: std::cell::RefCell<Vec<(i32, Option<ProcInfo>)>>,
}

impl Sightings {
    pub fn new() -> Sightings {
        Sightings::default()
    }

    /// [`probe`], answered from this look's first reading of `pid`.
    pub fn probe(&self, pid: i32) -> Option<ProcInfo> {
        if let Some((_, info)) = self.seen.borrow().iter().find(|(p, _)| *p == pid) {
            return info.clone();
        }
        let info = probe(pid);
        self.seen.borrow_mut().push((pid, info.clone()));
        info
    }
}

/// Parses `pid (comm) S ppid ...`; comm may itself hold spaces and ')'.
pub fn parse_stat(stat: &[u8]) -> Option<ProcInfo> {
    let open = stat.iter().position(|&b| b == b'(')?;
    let close = stat.iter().rposition(|&b| b == b')')?;
    let comm = String::from_utf8_lossy(stat.get(open + 1..close)?).into_owned();
    let rest = std::str::from_utf8(stat.get(close + 1..)?).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let ppid = fields.get(1)?.parse().ok()?;
    // Fields after the comm start at field 3, so field 22 is index 19.
    let start_ticks = fields.get(19)?.parse().ok()?;
    let threads = fields.get(17).and_then(|t| t.parse().ok());
    Some(ProcInfo {
        comm,
        start_ticks,
        state,
        ppid,
        threads,
    })
}

/// This boot's id; with a start time it pins a pid to one process even across
/// reboots and pid reuse.
pub fn boot_id() -> Option<String> {
    // Read once per process: the boot does not change under us, and one
    // status asks for it for every recorded process it judges.
    static BOOT_ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT_ID
        .get_or_init(|| {
            fs::read_to_string("/proc/sys/kernel/random/boot_id")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .clone()
}

/// A recorded process identity.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ProcessIdentity {
    pub pid: i32,
    pub start_ticks: Option<u64>,
    pub boot_id: Option<String>,
}

impl ProcessIdentity {
    pub fn of_pid(pid: i32) -> Option<ProcessIdentity> {
        let info = probe(pid)?;
        Some(ProcessIdentity {
            pid,
            start_ticks: Some(info.start_ticks),
            boot_id: boot_id(),
        })
    }

    pub fn of_self() -> Option<ProcessIdentity> {
        ProcessIdentity::of_pid(std::process::id() as i32)
    }

    /// The running process this identity names, if it still runs. A pid alone
    /// (the legacy record) counts as alive while that pid exists; with a start
    /// time and boot id both must match, so a recycled pid is not mistaken for
    /// the holder.
    pub fn running(&self) -> Option<ProcInfo> {
        self.running_in(&Sightings::new())
    }

    /// [`running`](Self::running) as one look saw it.
    pub fn running_in(&self, look: &Sightings) -> Option<ProcInfo> {
        let info = look.probe(self.pid)?;
        if let Some(ticks) = self.start_ticks
            && ticks != info.start_ticks
        {
            return None;
        }
        if let Some(recorded) = &self.boot_id
            && boot_id().is_some_and(|now| &now != recorded)
        {
            return None;
        }
        Some(info)
    }

    /// [`running`](Self::running), except that a process that has exited and
    /// only waits to be reaped is not alive: its deploy is over and `kill`
    /// cannot stop it, so its lock may be recovered. (`ps`, and so the legacy
    /// status line, still lists it, as `<defunct>`.) A thread-group leader
    /// that called pthread_exit also shows `Z` while its other threads run:
    /// that one is alive.
    pub fn alive(&self) -> Option<ProcInfo> {
        self.alive_in(&Sightings::new())
    }

    /// [`alive`](Self::alive) as one look saw it.
    pub fn alive_in(&self, look: &Sightings) -> Option<ProcInfo> {
        let info = self.running_in(look)?;
        if matches!(info.state, 'Z' | 'X') && info.threads.is_none_or(|n| n <= 1) {
            return None;
        }
        Some(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_positive_integers_are_pids() {
        assert_eq!(valid_pid(&json!(12345)), Some(12345));
        assert_eq!(valid_pid(&json!("12345")), Some(12345));
        for bad in [
            json!(0),
            json!(-1),
            json!(1.5),
            json!(4294967297u64),
            json!("1; rm -rf /"),
            json!(""),
            json!(null),
            json!(true),
            json!([1]),
        ] {
            assert_eq!(valid_pid(&bad), None, "{bad}");
        }
    }

    #[test]
    fn parse_stat_handles_parens_in_comm() {
        let line = b"42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 777 1000 10";
        let info = parse_stat(line).unwrap();
        assert_eq!(info.comm, "a) b (c)");
        assert_eq!(info.state, 'S');
        assert_eq!(info.start_ticks, 777);
    }

    #[test]
    fn self_is_running_and_a_wrong_start_time_is_not() {
        let me = ProcessIdentity::of_self().unwrap();
        assert!(me.running().is_some());
        let other = ProcessIdentity {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(other.running().is_none());
        let rebooted = ProcessIdentity {
            boot_id: Some("not-this-boot".into()),
            ..me
        };
        assert!(rebooted.running().is_none());
    }

    #[test]
    fn an_unreaped_zombie_runs_for_ps_but_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped yet: wait until the kernel shows it as a zombie.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while probe(pid).is_none_or(|i| i.state != 'Z') {
            assert!(std::time::Instant::now() < deadline, "never a zombie");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let id = ProcessIdentity::of_pid(pid).unwrap();
        assert_eq!(id.running().unwrap().state, 'Z');
        assert_eq!(id.alive(), None);
        child.wait().unwrap();
        let me = ProcessIdentity::of_self().unwrap();
        assert!(me.alive().is_some());
    }

    #[test]
    fn an_interpreter_shows_its_script() {
        let t = tempfile::tempdir().unwrap();
        let script = t.path().join("deploy.sh");
        std::fs::write(&script, "read -r _\n").unwrap();
        let mut child = std::process::Command::new("bash")
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.windows(9).any(|w| w == b"deploy.sh"))
        {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(display_name(pid, "bash"), "bash (deploy.sh)");
        assert_eq!(display_name(pid, "deploy.sh"), "deploy.sh");
        drop(child.stdin.take());
        child.wait().unwrap();
    }

    #[test]
    fn one_look_judges_one_reading_of_a_process() {
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let id = ProcessIdentity::of_pid(child.id() as i32).unwrap();
        let look = Sightings::new();
        assert!(id.alive_in(&look).is_some());
        child.kill().unwrap();
        child.wait().unwrap();
        // Gone (and reaped): a new look sees it so; the first look keeps
        // its reading, so every judgement in it agrees.
        assert!(id.alive().is_none());
        assert!(Sightings::new().probe(id.pid).is_none());
        assert!(id.alive_in(&look).is_some());
        assert!(id.running_in(&look).is_some());
    }

    #[test]
    fn zombie_comm_is_marked_defunct() {
        let z = ProcInfo {
            ppid: 1,
            comm: "deploy.sh".into(),
            start_ticks: 1,
            state: 'Z',
            threads: Some(1),
        };
        assert_eq!(z.ps_comm(), "deploy.sh <defunct>");
    }
}
