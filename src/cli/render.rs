//! Renders the status model: the legacy status block (byte-identical to the
//! bash script's in every documented state) and the JSON object.

use std::path::Path;

use deploy_lock::Context;
use deploy_lock::liveness::{ProcessIdentity, valid_pid};
use deploy_lock::lsld;
use deploy_lock::state::StateDoc;
use deploy_lock::status::{Inspection, Liveness};
use deploy_lock::times::parse_time;
use serde_json::{Value, json};

use super::style::Style;
use super::texts;

/// A value as `jq -r '.lock.KEY // "N/A"'` prints it: missing, null and false
/// give the default; strings print raw; anything else as compact JSON.
/// Control characters (an escape sequence or a newline typed into the file)
/// show as `?`, as `ps` shows them, so a value cannot forge status lines.
fn jq_raw(v: Option<&Value>, default: &str) -> String {
    let text = match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => return default.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The legacy status block, ending with its empty line.
pub fn status_block(insp: &Inspection, ctx: &Context, style: Style) -> String {
    block(insp, ctx, style, false)
}

/// The `deploy-lock` persona's status block: the legacy one, except that an
/// interpreter holder is named with its script, `bash (deploy.sh)`.
pub fn status_block_modern(insp: &Inspection, ctx: &Context, style: Style) -> String {
    block(insp, ctx, style, true)
}

fn block(insp: &Inspection, ctx: &Context, style: Style, modern: bool) -> String {
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(&style.blue(&texts::header(insp.environment.as_str())));
    line(texts::RULE);
    // The legacy tested `[ -d "$LOCK_DIR" ]`, which follows a symlink.
    if insp.lock_dir.is_dir() {
        line(&format!(
            "{} {}",
            style.yellow(texts::LOCK_DIR_EXISTS_LABEL),
            insp.lock_dir.display()
        ));
        let tz = deploy_lock::tz::system_time_zone();
        if let Ok(ls) = lsld::ls_ld(&insp.lock_dir, ctx.now(), &tz) {
            line(&ls);
        }
    } else {
        line(&format!(
            "{} {}",
            texts::LOCK_DIR_LABEL,
            style.green(texts::NOT_FOUND_UNLOCKED)
        ));
        // The legacy said no more; a file or dangling symlink there still
        // blocks every deploy, so say what it is (never in documented states).
        if std::fs::symlink_metadata(&insp.lock_dir).is_ok() {
            let what = deploy_lock::fsops::describe_non_directory(&insp.lock_dir);
            line(&format!(
                "  {}",
                style.yellow(&texts::lock_path_not_a_directory(&insp.lock_dir, &what))
            ));
        }
    }
    line("");
    match &insp.state {
        Some(doc) => {
            line(&style.blue(texts::STATE_FILE_INFO));
            // One age for the lock in every message: the inspection's, while
            // there is a lock directory (the legacy read only the record's).
            let age = insp.lock_dir_exists().then_some(insp.age_seconds).flatten();
            for l in state_lines(doc, ctx, style, age, modern) {
                line(&l);
            }
        }
        None => line(&texts::state_file_not_found(&insp.state_file)),
    }
    line("");
    out
}

fn state_lines(
    doc: &StateDoc,
    ctx: &Context,
    style: Style,
    dir_age: Option<i64>,
    modern: bool,
) -> Vec<String> {
    let get = |k: &str| doc.lock_field(k);
    let locked = jq_raw(get("locked"), "false");
    let locked_at = jq_raw(get("locked_at"), texts::NA);
    let pid = jq_raw(get("pid"), texts::NA);
    let hostname = jq_raw(get("hostname"), texts::NA);
    let mut lines = vec![
        texts::field("Locked", &locked),
        texts::field("Locked by", &jq_raw(get("locked_by"), texts::NA)),
        texts::field("Locked at", &locked_at),
        texts::field("Deployment ID", &jq_raw(get("deployment_id"), texts::NA)),
        texts::field("PID", &pid),
        texts::field("Hostname", &hostname),
    ];
    let warn = |text: String| format!("  {}", style.yellow(&text));
    // Hand edits produce values of the wrong type; the legacy printed them
    // silently. Each gets one ⚠ line saying what is wrong (never shown for the
    // documented shapes).
    if let Some(v) = get("locked").filter(|v| !v.is_null() && !v.is_boolean()) {
        lines.push(warn(texts::not_a_boolean("Locked", v)));
    }
    if locked == "true" && locked_at != texts::NA && parse_time(&locked_at).is_none() {
        lines.push(warn(texts::not_a_time(&locked_at)));
    }
    if locked == "true"
        && let Some(t) = parse_time(&locked_at)
    {
        let age = dir_age.unwrap_or_else(|| ctx.now().as_second().saturating_sub(t.as_second()));
        lines.push(texts::lock_age(age));
        let stale = ctx.settings.stale_after.as_secs();
        if age > i64::try_from(stale).unwrap_or(i64::MAX) {
            lines.push(format!("  {}", style.yellow(&texts::lock_is_stale(stale))));
        }
    }
    let pid_value = get("pid").filter(|v| !v.is_null() && *v != &Value::Bool(false));
    if let Some(v) = pid_value
        && valid_pid(v).is_none()
    {
        // Never probed or signalled: 0, -1 or a huge value would address a
        // process group or every process.
        lines.push(warn(texts::not_a_pid(v)));
        return lines;
    }
    if pid != texts::NA && hostname == ctx.host {
        // The legacy asked `ps -p PID`; a pid that is not a positive integer is
        // never probed and reads as not running. A start time and boot id in
        // the record (written by deploy-lock) rule out a recycled pid. A
        // zombie has ended: it is not running (whatever `ps` lists).
        let running = get("pid").and_then(valid_pid).and_then(|p| {
            ProcessIdentity {
                pid: p,
                start_ticks: get("pid_start_ticks").and_then(Value::as_u64),
                boot_id: get("boot_id").and_then(Value::as_str).map(str::to_string),
            }
            .alive()
            .map(|info| (p, info))
        });
        lines.push(match running {
            Some((p, info)) => {
                let name = if modern {
                    deploy_lock::liveness::display_name(p, &info.ps_comm())
                } else {
                    info.ps_comm()
                };
                format!("  {}", style.green(&texts::process_running(&pid, &name)))
            }
            None => format!("  {}", style.yellow(&texts::process_not_running(&pid))),
        });
    }
    lines
}

/// The `--json` object.
pub fn status_json(insp: &Inspection, ctx: &Context) -> Value {
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
        })
    });
    json!({
        "environment": insp.environment.as_str(),
        "locked": insp.locked(),
        "verdict": insp.verdict.as_str(),
        "lock_dir": path_str(&insp.lock_dir),
        "lock_dir_exists": insp.lock_dir_exists(),
        "state_file": path_str(&insp.state_file),
        "state_file_exists": insp.state.is_some(),
        "holder": holder,
        "holder_alive": insp.liveness.as_option(),
        "age_seconds": insp.age_seconds,
        "stale": insp.stale,
        "stale_after_seconds": ctx.settings.stale_after.as_secs(),
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
    Some(format!("Lock ID: {id}"))
}

/// After `yes`, when the lock is no longer the one shown (modern wording).
pub fn changed_hands(
    env: deploy_lock::Environment,
    now: Option<&deploy_lock::status::Holder>,
) -> String {
    let who = now
        .map(deploy_lock::holder::describe)
        .unwrap_or_else(|| "an unknown holder".into());
    let id = now.and_then(|h| h.lock_id.as_deref()).unwrap_or("none");
    format!(
        "ERROR: the {env} lock changed hands since it was shown: it is held by {who} now (lock id {id}); nothing changed"
    )
}

/// Before the force-unlock question, when the holder runs (modern wording).
pub fn holder_still_running(pid: i32, liveness: &Liveness) -> String {
    let name = match liveness {
        Liveness::Alive { comm, .. } => deploy_lock::liveness::display_name(pid, comm),
        _ => String::new(),
    };
    format!(
        "⚠ The holder is still running: {name}, pid {pid}. Unlocking does not stop it, and no other deploy-lock run starts until it ends."
    )
}

/// The modern status's last line: the verdict and what it means.
pub fn verdict_line(insp: &Inspection, ctx: &Context) -> String {
    use deploy_lock::status::Verdict;
    let stale = texts::span(ctx.settings.stale_after.as_secs());
    let env = insp.environment;
    let what = match (insp.verdict, &insp.liveness) {
        (Verdict::Free, _) => match insp.run_holder.as_ref().filter(|r| r.lock_id.is_some()) {
            Some(run) => format!(
                "no lock directory, but a deploy-lock run (pid {}) still runs its command (its lock directory was removed); another deploy-lock run starts once it ends",
                run.pid
            ),
            None => "no lock directory; a deploy may start".to_string(),
        },
        (Verdict::Held, Liveness::Alive { pid, comm }) => {
            let name = deploy_lock::liveness::display_name(*pid, comm);
            format!("{name} (pid {pid}) is running; it is never taken over while alive")
        }
        (Verdict::Unknown, _) => format!(
            "its holder is unknown (no record says who holds it); taken over automatically once older than {stale}, never with --force; `deploy-lock unlock {env}` removes it"
        ),
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
    };
    format!("Verdict: {}: {what}", insp.verdict.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jq_raw_follows_jq_alternative_operator() {
        assert_eq!(jq_raw(None, "N/A"), "N/A");
        assert_eq!(jq_raw(Some(&Value::Null), "N/A"), "N/A");
        assert_eq!(jq_raw(Some(&json!(false)), "false"), "false");
        assert_eq!(jq_raw(Some(&json!(true)), "false"), "true");
        assert_eq!(jq_raw(Some(&json!("a b")), "N/A"), "a b");
        assert_eq!(jq_raw(Some(&json!(12345)), "N/A"), "12345");
        assert_eq!(jq_raw(Some(&json!({"a": 1})), "N/A"), "{\"a\":1}");
        assert_eq!(jq_raw(Some(&json!("a\nb\u{1b}[2J")), "N/A"), "a?b?[2J");
    }
}

/// Property tests (bounded fuzzing) of the renderers over arbitrary lock
/// records and lock-path states: never a panic, the legacy block's six lines
/// always there and in order, one ⚠ line for a pid that is not a process id,
/// the JSON always whole. PROPTEST_CASES sets the case count.
#[cfg(test)]
mod fuzz_tests {
    use super::*;
    use deploy_lock::context::{Clock, Settings};
    use deploy_lock::fsops::PathKind;
    use deploy_lock::holder::{holder_from, liveness_of};
    use deploy_lock::status::verdict;
    use deploy_lock::{Context, Environment};
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

    fn path_kind() -> impl Strategy<Value = PathKind> {
        prop::sample::select(vec![
            PathKind::Missing,
            PathKind::Directory,
            PathKind::Symlink,
            PathKind::Other,
        ])
    }

    fn context() -> Context {
        let settings = Settings {
            lock_root: "/nonexistent-deploy-lock-fuzz".into(),
            ..Settings::default()
        };
        let mut ctx = Context::new(settings, "/nonexistent-deploy-lock-fuzz/checkout".into());
        ctx.host = HOST.to_string();
        ctx.clock = Clock::Fixed(jiff::Timestamp::from_second(1_770_150_346).unwrap());
        ctx
    }

    proptest! {
        #[test]
        fn renderers_never_panic_and_keep_their_shape(
            lock in prop::option::of(record()),
            env_value in prop::option::of(value()),
            kind in path_kind(),
            age in prop::option::of(-100_000i64..10_000_000),
            stale in any::<bool>(),
        ) {
            let ctx = context();
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
                .map(|h| liveness_of(h, &ctx.host))
                .unwrap_or(Liveness::NoRecord);
            let insp = Inspection {
                environment: env,
                lock_dir: ctx.lock_dir(env),
                path_kind: kind.clone(),
                dir: None,
                locked_at_file: None,
                owner: None,
                state_file: ctx.state_file.clone(),
                state: Some(doc.clone()),
                verdict: verdict(&kind, &liveness, holder.is_some(), stale),
                run_holder: None,
                holder,
                liveness,
                age_seconds: age,
                stale,
            };
            let block = status_block(&insp, &ctx, Style { color: false });
            prop_assert!(block.starts_with(
                "Deployment Lock Status: staging\n============================================\nLock directory: Not found (unlocked)\n\nState file info:\n"
            ), "{}", block);
            prop_assert!(block.ends_with("\n\n"), "{}", block);
            let field = |k: &str| lock.as_ref().and_then(|l| l.get(k));
            let one_line = lock.as_ref().is_none_or(|l| {
                l.values().all(|v| !v.to_string().contains("\\n") && !matches!(v, Value::String(s) if s.contains('\n')))
            });
            if one_line {
                let lines: Vec<&str> = block.lines().skip(5).collect();
                for (line, label) in lines.iter().zip([
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
                    .is_some_and(|v| valid_pid(v).is_none());
                let warned = block.lines().any(|l| l.starts_with("  ⚠ PID ") && l.ends_with(" is not a process id: not checked"));
                prop_assert_eq!(bad_pid, warned, "{}", block);
                if bad_pid {
                    prop_assert!(!block.contains("✓ Process") && !block.contains("is not running (deployment may have crashed)"), "{}", block);
                }
            }
            let json = status_json(&insp, &ctx);
            let text = serde_json::to_string(&json).unwrap();
            let back: Value = serde_json::from_str(&text).unwrap();
            let keys: Vec<&str> = back.as_object().unwrap().keys().map(String::as_str).collect();
            prop_assert_eq!(keys, [
                "environment", "locked", "verdict", "lock_dir", "lock_dir_exists", "state_file",
                "state_file_exists", "holder", "holder_alive", "age_seconds", "stale", "stale_after_seconds",
            ]);
            if let Some(pid) = back["holder"]["pid"].as_i64() {
                prop_assert!(pid > 0);
            }
            let verdict_text = verdict_line(&insp, &ctx);
            let prefix = format!("Verdict: {}: ", insp.verdict.as_str());
            prop_assert!(verdict_text.starts_with(&prefix), "{}", verdict_text);
        }
    }
}
