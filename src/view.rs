//! The facts the status block shows, gathered once by `inspect` so that the
//! renderers (legacy text, JSON, verdict line) are pure functions of an
//! [`Inspection`](crate::status::Inspection). Values, never words: the CLI
//! (`texts.rs`) holds every label and sentence.

use std::path::PathBuf;

use jiff::Timestamp;
use serde_json::Value;

use crate::liveness::{ProcessIdentity, Sightings, display_name, valid_pid};
use crate::state::StateDoc;
use crate::times::{date_d, parse_time};

/// What sits at a lock path that is not a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NonDirectory {
    /// A symbolic link, with its target when it could be read.
    Symlink(Option<PathBuf>),
    File,
    Other,
    Unreadable(String),
}

impl NonDirectory {
    /// What is at `path` (lstat, never followed).
    pub fn at(path: &std::path::Path) -> NonDirectory {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                NonDirectory::Symlink(std::fs::read_link(path).ok())
            }
            Ok(m) if m.file_type().is_file() => NonDirectory::File,
            Ok(_) => NonDirectory::Other,
            Err(e) => NonDirectory::Unreadable(e.to_string()),
        }
    }
}

/// The lock path as the legacy block shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirView {
    /// `[ -d LOCK_DIR ]` (which follows a symlink) held, with the line
    /// `ls -ld LOCK_DIR` prints (None if it could not be had).
    Exists { ls_ld: Option<String> },
    /// Nothing there that `-d` accepts; `blocked_by` when something else
    /// still sits at the path (it blocks every deploy).
    Missing { blocked_by: Option<NonDirectory> },
}

/// How the record's process looks from here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProcessView {
    /// No pid, or recorded on another host: the legacy said nothing.
    #[default]
    NotChecked,
    /// A pid that is not a process id (0, -1, huge, a string): never probed.
    BadPid(Value),
    /// Alive (with the recorded start time and boot id when present). `comm`
    /// as `ps -o comm=` prints it; `display` names an interpreter's script.
    Running {
        comm: String,
        display: String,
    },
    NotRunning,
}

/// The state file's lock record, field by field as the legacy printed it
/// (`jq -r '.lock.KEY // "N/A"'`: None where jq printed the default), plus
/// what hand edits got wrong and the derived age, stale flag and process.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecordView {
    pub locked: Option<String>,
    pub locked_by: Option<String>,
    pub locked_at: Option<String>,
    pub deployment_id: Option<String>,
    pub pid: Option<String>,
    pub hostname: Option<String>,
    /// `locked` holds neither a boolean nor null: the value.
    pub locked_not_boolean: Option<Value>,
    /// Locked, with a `locked_at` that is not a time.
    pub locked_at_not_a_time: bool,
    /// Seconds since it was locked (only while `locked` is true and
    /// `locked_at` is a time).
    pub age: Option<i64>,
    pub stale: bool,
    /// The age and stale flag as the legacy computed them: now minus the
    /// record's own `locked_at`, whatever the lock directory says (the
    /// unlock.sh persona prints these; the modern one the lock's one age).
    pub record_age: Option<i64>,
    pub record_stale: bool,
    /// The record's `hostname` is this host's name (the legacy then asked
    /// `ps -p PID`, whatever PID held).
    pub this_host: bool,
    pub process: ProcessView,
}

/// Everything the legacy block needs beyond the inspection's own fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyView {
    pub dir: DirView,
    /// What sits at the lock path when it is not a directory (a symlink,
    /// even to a directory, obstructs: it is never followed).
    pub obstruction: Option<NonDirectory>,
    /// None: no state file.
    pub record: Option<RecordView>,
    /// No checkout was found from this folder (status and wait work without
    /// one): there is no state file to show.
    pub no_checkout: Option<PathBuf>,
    /// The stale timeout the age was judged against.
    pub stale_after_secs: u64,
}

/// What deriving a [`RecordView`] needs from the world.
pub struct Facts<'a> {
    pub now: Timestamp,
    pub host: &'a str,
    pub stale_after_secs: u64,
    /// The inspection's age while there is a lock directory: one age for the
    /// lock in every message (the legacy read only the record's).
    pub dir_age: Option<i64>,
    /// The zone `date -d` reads a time without one in (TZ); asked only for
    /// such a time (reading it costs a file read).
    pub tz: fn() -> jiff::tz::TimeZone,
}

/// A value as `jq -r '.lock.KEY // "N/A"'` prints it: missing, null and false
/// give the default (None); strings print raw; anything else as compact
/// JSON. Control characters (an escape sequence or a newline typed into the
/// file) show as `?`, as `ps` shows them, so a value cannot forge lines.
///
/// An object or array prints as jq prints it: indented over several lines
/// (its strings JSON-escaped, so no control character gets through).
pub fn jq_raw(v: Option<&Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => None,
        Some(Value::String(s)) => Some(crate::sanitize::text(s).into_owned()),
        // jq -r prints an object or array over several lines: each line is
        // sanitised, the line breaks jq makes are kept.
        Some(v @ (Value::Object(_) | Value::Array(_))) => Some(
            serde_json::to_string_pretty(v)
                .expect("a JSON value always serialises")
                .lines()
                .map(|l| crate::sanitize::text(l).into_owned())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Some(other) => Some(crate::sanitize::text(&other.to_string()).into_owned()),
    }
}

/// The record view of `doc`; `probe` says whether a process runs (its
/// `ps` name and display name), so tests need no real processes.
pub fn record_view(
    doc: &StateDoc,
    facts: &Facts<'_>,
    probe: impl Fn(&ProcessIdentity) -> Option<(String, String)>,
) -> RecordView {
    let get = |k: &str| doc.lock_field(k);
    let mut v = RecordView {
        locked: jq_raw(get("locked")),
        locked_by: jq_raw(get("locked_by")),
        locked_at: jq_raw(get("locked_at")),
        deployment_id: jq_raw(get("deployment_id")),
        pid: jq_raw(get("pid")),
        hostname: jq_raw(get("hostname")),
        ..RecordView::default()
    };
    v.locked_not_boolean = get("locked")
        .filter(|v| !v.is_null() && !v.is_boolean())
        .cloned();
    let locked = v.locked.as_deref() == Some("true");
    let at = v.locked_at.as_deref().map(parse_time);
    v.locked_at_not_a_time = locked && matches!(at, Some(None));
    let limit = i64::try_from(facts.stale_after_secs).unwrap_or(i64::MAX);
    if locked && let Some(Some(t)) = at {
        let own = facts.now.as_second().saturating_sub(t.as_second());
        let age = facts.dir_age.unwrap_or(own);
        v.age = Some(age);
        v.stale = age > limit;
    }
    // The legacy's age: `date -d` of the record's own locked_at.
    if locked
        && let Some(t) = v
            .locked_at
            .as_deref()
            .and_then(|s| date_d(s, facts.now, facts.tz))
    {
        let own = facts.now.as_second().saturating_sub(t.as_second());
        v.record_age = Some(own);
        v.record_stale = own > limit;
    }
    v.this_host = v.hostname.as_deref() == Some(facts.host);
    let pid_value = get("pid").filter(|v| !v.is_null() && *v != &Value::Bool(false));
    if let Some(p) = pid_value
        && valid_pid(p).is_none()
    {
        // Never probed or signalled: 0, -1 or a huge value would address a
        // process group or every process.
        v.process = ProcessView::BadPid(p.clone());
        return v;
    }
    if v.pid.is_some() && v.hostname.as_deref() == Some(facts.host) {
        // The legacy asked `ps -p PID`. A start time and boot id in the
        // record (written by deploy-lock) rule out a recycled pid; a zombie
        // has ended (whatever `ps` lists).
        let running = get("pid").and_then(valid_pid).and_then(|p| {
            probe(&ProcessIdentity {
                pid: p,
                start_ticks: get("pid_start_ticks").and_then(Value::as_u64),
                boot_id: get("boot_id").and_then(Value::as_str).map(str::to_string),
            })
        });
        v.process = match running {
            Some((comm, display)) => ProcessView::Running { comm, display },
            None => ProcessView::NotRunning,
        };
    }
    v
}

/// The probe `inspect` uses: /proc, as the look's other judgements saw it.
pub fn probe_proc(look: &Sightings, id: &ProcessIdentity) -> Option<(String, String)> {
    let info = id.alive_in(look)?;
    let comm = info.ps_comm();
    Some((comm.clone(), display_name(id.pid, &comm)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jq_raw_follows_jq_alternative_operator() {
        assert_eq!(jq_raw(None), None);
        assert_eq!(jq_raw(Some(&Value::Null)), None);
        assert_eq!(jq_raw(Some(&json!(false))), None);
        assert_eq!(jq_raw(Some(&json!(true))).as_deref(), Some("true"));
        assert_eq!(jq_raw(Some(&json!("a b"))).as_deref(), Some("a b"));
        assert_eq!(jq_raw(Some(&json!(12345))).as_deref(), Some("12345"));
        assert_eq!(
            jq_raw(Some(&json!({"a": 1}))).as_deref(),
            Some("{\n  \"a\": 1\n}")
        );
        assert_eq!(jq_raw(Some(&json!([]))).as_deref(), Some("[]"));
        assert_eq!(
            jq_raw(Some(&json!("a\nb\u{1b}[2J"))).as_deref(),
            Some("a?b?[2J")
        );
    }

    fn doc(lock: Value) -> StateDoc {
        let mut root = serde_json::Map::new();
        root.insert("lock".into(), lock);
        StateDoc { root }
    }

    #[test]
    fn the_record_view_derives_age_staleness_and_the_process() {
        let facts = Facts {
            now: Timestamp::from_second(1_770_150_346 + 1900).unwrap(),
            host: "h",
            stale_after_secs: 1800,
            dir_age: None,
            tz: || jiff::tz::TimeZone::UTC,
        };
        let d = doc(json!({
            "locked": true, "locked_at": "2026-02-03T20:25:46Z", "pid": 42, "hostname": "h"
        }));
        let up = |_: &ProcessIdentity| Some(("bash".to_string(), "bash (deploy.sh)".to_string()));
        let v = record_view(&d, &facts, up);
        assert_eq!((v.age, v.stale), (Some(1900), true));
        assert_eq!(
            v.process,
            ProcessView::Running {
                comm: "bash".into(),
                display: "bash (deploy.sh)".into()
            }
        );
        let down = |_: &ProcessIdentity| None;
        assert_eq!(
            record_view(&d, &facts, down).process,
            ProcessView::NotRunning
        );
        // Another host: not checked; a pid that is no process id: never probed.
        let other = doc(json!({"locked": true, "pid": 42, "hostname": "elsewhere"}));
        assert_eq!(
            record_view(&other, &facts, up).process,
            ProcessView::NotChecked
        );
        let bad = doc(json!({"locked": "yes", "locked_at": "soon", "pid": -1, "hostname": "h"}));
        let v = record_view(&bad, &facts, up);
        assert_eq!(v.process, ProcessView::BadPid(json!(-1)));
        assert_eq!(v.locked_not_boolean, Some(json!("yes")));
        assert!(!v.locked_at_not_a_time, "only judged while locked is true");
    }
}
