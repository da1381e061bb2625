//! Hand-edited, corrupted, odd and huge state files: flagged or refused,
//! never rewritten.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::*;
use crate::harness::*;

/// Item 1: every field of the lock record with the wrong type. The legacy
/// printed these silently (and asked `ps -p` about -1, 0 or `1; ...`); now
/// each bad value gets one ⚠ line in the modern status (unlock.sh prints
/// what the legacy printed: see legacy_diff.rs), no pid that is not a
/// positive integer is probed, and the file is never modified.
#[test]
fn malformed_fields_are_flagged_and_the_file_is_never_modified() {
    let w = World::new();
    let h = hostname();
    let h = h.as_str();
    let na = "N/A";
    // (lock record without "hostname", the six values, the extra lines)
    let cases: Vec<(&str, [&str; 6], Vec<String>)> = vec![
        (
            r#""locked": false, "pid": -1"#,
            ["false", na, na, na, "-1", h],
            vec!["⚠ PID -1 is not a process id: not checked".into()],
        ),
        (
            r#""pid": 0"#,
            ["false", na, na, na, "0", h],
            vec!["⚠ PID 0 is not a process id: not checked".into()],
        ),
        (
            r#""pid": 2147483648"#,
            ["false", na, na, na, "2147483648", h],
            vec!["⚠ PID 2147483648 is not a process id: not checked".into()],
        ),
        (
            r#""pid": 99999999999999999999999"#,
            ["false", na, na, na, "99999999999999999999999", h],
            vec!["⚠ PID 99999999999999999999999 is not a process id: not checked".into()],
        ),
        (
            r#""pid": 1.5"#,
            ["false", na, na, na, "1.5", h],
            vec!["⚠ PID 1.5 is not a process id: not checked".into()],
        ),
        (
            r#""pid": "1; touch pwned""#,
            ["false", na, na, na, "1; touch pwned", h],
            vec![r#"⚠ PID "1; touch pwned" is not a process id: not checked"#.into()],
        ),
        (
            r#""pid": "$(touch pwned)""#,
            ["false", na, na, na, "$(touch pwned)", h],
            vec![r#"⚠ PID "$(touch pwned)" is not a process id: not checked"#.into()],
        ),
        (
            r#""pid": "`touch pwned`""#,
            ["false", na, na, na, "`touch pwned`", h],
            vec![r#"⚠ PID "`touch pwned`" is not a process id: not checked"#.into()],
        ),
        (
            r#""pid": """#,
            ["false", na, na, na, "", h],
            vec![r#"⚠ PID "" is not a process id: not checked"#.into()],
        ),
        (
            r#""pid": " 123""#,
            ["false", na, na, na, " 123", h],
            vec![r#"⚠ PID " 123" is not a process id: not checked"#.into()],
        ),
        (
            r#""pid": true"#,
            ["false", na, na, na, "true", h],
            vec!["⚠ PID true is not a process id: not checked".into()],
        ),
        (
            r#""pid": [1]"#,
            ["false", na, na, na, "[\n  1\n]", h],
            vec!["⚠ PID [1] is not a process id: not checked".into()],
        ),
        (
            r#""locked": "true""#,
            ["true", na, na, na, na, h],
            vec![r#"⚠ Locked is "true", not true or false: the record was edited by hand"#.into()],
        ),
        (
            r#""locked": 1"#,
            ["1", na, na, na, na, h],
            vec!["⚠ Locked is 1, not true or false: the record was edited by hand".into()],
        ),
        (
            r#""locked": "yes""#,
            ["yes", na, na, na, na, h],
            vec![r#"⚠ Locked is "yes", not true or false: the record was edited by hand"#.into()],
        ),
        (
            r#""locked": true, "locked_at": "garbage""#,
            ["true", na, "garbage", na, na, h],
            vec!["⚠ Locked at 'garbage' is not a time: lock age unknown".into()],
        ),
        (
            r#""locked": true, "locked_at": 1770150346"#,
            ["true", na, "1770150346", na, na, h],
            vec!["⚠ Locked at '1770150346' is not a time: lock age unknown".into()],
        ),
        (
            r#""locked": true, "locked_at": "2026-02-30T00:00:00Z""#,
            ["true", na, "2026-02-30T00:00:00Z", na, na, h],
            vec!["⚠ Locked at '2026-02-30T00:00:00Z' is not a time: lock age unknown".into()],
        ),
        (
            r#""locked": true, "locked_at": {"t": 1}"#,
            ["true", na, "{\n  \"t\": 1\n}", na, na, h],
            vec!["⚠ Locked at '{\n  \"t\": 1\n}' is not a time: lock age unknown".into()],
        ),
        (
            r#""locked": null, "pid": null, "locked_by": {"a": [1]}"#,
            ["false", "{\n  \"a\": [\n    1\n  ]\n}", na, na, na, h],
            vec![],
        ),
    ];
    let mut slowest = Duration::ZERO;
    for (record, values, extra) in &cases {
        let json = format!(
            r#"{{"environment": "staging", "lock": {{{record}, "hostname": "{h}"}}, "deployments": [{{"id": 7}}]}}"#
        );
        w.write_state(&json);
        let before = untouched(&w.state_path());
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let start = Instant::now();
        let out = w.deploy_lock(&["status", "staging"]).run();
        slowest = slowest.max(start.elapsed());
        out.code(0).stderr("").stdout(&format!(
            "{}Verdict: free: no lock directory; a deploy may start\n",
            block(*values, &extra)
        ));
        let json_out = w.deploy_lock(&["status", "staging", "--json"]).run();
        json_out.code(0).stderr("");
        let v: Value = serde_json::from_str(&json_out.stdout).unwrap();
        assert_eq!(v["verdict"], "free", "{record}");
        assert_eq!(untouched(&w.state_path()), before, "{record}");
    }
    assert!(
        tree(w.tmp.path()).iter().all(|p| !p.contains("pwned")),
        "a state value reached a shell"
    );
    // A hang guard, not a speed bound: a command that waited instead of
    // refusing would wait out `wait`'s hour; on a machine loaded to 60
    // a refusal took 3 s with the pairs side by side.
    assert!(slowest < PATIENCE, "hang guard: {slowest:?}");
    eprintln!(
        "malformed fields: {}/{} cases flagged, file untouched; slowest status {slowest:?}",
        cases.len(),
        cases.len()
    );
}

/// Item 1: wrong types in the record never stop a deploy or a recovery, and
/// the rewrite keeps every other key. A garbage pid is "no usable pid": not
/// alive, so `run --force` takes the dead lock over.
#[test]
fn malformed_fields_do_not_block_run_or_force_and_other_keys_survive() {
    let w = World::new();
    let at = now() - 60;
    let lock = w.legacy_lock("staging", at);
    let original = format!(
        r#"{{"environment": "staging", "lock": {{"locked": "true", "pid": "$(touch pwned)", "locked_at": 5, "hostname": "{}", "lock_id": ["x"]}}, "deployments": [{{"id": 7, "sha": 1.50}}], "slots": {{"blue": null}}}}"#,
        hostname()
    );
    w.write_state(&original);
    // Not stale (its directory is a minute old): refused. No record names a
    // holder, so it is unknown (issue 10): --force does not take it either;
    // unlock removes it.
    let refusal = |run: &str, before: i64, after: i64| -> Vec<String> {
        (before..=after)
            .map(|t| {
                format!(
                    "ERROR: the staging lock's holder is unknown (no record says who holds it: maybe a legacy deploy.sh that has not written it yet); the lock is {}m {}s old.\n\
                     It is taken over automatically once older than 30 minutes; --force does not take an unknown holder's lock.\n  \
                     wait for it:      deploy-lock {run} --wait staging -- true\n  \
                     once you know nobody deploys: deploy-lock unlock staging\n  \
                     details:          deploy-lock status staging\n",
                    (t - at) / 60,
                    (t - at) % 60
                )
            })
            .collect()
    };
    let before = now();
    let out = w.deploy_lock(&["run", "staging", "--", "true"]).run();
    let wants = refusal("run", before, now());
    out.code(75).stderr_one_of(&wants);
    let before = now();
    let out = w
        .deploy_lock(&["run", "--force", "staging", "--", "true"])
        .run();
    let wants = refusal("run --force", before, now());
    out.code(75).stderr_one_of(&wants);
    assert!(lock.join("locked_at").exists());
    w.deploy_lock(&["unlock", "staging", "--yes"]).run().code(0);
    let out = w
        .deploy_lock(&["run", "staging", "--", "echo", "ran"])
        .run();
    out.code(0).stdout("ran\n");
    assert!(!lock.exists());
    let after = w.state_json();
    assert_eq!(after["lock"], serde_json::json!({"locked": false}));
    assert_eq!(after["environment"], "staging");
    // Digits kept as written (1.50, not 1.5).
    assert!(
        w.state().contains(
            "\"deployments\": [\n    {\n      \"id\": 7,\n      \"sha\": 1.50\n    }\n  ],"
        ),
        "{}",
        w.state()
    );
    assert_eq!(after["slots"], serde_json::json!({"blue": null}));
    assert!(tree(w.tmp.path()).iter().all(|p| !p.contains("pwned")));
}

/// One unusable state file: its name and what every command must say.
struct Unusable {
    name: &'static str,
    bytes: Vec<u8>,
    what: String,
}

fn unusable_cases() -> Vec<Unusable> {
    let json = |m: &str| format!("is not valid JSON: {m}");
    let shape = |m: &str| format!("is not usable: {m}");
    let deep_objects = format!(
        "{{\"environment\": \"staging\", \"lock\": {{\"locked\": false}}, \"history\": {}1{}}}",
        "{\"a\": ".repeat(100_000),
        "}".repeat(100_000)
    );
    let c = |name, bytes: &[u8], what: String| Unusable {
        name,
        bytes: bytes.to_vec(),
        what,
    };
    vec![
        c(
            "empty",
            b"",
            json("EOF while parsing a value (line 1, column 0)"),
        ),
        c(
            "blank lines",
            b"\n\n  \n",
            json("EOF while parsing a value (line 3, column 2)"),
        ),
        c(
            "NUL bytes",
            b"\0\0\0",
            json("expected value (line 1, column 1)"),
        ),
        c(
            "a NUL as a value",
            b"{\"lock\":\0}",
            json("expected value (line 1, column 9)"),
        ),
        c(
            "invalid UTF-8 in a string",
            b"{\"lock\": {\"locked_by\": \"\xff\xfe\"}}",
            json("invalid unicode code point (line 1, column 25)"),
        ),
        c(
            "invalid UTF-8 outside strings",
            b"\xff{}",
            json("expected value (line 1, column 1)"),
        ),
        c(
            "a byte-order mark",
            b"\xef\xbb\xbf{}",
            json("expected value (line 1, column 1)"),
        ),
        c(
            "truncated",
            b"{\"environment\": \"staging\", \"lock\": {\"locked\": tr",
            json("EOF while parsing a value (line 1, column 48)"),
        ),
        c(
            "trailing garbage",
            b"{} x",
            json("trailing characters (line 1, column 4)"),
        ),
        c(
            "single quotes",
            b"{'lock': {}}",
            json("key must be a string (line 1, column 2)"),
        ),
        c(
            "100 000 nested arrays",
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes(),
            json("recursion limit exceeded (line 1, column 128)"),
        ),
        c(
            "100 000 nested objects beside a good lock record",
            deep_objects.as_bytes(),
            json("recursion limit exceeded (line 1, column 822)"),
        ),
        c(
            "a top-level array",
            b"[{\"lock\": {\"locked\": true}}]",
            shape("the top level is an array, expected an object"),
        ),
        c(
            "a top-level string",
            b"\"locked\"",
            shape("the top level is a string, expected an object"),
        ),
        c(
            "a top-level number",
            b"42",
            shape("the top level is a number, expected an object"),
        ),
        c(
            "a top-level null",
            b"null",
            shape("the top level is null, expected an object"),
        ),
        c(
            "lock an array",
            b"{\"lock\": [true], \"deployments\": []}",
            shape("\"lock\" is an array, expected an object"),
        ),
        c(
            "lock a string",
            b"{\"lock\": \"locked\"}",
            shape("\"lock\" is a string, expected an object"),
        ),
        c(
            "lock a number",
            b"{\"lock\": 1}",
            shape("\"lock\" is a number, expected an object"),
        ),
        c(
            "lock a boolean",
            b"{\"lock\": false}",
            shape("\"lock\" is a boolean, expected an object"),
        ),
    ]
}

/// Item 1: a state file that is not JSON, or not the documented shape, is an
/// error for every command: the same message and recovery steps, unlock.sh
/// exit 1 and deploy-lock 65, nothing on stdout, no command run, no lock
/// left, and the file byte for byte (and inode) as it was. The legacy printed
/// empty fields and exited 0, and its --force rewrote the file.
#[test]
fn unusable_state_files_are_errors_everywhere_and_never_rewritten() {
    let cases = unusable_cases();
    let pairs: Vec<(&Unusable, bool)> =
        cases.iter().flat_map(|c| [(c, false), (c, true)]).collect();
    // Each refusal waits out the state file's re-read window (a legacy
    // `mv` across file systems looks corrupt for a moment), so the pairs
    // run side by side, each in a world of its own: waiting, not CPU.
    let per_world = 5;
    let results: Vec<(usize, Duration)> = std::thread::scope(|s| {
        let workers: Vec<_> = pairs
            .chunks(per_world)
            .map(|chunk| {
                s.spawn(move || {
                    let w = World::new();
                    chunk
                        .iter()
                        .map(|&(case, with_lock)| unusable_everywhere(&w, case, with_lock))
                        .fold((0, Duration::ZERO), |(n, t), (m, u)| (n + m, t.max(u)))
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let checks: usize = results.iter().map(|r| r.0).sum();
    let slowest = results.iter().map(|r| r.1).max().unwrap();
    assert_eq!(checks, cases.len() * 2 * 10);
    // A hang guard, not a speed bound: a command that waited instead of
    // refusing would wait out `wait`'s hour; on a machine loaded to 60
    // a refusal took 3 s with the pairs side by side.
    assert!(slowest < PATIENCE, "hang guard: {slowest:?}");
    eprintln!(
        "unusable state files: {} files x 10 commands x 2 lock states = {checks} refusals, 0 rewrites; slowest {slowest:?}",
        cases.len(),
    );
}

/// One unusable state file, without a lock directory or with a dead
/// holder's stale one, through every command: the checks made and the
/// slowest command.
fn unusable_everywhere(w: &World, case: &Unusable, with_lock: bool) -> (usize, Duration) {
    let marker = w.tmp.path().join("ran");
    let m = marker.to_str().unwrap();
    let commands: Vec<(Vec<&str>, bool, i32)> = vec![
        (vec!["staging"], true, 1),
        (vec!["staging", "--wait"], true, 1),
        (vec!["staging", "--force"], true, 1),
        (vec!["status", "staging"], false, 65),
        (vec!["status", "staging", "--json"], false, 65),
        (vec!["wait", "staging"], false, 65),
        (vec!["unlock", "staging", "--yes"], false, 65),
        (vec!["run", "staging", "--", "touch", m], false, 65),
        (
            vec!["run", "--force", "staging", "--", "touch", m],
            false,
            65,
        ),
        (
            vec!["run", "--wait=1", "staging", "--", "touch", m],
            false,
            65,
        ),
    ];
    let mut checks = 0;
    let mut slowest = Duration::ZERO;
    let lock = w.lock_path("staging");
    let _ = fs::remove_dir_all(&lock);
    if with_lock {
        w.legacy_lock("staging", now() - 7200);
    }
    let lock_before = with_lock.then(|| tree(&lock));
    fs::write(w.state_path(), &case.bytes).unwrap();
    let before = untouched(&w.state_path());
    let want = legacy_unusable(&w.state_path(), &case.what);
    for (args, legacy, code) in &commands {
        let cmd = if *legacy {
            w.unlock_sh(args)
        } else {
            w.deploy_lock(args)
        };
        let start = Instant::now();
        let out = cmd.stdin(b"yes\n").run();
        out.any_code().any_stderr();
        slowest = slowest.max(start.elapsed());
        assert_eq!(out.code, Some(*code), "{}: {args:?}\n{out:?}", case.name);
        // Issue 12: deploy-lock's status still shows the lock, and its
        // advice works on a file that is not JSON; unlock.sh keeps the
        // legacy error.
        let stdout = match args[..] {
            ["status", _] => lock_part(w, with_lock),
            _ => String::new(),
        };
        if args.last() == Some(&"--json") {
            let v: Value = serde_json::from_str(&out.stdout).unwrap();
            assert_eq!(v["lock_dir_exists"], with_lock, "{}", case.name);
            assert_eq!(
                v["state_error"],
                format!("state file {} {}", w.state_path().display(), case.what),
            );
        } else {
            assert_eq!(out.stdout, stdout, "{}: {args:?}", case.name);
        }
        let want = if *legacy {
            want.clone()
        } else {
            modern_unusable(&w.state_path(), &case.what)
        };
        assert_text(&out.stderr, &want, case.name, &format!("{args:?}"));
        assert_eq!(
            untouched(&w.state_path()),
            before,
            "{}: {args:?}",
            case.name
        );
        assert!(!marker.exists(), "{}: {args:?} ran its command", case.name);
        match &lock_before {
            Some(t) => assert_eq!(&tree(&lock), t, "{}: {args:?}", case.name),
            None => assert!(!lock.exists(), "{}: {args:?} left a lock", case.name),
        }
        checks += 1;
    }
    let config = tree(&w.root.join("deploy/config"));
    assert!(
        config
            .iter()
            .all(|f| f == "deployment-state.json" || f == "deployment-state.json.lock"),
        "{}: {config:?}",
        case.name
    );
    (checks, slowest)
}

/// Item 1, release: a state file that stops parsing while the command runs
/// is left exactly as it is at release (the lock directory, ours, is still
/// removed), with the error and recovery steps; the exit status stays the
/// command's.
#[test]
fn release_never_rewrites_a_state_file_that_broke_during_the_run() {
    let w = World::new();
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false}, \"keep\": 1}\n");
    let state = w.state_path();
    // Breaks the file once the lock records this command (so the run's own
    // update of the record is done), then exits 3.
    let script = format!(
        r#"while ! grep -q '"pid": '"$$"',' '{s}'; do sleep 0.01; done; printf '{{"keep": 1, "lock": ' > '{s}'; exit 3"#,
        s = state.display()
    );
    let out = w
        .deploy_lock(&["run", "staging", "--", "sh", "-c", &script])
        .run();
    out.code(3).stdout("").stderr(&legacy_unusable(
        &state,
        "is not valid JSON: EOF while parsing a value (line 1, column 20)",
    ));
    assert_eq!(
        fs::read_to_string(&state).unwrap(),
        "{\"keep\": 1, \"lock\": "
    );
    assert!(!w.lock_path("staging").exists());
    // Repaired as the guide says, everything works again.
    fs::write(&state, "{\"keep\": 1, \"lock\": {\"locked\": false}}").unwrap();
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(0);
    assert_eq!(w.state_json()["keep"], 1);
}

/// Anything but a regular file at the state path is refused before a byte is
/// read: a FIFO would block every command forever, /dev/zero never ends.
#[test]
fn a_state_path_that_is_not_a_regular_file_is_refused_without_hanging() {
    let w = World::new();
    let state = w.state_path();
    let cases: [(&str, MakeAt<'_>); 3] = [
        (
            "a FIFO",
            Box::new(|p: &Path| {
                nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
            }),
        ),
        (
            "a character device",
            Box::new(|p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap()),
        ),
        (
            "a directory",
            Box::new(|p: &Path| fs::create_dir(p).unwrap()),
        ),
    ];
    for (what, make) in &cases {
        make(&state);
        for args in [
            &["status", "staging"][..],
            &["run", "staging", "--", "true"],
            &["unlock", "staging", "--yes"],
        ] {
            let child = w.deploy_lock(args).spawn();
            let out = finish_within(child, Duration::from_secs(20));
            let detail = format!("not a regular file but {what}");
            out.code(74).stdout("").stderr(&format!(
                "ERROR: cannot use state file {}: {detail}\n",
                state.display()
            ));
            assert!(!w.lock_path("staging").exists(), "{what}: {args:?}");
        }
        if state.is_dir() {
            fs::remove_dir(&state).unwrap();
        } else {
            fs::remove_file(&state).unwrap();
        }
    }
}

/// A pretty-printed state file of about `mb` megabytes, in the layout
/// deploy-lock itself writes, with an unlocked record.
fn big_state(mb: usize) -> String {
    let n = mb * 1024 * 1024 / 140;
    let deployments: Vec<Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "id": i,
                "sha": format!("{:040x}", i * 2654435761usize),
                "at": "2026-02-03T20:25:46Z",
                "ok": i % 7 != 0,
            })
        })
        .collect();
    let v = serde_json::json!({
        "environment": "staging",
        "lock": {"locked": false},
        "deployments": deployments,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap();
    s.push('\n');
    s
}

/// Item 1: a 20 MB valid file. Status answers (hang guard 10 s; the time is
/// measured and printed, not asserted) and a whole run keeps the file byte
/// for byte (the release writes back exactly the record it found).
#[test]
fn a_twenty_megabyte_state_file_is_read_quickly_and_kept_intact() {
    let w = World::new();
    let text = big_state(20);
    assert!(text.len() >= 20 * 1000 * 1000, "{}", text.len());
    w.write_state(&text);
    let before = untouched(&w.state_path());
    let mut times = Vec::new();
    for (name, legacy, args) in [
        ("unlock.sh staging", true, &["staging"][..]),
        ("deploy-lock status", false, &["status", "staging"]),
        (
            "deploy-lock status --json",
            false,
            &["status", "staging", "--json"],
        ),
    ] {
        let start = Instant::now();
        let out = if legacy {
            w.unlock_sh(args).run()
        } else {
            w.deploy_lock(args).run()
        };
        let took = start.elapsed();
        out.code(0).stderr("");
        if legacy {
            out.stdout(&block(["false", "N/A", "N/A", "N/A", "N/A", "N/A"], &[]));
        }
        assert!(took < Duration::from_secs(10), "{name}: {took:?}");
        times.push(format!("{name} {took:?}"));
    }
    assert_eq!(untouched(&w.state_path()), before);
    let start = Instant::now();
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(0)
        .stderr("");
    times.push(format!("run (3 rewrites) {:?}", start.elapsed()));
    assert!(
        fs::read(w.state_path()).unwrap() == text.as_bytes(),
        "the big file changed"
    );
    eprintln!(
        "20 MB state file ({} bytes): {}",
        text.len(),
        times.join(", ")
    );
}

/// A state file that does not parse is re-read only while it may still be
/// being written (modified within the last 200 ms: a legacy `mv` across
/// file systems). One not modified for longer is refused without a second
/// read: strace counts the pauses between reads and the opens.
#[test]
fn an_old_corrupt_state_file_is_refused_at_once_and_a_fresh_one_reread() {
    if !crate::completions::available("strace", "old_corrupt_state_file") {
        return;
    }
    let w = World::new();
    // (opens of the state file, pauses) of one status refusal.
    let trace = |w: &World| {
        let (out, calls) =
            w.strace_unlock_sh("trace=openat,nanosleep,clock_nanosleep", &["staging"]);
        out.code(1).any_stderr();
        assert!(
            out.stderr.starts_with("ERROR: state file ")
                && out.stderr.contains(" is not valid JSON: "),
            "{}",
            out.stderr
        );
        let count = |what: &str| calls.lines().filter(|l| l.contains(what)).count();
        (
            count("deploy/config/deployment-state.json\""),
            count("nanosleep("),
        )
    };
    w.write_state("{\"lock\": {\"locked\": tru");
    let (fresh_opens, fresh_pauses) = trace(&w);
    // The same file, last modified a minute ago.
    fs::File::options()
        .write(true)
        .open(w.state_path())
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    let (old_opens, old_pauses) = trace(&w);
    assert_eq!(old_pauses, 0, "an old corrupt file is not waited for");
    assert!(
        fresh_pauses > 0 && fresh_opens > old_opens,
        "a corrupt file written just now is read again: {fresh_opens} opens and {fresh_pauses} pauses, {old_opens} opens when old"
    );
}
