//! Renders the status model: the legacy status block (byte-identical to the
//! bash script's in every documented state) and the JSON object.

use std::path::Path;

use deploy_lock::Context;
use deploy_lock::liveness::{ProcessIdentity, valid_pid};
use deploy_lock::lock::parse_time;
use deploy_lock::lsld;
use deploy_lock::state::StateDoc;
use deploy_lock::status::{Inspection, Liveness};
use serde_json::{Value, json};

use super::style::Style;
use super::texts;

/// A value as `jq -r '.lock.KEY // "N/A"'` prints it: missing, null and false
/// give the default; strings print raw; anything else as compact JSON.
fn jq_raw(v: Option<&Value>, default: &str) -> String {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => default.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The legacy status block, ending with its empty line.
pub fn status_block(insp: &Inspection, ctx: &Context, style: Style) -> String {
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
    }
    line("");
    match &insp.state {
        Some(doc) => {
            line(&style.blue(texts::STATE_FILE_INFO));
            for l in state_lines(doc, ctx, style) {
                line(&l);
            }
        }
        None => line(&texts::state_file_not_found(&insp.state_file)),
    }
    line("");
    out
}

fn state_lines(doc: &StateDoc, ctx: &Context, style: Style) -> Vec<String> {
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
        let age = ctx.now().as_second() - t.as_second();
        lines.push(texts::lock_age(age));
        let stale = ctx.settings.stale_after.as_secs();
        if age > stale as i64 {
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
        // the record (written by deploy-lock) rule out a recycled pid.
        let running = get("pid").and_then(valid_pid).and_then(|p| {
            ProcessIdentity {
                pid: p,
                start_ticks: get("pid_start_ticks").and_then(Value::as_u64),
                boot_id: get("boot_id").and_then(Value::as_str).map(str::to_string),
            }
            .running()
        });
        lines.push(match running {
            Some(info) => format!(
                "  {}",
                style.green(&texts::process_running(&pid, &info.ps_comm()))
            ),
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

/// The modern status's last line: the verdict and what it means.
pub fn verdict_line(insp: &Inspection, ctx: &Context) -> String {
    use deploy_lock::status::Verdict;
    let stale = texts::span(ctx.settings.stale_after.as_secs());
    let env = insp.environment;
    let what = match (insp.verdict, &insp.liveness) {
        (Verdict::Free, _) => "no lock directory; a deploy may start".to_string(),
        (Verdict::Held, Liveness::Alive { pid, comm }) => {
            format!("{comm} (pid {pid}) is running; it is never taken over while alive")
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
    }
}
