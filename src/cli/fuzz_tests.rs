//! Issue 19: arbitrary bytes in every field that comes from outside (a lock
//! file, the state file, an etcd record, a remote host's answer) through
//! every renderer: no control character out, no panic, bounded lines.
//! PROPTEST_CASES sets the case count (CI runs 2000).

use std::ffi::OsString;
use std::time::Duration;

use deploy_lock::Environment;
use deploy_lock::fsops::PathKind;
use deploy_lock::lock::Announcement;
use deploy_lock::lock::BusyReason;
use deploy_lock::lock::keeper::KeepEvent;
use deploy_lock::state::StateDoc;
use deploy_lock::status::{Holder, HolderSource, Inspection, Liveness, Verdict};
use deploy_lock::store::Warning;
use deploy_lock::view::{DirView, Facts, LegacyView, record_view};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

use super::failure::{Busy, Failure};
use super::messages;
use super::overview::{Row, table};
use super::remote::Remote;
use super::render;
use super::request::{Persona, Typed};
use super::style::Style;

/// Longer than any line we write ourselves, far shorter than a planted
/// 64 KiB value.
const MAX_LINE: usize = 4096;

/// Outside text: lossy UTF-8 of arbitrary bytes, arbitrary characters (C0,
/// C1, DEL, bidi controls included), or a huge value.
fn outside() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
        4 => prop::collection::vec(any::<char>(), 0..200).prop_map(|c| c.into_iter().collect()),
        4 => prop::collection::vec(
            prop::sample::select(vec![
                "\x1b[2J", "\x07", "\u{9b}", "\n", "\r", "\u{202e}", "\u{7f}", "Verdict: free", "é",
                "\u{2066}", "\t"
            ]),
            0..20
        )
        .prop_map(|v| v.concat()),
        1 => Just("x".repeat(65_537)),
    ]
}

fn clean(out: &str, what: &str) -> Result<(), TestCaseError> {
    for line in out.split('\n') {
        let bad = line.chars().find(|c| deploy_lock::sanitize::is_unsafe(*c));
        prop_assert!(bad.is_none(), "{what}: {bad:?} in {line:?}");
        prop_assert!(
            line.chars().count() <= MAX_LINE,
            "{what}: a line of {} characters",
            line.chars().count()
        );
    }
    Ok(())
}

fn json_clean(text: &str, what: &str) -> Result<(), TestCaseError> {
    let bad = text
        .chars()
        .find(|c| deploy_lock::sanitize::is_unsafe(*c) && *c != '\n');
    prop_assert!(bad.is_none(), "{what}: {bad:?} in the JSON");
    let value = serde_json::from_str::<Value>(text);
    prop_assert!(value.is_ok(), "{what}: not JSON");
    // Every string bounded (a planted 64 KiB value is cut), and so every
    // line: at most a key and one string of escapes (`\u001b`: 6 bytes).
    let longest = longest_string(&value.unwrap());
    prop_assert!(
        longest <= deploy_lock::sanitize::MAX_JSON_CHARS + 1,
        "{what}: a string of {longest} characters"
    );
    // A pretty-printed line holds a key and one string; a compact line (the
    // list view's one object per environment) a bounded number of them, as
    // many as its schema has fields: each line is bounded by its strings.
    for line in text.lines() {
        let strings = serde_json::from_str::<Value>(line)
            .map(|v| count_strings(&v))
            .unwrap_or(1)
            .max(1);
        prop_assert!(
            line.len() <= strings * (6 * (deploy_lock::sanitize::MAX_JSON_CHARS + 1) + 128),
            "{what}: a line of {} bytes holding {strings} strings",
            line.len()
        );
    }
    Ok(())
}

/// How many strings (keys and values) `v` holds.
fn count_strings(v: &Value) -> usize {
    match v {
        Value::String(_) => 1,
        Value::Array(a) => a.iter().map(count_strings).sum(),
        Value::Object(o) => o.values().map(|v| 1 + count_strings(v)).sum(),
        _ => 0,
    }
}

/// The longest string (key or value) in `v`, in characters.
fn longest_string(v: &Value) -> usize {
    match v {
        Value::String(s) => s.chars().count(),
        Value::Array(a) => a.iter().map(longest_string).max().unwrap_or(0),
        Value::Object(o) => o
            .iter()
            .map(|(k, v)| k.chars().count().max(longest_string(v)))
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

#[allow(clippy::too_many_arguments)]
fn inspection(
    fields: &[String; 6],
    kind: PathKind,
    liveness: Liveness,
    verdict: Verdict,
    locked: bool,
) -> Inspection {
    let [by, at, id, dep, host, lease] = fields.clone();
    let env = Environment::Staging;
    let mut lock = Map::new();
    lock.insert("locked".into(), Value::Bool(locked));
    lock.insert("locked_by".into(), Value::String(by.clone()));
    lock.insert("locked_at".into(), Value::String(at.clone()));
    lock.insert("deployment_id".into(), Value::String(dep.clone()));
    lock.insert("pid".into(), Value::String(host.clone()));
    lock.insert("hostname".into(), Value::String(host.clone()));
    let mut root = Map::new();
    root.insert("environment".into(), Value::String(dep.clone()));
    root.insert("lock".into(), Value::Object(lock));
    let doc = StateDoc { root };
    let facts = Facts {
        now: jiff::Timestamp::from_second(1_770_150_346).unwrap(),
        host: "fuzz-host",
        stale_after_secs: 1800,
        dir_age: Some(90),
        tz: || jiff::tz::TimeZone::UTC,
    };
    let record = record_view(&doc, &facts, |_| {
        Some(("bash".to_string(), "bash (deploy.sh)".to_string()))
    });
    let holder = Holder {
        source: HolderSource::LockDir,
        lock_id: Some(id),
        deployment_id: Some(dep),
        locked_by: Some(by.clone()),
        locked_at: Some(at.clone()),
        pid: Some(4242),
        hostname: Some(host),
        // The same hostile text as a reason: shown by status, refusals
        // and progress lines, so it must come out as clean.
        reason: Some(by),
        // And as a freeze's end, shown by the frozen verdict and refusal.
        freeze: Some(deploy_lock::status::Freeze {
            until: Some(at.clone()),
        }),
        processes: Vec::new(),
    };
    let dir = match kind {
        PathKind::Directory => DirView::Exists {
            ls_ld: Some("drwxr-xr-x 2 a a 4096 Feb  3 20:25 /locks/x".into()),
        },
        _ => DirView::Missing { blocked_by: None },
    };
    Inspection {
        environment: env,
        view: LegacyView {
            obstruction: None,
            dir,
            record: Some(record),
            no_checkout: None,
            stale_after_secs: 1800,
        },
        lock_dir: "/locks/togather-deploy-staging.lock".into(),
        path_kind: kind,
        dir: None,
        locked_at_file: None,
        owner: None,
        state_file: "/co/deploy/config/deployment-state.json".into(),
        state: Some(doc),
        holder: Some(holder),
        liveness,
        age_seconds: Some(90),
        now: jiff::Timestamp::from_second(1_770_150_346).unwrap(),
        stale: false,
        verdict,
        run_holder: None,
        network: Some(deploy_lock::status::NetworkLock {
            backend: "etcd",
            key: "/togather/deploy-lock/v1/env/staging/lock".into(),
            fencing_token: Some(7),
            lease_id: Some(lease),
            ttl_remaining_secs: Some(20),
            foreign: None,
        }),
        other_environment: None,
        migration: None,
        // A waiter whose every word is fuzzed: the queue line and JSON.
        waiters: vec![deploy_lock::status::Waiter {
            user: fields[0].clone(),
            host: fields[4].clone(),
            pid: 1,
            reason: Some(fields[3].clone()),
            since: fields[1].clone(),
            order: 1,
        }],
    }
}

proptest! {
    #[test]
    fn outside_text_never_reaches_the_terminal_raw(
        fields in prop::array::uniform6(outside()),
        kind in prop::sample::select(vec![PathKind::Directory, PathKind::Missing]),
        liveness in prop::sample::select(vec![
            Liveness::Alive { pid: 4242, comm: "bash".into() },
            Liveness::Dead,
            Liveness::OtherHost,
            Liveness::NoRecord,
        ]),
        verdict in prop::sample::select(vec![
            Verdict::Free, Verdict::Held, Verdict::Stale, Verdict::Orphaned, Verdict::Unknown,
            Verdict::Frozen,
            Verdict::Queued,
        ]),
        reason in prop::sample::select(vec![
            BusyReason::HolderAlive, BusyReason::NotStale, BusyReason::RunHeld,
            BusyReason::Queued { ahead: 1 },
        ]),
        locked in any::<bool>(),
    ) {
        let insp = inspection(&fields, kind, liveness, verdict, locked);
        let style = Style { color: false };
        // The status views: legacy block, modern block, their lines, JSON.
        clean(&render::status_block(&insp, style), "legacy status block")?;
        clean(&render::status_block_modern(&insp, style), "modern status block")?;
        clean(&render::holder_line(&insp), "holder line")?;
        clean(&render::verdict_line(&insp), "verdict line")?;
        if let Some(l) = render::lock_id_line(&insp) {
            clean(&l, "Lock ID line")?;
        }
        if let Some(l) = render::reason_line(&insp) {
            clean(&l, "Reason line")?;
        }
        let v = render::status_json_with(&insp, None);
        json_clean(&deploy_lock::sanitize::json(serde_json::to_string_pretty(&v).unwrap()), "status --json")?;
        // The list view, as a table and as JSON.
        let rows = vec![Row { insp: insp.clone(), backend: "local" }];
        clean(&table(&rows), "list table")?;
        let all = super::overview::overview_json(&rows, None);
        json_clean(&deploy_lock::sanitize::json(serde_json::to_string(&all).unwrap()), "list --json")?;
        // The audit trail: a planted event and a damaged line, as text and
        // as JSON lines.
        let event = json!({
            "time": "2026-02-03T20:00:00Z", "event": fields[4], "environment": "staging",
            "user": fields[0], "host": fields[1], "pid": 7, "command": [fields[2], fields[3]],
            "holder": {"locked_by": fields[5], "pid": 8}, "lock_id": fields[2], "note": fields[3],
        });
        let log = deploy_lock::audit_log::parse(&format!("{event}\n{}\n", fields[5].replace('\n', " ")));
        clean(&super::log::text(&log), "log")?;
        for line in super::log::json_lines(&log).lines() {
            json_clean(line, "log --json")?;
        }
        // run --wait and wait progress, the run refusal, the takeover notice.
        clean(&messages::holder_phrase(&insp), "wait progress")?;
        let busy = Busy {
            env: Environment::Staging,
            reason,
            run_holder: None,
            squatter: None,
            inspection: Box::new(insp.clone()),
            stale_after: Duration::from_secs(1800),
            holder_is_callers: true,
            typed: Typed { words: vec![OsString::from("staging")], env_at: 0 },
        };
        clean(&messages::busy_lines(&busy).join("\n"), "run refusal")?;
        clean(&messages::took_over(Environment::Staging, insp.holder.as_ref()), "takeover")?;
        // What a run says while its command runs.
        let a = Announcement {
            lock_id: fields[2].clone(),
            by: fields[0].clone(),
            at: fields[1].clone(),
            pid: 1,
        };
        clean(&messages::keep_event(Environment::Staging, &KeepEvent::ForceUnlocked(a)).1, "force-unlocked notice")?;
        clean(&messages::keep_event(Environment::Staging, &KeepEvent::TakenBy { holder: insp.holder.clone() }).1, "taken notice")?;
        clean(&messages::warning(&Warning::TakenByOther { env: Environment::Staging, holder: insp.holder.clone() }), "taken warning")?;
        // The --remote pre-check: the server's status JSON.
        let status = json!({
            "holder": {"locked_by": fields[0], "locked_at": fields[1], "pid": 12},
            "holder_alive": true,
            "age_seconds": 30,
        });
        let held = Failure::ServerHeld {
            env: Environment::Staging,
            remote: Remote { target: "web1".into(), dir: "~/app".into() },
            status: Box::new(status),
            typed: Typed { words: vec![OsString::from("staging")], env_at: 0 },
        };
        clean(&messages::failure_lines(&held, Persona::DeployLock).join("\n"), "remote pre-check")?;
        let block = render::status_block(&insp, style);
        if let Ok(remote_block) = deploy_lock::legacy_block::parse(&block) {
            let raw = format!("{}\n{block}", fields[3]);
            clean(&super::server::legacy_text(&raw, &remote_block, "web1"), "remote legacy status")?;
        }
    }
}
