//! Renders the status model, purely: the legacy status block (byte-identical
//! to the bash script's in every documented state), the JSON object and the
//! verdict line, each a function of one `Inspection` (no I/O here: the
//! library gathered every fact, see `deploy_lock::view`).

use std::path::Path;

use deploy_lock::liveness::display_name;
use deploy_lock::status::{Inspection, Liveness};
use deploy_lock::view::{DirView, ProcessView, RecordView};
use serde_json::{Value, json};

use super::messages;
use super::style::Style;
use super::texts;

/// The legacy status block, ending with its empty line.
pub fn status_block(insp: &Inspection, style: Style) -> String {
    block(insp, style, false)
}

/// The `deploy-lock` persona's status block: the legacy one, except that an
/// interpreter holder is named with its script, `bash (deploy.sh)`.
pub fn status_block_modern(insp: &Inspection, style: Style) -> String {
    block(insp, style, true)
}

fn block(insp: &Inspection, style: Style, modern: bool) -> String {
    let mut out = lock_part_as(insp, style, modern);
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    match (&insp.view.record, &insp.view.no_checkout) {
        (Some(record), _) => {
            line(&style.blue(texts::STATE_FILE_INFO));
            for l in state_lines(record, insp.view.stale_after_secs, style, modern) {
                line(&l);
            }
        }
        // Only the modern status and wait run outside a checkout.
        (None, Some(dir)) => line(&format!(
            "State file: none (no checkout found from {})",
            dir.display()
        )),
        (None, None) => line(&texts::state_file_not_found(&insp.state_file)),
    }
    line("");
    out
}

/// The modern block's first part, which needs no state file: header, the
/// lock directory (or its absence, or a network store's key and lease) and
/// the empty line after it.
pub fn lock_part(insp: &Inspection, style: Style) -> String {
    lock_part_as(insp, style, true)
}

/// The unlock.sh block keeps the legacy shape: no network lines.
fn lock_part_as(insp: &Inspection, style: Style, modern: bool) -> String {
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(&style.blue(&texts::header(insp.environment.as_str())));
    line(texts::RULE);
    match &insp.view.dir {
        DirView::Exists { ls_ld } => {
            line(&format!(
                "{} {}",
                style.yellow(texts::LOCK_DIR_EXISTS_LABEL),
                insp.lock_dir.display()
            ));
            if let Some(ls) = ls_ld {
                line(ls);
            }
            if modern && let Some(n) = &insp.network {
                for l in network_lines(n) {
                    line(&l);
                }
            }
        }
        DirView::Missing { blocked_by } => {
            line(&format!(
                "{} {}",
                texts::LOCK_DIR_LABEL,
                style.green(texts::NOT_FOUND_UNLOCKED)
            ));
            // The legacy said no more; a file or dangling symlink there still
            // blocks every deploy, so say what it is (never in documented
            // states).
            if let Some(what) = blocked_by {
                line(&format!(
                    "  {}",
                    style.yellow(&texts::lock_path_not_a_directory(
                        &insp.lock_dir,
                        &messages::non_directory(what)
                    ))
                ));
            }
        }
    }
    line("");
    out
}

/// Who holds the lock, in one line (the modern unlock's short banner, and
/// the status of a lock whose state file is not usable).
pub fn holder_line(insp: &Inspection) -> String {
    if !insp.locked() {
        return format!("The {} lock is free.", insp.environment);
    }
    let Some(h) = &insp.holder else {
        return "Holder: unknown (no record says who holds it)".to_string();
    };
    let mut l = format!("Holder: {}", messages::describe_holder(h));
    match &insp.liveness {
        Liveness::Alive { pid, comm } => {
            l.push_str(&format!(" (running: {})", display_name(*pid, comm)))
        }
        Liveness::Dead => l.push_str(" (not running)"),
        Liveness::OtherHost | Liveness::NoRecord => {}
    }
    if let Some(at) = &h.locked_at {
        l.push_str(&format!(", locked at {}", messages::shown(at)));
    }
    if let Some(id) = &h.lock_id {
        l.push_str(&format!(", lock id {}", messages::shown(id)));
    }
    l
}

fn state_lines(r: &RecordView, stale_after: u64, style: Style, modern: bool) -> Vec<String> {
    let or_na = |v: &Option<String>| v.clone().unwrap_or_else(|| texts::NA.to_string());
    let pid = or_na(&r.pid);
    let mut lines = vec![
        texts::field("Locked", r.locked.as_deref().unwrap_or("false")),
        texts::field("Locked by", &or_na(&r.locked_by)),
        texts::field("Locked at", &or_na(&r.locked_at)),
        texts::field("Deployment ID", &or_na(&r.deployment_id)),
        texts::field("PID", &pid),
        texts::field("Hostname", &or_na(&r.hostname)),
    ];
    let warn = |text: String| format!("  {}", style.yellow(&text));
    // Hand edits produce values of the wrong type; the legacy printed them
    // silently. Each gets one ⚠ line saying what is wrong (never shown for the
    // documented shapes).
    // The unlock.sh persona prints what the legacy printed for them: nothing
    // more (its lines are not false, only silent).
    if modern && let Some(v) = &r.locked_not_boolean {
        lines.push(warn(texts::not_a_boolean("Locked", v)));
    }
    if modern && r.locked_at_not_a_time {
        lines.push(warn(texts::not_a_time(&or_na(&r.locked_at))));
    }
    let (age, stale) = if modern {
        (r.age, r.stale)
    } else {
        (r.record_age, r.record_stale)
    };
    if let Some(age) = age {
        lines.push(if modern && age >= 86_400 {
            format!("  Lock age: {}", messages::age(age))
        } else {
            texts::lock_age(age)
        });
        if stale {
            lines.push(format!(
                "  {}",
                style.yellow(&texts::lock_is_stale(stale_after))
            ));
        }
    }
    match &r.process {
        ProcessView::NotChecked => {}
        ProcessView::BadPid(v) if modern => lines.push(warn(texts::not_a_pid(v))),
        // The legacy's `ps -p VALUE` fails for such a value (and it is never
        // probed or signalled here): its line, on this host only.
        ProcessView::BadPid(_) if r.this_host => lines.push(format!(
            "  {}",
            style.yellow(&texts::process_not_running(&pid))
        )),
        ProcessView::BadPid(_) => {}
        ProcessView::Running { comm, display } => {
            let name = if modern { display } else { comm };
            lines.push(format!(
                "  {}",
                style.green(&texts::process_running(&pid, name))
            ));
        }
        ProcessView::NotRunning => lines.push(format!(
            "  {}",
            style.yellow(&texts::process_not_running(&pid))
        )),
    }
    lines
}

/// A network store's lock under the lock line (the modern block only: the
/// unlock.sh block keeps the legacy shape).
fn network_lines(n: &deploy_lock::status::NetworkLock) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(t) = n.fencing_token {
        out.push(format!("  Fencing token: {t}"));
    }
    if let Some(f) = &n.foreign {
        if !f.has_lease {
            out.push("  Lease: none (the key never expires)".to_string());
        }
        if !f.is_record {
            out.push(format!("  Value: {}", messages::foreign_value(f)));
        }
        if !f.has_lease {
            return out;
        }
    }
    if let Some(l) = &n.lease_id {
        match n.ttl_remaining_secs {
            Some(s) => out.push(format!(
                "  Lease: {} ({s} s left; renewed by the holder)",
                messages::shown(l)
            )),
            None => out.push(format!("  Lease: {} (expired)", messages::shown(l))),
        }
    }
    out
}

/// The version of the `--json` objects' shape; bumped only when a key
/// changes meaning or goes away (new keys may appear without it).
pub const JSON_SCHEMA: u32 = 1;

/// The `--json` object, with the state file's error when it is not usable
/// (the lock part is still whole).
pub fn status_json_with(insp: &Inspection, state_error: Option<String>) -> Value {
    let holder = insp.holder.as_ref().map(|h| {
        let process_name = match &insp.liveness {
            Liveness::Alive { comm, .. } => Some(comm.clone()),
            _ => None,
        };
        json!({
            "source": h.source,
            "lock_id": h.lock_id,
            "deployment_id": h.deployment_id,
            "locked_by": h.locked_by,
            "locked_at": h.locked_at,
            "pid": h.pid,
            "hostname": h.hostname,
            "process_name": process_name,
            "reason": h.reason,
            // A freeze's holder: {"until": TIME or null}; null otherwise.
            "freeze": h.freeze.as_ref().map(|f| json!({ "until": f.until })),
        })
    });
    let state_file = insp
        .view
        .no_checkout
        .is_none()
        .then(|| path_str(&insp.state_file));
    let mut v = json!({
        "schema": JSON_SCHEMA,
        "environment": insp.environment.as_str(),
        "locked": insp.locked(),
        "verdict": insp.verdict.as_str(),
        "lock_dir": path_str(&insp.lock_dir),
        "lock_dir_exists": insp.lock_dir_exists(),
        "state_file": state_file,
        "state_file_exists": insp.state.is_some(),
        "state_error": state_error,
        "holder": holder,
        "holder_alive": insp.liveness.as_option(),
        "age_seconds": insp.age_seconds,
        "stale": insp.stale,
        "stale_after_seconds": insp.view.stale_after_secs,
        // The one-record-per-checkout rule: another environment's live lock
        // owns the checkout's state record.
        "record_held_by": insp.other_environment.as_ref().filter(|_| {
            deploy_lock::lock::record_held_by_other_environment(insp)
        }).map(|o| json!({
            "environment": o.environment.as_str(),
            "pid": o.holder.pid,
            "locked_by": o.holder.locked_by,
        })),
        // The legacy deploy.sh's migration lock beside this lock.
        "migration_lock": insp.migration.as_ref().map(|m| json!({
            "path": path_str(&m.path),
            "age_seconds": m.age_seconds,
        })),
        "run": run_json(insp),
        // The `run --wait` waiters in line, first first.
        "waiters": insp.waiters.iter().enumerate().map(|(i, w)| json!({
            "position": i + 1,
            "user": w.user,
            "host": w.host,
            "pid": w.pid,
            "reason": w.reason,
            "since": w.since,
        })).collect::<Vec<_>>(),
    });
    if let (Value::Object(o), Some(n)) = (&mut v, &insp.network) {
        o.insert("backend".into(), json!(n.backend));
        o.insert("key".into(), json!(n.key));
        o.insert("fencing_token".into(), json!(n.fencing_token));
        o.insert("lease_id".into(), json!(n.lease_id));
        o.insert(
            "lease_ttl_remaining_seconds".into(),
            json!(n.ttl_remaining_secs),
        );
        if let Some(f) = &n.foreign {
            o.insert(
                "foreign_value".into(),
                json!({
                    "size": f.size,
                    "head": f.head,
                    "is_record": f.is_record,
                    "has_lease": f.has_lease,
                }),
            );
        }
    }
    v
}

/// The deploy-lock run holding the whole-run lock, when one does: the
/// command's pid (the one every message names), the wrapper's, the lock id,
/// and for a force-unlocked run when the lock frees.
fn run_json(insp: &Inspection) -> Value {
    let Some(r) = &insp.run_holder else {
        return Value::Null;
    };
    let frees =
        (insp.verdict == deploy_lock::status::Verdict::ReleasedRunning).then_some("when it ends");
    json!({
        "pid": r.shown_pid(),
        "deploy_lock_pid": r.pid,
        "lock_id": r.lock_id,
        "frees": frees,
    })
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// `Lock ID: lock_...` for the modern status, so it can be copied into
/// `deploy-lock unlock ENV --id LOCK_ID`.
pub fn lock_id_line(insp: &Inspection) -> Option<String> {
    if !insp.lock_dir_exists() {
        return None;
    }
    let id = insp.holder.as_ref()?.lock_id.as_deref()?;
    Some(format!("Lock ID: {}", messages::shown(id)))
}

/// `Reason: hotfix #123` for the modern status, after the legacy block:
/// why the holder says it holds the lock (sanitised, one line).
pub fn reason_line(insp: &Inspection) -> Option<String> {
    messages::holder_reason(insp).map(|r| format!("Reason: {r}"))
}

/// Before the force-unlock question, when the holder runs (modern wording).
pub fn holder_still_running(pid: i32, liveness: &Liveness) -> String {
    let name = match liveness {
        Liveness::Alive { comm, .. } => display_name(pid, comm),
        _ => String::new(),
    };
    format!(
        "⚠ The holder is still running: {name}, pid {pid}. Unlocking does not stop it, and no other deploy-lock run starts until it ends."
    )
}

/// The run a force-unlock left running: its command's pid, with the
/// deploy-lock process that wraps it named as such.
pub fn released_run_phrase(insp: &Inspection) -> String {
    match &insp.run_holder {
        Some(r) if r.command.is_some_and(|c| c != r.pid) => format!(
            "the deploy-lock run's command (pid {}, under deploy-lock pid {}) still runs",
            r.shown_pid(),
            r.pid
        ),
        Some(r) => format!("the deploy-lock run (pid {}) still runs", r.pid),
        None => "the deploy-lock run still runs".to_string(),
    }
}

/// The modern unlock's last line when the run it released still runs.
pub fn released_running_after_unlock(insp: &Inspection) -> String {
    format!(
        "Not free yet: {}; the lock frees when it ends (status says released_running until then).",
        released_run_phrase(insp)
    )
}

/// The modern status's last line: the verdict and what it means.
pub fn verdict_line(insp: &Inspection) -> String {
    use deploy_lock::status::Verdict;
    let stale = texts::span(insp.view.stale_after_secs);
    let env = insp.environment;
    let foreign = insp.network.as_ref().and_then(|n| n.foreign.as_ref());
    let what = match (insp.verdict, &insp.liveness) {
        (Verdict::Held, _) if let Some(f) = foreign => format!(
            "held by {}; {}",
            messages::foreign_value(f),
            messages::foreign_fate(f, env)
        ),
        (Verdict::Blocked, _) if let Some(sq) = deploy_lock::lock::run_file_squatted(insp) => {
            format!(
                "{} is {}; no deploy can start until it lets go",
                insp.lock_dir.with_file_name(env.run_file_name()).display(),
                super::messages::squatter_phrase(&sq)
            )
        }
        (Verdict::Blocked, _) if deploy_lock::lock::record_held_by_other_environment(insp) => {
            let o = insp
                .other_environment
                .as_ref()
                .expect("the predicate saw it");
            format!(
                "no lock directory, but this checkout's one state record is the live {} lock's ({}); a {env} deploy waits until it is released (a checkout records one lock at a time)",
                o.environment,
                messages::describe_holder(&o.holder)
            )
        }
        (Verdict::Free, _) => "no lock directory; a deploy may start".to_string(),
        (Verdict::Frozen, _) => format!(
            "{}; no deploy starts until `deploy-lock unfreeze {env}`{}",
            messages::freeze_phrase(insp),
            match insp
                .holder
                .as_ref()
                .and_then(|h| h.freeze.as_ref())
                .and_then(|f| f.until.as_ref())
            {
                Some(_) => " or then",
                None => "",
            }
        ),
        (Verdict::ReleasedRunning, _) => format!(
            "the lock was force-unlocked, but {}; the lock frees when it ends (no deploy-lock run starts before)",
            released_run_phrase(insp)
        ),
        (Verdict::Blocked, _) => format!(
            "older than {stale} and its holder is not running here, but a deploy cannot take it over ({}); check it, then remove it by hand",
            if insp
                .dir
                .as_ref()
                .is_some_and(|d| d.entries.iter().any(|e| !deploy_lock::lock::is_ours(e)))
            {
                "it holds files deploy-lock did not put there"
            } else {
                "it is another user's, in a folder where only owners remove entries"
            }
        ),
        (Verdict::Held, _) if !insp.locked() => format!(
            "a deploy-lock run (pid {}) is taking it right now",
            insp.run_holder.as_ref().map_or(0, |r| r.pid)
        ),
        (Verdict::Held, Liveness::Alive { pid, comm }) => {
            let name = display_name(*pid, comm);
            format!("{name} (pid {pid}) is running; it is never taken over while alive")
        }
        (Verdict::Unknown, _) => {
            let mut l = format!(
                "its holder is unknown (no record says who holds it); taken over automatically once older than {stale}, never with --force; `deploy-lock unlock {env}` removes it"
            );
            // Holder trust: say whose directory it is and who wrote the
            // owner.json that was not believed.
            if let Some(d) = insp.dir.as_ref()
                && let Some(by) = d.disowned_record_uid
            {
                l.push_str(&format!(
                    " (the directory belongs to {}; its owner.json, written by {}, is not believed)",
                    messages::user_name(d.uid),
                    messages::user_name(by)
                ));
            }
            l
        }
        (Verdict::Held, Liveness::OtherHost) => {
            format!("held from another host; taken over automatically once older than {stale}")
        }
        (Verdict::Held, _) => format!("held; taken over automatically once older than {stale}"),
        (Verdict::Stale, _) => format!(
            "older than {stale} and its holder is not running here; the next deploy takes it over"
        ),
        (Verdict::Orphaned, _) => format!(
            "its holder is not running; `deploy-lock unlock {env}` clears it, or the next deploy takes it over once older than {stale}"
        ),
        (Verdict::Obstructed, _) => format!(
            "{} is not a directory; remove it by hand after checking what it is",
            insp.lock_dir.display()
        ),
        (Verdict::Queued, _) => format!(
            "free, but {} in line for it: the first takes it next; a deploy without --wait is refused (`deploy-lock run --wait {env}` joins the end)",
            match insp.waiters.len() {
                1 => "1 run waits".to_string(),
                n => format!("{n} runs wait"),
            }
        ),
    };
    format!("Verdict: {}: {what}", insp.verdict.as_str())
}

/// Property tests (bounded fuzzing) of the renderers over arbitrary lock
/// records and lock-path states: never a panic, the legacy block's six lines
/// always there and in order, one ⚠ line for a pid that is not a process id,
/// the JSON always whole. PROPTEST_CASES sets the case count.
#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use deploy_lock::Environment;
    use deploy_lock::fsops::PathKind;
    use deploy_lock::holder::{holder_from, liveness_of};
    use deploy_lock::state::StateDoc;
    use deploy_lock::status::verdict;
    use deploy_lock::view::{Facts, LegacyView, NonDirectory, record_view};
    use proptest::prelude::*;
    use serde_json::Map;

    const HOST: &str = "fuzz-host";

    /// Field values: the documented types and what hand edits make of them.
    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            "[ -~]{0,20}".prop_map(Value::String),
            prop::sample::select(vec![
                "2026-02-03T20:25:46Z",
                "2026-02-03T20:25:46",
                "2026-02-30T00:00:00Z",
                "garbage",
                "",
                "1; rm -rf /",
                "12345",
                "0",
                "-1",
                HOST,
                "true",
            ])
            .prop_map(|s| Value::String(s.to_string())),
            prop::sample::select(vec![
                "0",
                "-1",
                "1.5",
                "2147483648",
                "99999999999999999999999",
                "1"
            ])
            .prop_map(|s| serde_json::from_str(s).unwrap()),
            Just(serde_json::json!([1, {"a": null}])),
            Just(serde_json::json!({"pid": 1})),
        ]
    }

    fn record() -> impl Strategy<Value = Map<String, Value>> {
        let keys = [
            "locked",
            "locked_by",
            "locked_at",
            "deployment_id",
            "pid",
            "hostname",
            "lock_id",
            "holder_pid",
            "pid_start_ticks",
            "boot_id",
        ];
        prop::collection::vec(prop::option::of(value()), keys.len()).prop_map(move |vals| {
            keys.iter()
                .zip(vals)
                .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
                .collect()
        })
    }

    /// Every path kind with what the legacy `[ -d ]` makes of it: a
    /// directory (with or without its `ls -ld` line), a symlink to a
    /// directory (shown as existing), a symlink elsewhere, a dangling one, a
    /// file, something else, an unreadable path, nothing.
    fn path_state() -> impl Strategy<Value = (PathKind, DirView)> {
        let ls = "drwxrwxr-x 2 deploy deploy 4096 Feb  3 20:25 /x".to_string();
        prop::sample::select(vec![
            (PathKind::Missing, DirView::Missing { blocked_by: None }),
            (
                PathKind::Directory,
                DirView::Exists {
                    ls_ld: Some(ls.clone()),
                },
            ),
            (PathKind::Directory, DirView::Exists { ls_ld: None }),
            (PathKind::Symlink, DirView::Exists { ls_ld: Some(ls) }),
            (
                PathKind::Symlink,
                DirView::Missing {
                    blocked_by: Some(NonDirectory::Symlink(Some("/nowhere".into()))),
                },
            ),
            (
                PathKind::Symlink,
                DirView::Missing {
                    blocked_by: Some(NonDirectory::Symlink(None)),
                },
            ),
            (
                PathKind::Other,
                DirView::Missing {
                    blocked_by: Some(NonDirectory::File),
                },
            ),
            (
                PathKind::Other,
                DirView::Missing {
                    blocked_by: Some(NonDirectory::Other),
                },
            ),
            (
                PathKind::Other,
                DirView::Missing {
                    blocked_by: Some(NonDirectory::Unreadable("Permission denied".into())),
                },
            ),
        ])
    }

    proptest! {
        #[test]
        fn renderers_never_panic_and_keep_their_shape(
            lock in prop::option::of(record()),
            env_value in prop::option::of(value()),
            (kind, dir) in path_state(),
            has_state in any::<bool>(),
            running in any::<bool>(),
            age in prop::option::of(-100_000i64..10_000_000),
            stale in any::<bool>(),
            modern in any::<bool>(),
        ) {
            let env = Environment::Staging;
            let mut root = Map::new();
            if let Some(e) = env_value {
                root.insert("environment".into(), e);
            }
            if let Some(l) = &lock {
                root.insert("lock".into(), Value::Object(l.clone()));
            }
            let doc = StateDoc { root };
            let holder = (kind == PathKind::Directory)
                .then(|| holder_from(None, Some(&doc), env))
                .flatten();
            let liveness = holder
                .as_ref()
                .map(|h| liveness_of(h, HOST))
                .unwrap_or(Liveness::NoRecord);
            let facts = Facts {
                now: jiff::Timestamp::from_second(1_770_150_346).unwrap(),
                host: HOST,
                stale_after_secs: 1800,
                dir_age: age,
                tz: || jiff::tz::TimeZone::UTC,
            };
            let probe = |_: &deploy_lock::liveness::ProcessIdentity| {
                running.then(|| ("bash".to_string(), "bash (deploy.sh)".to_string()))
            };
            let record = has_state.then(|| record_view(&doc, &facts, probe));
            let insp = Inspection {
                environment: env,
                view: LegacyView {
                    obstruction: match &dir {
                        DirView::Missing { blocked_by } => blocked_by.clone(),
                        _ => None,
                    },
                    dir: dir.clone(),
                    record,
                    no_checkout: None,
                    stale_after_secs: 1800,
                },
                lock_dir: "/locks/togather-deploy-staging.lock".into(),
                path_kind: kind.clone(),
                dir: None,
                locked_at_file: None,
                owner: None,
                state_file: "/co/deploy/config/deployment-state.json".into(),
                state: has_state.then(|| doc.clone()),
                verdict: verdict(&kind, &liveness, holder.is_some(), stale),
                run_holder: None,
                other_environment: None,
            migration: None,
            waiters: Vec::new(),
                network: None,
                holder,
                liveness,
                age_seconds: age,
                now: facts.now,
                stale,
            };
            let block = if modern {
                status_block_modern(&insp, Style { color: false })
            } else {
                status_block(&insp, Style { color: false })
            };
            let dir_lines = match &dir {
                DirView::Exists { ls_ld: Some(_) } => 2,
                DirView::Exists { ls_ld: None } => 1,
                DirView::Missing { blocked_by: None } => 1,
                DirView::Missing { blocked_by: Some(_) } => 2,
            };
            let lines: Vec<&str> = block.lines().collect();
            prop_assert_eq!(&lines[..2], &["Deployment Lock Status: staging", "============================================"]);
            prop_assert!(block.ends_with("\n\n"), "{}", block);
            prop_assert_eq!(lines[2 + dir_lines], "", "{}", block);
            if !has_state {
                prop_assert_eq!(lines[3 + dir_lines], "State file not found: /co/deploy/config/deployment-state.json");
            }
            let field = |k: &str| lock.as_ref().and_then(|l| l.get(k));
            let one_line = lock.as_ref().is_none_or(|l| {
                // jq prints a non-empty object or array over several lines.
                l.values().all(|v| match v {
                    Value::String(s) => !s.contains('\n'),
                    Value::Object(o) => o.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => true,
                })
            });
            if one_line && has_state {
                prop_assert_eq!(lines[3 + dir_lines], "State file info:");
                for (line, label) in lines[4 + dir_lines..].iter().zip([
                    "  Locked: ",
                    "  Locked by: ",
                    "  Locked at: ",
                    "  Deployment ID: ",
                    "  PID: ",
                    "  Hostname: ",
                ]) {
                    prop_assert!(line.starts_with(label), "{:?} in\n{}", label, block);
                }
                let bad_pid = field("pid")
                    .filter(|v| !v.is_null() && **v != Value::Bool(false))
                    .is_some_and(|v| deploy_lock::liveness::valid_pid(v).is_none());
                let warned = block.lines().any(|l| l.starts_with("  ⚠ PID ") && l.ends_with(" is not a process id: not checked"));
                // The modern block says what is wrong with the pid; the
                // unlock.sh block says what the legacy's `ps -p` made of it.
                prop_assert_eq!(bad_pid && modern, warned, "{}", block);
                if bad_pid {
                    prop_assert!(!block.contains("✓ Process"), "{}", block);
                }
                if bad_pid && modern {
                    prop_assert!(!block.contains("is not running (deployment may have crashed)"), "{}", block);
                }
                if block.contains("✓ Process") {
                    prop_assert!(block.contains(if modern { ": bash (deploy.sh)\n" } else { ": bash\n" }), "{}", block);
                }
            }
            let json = status_json_with(&insp, None);
            let text = serde_json::to_string(&json).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            let keys: Vec<&str> = back.as_object().unwrap().keys().map(String::as_str).collect();
            prop_assert_eq!(keys, [
                "schema", "environment", "locked", "verdict", "lock_dir", "lock_dir_exists", "state_file",
                "state_file_exists", "state_error", "holder", "holder_alive", "age_seconds", "stale", "stale_after_seconds",
                "record_held_by", "migration_lock",
                "run", "waiters",
            ]);
            if let Some(pid) = back["holder"]["pid"].as_i64() {
                prop_assert!(pid > 0);
            }
            let verdict_text = verdict_line(&insp);
            let prefix = format!("Verdict: {}: ", insp.verdict.as_str());
            prop_assert!(verdict_text.starts_with(&prefix), "{}", verdict_text);
        }
    }
}
