//! Many `deploy-lock run` processes at once: waiters take turns, one of many
//! takes over a stale lock, and the state file loses no update. Each
//! critical section proves exclusion itself: `mkdir inside` fails if another
//! is inside.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde_json::json;

use crate::harness::*;

/// A shell critical section: enter (or log OVERLAP and fail), `work`, leave.
fn critical_section(d: &Path, work: &str) -> String {
    format!(
        r#"mkdir "{d}/inside" 2>/dev/null || {{ echo OVERLAP >> "{d}/log"; exit 1; }}
echo "in $$" >> "{d}/log"
{work}
echo "out $$" >> "{d}/log"
rmdir "{d}/inside""#,
        d = d.display()
    )
}

/// The critical sections' log: whole in/out pairs, never interleaved.
#[track_caller]
fn assert_no_overlap(d: &Path, want_sections: usize) {
    let log = fs::read_to_string(d.join("log")).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    assert!(!log.contains("OVERLAP"), "{log}");
    assert_eq!(lines.len(), 2 * want_sections, "{log}");
    for pair in lines.chunks(2) {
        let who = pair[0].strip_prefix("in ").expect(&log);
        assert_eq!(pair[1], format!("out {who}"), "{log}");
    }
}

/// Every run's own audit lines are `acquire` then `release`, and each
/// environment's lines alternate: each line is written under that
/// environment's guard, so the log's order is the lock's order.
#[track_caller]
fn assert_each_run_acquired_then_released(w: &World, runs: usize) {
    let mut by_pid: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for line in w.audit_log().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        by_pid
            .entry(v["pid"].as_u64().unwrap())
            .or_default()
            .push(v["event"].as_str().unwrap().to_string());
    }
    assert_eq!(by_pid.len(), runs, "{}", w.audit_log());
    for events in by_pid.values() {
        assert_eq!(events, &["acquire", "release"], "{}", w.audit_log());
    }
    let mut by_env: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in w.audit_log().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        by_env
            .entry(v["environment"].as_str().unwrap().to_string())
            .or_default()
            .push(v["event"].as_str().unwrap().to_string());
    }
    for events in by_env.values() {
        assert_eq!(
            events[..],
            ["acquire", "release"].repeat(events.len() / 2)[..],
            "{}",
            w.audit_log()
        );
    }
}

#[test]
fn twelve_waiting_runs_take_turns_and_never_overlap() {
    let w = World::new();
    let d = w.tmp.path().join("cs");
    fs::create_dir(&d).unwrap();
    let cs = critical_section(&d, "i=0; while [ $i -lt 300 ]; do i=$((i+1)); done");
    let runs: Vec<KillOnDrop> = (0..12)
        .map(|_| {
            w.deploy_lock(&["run", "--wait", "staging", "--", "sh", "-c", &cs])
                .spawn_guarded()
        })
        .collect();
    for r in runs {
        finish(r).code(0).stdout("").stderr_after_waiting("");
    }
    assert_no_overlap(&d, 12);
    assert_released(&w);
    assert_each_run_acquired_then_released(&w, 12);
}

#[test]
fn of_eight_runs_taking_over_one_stale_lock_exactly_one_wins_every_round() {
    let w = World::new();
    let d = w.tmp.path().join("cs");
    fs::create_dir(&d).unwrap();
    let wins = d.join("wins");
    let go = d.join("go");
    // The winner stays inside until the test has seen every other run end,
    // so a second winner could only be a second taker of the stale lock.
    let cs = critical_section(
        &d,
        &format!(
            r#"echo win >> "{}"
while [ ! -e "{}" ]; do sleep 0.01; done"#,
            wins.display(),
            go.display()
        ),
    );
    let count_wins = || {
        fs::read_to_string(&wins)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    };
    for round in 0..20 {
        let dead = reaped_pid();
        let at = now() - 7200;
        w.legacy_lock("staging", at);
        w.legacy_state("staging", at, &dead.to_string(), &hostname());
        let mut runs: Vec<KillOnDrop> = (0..8)
            .map(|_| {
                w.deploy_lock(&["run", "staging", "--", "sh", "-c", &cs])
                    .spawn_guarded()
            })
            .collect();
        let mut ended = vec![false; runs.len()];
        wait_until(PATIENCE, "every run but the winner to end", || {
            for (r, e) in runs.iter_mut().zip(ended.iter_mut()) {
                *e = *e || r.0.try_wait().unwrap().is_some();
            }
            ended.iter().filter(|e| **e).count() + count_wins() >= runs.len()
        });
        fs::write(&go, "").unwrap();
        let outs: Vec<Out> = runs.into_iter().map(finish).collect();
        let winners: Vec<&Out> = outs.iter().filter(|o| o.code == Some(0)).collect();
        assert_eq!(winners.len(), 1, "round {round}: {outs:#?}");
        assert_eq!(count_wins(), 1, "round {round}");
        winners[0].stderr(&format!(
            "WARNING: took over the staging lock left by deploy@localhost (pid {dead}, not running)\n"
        ));
        for o in outs.iter().filter(|o| o.code != Some(0)) {
            o.code(75).stdout("");
            // Most meet the winner's kernel lock first; a late one its directory.
            assert!(
                o.stderr
                    .contains("ERROR: the staging lock is held by a deploy-lock run")
                    || o.stderr
                        .contains("; a running holder's lock is never taken over.\n"),
                "round {round}: {}",
                o.stderr
            );
            // Which of the two refusals, the holder's pid (the winner's
            // deploy-lock, or its command once recorded) and the lock's age
            // depend on when each run looked: the whole text is not fixed,
            // but the retry (the run's own command) and the pointer are.
            assert!(
                o.stderr.starts_with("ERROR: the staging lock is held by ")
                    && o.stderr.contains(&format!(
                        "\n  wait for it:      deploy-lock run --wait staging -- sh -c '{cs}'\n  \
                         details:          deploy-lock status staging\n"
                    )),
                "round {round}: {}",
                o.stderr
            );
            o.any_stderr();
        }
        assert_no_overlap(&d, 1);
        assert_released(&w);
        fs::remove_file(&go).unwrap();
        fs::remove_file(&wins).unwrap();
        fs::remove_file(d.join("log")).unwrap();
    }
    assert_eq!(audit_events(&w), ["takeover", "release"].repeat(20));
}

#[test]
fn runs_of_two_environments_interleaved_never_lose_a_state_update() {
    let w = World::new();
    // Keys deploy-lock does not own, with numbers whose digits must survive.
    w.write_state(
        r#"{
  "schema": 3,
  "environment": "staging",
  "lock": {"locked": false},
  "deployments": [{"environment": "staging", "version": "4f2a9c1", "status": "success"}],
  "custom": {"owner": "ops", "price": 1.50, "big": 10000000000000000000001, "nested": {"a": [1, 2, 3]}}
}
"#,
    );
    let before = w.state_json();
    let d = w.tmp.path().join("cs");
    fs::create_dir(&d).unwrap();
    // One checkout records one lock at a time: while a run is inside, the
    // state record is its own (its deploy-lock as holder; the top-level
    // environment stays the file's first, as the legacy keeps it).
    let check = format!(
        r#"jq -e --argjson holder "$PPID" '.environment == "staging" and .lock.locked == true and .lock.holder_pid == $holder' "{}" > /dev/null || echo "FOREIGN RECORD $ENV" >> "{}/log""#,
        w.state_path().display(),
        d.display()
    );
    let cs = critical_section(&d, &check);
    let runs: Vec<KillOnDrop> = (0..12)
        .map(|i| {
            let env = ["development", "production"][i % 2];
            w.deploy_lock(&["run", "--wait", env, "--", "sh", "-c", &cs])
                .env("ENV", env)
                .spawn_guarded()
        })
        .collect();
    for r in runs {
        finish(r).code(0).stdout("").stderr_after_waiting("");
    }
    assert_no_overlap(&d, 12);
    let after = w.state_json();
    for key in ["schema", "deployments", "custom"] {
        assert_eq!(after[key], before[key], "{key}: {}", w.state());
    }
    let keys: Vec<&String> = after.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["schema", "environment", "lock", "deployments", "custom"]
    );
    assert_eq!(after["lock"], json!({ "locked": false }));
    // Never rewritten: the legacy's release removes the lock this key names.
    assert_eq!(after["environment"], "staging", "{}", w.state());
    assert!(w.state().contains("\"price\": 1.50,"), "{}", w.state());
    for env in ["development", "production"] {
        assert!(!w.lock_path(env).exists());
    }
    assert_each_run_acquired_then_released(&w, 12);
}
