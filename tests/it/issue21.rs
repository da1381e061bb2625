//! Issue 21: one decision rendered by every view, a CLI that behaves in CI,
//! and a suite that neither depends on nor leaks into the caller's process.

use std::fs;
use std::time::Duration;

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
        let mut c = w.cmd("sh").env("X", "1");
        let out = c
            .grouped()
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
    // Signals 32 and 33 are glibc's own (thread cancellation and set*id
    // broadcast): its posix_spawn hands them to every child ignored, and
    // glibc installs its handlers over that when a program needs them.
    let glibc_internal = (1u64 << 31) | (1u64 << 32);
    let (ignored, blocked) = sig_masks(&text);
    assert_eq!((ignored & !glibc_internal, blocked), (0, 0), "{text}");
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

// ---------------------------------------------------------------------------
// The state space: every view of a lock agrees with what `run` does.

#[derive(Clone, Copy, Debug)]
enum Dir {
    Absent,
    /// The legacy's directory with its `locked_at`.
    Ours,
    /// The same with a file neither deploy-lock nor the legacy puts there.
    Foreign,
    /// A plain file at the lock path.
    File,
    /// A symlink to a directory at the lock path.
    Symlink,
}

#[derive(Clone, Copy, Debug)]
enum Record {
    ThisEnv,
    OtherEnv,
    None,
    Garbage,
}

#[derive(Clone, Copy, Debug)]
enum Holder {
    Alive,
    Dead,
    Zombie,
    OtherHost,
    /// A record without a pid.
    Unknown,
}

/// One local state: the lock path, the record, its holder, the lock's age.
type State = (Dir, Record, Holder, i64);

/// The processes a state names: a live one and a zombie (both children of
/// this test, the zombie never reaped until the end), a reaped pid.
struct Pids {
    alive: KillOnDrop,
    zombie: KillOnDrop,
    dead: i32,
}

impl Pids {
    fn new(w: &World) -> Pids {
        let alive = w.cmd("sleep").env("X", "1");
        let mut alive = alive;
        alive.cmd.arg("600");
        let alive = alive.spawn_guarded();
        let zombie = KillOnDrop(command("true").spawn().unwrap());
        let zpid = zombie.pid();
        wait_until(PATIENCE, "the zombie", || proc_state(zpid) == Some('Z'));
        Pids {
            alive,
            zombie,
            dead: reaped_pid(),
        }
    }
}

/// Puts the lock into one state: the lock path, the state file, the holder
/// and the lock's age.
fn set_state(w: &World, pids: &Pids, dir: Dir, record: Record, holder: Holder, age: i64) {
    let lock = w.lock_path("staging");
    match fs::symlink_metadata(&lock) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&lock).unwrap(),
        Ok(_) => fs::remove_file(&lock).unwrap(),
        Err(_) => {}
    }
    let at = now() - age;
    match dir {
        Dir::Absent => {}
        Dir::Ours => {
            w.legacy_lock("staging", at);
        }
        Dir::Foreign => {
            w.legacy_lock("staging", at);
            fs::write(lock.join("notes.txt"), "mine\n").unwrap();
        }
        Dir::File => fs::write(&lock, "not a lock\n").unwrap(),
        Dir::Symlink => {
            let target = w.tmp.path().join("elsewhere");
            let _ = fs::create_dir(&target);
            std::os::unix::fs::symlink(&target, &lock).unwrap();
        }
    }
    let (pid, host) = match holder {
        Holder::Alive => (pids.alive.pid().to_string(), hostname()),
        Holder::Dead => (pids.dead.to_string(), hostname()),
        Holder::Zombie => (pids.zombie.pid().to_string(), hostname()),
        Holder::OtherHost => (pids.alive.pid().to_string(), "elsewhere.example".into()),
        Holder::Unknown => ("null".to_string(), hostname()),
    };
    match record {
        Record::ThisEnv => w.legacy_state("staging", at, &pid, &host),
        Record::OtherEnv => w.legacy_state("production", at, &pid, &host),
        Record::None => {
            let _ = fs::remove_file(w.state_path());
        }
        Record::Garbage => w.write_state("{\"lock\": {\"locked\": tru\n"),
    }
}

/// What each view says of the lock as it is now, then what `run` did.
/// Returns a description of any disagreement.
fn views_agree(w: &World, case: &str) -> Option<String> {
    views_agree_with(w, &|args| w.deploy_lock(args), case).err()
}

/// [`views_agree`] through `dl` (deploy-lock with the store's settings):
/// whether `run` took the lock, or what disagreed.
fn views_agree_with(w: &World, dl: &dyn Fn(&[&str]) -> Cmd, case: &str) -> Result<bool, String> {
    let quiet = dl(&["status", "staging", "--quiet"]).run();
    quiet.any_code().any_stderr();
    let json = dl(&["status", "staging", "--json"]).run();
    json.any_code().any_stderr();
    let v: serde_json::Value = match serde_json::from_str(&json.stdout) {
        Ok(v) => v,
        Err(e) => return Err(format!("{case}: status --json is not JSON ({e}): {json:?}")),
    };
    let marker = w.tmp.path().join("ran");
    let _ = fs::remove_file(&marker);
    let run = dl(&["run", "staging", "--", "touch", marker.to_str().unwrap()]).run();
    run.any_code().any_stderr();
    let took = run.code == Some(0) && marker.exists();
    let verdict = v["verdict"].as_str().unwrap_or("?").to_string();
    let state_error = !v["state_error"].is_null();
    let mut wrong = Vec::new();
    if (quiet.code == Some(0)) != took {
        wrong.push(format!("--quiet exits {:?}", quiet.code));
    }
    if !state_error && matches!(verdict.as_str(), "free" | "stale") != took {
        wrong.push(format!("the JSON verdict is {verdict}"));
    }
    if state_error && (json.code != Some(65) || quiet.code != Some(65) || run.code != Some(65)) {
        wrong.push(format!(
            "an unusable state file: --json {:?}, --quiet {:?}, run {:?} (want 65 each)",
            json.code, quiet.code, run.code
        ));
    }
    if !took && quiet.code == Some(75) && run.code != Some(75) {
        wrong.push(format!(
            "--quiet says held (75) but run exits {:?}",
            run.code
        ));
    }
    if wrong.is_empty() {
        return Ok(took);
    }
    Err(format!(
        "{case}: run {} (exit {:?}) but {}\n  run's stderr: {}",
        if took {
            "took the lock"
        } else {
            "did not take it"
        },
        run.code,
        wrong.join(", "),
        run.stderr.trim_end()
    ))
}

/// Every combination of lock path, state record, holder and age, with the
/// run lock free and with it held by a force-unlocked run that still runs
/// (the announced unlock), and with a live waiter in line: `status
/// --quiet`'s exit, the JSON verdict and `run -- touch` agree on whether a
/// deploy starts.
#[test]
fn issue_21_every_view_agrees_with_run_across_the_state_space() {
    let dirs = [
        Dir::Absent,
        Dir::Ours,
        Dir::Foreign,
        Dir::File,
        Dir::Symlink,
    ];
    let holders = [
        Holder::Alive,
        Holder::Dead,
        Holder::Zombie,
        Holder::OtherHost,
        Holder::Unknown,
    ];
    let mut cases = Vec::new();
    for dir in dirs {
        for record in [Record::ThisEnv, Record::OtherEnv] {
            for holder in holders {
                for age in [60, 7200] {
                    cases.push((dir, record, holder, age));
                }
            }
        }
        for age in [60, 7200] {
            cases.push((dir, Record::None, Holder::Unknown, age));
        }
        cases.push((dir, Record::Garbage, Holder::Unknown, 60));
    }
    // Side by side, each part in a world of its own: most of the time is
    // the unusable record's re-read window, waiting rather than CPU.
    // Issue 22: and with a live waiter in line (a free lock is its first).
    let parts: Vec<(bool, bool, &[State])> = [(false, false), (true, false), (false, true)]
        .into_iter()
        .flat_map(|(run_held, queued)| {
            cases
                .chunks(cases.len().div_ceil(4))
                .map(move |c| (run_held, queued, c))
        })
        .collect();
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|s| {
        let workers: Vec<_> = parts
            .iter()
            .map(|&(run_held, queued, part)| {
                s.spawn(move || agree_in_a_world(run_held, queued, part))
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checked: usize = results.iter().map(|r| r.0).sum();
    let wrong: Vec<String> = results.into_iter().flat_map(|r| r.1).collect();
    assert_eq!(checked, 3 * 5 * 23);
    assert!(
        wrong.is_empty(),
        "{} of {checked} states disagree:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// [`views_agree`] for each of `cases` in one world, its run lock free or
/// held by a force-unlocked run whose command still runs: how many states
/// were checked, and the disagreements.
fn agree_in_a_world(run_held: bool, queued: bool, cases: &[State]) -> (usize, Vec<String>) {
    let w = World::new();
    let pids = Pids::new(&w);
    let _waiter = queued.then(|| crate::queue::plant_waiter(&w, "staging"));
    let held = run_held.then(|| {
        let (wrapper, probe, _) = hold_lock(&w, "run");
        w.deploy_lock(&["unlock", "staging", "--yes"]).run();
        (wrapper, probe)
    });
    let mut wrong = Vec::new();
    for &(dir, record, holder, age) in cases {
        set_state(&w, &pids, dir, record, holder, age);
        let case = format!(
            "{dir:?} dir, {record:?} record, {holder:?} holder, {age} s old, run lock {}{}",
            if run_held { "held" } else { "free" },
            if queued { ", a waiter in line" } else { "" }
        );
        wrong.extend(views_agree(&w, &case));
    }
    if let Some((wrapper, probe)) = held {
        probe.send("exit 0");
        finish(wrapper).any_code().any_stderr();
    }
    (cases.len(), wrong)
}

/// One clock reading per look: a refusal's "since" is the lock's own time,
/// never a second off because the message read the clock again after the
/// age was taken (each try straddles a clock second now and then).
#[test]
fn issue_21_a_refusal_says_since_from_the_same_clock_reading_as_its_age() {
    let w = World::new();
    let pids = Pids::new(&w);
    let at = now() - 125;
    w.legacy_lock("staging", at);
    w.legacy_state("staging", at, &pids.alive.pid().to_string(), &hostname());
    let since = format!(
        "ERROR: the staging lock is held by deploy@localhost since {} (",
        iso(at)
    );
    for _ in 0..40 {
        let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
        out.code(75).any_stderr();
        assert!(out.stderr.starts_with(&since), "{}", out.stderr);
    }
}

/// `--conflict-exit-code N` / DEPLOY_LOCK_CONFLICT_EXIT: a refusal and a
/// --wait that gives up exit N with their usual words; the command's own
/// 75 still passes through, so the two are told apart.
#[test]
fn issue_21_conflict_exit_code_renumbers_refusals_and_timeouts_only() {
    let w = World::new();
    let (holder, probe, cmd) = hold_lock(&w, "holder");
    let plain = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    plain.code(75).any_stderr();
    let flagged = w
        .deploy_lock(&["run", "--conflict-exit-code", "3", "staging", "--", "true"])
        .run();
    flagged.code(3).stdout("").any_stderr();
    // The same refusal (its age may tick, its retry has the user's words).
    let head = |t: &str| {
        t.lines()
            .take(2)
            .map(|l| l.split(" since ").next().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        head(&flagged.stderr),
        head(&plain.stderr),
        "{}",
        flagged.stderr
    );
    assert!(
        flagged
            .stderr
            .contains(&format!("Running on this host: sig-child.sh (pid {cmd})")),
        "{}",
        flagged.stderr
    );
    // The shorthand reads it too, and the variable.
    w.script("deploy/scripts/deploy.sh", "#!/bin/sh\nexit 0\n");
    w.deploy_lock(&["staging", "--conflict-exit-code=9"])
        .run()
        .code(9)
        .any_stderr();
    let timeout = w
        .deploy_lock(&["run", "--wait=0.2", "staging", "--", "true"])
        .env("DEPLOY_LOCK_CONFLICT_EXIT", "4")
        .env("DEPLOY_LOCK_WAIT_INTERVAL", "60")
        .run();
    timeout.code(4).stdout("").stderr(&format!(
        "Waiting for the staging lock (held by a deploy-lock run's command, pid {cmd}, under deploy-lock pid {})... 0m 0s\n\
         ERROR: gave up after 0.2 seconds waiting for the staging lock (held by a deploy-lock run's command, pid {cmd}, under deploy-lock pid {})\n",
        holder.pid(),
        holder.pid()
    ));
    probe.send("exit 0");
    finish(holder).code(0).any_stderr();
    // Free now: the command runs, and its own 75 is its own.
    w.deploy_lock(&[
        "run",
        "--conflict-exit-code",
        "3",
        "staging",
        "--",
        "sh",
        "-c",
        "exit 75",
    ])
    .run()
    .code(75);
    // 0 would make a refusal look like success: refused as usage.
    let zero = w
        .deploy_lock(&["run", "--conflict-exit-code", "0", "staging", "--", "true"])
        .run();
    zero.code(2).any_stderr();
    assert!(
        zero.stderr
            .starts_with("ERROR: invalid value '0' for '--conflict-exit-code <N>'"),
        "{}",
        zero.stderr
    );
}

/// Off a terminal (a CI log), `run --wait` prints a progress line at once
/// and then one per --wait-interval, so a waiting job is never silent.
#[test]
fn issue_21_run_wait_prints_progress_off_a_terminal() {
    let w = World::new();
    let (holder, probe, cmd) = hold_lock(&w, "holder");
    let out = w
        .deploy_lock(&[
            "run",
            "--wait=1",
            "--wait-interval=0.2",
            "staging",
            "--",
            "true",
        ])
        .run();
    out.code(124).stdout("").any_stderr();
    let phrase = format!(
        "held by a deploy-lock run's command, pid {cmd}, under deploy-lock pid {}",
        holder.pid()
    );
    let lines: Vec<&str> = out.stderr.lines().collect();
    let (last, progress) = lines.split_last().unwrap();
    assert_eq!(
        *last,
        format!("ERROR: gave up after 1 second waiting for the staging lock ({phrase})")
    );
    assert_eq!(
        progress[0],
        format!("Waiting for the staging lock ({phrase})... 0m 0s"),
        "{}",
        out.stderr
    );
    // One line per 0.2 s beat of the second (how many beats a loaded
    // machine fits in is not asserted beyond the first few).
    assert!(progress.len() >= 2, "{}", out.stderr);
    for l in progress {
        assert!(
            *l == format!("Waiting for the staging lock ({phrase})... 0m 0s"),
            "{}",
            out.stderr
        );
    }
    probe.send("exit 0");
    finish(holder).code(0).any_stderr();
}

/// A shorthand typo gets a suggestion, for commands and environments.
#[test]
fn issue_21_shorthand_typos_get_a_suggestion() {
    let w = World::new();
    w.deploy_lock(&["stauts"]).run().code(2).stderr(
        "ERROR: 'stauts' is neither an environment (development, staging, production) nor a command; a similar command exists: 'status'; see deploy-lock --help\n",
    );
    w.deploy_lock(&["stagign", "--dry-run"]).run().code(2).stderr(
        "ERROR: 'stagign' is neither an environment (development, staging, production) nor a command; a similar environment exists: 'staging'; see deploy-lock --help\n",
    );
    w.deploy_lock(&["frobnicate"]).run().code(2).stderr(
        "ERROR: 'frobnicate' is neither an environment (development, staging, production) nor a command; see deploy-lock --help\n",
    );
}

/// A lock more than a day old: `2d 7h` in the modern persona (status block,
/// refusal, list), minutes and seconds in unlock.sh's legacy block.
#[test]
fn issue_21_ages_over_a_day_are_days_and_hours() {
    let w = World::new();
    let pids = Pids::new(&w);
    let age = 2 * 86_400 + 7 * 3600 + 5 * 60;
    let at = now() - age;
    w.legacy_lock("staging", at);
    w.legacy_state("staging", at, &pids.alive.pid().to_string(), &hostname());
    let modern = w.deploy_lock(&["status", "staging"]).run();
    assert!(
        modern.stdout.contains("\n  Lock age: 2d 7h\n"),
        "{}",
        modern.stdout
    );
    let legacy = w.unlock_sh(&["staging", "--status"]).run();
    legacy.any_code();
    assert!(
        legacy.stdout.contains("\n  Lock age: 3305m ")
            || legacy.stdout.contains("\n  Lock age: 3306m "),
        "{}",
        legacy.stdout
    );
    let refused = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    refused.code(75).any_stderr();
    assert!(
        refused.stderr.starts_with(&format!(
            "ERROR: the staging lock is held by deploy@localhost since {} (2d 7h ago).\n",
            iso(at)
        )),
        "{}",
        refused.stderr
    );
    let list = w.deploy_lock(&["list"]).run();
    assert!(list.stdout.contains("  2d 7h  "), "{}", list.stdout);
}

/// Each subcommand's --help lists the settings it reads, and only those.
#[test]
fn issue_21_each_subcommand_help_shows_only_the_settings_it_reads() {
    let w = World::new();
    let all = [
        "--lock-dir",
        "--project-root",
        "--stale-secs",
        "--wait-interval",
        "--wait-timeout",
        "--backend",
        "--etcd-endpoints",
        "--etcd-prefix",
        "--etcd-ttl",
    ];
    let cases: [(&str, &[&str]); 6] = [
        ("run", &all),
        ("wait", &all[..8]),
        (
            "status",
            &[
                "--lock-dir",
                "--project-root",
                "--stale-secs",
                "--backend",
                "--etcd-endpoints",
                "--etcd-prefix",
            ],
        ),
        (
            "unlock",
            &[
                "--lock-dir",
                "--project-root",
                "--stale-secs",
                "--backend",
                "--etcd-endpoints",
                "--etcd-prefix",
            ],
        ),
        ("log", &["--project-root"]),
        ("generate", &[]),
    ];
    for (sub, want) in cases {
        let help = w.deploy_lock(&[sub, "--help"]).run();
        let shown: Vec<&str> = all
            .iter()
            .copied()
            .filter(|f| help.stdout.contains(&format!("  {f} <")))
            .collect();
        assert_eq!(shown, want, "{sub} --help:\n{}", help.stdout);
    }
}

// ---------------------------------------------------------------------------
// The same agreement on the etcd store: the key, crossed with what this
// machine's lock folder holds (etcd's key decides first; with no key, the
// local lock a run here takes next).

/// The etcd key's state.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Key {
    /// The dead run's own record under a live lease (etcd has not expired
    /// it yet).
    DeadRunsRecordLive,
    /// Another machine's record under a live lease.
    OtherHostLive,
    /// A record put under a lease that was then revoked: the key went with
    /// it (as when etcd expires a dead holder's lease).
    LeaseRevoked,
    /// A value deploy-lock never writes, with no lease.
    ForeignNoLease,
    /// deploy-lock's record put by hand with no lease.
    RecordNoLease,
    Absent,
}

/// What this machine's lock folder holds.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Local {
    Nothing,
    /// What a SIGKILLed etcd run left: its lock directory and state record.
    DeadEtcdRun,
    /// The same with a file neither deploy-lock nor the legacy puts there.
    DeadEtcdRunForeign,
    /// A legacy deploy.sh's lock: its holder running.
    LegacyAlive,
    /// Its holder gone, younger than the stale timeout.
    LegacyDeadYoung,
    /// Its holder gone, older than the stale timeout.
    LegacyDeadOld,
}

/// What a real etcd run leaves when it is SIGKILLed: its lock directory's
/// files, the state file, and its key's value (the lease itself is revoked
/// once captured, as etcd would expire it).
struct DeadEtcdRun {
    files: Vec<(std::ffi::OsString, Vec<u8>)>,
    state: Option<Vec<u8>>,
    value: Vec<u8>,
}

fn kill_an_etcd_run(
    w: &World,
    dl: &dyn Fn(&[&str]) -> Cmd,
    client: &deploy_lock::etcd::Client,
    key: &str,
) -> DeadEtcdRun {
    let pidfile = w.tmp.path().join("etcd-run-pid");
    let hold = "echo $$ > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"; while :; do sleep 0.05; done";
    let mut c = dl(&["run", "staging", "--", "sh", "-c", hold, "_"]);
    c.cmd.arg(&pidfile);
    let mut wrapper = c.spawn_guarded();
    wait_until(PATIENCE, "the etcd run's command", || {
        fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let owner = w.lock_path("staging").join("owner.json");
    wait_until(PATIENCE, "the lock directory to name the command", || {
        fs::read_to_string(&owner).is_ok_and(|s| s.contains(&format!("\"pid\": {pid},")))
    });
    send_signal(wrapper.pid(), nix::sys::signal::Signal::SIGKILL);
    let _ = wrapper.0.wait();
    send_signal(pid, nix::sys::signal::Signal::SIGKILL);
    wait_until(PATIENCE, "the etcd run's command to end", || {
        matches!(proc_state(pid), None | Some('Z'))
    });
    let files = fs::read_dir(w.lock_path("staging"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), fs::read(e.path()).unwrap())
        })
        .collect();
    let t = PATIENCE;
    let kv = client
        .get(key.as_bytes(), t)
        .unwrap()
        .kv
        .expect("the dead run's key");
    assert_ne!(kv.lease, 0, "the dead run's key has a lease");
    assert!(client.lease_revoke(kv.lease, t).unwrap());
    assert!(client.get(key.as_bytes(), t).unwrap().kv.is_none());
    DeadEtcdRun {
        files,
        state: fs::read(w.state_path()).ok(),
        value: kv.value,
    }
}

/// Every etcd key state crossed with the local leftovers that matter on an
/// etcd-backed checkout, against one real etcd: `status --quiet`'s exit,
/// the JSON verdict and `run -- touch` agree, a present key keeps every run
/// out, and with no key a run here takes exactly what the local rules let
/// it take (a dead etcd run's own leftover at any age, issue 17).
#[test]
fn issue_21_every_view_agrees_with_run_across_the_etcd_state_space() {
    use deploy_lock::etcd::wire::Op;
    let test = "issue_21_etcd_state_space";
    let e = crate::etcd_support::need_etcd!(test);
    let prefix = crate::etcd_support::prefix(test);
    let w = World::new();
    let dl = |args: &[&str]| {
        w.deploy_lock(args)
            .env("DEPLOY_LOCK_BACKEND", "etcd")
            .env("DEPLOY_LOCK_ETCD_ENDPOINTS", &e.endpoint)
            .env("DEPLOY_LOCK_ETCD_PREFIX", &prefix)
            .env("DEPLOY_LOCK_ETCD_TTL", "5")
    };
    let key = deploy_lock::etcd::EtcdStore::new(e.client(), &prefix, Duration::from_secs(5))
        .key(deploy_lock::Environment::Staging);
    let client = e.client();
    // The test's own calls wait as long as the harness waits for anything
    // (the store's 2 s call budget ran out beside a full suite at load 60).
    let t = PATIENCE;
    let pids = Pids::new(&w);
    let dead = kill_an_etcd_run(&w, &dl, &client, &key);
    let mut other_host: serde_json::Value = serde_json::from_slice(&dead.value).unwrap();
    other_host["hostname"] = "elsewhere.example".into();
    let other_host = serde_json::to_vec(&other_host).unwrap();
    let put = |value: &[u8], lease: i64| {
        let op = Op::Put {
            value: value.to_vec(),
            lease,
        };
        client.txn(key.as_bytes(), &[], &[op], &[], t).unwrap();
    };
    let keys = [
        Key::DeadRunsRecordLive,
        Key::OtherHostLive,
        Key::LeaseRevoked,
        Key::ForeignNoLease,
        Key::RecordNoLease,
        Key::Absent,
    ];
    let locals = [
        Local::Nothing,
        Local::DeadEtcdRun,
        Local::DeadEtcdRunForeign,
        Local::LegacyAlive,
        Local::LegacyDeadYoung,
        Local::LegacyDeadOld,
    ];
    let mut wrong = Vec::new();
    let mut checked = 0;
    for k in keys {
        for l in locals {
            // The local side first: a leftover with no key at all.
            let lock = w.lock_path("staging");
            match fs::symlink_metadata(&lock) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&lock).unwrap(),
                Ok(_) => fs::remove_file(&lock).unwrap(),
                Err(_) => {}
            }
            let _ = fs::remove_file(w.state_path());
            match l {
                Local::Nothing => {}
                Local::DeadEtcdRun | Local::DeadEtcdRunForeign => {
                    fs::create_dir(&lock).unwrap();
                    for (name, bytes) in &dead.files {
                        fs::write(lock.join(name), bytes).unwrap();
                    }
                    if let Some(state) = &dead.state {
                        fs::write(w.state_path(), state).unwrap();
                    }
                    if l == Local::DeadEtcdRunForeign {
                        fs::write(lock.join("notes.txt"), "mine\n").unwrap();
                    }
                }
                Local::LegacyAlive | Local::LegacyDeadYoung | Local::LegacyDeadOld => {
                    let (pid, age) = match l {
                        Local::LegacyAlive => (pids.alive.pid(), 60),
                        Local::LegacyDeadYoung => (pids.dead, 60),
                        _ => (pids.dead, 7200),
                    };
                    let at = now() - age;
                    w.legacy_lock("staging", at);
                    w.legacy_state("staging", at, &pid.to_string(), &hostname());
                }
            }
            // Then the key, from none.
            client
                .txn(key.as_bytes(), &[], &[Op::Delete], &[], t)
                .unwrap();
            let leased = |value: &[u8]| {
                let (lease, _) = client.lease_grant(Duration::from_secs(600), t).unwrap();
                put(value, lease);
                lease
            };
            let live = match k {
                Key::DeadRunsRecordLive => Some(leased(&dead.value)),
                Key::OtherHostLive => Some(leased(&other_host)),
                Key::LeaseRevoked => {
                    let lease = leased(&dead.value);
                    assert!(client.lease_revoke(lease, t).unwrap());
                    None
                }
                Key::ForeignNoLease => {
                    put(b"not a deploy-lock record\n", 0);
                    None
                }
                Key::RecordNoLease => {
                    put(&dead.value, 0);
                    None
                }
                Key::Absent => None,
            };
            let present = client.get(key.as_bytes(), t).unwrap().kv.is_some();
            assert_eq!(
                present,
                !matches!(k, Key::LeaseRevoked | Key::Absent),
                "{k:?}"
            );
            let case = format!("{k:?} key, {l:?} here");
            match views_agree_with(&w, &dl, &case) {
                Err(why) => wrong.push(why),
                Ok(took) => {
                    // A key keeps every run out; with none, the local rules.
                    let takes = !present
                        && matches!(
                            l,
                            Local::Nothing | Local::DeadEtcdRun | Local::LegacyDeadOld
                        );
                    if took != takes {
                        wrong.push(format!(
                            "{case}: run {} the lock",
                            if took { "took" } else { "did not take" }
                        ));
                    }
                }
            }
            if let Some(lease) = live {
                client.lease_revoke(lease, t).unwrap();
            }
            checked += 1;
        }
    }
    client
        .txn(key.as_bytes(), &[], &[Op::Delete], &[], t)
        .unwrap();
    assert_eq!(checked, 6 * 6);
    assert!(
        wrong.is_empty(),
        "{} of {checked} states disagree:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
