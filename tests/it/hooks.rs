//! Issue 22, item 4 through the binary: `DEPLOY_LOCK_HOOK` (or the
//! checkout's deploy-lock.env) runs on each lock event with the event's
//! audit line on stdin; a hook that hangs or fails changes nothing for the
//! run, and its failure is a `hook_failed` line.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{PATIENCE, World, wait_until};

/// A hook that saves its stdin, one file per event, in `dir`.
fn saving_hook(dir: &Path) -> String {
    fs::create_dir_all(dir).unwrap();
    format!(
        r#"f=$(mktemp "{}/event.XXXXXX") && cat > "$f.part" && mv "$f.part" "$f.json" && rm -f "$f""#,
        dir.display()
    )
}

/// The events the hook saved so far, parsed (each must be one JSON object).
fn saved(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let text = fs::read_to_string(&p).unwrap();
            assert!(
                text.ends_with('\n') && text.lines().count() == 1,
                "{text:?}"
            );
            let v: serde_json::Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", p.display()));
            assert!(v.is_object(), "{text}");
            out.push(v);
        }
    }
    out
}

/// The log's events as `log --json` gives them, without what it adds.
fn logged(w: &World) -> Vec<serde_json::Value> {
    let out = w.deploy_lock(&["log", "--json"]).run();
    out.code(0);
    out.stdout
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("line");
            o.remove("held_seconds");
            v
        })
        .collect()
}

#[test]
fn each_event_reaches_the_hook_as_its_log_json_object() {
    let w = World::new();
    let dir = w.tmp.path().join("events");
    let hook = saving_hook(&dir);
    let dl = |args: &[&str]| w.deploy_lock(args).env("DEPLOY_LOCK_HOOK", &hook);
    // acquire, release
    dl(&["run", "staging", "--reason", "hooked", "--", "true"])
        .run()
        .code(0);
    // freeze, unfreeze (and the holder's own release of what was left)
    dl(&["freeze", "staging", "--reason", "frozen"])
        .run()
        .code(0);
    dl(&["unfreeze", "staging"]).run().code(0);
    // force_unlock of a run's lock (and that run's release)
    let pid_file = w.tmp.path().join("pid");
    let script = format!("echo $$ > {}; exec sleep 60", pid_file.display());
    let run = dl(&["run", "staging", "--", "sh", "-c", &script]).spawn_guarded();
    wait_until(PATIENCE, "the run's command", || {
        fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n'))
    });
    wait_until(PATIENCE, "the run's record", || {
        let out = w.deploy_lock(&["status", "staging", "--json"]).run();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
        v["holder"]["process_name"] == "sleep"
    });
    dl(&["unlock", "staging", "--yes"])
        .run()
        .code(0)
        .any_stderr();
    drop(run);
    let log = logged(&w);
    let wanted = ["acquire", "release", "freeze", "unfreeze", "force_unlock"];
    for kind in wanted {
        assert!(
            log.iter().any(|e| e["event"] == kind),
            "no {kind} in {log:?}"
        );
    }
    // Every logged event of those kinds reached the hook, as logged.
    let hooked: Vec<&serde_json::Value> = log
        .iter()
        .filter(|e| wanted.contains(&e["event"].as_str().unwrap()))
        .collect();
    wait_until(PATIENCE, "every event's hook", || {
        saved(&dir).len() >= hooked.len()
    });
    let got = saved(&dir);
    // The same object; `log --json` adds only a release's deployment_id
    // (borrowed from its acquisition).
    let same = |hook: &serde_json::Value, log: &serde_json::Value| {
        let (h, l) = (hook.as_object().unwrap(), log.as_object().unwrap());
        h.iter().all(|(k, v)| l.get(k) == Some(v))
            && l.keys().all(|k| h.contains_key(k) || k == "deployment_id")
    };
    for e in &hooked {
        assert!(
            got.iter().any(|g| same(g, e)),
            "{e} never reached the hook as logged; it got:\n{got:#?}"
        );
    }
    // Two runs acquired; the hooks are detached, so the files they saved
    // are in no particular order: find the first run's by its reason.
    let acquires: Vec<_> = got.iter().filter(|e| e["event"] == "acquire").collect();
    assert_eq!(acquires.len(), 2, "{got:#?}");
    assert!(
        acquires
            .iter()
            .any(|e| e["reason"] == "hooked" && e["environment"] == "staging"),
        "no acquire with the run's reason: {acquires:#?}"
    );
}

/// `DEPLOY_LOCK_HOOK=` in the checkout's deploy-lock.env names the hook
/// for everyone deploying from it.
#[test]
fn the_checkout_file_names_a_hook() {
    let w = World::new();
    let dir = w.tmp.path().join("events");
    let hook = saving_hook(&dir);
    fs::write(
        w.root.join("deploy/config/deploy-lock.env"),
        format!("DEPLOY_LOCK_HOOK='{hook}'\n"),
    )
    .unwrap();
    w.deploy_lock(&["run", "staging", "--", "true"])
        .run()
        .code(0);
    wait_until(PATIENCE, "the hook's two events", || saved(&dir).len() == 2);
}

/// Median wall time of `n` runs of `deploy-lock run staging -- true`.
fn median_run(w: &World, hook: Option<&str>, n: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..n {
        let mut c = w.deploy_lock(&["run", "staging", "--", "true"]);
        if let Some(h) = hook {
            c = c.env("DEPLOY_LOCK_HOOK", h);
        }
        let t = Instant::now();
        let out = c.run();
        times.push(t.elapsed());
        out.code(0).stdout("").any_stderr();
        // A failed hook may be said (when it failed before the run ended),
        // and nothing else.
        for l in out.stderr.lines() {
            assert!(
                l.starts_with("WARNING: the hook for the ")
                    && l.ends_with(" event failed (deploy-lock log shows hook_failed)"),
                "{}",
                out.stderr
            );
        }
        assert!(!w.lock_path("staging").exists(), "the lock was left");
    }
    times.sort();
    times[n / 2]
}

/// A hook that sleeps 60 s (and never reads its stdin) or exits 1 changes
/// nothing for the run: same exit, same output, the lock released, the
/// run's pipes closed when it ends (the test reads them to EOF). The wall
/// times are reported, not asserted.
#[test]
fn a_hanging_or_failing_hook_changes_nothing_for_the_run() {
    let w = World::new();
    let n = 9;
    let none = median_run(&w, None, n);
    let sleeping = median_run(&w, Some("sleep 60"), n);
    let failing = median_run(&w, Some("exit 1"), n);
    eprintln!(
        "hooks: median run wall time over {n} runs: no hook {} ms, `sleep 60` hook {} ms, `exit 1` hook {} ms",
        none.as_millis(),
        sleeping.as_millis(),
        failing.as_millis()
    );
    // Its failure is in the log: exit 1, and a timeout (shortened here).
    wait_until(PATIENCE, "the failing hooks' lines", || {
        w.audit_log()
            .contains(r#""note":"the acquire hook exited 1""#)
    });
    w.deploy_lock(&["run", "staging", "--", "true"])
        .env("DEPLOY_LOCK_HOOK", "sleep 60")
        .env("DEPLOY_LOCK_HOOK_TIMEOUT", "0.5")
        .run()
        .code(0);
    wait_until(PATIENCE, "the timed-out hook's line", || {
        w.audit_log()
            .contains(r#""note":"the release hook timed out after 0.5 s and was killed""#)
    });
    let line = w
        .audit_log()
        .lines()
        .find(|l| l.contains("the release hook timed out after 0.5 s"))
        .unwrap()
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["event"], "hook_failed");
    assert_eq!(v["hook_event"], "release");
    assert_eq!(v["environment"], "staging");
    // The hook's command is not logged (a webhook URL may carry a token).
    assert!(!line.contains("sleep 60"), "{line}");
}
