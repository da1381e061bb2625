//! Faults: the wrapper SIGKILLed at random moments of acquire, run and
//! release; a full disk; a read-only state folder. Afterwards the state file
//! parses with every other key intact, no command is left running, and the
//! lock is recoverable (at once with --force, by itself after the stale
//! timeout); a failed acquisition leaves no half-taken lock.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

/// A small seeded generator (xorshift64*), so a failing run can be replayed
/// with FAULTS_SEED=N.
struct Rng(u64);

impl Rng {
    fn from_env() -> Rng {
        let seed = std::env::var("FAULTS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("faults: FAULTS_SEED={seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, d].
    fn upto(&mut self, d: Duration) -> Duration {
        let ns = d.as_nanos() as u64;
        Duration::from_nanos(if ns == 0 { 0 } else { self.next() % (ns + 1) })
    }
}

/// The keys of the state file that belong to other tools.
const OTHER_KEYS: &str = r#"{
  "deployments": [
    {
      "id": 41,
      "sha": "0123456789abcdef0123456789abcdef01234567",
      "duration": 12.50
    }
  ],
  "environment": "staging",
  "lock": {
    "locked": false
  },
  "slots": {
    "blue": "v1.2.3",
    "green": null
  }
}
"#;

/// The state file parses, is an object, and every key other than
/// `environment` and `lock` is exactly what OTHER_KEYS has, in order.
#[track_caller]
fn assert_other_keys_intact(w: &World, what: &str) {
    let text = fs::read_to_string(w.state_path()).unwrap();
    let v: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: the state file does not parse ({e}):\n{text}"));
    let want: Value = serde_json::from_str(OTHER_KEYS).unwrap();
    let others = |v: &Value| -> Vec<(String, Value)> {
        v.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| *k != "environment" && *k != "lock")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    assert_eq!(others(&v), others(&want), "{what}:\n{text}");
    assert!(
        text.contains("\"duration\": 12.50"),
        "{what}: digits lost:\n{text}"
    );
}

/// A kill between creating the state's temp file and renaming it leaves
/// `.deployment-state.json.tmp.PID`; the next update sweeps it.
#[track_caller]
fn assert_no_temp_files(w: &World, what: &str) {
    let left: Vec<String> = fs::read_dir(w.root.join("deploy/config"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp."))
        .collect();
    assert!(left.is_empty(), "{what}: {left:?}");
}

/// Processes (not zombies) whose command line mentions `marker`: what a
/// killed wrapper may have left running.
fn live_processes_mentioning(marker: &str) -> Vec<(i32, String)> {
    let mut found = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return found;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if !cmdline.contains(marker) {
            continue;
        }
        let state = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rfind(')').map(|i| s[i + 1..].trim_start().chars().next()))
            .flatten();
        if matches!(state, Some('Z' | 'X') | None) {
            continue;
        }
        found.push((pid, cmdline));
    }
    found
}

/// The command under the lock: says `started PID` on stdout, pauses with a
/// shell builtin (so no grandchild outlives it), says `finished`, exits.
const COMMAND: &str = r#"#!/bin/bash
echo "started $$"
read -t "$2" <> "$1/pause"
echo finished
"#;

fn setup(w: &World) -> (PathBuf, PathBuf) {
    w.write_state(OTHER_KEYS);
    let cmd = w.script("bin/under-lock.sh", COMMAND);
    let dir = w.tmp.path().join("talk");
    fs::create_dir(&dir).unwrap();
    nix::unistd::mkfifo(
        &dir.join("pause"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    (cmd, dir)
}

fn spawn_run(w: &World, cmd: &Path, dir: &Path, pause: &str) -> Child {
    let mut c = w.deploy_lock(&[
        "run",
        "staging",
        "--",
        cmd.to_str().unwrap(),
        dir.to_str().unwrap(),
        pause,
    ]);
    c.cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c.grouped().spawn().unwrap()
}

/// Median times of an undisturbed run: spawn to `started`, and `finished` to
/// the wrapper's exit (the release).
fn calibrate() -> (Duration, Duration) {
    let w = World::new();
    let (cmd, dir) = setup(&w);
    let (mut acq, mut rel) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let start = Instant::now();
        let mut child = spawn_run(&w, &cmd, &dir, "0");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        acq.push(start.elapsed());
        line.clear();
        out.read_line(&mut line).unwrap();
        let t = Instant::now();
        assert!(wait_exit(&mut child).success());
        rel.push(t.elapsed());
    }
    acq.sort();
    rel.sort();
    (acq[2], rel[2])
}

/// `Nm Ns`, an age as every message writes it.
fn is_age(text: &str) -> bool {
    text.split_once("m ")
        .and_then(|(m, s)| Some((m, s.strip_suffix('s')?)))
        .is_some_and(|(m, s)| m.parse::<u64>().is_ok() && s.parse::<u64>().is_ok_and(|s| s < 60))
}

/// The refusal of a young lock whose holder was killed (`v`, its status):
/// whole but for the lock's time and age, which depend on where the kill
/// landed and on the clock, so only their shape is checked. `force`: the
/// refused command was `run --force`.
#[track_caller]
fn assert_young_refusal(stderr: &str, v: &Value, force: bool, what: &str) {
    let run = if force { "run --force" } else { "run" };
    let unknown = v["holder"].is_null();
    let (head, tail) = if unknown {
        (
            "ERROR: the staging lock's holder is unknown (no record says who holds it: maybe a legacy deploy.sh that has not written it yet); the lock is ".to_string(),
            format!(
                " old.\nIt is taken over automatically once older than 30 minutes; --force does not take an unknown holder's lock.\n  \
                 wait for it:      deploy-lock {run} --wait staging -- true\n  \
                 once you know nobody deploys: deploy-lock unlock staging\n  \
                 details:          deploy-lock status staging\n"
            ),
        )
    } else {
        let pid = match v["holder"]["pid"].as_i64() {
            Some(pid) => format!("pid {pid}"),
            None => "its process".to_string(),
        };
        (
            format!(
                "ERROR: the staging lock is held by {} since ",
                v["holder"]["locked_by"]
                    .as_str()
                    .unwrap_or("an unknown holder")
            ),
            format!(
                ".\nNot running ({pid} is gone), but the lock is younger than 30 minutes, after which it is taken over automatically.\n  \
                 wait for that:    deploy-lock {run} --wait staging -- true\n  \
                 take it over now: deploy-lock run --force staging -- true\n  \
                 details:          deploy-lock status staging\n"
            ),
        )
    };
    let middle = stderr
        .strip_prefix(&head)
        .and_then(|rest| rest.strip_suffix(&tail))
        .unwrap_or_else(|| panic!("{what}: want\n{head}...{tail}--- got\n{stderr}"));
    let shaped = if unknown {
        is_age(middle)
    } else {
        middle.split_once(" (").is_some_and(|(at, age)| {
            at.parse::<jiff::Timestamp>().is_ok() && age.strip_suffix(" ago)").is_some_and(is_age)
        })
    };
    assert!(shaped, "{what}: {middle:?} in\n{stderr}");
}

impl Tally {
    fn add(&mut self, o: &Tally) {
        self.killed_in_acquire += o.killed_in_acquire;
        self.killed_in_run += o.killed_in_run;
        self.killed_in_release += o.killed_in_release;
        self.finished_before_the_kill += o.finished_before_the_kill;
        self.lock_left += o.lock_left;
        self.zombie_holder += o.zombie_holder;
        self.recovered_with_force += o.recovered_with_force;
        self.recovered_after_stale += o.recovered_after_stale;
        self.free_afterwards += o.free_afterwards;
        self.state_temp_files_left += o.state_temp_files_left;
    }
}

#[derive(Default, Debug)]
struct Tally {
    killed_in_acquire: usize,
    killed_in_run: usize,
    killed_in_release: usize,
    finished_before_the_kill: usize,
    lock_left: usize,
    zombie_holder: usize,
    recovered_with_force: usize,
    recovered_after_stale: usize,
    free_afterwards: usize,
    /// Kills that left a state temp file (swept by the next update).
    state_temp_files_left: usize,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Acquire,
    Run,
    Release,
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("pid {} did not exit", child.id());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Item 4: SIGKILL the wrapper at random moments of acquire, run and release,
/// 120 times (40 per phase; FAULTS_ITERATIONS changes it). After each kill:
/// the state file parses and the other tools' keys are intact; the command
/// is gone (PR_SET_PDEATHSIG); a lock left behind is never taken while
/// merely young (75), is shown with a dead holder, and is recovered at once
/// with `run --force` (every other one) or by a plain `run` once older than
/// the stale timeout (the rest).
#[test]
fn sigkill_at_random_moments_always_leaves_a_recoverable_lock() {
    let iterations: usize = std::env::var("FAULTS_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let mut seeds = Rng::from_env();
    let (t_acquire, t_release) = calibrate();
    let started = Instant::now();
    // Three killers side by side, each on its share of the iterations in
    // worlds of its own: an iteration is mostly waiting (for the kill's
    // moment, for the orphans to go), not CPU.
    let shares: Vec<(std::ops::Range<usize>, Rng)> = (0..3)
        .map(|k| {
            (
                k * iterations / 3..(k + 1) * iterations / 3,
                Rng(seeds.next() | 1),
            )
        })
        .collect();
    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let killers: Vec<_> = shares
            .into_iter()
            .map(|(range, rng)| s.spawn(move || kill_at_random(range, rng, t_acquire, t_release)))
            .collect();
        killers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut tally = Tally::default();
    for t in &tallies {
        tally.add(t);
    }
    assert_eq!(
        tally.recovered_with_force + tally.recovered_after_stale,
        tally.lock_left
    );
    eprintln!(
        "kill -9 injections: {}/{iterations} recovered in {:?} (calibrated acquire {t_acquire:?}, release {t_release:?}): {tally:?}",
        tally.free_afterwards + tally.lock_left,
        started.elapsed()
    );
}

/// The iterations `range` of the test above, with their own generator.
fn kill_at_random(
    range: std::ops::Range<usize>,
    mut rng: Rng,
    t_acquire: Duration,
    t_release: Duration,
) -> Tally {
    let pause = Duration::from_millis(20);
    let mut tally = Tally::default();
    let mut stale_later: Vec<World> = Vec::new();
    for i in range {
        let phase = [Phase::Acquire, Phase::Run, Phase::Release][i % 3];
        let w = World::new();
        let (cmd, dir) = setup(&w);
        let mut child = spawn_run(&w, &cmd, &dir, &format!("{}", pause.as_secs_f64()));
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        match phase {
            Phase::Acquire => {
                // Spread over spawn..started, a little past it.
                std::thread::sleep(rng.upto(t_acquire.mul_f64(1.2)));
            }
            Phase::Run => {
                out.read_line(&mut line).unwrap();
                std::thread::sleep(rng.upto(pause));
            }
            Phase::Release => {
                out.read_line(&mut line).unwrap();
                line.clear();
                out.read_line(&mut line).unwrap();
                std::thread::sleep(rng.upto(t_release.mul_f64(1.2)));
            }
        }
        let already = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let status = wait_exit(&mut child);
        drop(out);
        let what = format!("iteration {i} ({phase:?}, {status:?})");
        if already || status.code().is_some() {
            tally.finished_before_the_kill += 1;
        } else {
            match phase {
                Phase::Acquire => tally.killed_in_acquire += 1,
                Phase::Run => tally.killed_in_run += 1,
                Phase::Release => tally.killed_in_release += 1,
            }
        }

        // No orphan: neither the command nor a half-started child survives.
        let marker = w.tmp.path().to_str().unwrap().to_string();
        wait_until(
            Duration::from_secs(20),
            &format!("{what}: orphans to end"),
            || live_processes_mentioning(&marker).is_empty(),
        );
        assert_other_keys_intact(&w, &what);
        tally.state_temp_files_left += fs::read_dir(w.root.join("deploy/config"))
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .count();

        let lock = w.lock_path("staging");
        if !lock.exists() {
            tally.free_afterwards += 1;
            w.deploy_lock(&["run", "staging", "--", "true"])
                .run()
                .code(0);
            assert_other_keys_intact(&w, &what);
            assert_no_temp_files(&w, &what);
            assert_eq!(
                w.state_json()["lock"],
                serde_json::json!({"locked": false}),
                "{what}"
            );
            continue;
        }
        tally.lock_left += 1;
        // An exiting process loses its command line before it is gone, so
        // the orphan check above can pass while the command is still dying
        // (status then rightly calls it alive): wait until it is gone.
        let status = || {
            let out = w.deploy_lock(&["status", "staging", "--json"]).run();
            out.code(0);
            serde_json::from_str::<Value>(&out.stdout).unwrap()
        };
        wait_until(
            Duration::from_secs(20),
            &format!("{what}: the killed run's command to be gone"),
            || status()["holder_alive"] != true,
        );
        let v = status();
        // Killed before any record was written: the holder is unknown (issue
        // 10), held until stale, never taken by --force; unlock removes it.
        let unknown = v["holder"].is_null();
        let verdict = if unknown { "unknown" } else { "orphaned" };
        assert_eq!(v["verdict"], verdict, "{what}: {v}");
        assert_ne!(v["holder_alive"], true, "{what}: {v}");
        if let Some(pid) = v["holder"]["pid"].as_i64() {
            let zombie = fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s[s.rfind(')').unwrap() + 1..].trim_start().starts_with('Z'));
            tally.zombie_holder += zombie as usize;
        }
        // Young and dead: not taken without --force. The refusal's age
        // depends on where the kill landed: checked but for that.
        let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
        out.code(75).any_stderr();
        assert_young_refusal(&out.stderr, &v, false, &what);
        if i % 2 == 0 {
            if unknown {
                let out = w
                    .deploy_lock(&["run", "--force", "staging", "--", "true"])
                    .run();
                out.code(75).any_stderr();
                assert_young_refusal(&out.stderr, &v, true, &what);
                w.deploy_lock(&["unlock", "staging", "--yes"]).run().code(0);
            }
            let force: &[&str] = if unknown { &[] } else { &["--force"] };
            let args = [&["run"][..], force, &["staging", "--", "true"]].concat();
            let out = w.deploy_lock(&args).run();
            // The takeover is said on stderr.
            out.code(0).any_stderr();
            assert!(!lock.exists(), "{what}: {}", out.stderr);
            assert_other_keys_intact(&w, &what);
            assert_no_temp_files(&w, &what);
            assert_eq!(
                w.state_json()["lock"],
                serde_json::json!({"locked": false}),
                "{what}"
            );
            tally.recovered_with_force += 1;
        } else {
            stale_later.push(w);
        }
    }
    // The rest once they are older than a stale timeout of 0 s, i.e. a
    // second: a plain run takes each over by itself.
    let t = now();
    wait_until(Duration::from_secs(5), "a second to pass", || now() > t);
    for w in &stale_later {
        let out = w
            .deploy_lock(&["run", "staging", "--", "true"])
            .env("DEPLOY_LOCK_STALE_SECS", "0")
            .run();
        // The takeover is said on stderr.
        out.code(0).any_stderr();
        assert!(!w.lock_path("staging").exists(), "{}", out.stderr);
        assert_other_keys_intact(w, "after the stale takeover");
        assert_no_temp_files(w, "after the stale takeover");
        tally.recovered_after_stale += 1;
    }
    tally
}

/// A mount made for one test, unmounted when dropped (declare it after the
/// World so it goes first).
struct Mount(PathBuf);

impl Mount {
    fn run(args: &[&str]) -> bool {
        Command::new("mount")
            .args(args)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// A tmpfs of `size` at `at`, or None (with a visible skip) when this
    /// process may not mount.
    fn tmpfs(at: &Path, size: &str) -> Option<Mount> {
        if !nix::unistd::geteuid().is_root() {
            skip!("mounting a small tmpfs needs root");
            return None;
        }
        let opts = format!("size={size}");
        if !Mount::run(&["-t", "tmpfs", "-o", &opts, "tmpfs", at.to_str().unwrap()]) {
            skip!("cannot mount a tmpfs here");
            return None;
        }
        Some(Mount(at.to_path_buf()))
    }

    /// `at` bind-mounted onto itself read-only.
    fn read_only(at: &Path) -> Option<Mount> {
        let p = at.to_str().unwrap();
        if !Mount::run(&["--bind", p, p]) {
            skip!("cannot bind-mount here");
            return None;
        }
        let m = Mount(at.to_path_buf());
        if !Mount::run(&["-o", "remount,bind,ro", p]) {
            skip!("cannot remount read-only here");
            return None;
        }
        Some(m)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// A folder made read-only for one test: a read-only bind mount as root
/// (root ignores file modes), mode 0555 otherwise. Undone when dropped.
enum ReadOnly {
    Mounted(#[allow(dead_code)] Mount),
    Mode(PathBuf),
}

impl ReadOnly {
    fn new(at: &Path) -> Option<ReadOnly> {
        use std::os::unix::fs::PermissionsExt;
        if nix::unistd::geteuid().is_root() {
            return Mount::read_only(at).map(ReadOnly::Mounted);
        }
        fs::set_permissions(at, fs::Permissions::from_mode(0o555)).unwrap();
        Some(ReadOnly::Mode(at.to_path_buf()))
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        if let ReadOnly::Mode(p) = self {
            let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o755));
        }
    }
}

/// Fills the file system holding `dir` with `dir/filler` until it is full.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler");
    let mut f = fs::File::create(&p).unwrap();
    let chunk = [0u8; 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    p
}

/// Names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Item 4: a full disk under the state file. Taking the lock fails with one
/// clear line and exit 74, the lock directory it had made is removed again,
/// the state and the folder are as they were; with space back, deploys work.
#[test]
fn a_full_disk_under_the_state_file_leaves_no_half_taken_lock() {
    let w = World::new();
    let config = w.root.join("deploy/config");
    let Some(_m) = Mount::tmpfs(&config, "64k") else {
        return;
    };
    w.write_state(OTHER_KEYS);
    fs::write(config.join("deployment-state.json.lock"), "").unwrap();
    let filler = fill(&config);
    let before = fs::read(w.state_path()).unwrap();
    let listing = names(&config);
    let marker = w.tmp.path().join("ran");
    let full = format!(
        "ERROR: cannot use state file {}: No space left on device (os error 28)\n",
        w.state_path().display()
    );
    for args in [
        &["run", "staging", "--", "touch", marker.to_str().unwrap()][..],
        &[
            "run",
            "--force",
            "staging",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
    ] {
        w.deploy_lock(args).run().code(74).stdout("").stderr(&full);
        assert!(
            !w.lock_path("staging").exists(),
            "{args:?}: half-taken lock left"
        );
        assert!(!marker.exists());
        assert_eq!(fs::read(w.state_path()).unwrap(), before);
        assert_eq!(names(&config), listing, "{args:?}: a temp file was left");
    }
    // Force-unlock on a full disk: the directory goes, the state cannot be
    // updated: exit 74 saying so, the state as it was.
    w.legacy_lock("staging", now() - 7200);
    w.deploy_lock(&["unlock", "staging", "--yes"])
        .run()
        .code(74)
        .stderr(&full);
    assert!(!w.lock_path("staging").exists());
    assert_eq!(fs::read(w.state_path()).unwrap(), before);
    assert_eq!(names(&config), listing);
    fs::remove_file(filler).unwrap();
    w.deploy_lock(&["run", "staging", "--", "touch", marker.to_str().unwrap()])
        .run()
        .code(0)
        .stderr("");
    assert!(marker.exists());
    assert_other_keys_intact(&w, "after the disk had space again");
}

/// Item 4: the disk fills up while the command runs, so the release cannot
/// write the state: the lock directory (ours) is still removed, the error is
/// clear, the exit status is the command's, the state parses with its keys;
/// the next deploy, with space back, is not blocked by the leftover record.
#[test]
fn a_disk_that_fills_during_the_run_still_releases_the_lock() {
    let w = World::new();
    let config = w.root.join("deploy/config");
    let Some(_m) = Mount::tmpfs(&config, "64k") else {
        return;
    };
    w.write_state(OTHER_KEYS);
    let state = w.state_path();
    let script = format!(
        r#"while ! grep -q '"pid": '"$$"',' '{s}'; do sleep 0.01; done; head -c 1000000 /dev/zero > '{c}/filler' 2>/dev/null; exit 0"#,
        s = state.display(),
        c = config.display()
    );
    let out = w
        .deploy_lock(&["run", "staging", "--", "sh", "-c", &script])
        .run();
    out.code(0).stdout("").stderr(&format!(
        "ERROR: cannot use state file {}: No space left on device (os error 28)\n",
        state.display()
    ));
    assert!(!w.lock_path("staging").exists());
    assert_other_keys_intact(&w, "after a release on a full disk");
    assert!(
        names(&config).iter().all(|n| !n.contains(".tmp.")),
        "{:?}",
        names(&config)
    );
    fs::remove_file(config.join("filler")).unwrap();
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(0)
        .stderr("");
    assert_eq!(w.state_json()["lock"], serde_json::json!({"locked": false}));
    assert_other_keys_intact(&w, "after the next run");
}

/// Item 4: a full lock folder: mkdir may still succeed but writing
/// `locked_at` does not; the directory is removed again and nothing of the
/// state changes.
#[test]
fn a_full_lock_folder_leaves_no_half_taken_lock() {
    let w = World::new();
    let Some(_m) = Mount::tmpfs(&w.locks, "64k") else {
        return;
    };
    w.write_state(OTHER_KEYS);
    let before = fs::read(w.state_path()).unwrap();
    fs::write(w.locks.join("togather-deploy-staging.guard"), "").unwrap();
    let filler = fill(&w.locks);
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(74)
        .stdout("")
        .stderr(&format!(
            "ERROR: {}: No space left on device (os error 28)\n",
            w.lock_path("staging").display()
        ));
    assert!(!w.lock_path("staging").exists(), "half-taken lock left");
    assert_eq!(fs::read(w.state_path()).unwrap(), before);
    fs::remove_file(filler).unwrap();
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(0);
}

/// Item 4: a read-only state folder (a read-only bind mount as root, who
/// ignores file modes; mode 0555 otherwise). Taking the lock fails clearly
/// with exit 74 and removes the lock directory it made; the state is
/// untouched; nothing is left.
#[test]
fn a_read_only_state_folder_leaves_no_half_taken_lock() {
    let w = World::new();
    let config = w.root.join("deploy/config");
    w.write_state(OTHER_KEYS);
    let before = fs::read(w.state_path()).unwrap();
    let marker = w.tmp.path().join("ran");
    let ro = format!(
        "ERROR: cannot use state file {}: {}\n",
        w.state_path().display(),
        if nix::unistd::geteuid().is_root() {
            "Read-only file system (os error 30)"
        } else {
            "Permission denied (os error 13)"
        }
    );
    // Without, then with the sidecar lock file already there.
    for with_sidecar in [false, true] {
        if with_sidecar {
            fs::write(config.join("deployment-state.json.lock"), "").unwrap();
        }
        let Some(m) = ReadOnly::new(&config) else {
            return;
        };
        let listing = names(&config);
        w.deploy_lock(&["run", "staging", "--", "touch", marker.to_str().unwrap()])
            .run()
            .code(74)
            .stdout("")
            .stderr(&ro);
        assert!(!w.lock_path("staging").exists(), "half-taken lock left");
        assert!(!marker.exists());
        assert_eq!(fs::read(w.state_path()).unwrap(), before);
        assert_eq!(names(&config), listing);
        w.unlock_sh(&["staging"]).run().code(0);
        drop(m);
    }
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(0);
    assert_other_keys_intact(&w, "after the folder was writable again");
}
