//! The unlock.sh persona against the real-shaped bash unlock.sh
//! (tests/fixtures/legacy-unlock.sh: rmdir then rm -rf, age from the record's
//! locked_at through `date -d`), on the same files: for every state below,
//! `unlock.sh staging` and `unlock.sh staging --force` print the same stdout
//! (the fixture's colour escapes aside) with the same exit code, except the
//! deviations listed in [`Deviation`], each asserted as exactly what it is.

use std::fs;
use std::process::Child;

use crate::harness::*;
use crate::legacy_block::plain;

/// Where deploy-lock prints something else than the legacy, on purpose
/// (docs/reference.md "What changed, on purpose" and unlock.sh(1) list the same).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Deviation {
    None,
    /// A control character (a newline) in a record value: the legacy printed
    /// it raw, so a value could forge lines of the block; ours prints `?`.
    ControlCharacter,
    /// A file (not a directory) at the lock path: the legacy said "Not found
    /// (unlocked)" while it blocks every deploy; ours adds a ⚠ line saying so.
    /// With --force the legacy then said "already removed" and reset the
    /// record, leaving the file blocking; ours refuses (exit 1), nothing
    /// changed.
    FileAtLockPath,
    /// A symlink at the lock path, with --force: the legacy removed the link
    /// (after following it for `-d`) and reset the record; ours never
    /// follows or removes a symlink there and refuses (exit 1), nothing
    /// changed. Its status block is the legacy's.
    SymlinkForce,
}

/// The end of the --force banner, after which the legacy acted.
const BANNER_END: &str = "  - The lock is stale (>30 minutes old)\n\n";

/// What a state's setup needs beyond the world.
struct Live {
    pid: u32,
    /// A lock deploy-lock took whose wrapper was killed: its owner.json and
    /// state file, as left behind.
    dl_owner: Vec<u8>,
    dl_locked_at: Vec<u8>,
    dl_state: Vec<u8>,
}

struct Case {
    name: &'static str,
    setup: fn(&World, &Live),
    deviation: Deviation,
}

fn state_with_lock(w: &World, lock: &str) {
    w.write_state(&format!(
        "{{\n  \"environment\": \"staging\",\n  \"lock\": {lock},\n  \"history\": [1, 2]\n}}\n"
    ));
}

/// A locked record with these fields replaced (JSON values, raw).
fn record(w: &World, fields: &[(&str, &str)]) {
    record_of(w, DEAD.with(|d| d.get()), fields)
}

thread_local! {
    /// A pid that ran and is gone, one for the whole test, so that every run
    /// of a state sees the same record.
    static DEAD: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    static T0: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

fn record_of(w: &World, dead: u32, fields: &[(&str, &str)]) {
    let t = t0() - 125;
    let mut base: Vec<(String, String)> = vec![
        ("locked".into(), "true".into()),
        (
            "lock_id".into(),
            "\"lock_1890d66a41888860_47448a50c1f61cc6be49eaf4\"".into(),
        ),
        (
            "deployment_id".into(),
            "\"dep_1890d66a41888860_47448a50c1f61cc6be49eaf4\"".into(),
        ),
        ("locked_by".into(), "\"deploy@localhost\"".into()),
        ("locked_at".into(), format!("\"{}\"", iso(t))),
        ("lock_expires_at".into(), format!("\"{}\"", iso(t + 1800))),
        ("pid".into(), dead.to_string()),
        ("hostname".into(), format!("\"{}\"", hostname())),
    ];
    for (k, v) in fields {
        match base.iter_mut().find(|(bk, _)| bk == k) {
            Some(slot) if *v == "DROP" => slot.1 = String::new(),
            Some(slot) => slot.1 = v.to_string(),
            None => base.push((k.to_string(), v.to_string())),
        }
    }
    let body: Vec<String> = base
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("\"{k}\": {v}"))
        .collect();
    state_with_lock(w, &format!("{{{}}}", body.join(", ")));
}

fn dir(w: &World) {
    w.legacy_lock("staging", t0() - 125);
}

/// The test's one "now" for setting up records and lock directories, so
/// every run of a state sees the same files.
fn t0() -> i64 {
    T0.with(|t| t.get())
}

const CASES: &[Case] = &[
    Case {
        name: "free, no state file",
        setup: |_, _| {},
        deviation: Deviation::None,
    },
    Case {
        name: "free, unlocked record",
        setup: |w, _| state_with_lock(w, "{\"locked\": false}"),
        deviation: Deviation::None,
    },
    Case {
        name: "free, force-unlocked record (locked false, id null, rest kept)",
        setup: |w, _| record(w, &[("locked", "false"), ("deployment_id", "null")]),
        deviation: Deviation::None,
    },
    Case {
        name: "legacy-held, alive",
        setup: |w, l| {
            dir(w);
            record(w, &[("pid", &l.pid.to_string())]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "legacy-held, alive, stale record",
        setup: |w, l| {
            w.legacy_lock("staging", t0() - 4000);
            record(
                w,
                &[
                    ("pid", &l.pid.to_string()),
                    ("locked_at", &format!("\"{}\"", iso(t0() - 4000))),
                ],
            );
        },
        deviation: Deviation::None,
    },
    Case {
        name: "legacy-held, dead, young",
        setup: |w, _| {
            dir(w);
            record(w, &[]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "legacy-held, dead, stale",
        setup: |w, _| {
            w.legacy_lock("staging", t0() - 72030);
            record(w, &[("locked_at", &format!("\"{}\"", iso(t0() - 72030)))]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "another host, young",
        setup: |w, _| {
            dir(w);
            record(w, &[("hostname", "\"elsewhere.example\""), ("pid", "4242")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "another host, stale",
        setup: |w, _| {
            w.legacy_lock("staging", t0() - 7200);
            record(
                w,
                &[
                    ("hostname", "\"elsewhere.example\""),
                    ("locked_at", &format!("\"{}\"", iso(t0() - 7200))),
                ],
            );
        },
        deviation: Deviation::None,
    },
    Case {
        name: "record old, directory fresh (age from the record: stale)",
        setup: |w, _| {
            w.legacy_lock("staging", t0() - 5);
            record(w, &[("locked_at", &format!("\"{}\"", iso(t0() - 3725)))]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "record fresh, directory old (age from the record: not stale)",
        setup: |w, _| {
            w.legacy_lock("staging", t0() - 9000);
            record(w, &[("locked_at", &format!("\"{}\"", iso(t0() - 61)))]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "record a second off the directory",
        setup: |w, _| {
            w.legacy_lock("staging", t0() - 126);
            record(w, &[]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "directory, unlocked record (orphaned)",
        setup: |w, _| {
            dir(w);
            state_with_lock(w, "{\"locked\": false}");
        },
        deviation: Deviation::None,
    },
    Case {
        name: "directory, no state file",
        setup: |w, _| dir(w),
        deviation: Deviation::None,
    },
    Case {
        name: "empty directory, no state file",
        setup: |w, _| fs::create_dir(w.lock_path("staging")).unwrap(),
        deviation: Deviation::None,
    },
    Case {
        name: "directory holding a foreign file",
        setup: |w, _| {
            dir(w);
            fs::write(w.lock_path("staging").join("notes.txt"), "x\n").unwrap();
            record(w, &[]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked record, no directory",
        setup: |w, _| record(w, &[]),
        deviation: Deviation::None,
    },
    Case {
        name: "locked record of a live process, no directory",
        setup: |w, l| record(w, &[("pid", &l.pid.to_string())]),
        deviation: Deviation::None,
    },
    Case {
        name: "record names another environment at the top",
        setup: |w, _| {
            dir(w);
            record(w, &[]);
            let s = w.state().replace(
                "\"environment\": \"staging\"",
                "\"environment\": \"production\"",
            );
            w.write_state(&s);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "no lock object",
        setup: |w, _| w.write_state("{\"environment\": \"staging\"}\n"),
        deviation: Deviation::None,
    },
    Case {
        name: "lock null",
        setup: |w, _| w.write_state("{\"environment\": \"staging\", \"lock\": null}\n"),
        deviation: Deviation::None,
    },
    Case {
        name: "locked is the string \"true\"",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked", "\"true\"")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked is the number 1",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked", "1")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked is \"yes\"",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked", "\"yes\"")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "pid is a string of digits (dead)",
        setup: |w, _| {
            dir(w);
            record(w, &[("pid", &format!("\"{}\"", DEAD.with(|d| d.get())))]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "pid is a string of digits (alive)",
        setup: |w, l| {
            dir(w);
            record(w, &[("pid", &format!("\"{}\"", l.pid))]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "pid is not a number",
        setup: |w, _| {
            dir(w);
            record(w, &[("pid", "\"abc\"")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "pid is huge",
        setup: |w, _| {
            dir(w);
            record(w, &[("pid", "99999999999")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "pid is 0",
        setup: |w, _| {
            dir(w);
            record(w, &[("pid", "0")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "pid is -1",
        setup: |w, _| {
            dir(w);
            record(w, &[("pid", "-1")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "pid is not a number, another host",
        setup: |w, _| {
            dir(w);
            record(
                w,
                &[("pid", "\"abc\""), ("hostname", "\"elsewhere.example\"")],
            );
        },
        deviation: Deviation::None,
    },
    Case {
        name: "no pid",
        setup: |w, _| {
            dir(w);
            record(w, &[("pid", "DROP")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "no hostname",
        setup: |w, _| {
            dir(w);
            record(w, &[("hostname", "DROP")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "nulls everywhere but locked",
        setup: |w, _| {
            dir(w);
            record(
                w,
                &[
                    ("locked_by", "null"),
                    ("locked_at", "null"),
                    ("deployment_id", "null"),
                    ("pid", "null"),
                    ("hostname", "null"),
                ],
            );
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked_at is not a time",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked_at", "\"soon\"")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked_at is a number",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked_at", "1770150346")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked_at with a space instead of T, no zone",
        setup: |w, _| {
            dir(w);
            let t = jiff::Timestamp::from_second(t0() - 300).unwrap();
            record(
                w,
                &[(
                    "locked_at",
                    &format!("\"{}\"", t.strftime("%Y-%m-%d %H:%M:%S")),
                )],
            );
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked_at with an offset",
        setup: |w, _| {
            dir(w);
            let t = jiff::Timestamp::from_second(t0() - 2000 + 3600).unwrap();
            record(
                w,
                &[(
                    "locked_at",
                    &format!("\"{}+01:00\"", t.strftime("%Y-%m-%dT%H:%M:%S")),
                )],
            );
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked_at as @EPOCH",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked_at", &format!("\"@{}\"", t0() - 4000))]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked_at as a date alone",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked_at", "\"2026-02-03\"")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked_at with a trailing UTC",
        setup: |w, _| {
            dir(w);
            let t = jiff::Timestamp::from_second(t0() - 90).unwrap();
            record(
                w,
                &[(
                    "locked_at",
                    &format!("\"{} UTC\"", t.strftime("%Y-%m-%d %H:%M:%S")),
                )],
            );
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked_at with fractions of a second",
        setup: |w, _| {
            dir(w);
            let t = jiff::Timestamp::from_second(t0() - 95).unwrap();
            record(
                w,
                &[(
                    "locked_at",
                    &format!("\"{}.750Z\"", t.strftime("%Y-%m-%dT%H:%M:%S")),
                )],
            );
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked_at in jiff's basic form (date -d refuses it)",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked_at", "\"20260203T202546Z\"")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked_at in the future",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked_at", &format!("\"{}\"", iso(t0() + 65)))]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "locked_at exactly at the stale timeout",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked_at", &format!("\"{}\"", iso(t0() - 1800)))]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "values that are objects and arrays",
        setup: |w, _| {
            dir(w);
            record(
                w,
                &[("locked_by", "{\"a\": 1}"), ("deployment_id", "[1, 2]")],
            );
        },
        deviation: Deviation::None,
    },
    Case {
        name: "unicode in values",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked_by", "\"dépl oy@hôte\"")]);
        },
        deviation: Deviation::None,
    },
    Case {
        name: "a newline in locked_by",
        setup: |w, _| {
            dir(w);
            record(w, &[("locked_by", "\"deploy\\nLocked: false\"")]);
        },
        deviation: Deviation::ControlCharacter,
    },
    Case {
        name: "a file at the lock path",
        setup: |w, _| {
            fs::write(w.lock_path("staging"), "not a directory\n").unwrap();
            record(w, &[]);
        },
        deviation: Deviation::FileAtLockPath,
    },
    Case {
        name: "a symlink to a directory at the lock path",
        setup: |w, _| {
            let target = w.tmp.path().join("elsewhere.lock");
            fs::create_dir(&target).unwrap();
            std::os::unix::fs::symlink(&target, w.lock_path("staging")).unwrap();
            record(w, &[]);
        },
        deviation: Deviation::SymlinkForce,
    },
    Case {
        name: "deploy-lock-held, its wrapper killed (owner.json, dead holder)",
        setup: |w, l| {
            let d = w.lock_path("staging");
            fs::create_dir(&d).unwrap();
            fs::write(d.join("owner.json"), &l.dl_owner).unwrap();
            fs::write(d.join("locked_at"), &l.dl_locked_at).unwrap();
            fs::write(w.state_path(), &l.dl_state).unwrap();
        },
        deviation: Deviation::None,
    },
];

/// Removes everything a setup made, so the next one starts free.
fn clear(w: &World) {
    let p = w.lock_path("staging");
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(&p).unwrap(),
        Ok(_) => fs::remove_file(&p).unwrap(),
        Err(_) => {}
    }
    let _ = fs::remove_dir_all(w.tmp.path().join("elsewhere.lock"));
    let _ = fs::remove_file(w.state_path());
}

/// The fixture's stdout and exit code turned into what deploy-lock prints
/// for `case`.
fn expected(
    case: &Case,
    w: &World,
    force: bool,
    fixture: &str,
    code: Option<i32>,
) -> (String, Option<i32>) {
    let refused = |text: &str| match text.find(BANNER_END) {
        Some(i) => (text[..i + BANNER_END.len()].to_string(), Some(1)),
        None => (text.to_string(), code),
    };
    match case.deviation {
        Deviation::None => (fixture.to_string(), code),
        Deviation::ControlCharacter => (
            fixture.replace("deploy\nLocked: false", "deploy?Locked: false"),
            code,
        ),
        Deviation::FileAtLockPath => {
            let text = fixture.replacen(
                "Lock directory: Not found (unlocked)\n",
                &format!(
                    "Lock directory: Not found (unlocked)\n  ⚠ {} is a regular file, not a lock directory: it blocks every deploy; check it and remove it by hand\n",
                    w.lock_path("staging").display()
                ),
                1,
            );
            if force { refused(&text) } else { (text, code) }
        }
        Deviation::SymlinkForce if force => refused(fixture),
        Deviation::SymlinkForce => (fixture.to_string(), code),
    }
}

/// The seconds of the block's `  Lock age: Mm Ss` line.
fn age_of(text: &str) -> Option<i64> {
    let line = text.lines().find_map(|l| l.strip_prefix("  Lock age: "))?;
    let (m, s) = line.split_once("m ")?;
    Some(m.parse::<i64>().ok()? * 60 + s.strip_suffix('s')?.parse::<i64>().ok()?)
}

fn without_age(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with("  Lock age: "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One action on one state: the fixture once, ours around it (the clock
/// second may tick between), each on freshly set-up files.
fn compare(
    w: &World,
    fixture: &std::path::Path,
    case: &Case,
    live: &Live,
    force: bool,
) -> Result<(), String> {
    let args: &[&str] = if force {
        &["staging", "--force"]
    } else {
        &["staging"]
    };
    let ours = |w: &World| {
        clear(w);
        (case.setup)(w, live);
        let out = w.unlock_sh(args).stdin(b"yes\n").run();
        // Compared below as values; stderr is not part of the contract.
        out.any_code().any_stderr();
        let after = force.then(|| fs::read(w.state_path()).ok());
        (out, after)
    };
    let (before, before_state) = ours(w);
    clear(w);
    (case.setup)(w, live);
    let mut bash = w.cmd(fixture);
    bash.cmd.args(args);
    let bash = bash.stdin(b"yes\n").run();
    bash.any_code().any_stderr();
    let bash_state = force.then(|| fs::read(w.state_path()).ok());
    let (want, want_code) = expected(case, w, force, &plain(&bash.stdout), bash.code);
    // Once more only if the clock second may have ticked in between.
    let after = if want == before.stdout {
        None
    } else {
        Some(ours(w).0.stdout.clone())
    };
    if want_code != before.code {
        return Err(format!(
            "exit {:?} (fixture, as expected of us) vs {:?} (ours)",
            want_code, before.code
        ));
    }
    // The fixture ran between our two runs: its age (bash forks jq, date and
    // ps, slow on a loaded machine) lies between theirs, the rest is equal.
    let between = after.as_ref().is_some_and(|after| {
        let (lo, hi, mid) = (age_of(&before.stdout), age_of(after), age_of(&want));
        without_age(&want) == without_age(&before.stdout)
            && matches!((lo, mid, hi), (Some(l), Some(m), Some(h)) if l <= m && m <= h)
    });
    if want != before.stdout && Some(&want) != after.as_ref() && !between {
        return Err(format!(
            "--- fixture (as expected of us)\n{want}--- ours\n{}",
            before.stdout
        ));
    }
    // --force leaves the same state file behind (key order and layout
    // aside: jq and we both pretty-print, but only the values must agree).
    // A refusal changes nothing.
    let bash_state = if want_code == bash.code {
        bash_state
    } else {
        None
    };
    if let (Some(a), Some(b)) = (bash_state.flatten(), before_state.flatten()) {
        let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).ok();
        if parse(&a) != parse(&b) {
            return Err(format!(
                "state after --force differs:\n--- fixture\n{}\n--- ours\n{}",
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b)
            ));
        }
    }
    Ok(())
}

/// Compares `cases` in a world of their own (its live deploy.sh, dead pid
/// and killed run's leftovers; the thread's DEAD and T0): how many
/// comparisons, and the differences.
fn compare_in_a_world(cases: &[Case]) -> (usize, Vec<String>) {
    let w = World::new();
    let fixture = w.install_fixture("legacy-unlock.sh", "deploy/scripts/legacy-unlock.sh");
    // A live process named deploy.sh for the whole test (which may take
    // minutes on a loaded machine).
    let script = w.script(
        "bin/deploy.sh",
        "#!/bin/bash\nread -r -t 900 <> \"$0.fifo\"\n",
    );
    nix::unistd::mkfifo(
        &w.root.join("bin/deploy.sh.fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let mut deploy: Child = std::process::Command::new(script)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = deploy.id();
    wait_until(PATIENCE, "deploy.sh to start", || {
        fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c == "deploy.sh\n")
    });
    let dead = dead_pid();
    DEAD.with(|d| d.set(dead));
    T0.with(|t| t.set(now()));
    // A deploy-lock run whose wrapper is killed mid-run leaves its lock.
    w.deploy_lock(&["run", "staging", "--", "sh", "-c", "kill -KILL $PPID"])
        .run()
        .any_code()
        .any_stderr();
    let d = w.lock_path("staging");
    let live = Live {
        pid: deploy.id(),
        dl_owner: fs::read(d.join("owner.json")).unwrap(),
        dl_locked_at: fs::read(d.join("locked_at")).unwrap(),
        dl_state: fs::read(w.state_path()).unwrap(),
    };
    clear(&w);
    let mut failures = Vec::new();
    let mut compared = 0;
    for case in cases {
        for force in [false, true] {
            compared += 1;
            // A clock second (or minute, for ls -ld) may tick between the
            // runs of a busy machine: a difference must hold on a second try.
            let result = compare(&w, &fixture, case, &live, force)
                .or_else(|_| compare(&w, &fixture, case, &live, force));
            if let Err(e) = result {
                failures.push(format!(
                    "{} ({}): {e}",
                    case.name,
                    if force { "--force" } else { "status" }
                ));
            }
        }
    }
    deploy.kill().unwrap();
    deploy.wait().unwrap();
    (compared, failures)
}

#[test]
fn the_unlock_sh_persona_prints_what_the_legacy_prints() {
    // Side by side in four worlds of their own: the legacy's runs are
    // mostly process starts (bash, jq, ps) waiting on one another.
    let parts: Vec<&[Case]> = CASES.chunks(CASES.len().div_ceil(4)).collect();
    let results: Vec<(usize, Vec<String>)> = std::thread::scope(|s| {
        let workers: Vec<_> = parts
            .iter()
            .map(|&part| s.spawn(move || compare_in_a_world(part)))
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let compared: usize = results.iter().map(|r| r.0).sum();
    let failures: Vec<String> = results.into_iter().flat_map(|r| r.1).collect();
    assert_eq!(compared, CASES.len() * 2);
    assert!(CASES.len() >= 40, "{} states", CASES.len());
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
