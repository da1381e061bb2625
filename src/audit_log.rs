//! Reading the audit trail back (`deploy-lock log`): the JSON lines that
//! `audit::record` appends, parsed leniently so one damaged line never hides
//! the rest, with each release paired with its acquisition for "held for".

use std::collections::HashMap;
use std::io;
use std::path::Path;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use crate::environment::Environment;
use crate::times::parse_time;

/// One line of the log file.
#[derive(Clone, Debug, PartialEq)]
pub enum Line {
    Event(Box<Event>),
    /// Not a JSON object with a time and an event: shown as damaged, never fatal.
    Damaged {
        /// 1-based line number in the file.
        number: usize,
        text: String,
        reason: String,
    },
}

/// One lock event, as recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// 1-based line number in the file.
    pub number: usize,
    pub time: Timestamp,
    /// `acquire`, `takeover`, `release`, `release_skipped`, `force_unlock`,
    /// `restore`, ...: kept as written, so events added later still show.
    pub kind: String,
    /// As recorded; an unknown name is kept as text.
    pub environment: String,
    pub user: Option<String>,
    pub host: Option<String>,
    pub pid: Option<i64>,
    pub lock_id: Option<String>,
    /// Recorded on acquisitions; a release borrows its acquisition's.
    pub deployment_id: Option<String>,
    /// For a takeover or forced unlock: who held the lock before.
    pub previous_holder: Option<String>,
    pub note: Option<String>,
    /// Why the lock was taken (`run --reason`), on its acquisition.
    pub reason: Option<String>,
    /// The command line that wrote the event, as typed (argv).
    pub command: Option<Vec<String>>,
    /// How the run's command ended, on its release: `exit 3` or `SIGINT`.
    pub ended: Option<String>,
    /// The root user under which a `sudo` caller (`user`) acted.
    pub sudo_as: Option<String>,
    /// For a release: time since the acquisition with the same lock id, when
    /// that acquisition is in the log.
    pub held_for: Option<SignedDuration>,
    /// The whole line, for `--json`.
    pub raw: Value,
}

impl Line {
    pub fn number(&self) -> usize {
        match self {
            Line::Event(e) => e.number,
            Line::Damaged { number, .. } => *number,
        }
    }
}

/// Parses a whole log. Releases are paired with the acquisition (or takeover)
/// carrying the same lock id that comes before them.
pub fn parse(text: &str) -> Vec<Line> {
    let mut acquired: HashMap<String, (Timestamp, Option<String>)> = HashMap::new();
    let mut out = Vec::new();
    for (i, text) in text.lines().enumerate() {
        let number = i + 1;
        if text.trim().is_empty() {
            continue;
        }
        let mut event = match parse_line(number, text) {
            Ok(e) => e,
            Err(reason) => {
                out.push(Line::Damaged {
                    number,
                    text: text.to_string(),
                    reason,
                });
                continue;
            }
        };
        if let Some(id) = &event.lock_id {
            match event.kind.as_str() {
                "acquire" | "takeover" | "freeze" => {
                    acquired.insert(id.clone(), (event.time, event.deployment_id.clone()));
                }
                "release" | "release_skipped" | "unfreeze" => {
                    if let Some((at, dep)) = acquired.remove(id) {
                        event.held_for = event.time.duration_since(at).into();
                        if event.deployment_id.is_none() {
                            event.deployment_id = dep;
                        }
                    }
                }
                _ => {}
            }
        }
        out.push(Line::Event(Box::new(event)));
    }
    out
}

fn parse_line(number: usize, text: &str) -> Result<Event, String> {
    let raw: Value = serde_json::from_str(text).map_err(|e| format!("not JSON ({e})"))?;
    let obj = raw.as_object().ok_or("not a JSON object")?;
    let s = |k: &str| obj.get(k).and_then(Value::as_str).map(str::to_string);
    let time_text = s("time").ok_or("no \"time\"")?;
    let time = parse_time(&time_text).ok_or_else(|| format!("unreadable time '{time_text}'"))?;
    let kind = s("event").ok_or("no \"event\"")?;
    let environment = s("environment").ok_or("no \"environment\"")?;
    let previous_holder = obj.get("holder").and_then(|h| {
        let h = h.as_object()?;
        let by = h.get("locked_by").and_then(Value::as_str);
        let pid = h.get("pid").and_then(Value::as_i64);
        match (by, pid) {
            (Some(by), Some(pid)) => Some(format!("{by} (pid {pid})")),
            (Some(by), None) => Some(by.to_string()),
            (None, Some(pid)) => Some(format!("pid {pid}")),
            (None, None) => None,
        }
    });
    Ok(Event {
        number,
        time,
        kind,
        environment,
        user: s("user"),
        host: s("host"),
        pid: obj.get("pid").and_then(Value::as_i64),
        lock_id: s("lock_id"),
        deployment_id: s("deployment_id"),
        previous_holder,
        note: s("note"),
        reason: s("reason"),
        command: obj.get("command").and_then(Value::as_array).map(|a| {
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect()
        }),
        ended: match (obj.get("exit_status").and_then(Value::as_i64), s("signal")) {
            (_, Some(sig)) => Some(sig),
            (Some(code), None) => Some(format!("exit {code}")),
            (None, None) => None,
        },
        sudo_as: obj
            .get("sudo")
            .and_then(Value::as_bool)
            .filter(|b| *b)
            .map(|_| s("effective_user").unwrap_or_else(|| "root".into())),
        held_for: None,
        raw,
    })
}

/// Reads the log at `path`; a missing file is an empty log.
pub fn read(path: &Path) -> io::Result<Vec<Line>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Reads several logs (the checkout's, the user's old one) as one trail:
/// events in time order, ties and each file's damaged lines kept where
/// their file had them. Missing files are empty.
pub fn read_all(paths: &[&Path]) -> io::Result<Vec<Line>> {
    let mut keyed = Vec::new();
    for path in paths {
        let mut at = None;
        for line in read(path)? {
            if let Line::Event(e) = &line {
                at = Some(e.time);
            }
            keyed.push((at, line));
        }
    }
    // Stable: equal keys keep file order, then line order.
    keyed.sort_by_key(|(at, _)| *at);
    Ok(keyed.into_iter().map(|(_, l)| l).collect())
}

/// Adds the team's events (the etcd backend's copy, every machine's) to a
/// trail read from files: an event already there (the same JSON line, as
/// this checkout's own events are) is shown once; the rest go in time
/// order, after the file's lines of the same second. Releases pair with
/// their acquisitions among the copies as in a file.
pub fn merge(lines: Vec<Line>, copies: &[Value]) -> Vec<Line> {
    let seen: std::collections::HashSet<String> = lines
        .iter()
        .filter_map(|l| match l {
            Line::Event(e) => Some(e.raw.to_string()),
            Line::Damaged { .. } => None,
        })
        .collect();
    let text: String = copies
        .iter()
        .map(|v| v.to_string())
        .filter(|t| !seen.contains(t))
        .map(|t| t + "\n")
        .collect();
    let mut keyed: Vec<(Option<Timestamp>, Line)> = Vec::new();
    let mut at = None;
    for line in lines {
        if let Line::Event(e) = &line {
            at = Some(e.time);
        }
        keyed.push((at, line));
    }
    // A copy that does not read as an event is not shown: it has no line
    // in any file to point at.
    // Line 0: in no file of this checkout.
    for line in parse(&text) {
        if let Line::Event(mut e) = line {
            e.number = 0;
            keyed.push((Some(e.time), Line::Event(e)));
        }
    }
    keyed.sort_by_key(|(at, _)| *at);
    keyed.into_iter().map(|(_, l)| l).collect()
}

/// Which lines `deploy-lock log` shows.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub environment: Option<Environment>,
    /// Only events at or after this instant (damaged lines have no time and
    /// are kept, so damage is never hidden by a filter).
    pub since: Option<Timestamp>,
    /// At most this many lines, the newest.
    pub last: Option<usize>,
}

pub fn select(lines: Vec<Line>, filter: &Filter) -> Vec<Line> {
    let mut kept: Vec<Line> = lines
        .into_iter()
        .filter(|l| match l {
            Line::Damaged { .. } => true,
            Line::Event(e) => {
                filter
                    .environment
                    .is_none_or(|env| e.environment == env.as_str())
                    && filter.since.is_none_or(|t| e.time >= t)
            }
        })
        .collect();
    if let Some(n) = filter.last {
        let skip = kept.len().saturating_sub(n);
        kept.drain(..skip);
    }
    kept
}

/// A `since` bound: a duration back from `now` (`2h`, `30m`, `1d`, `90s`,
/// `1h 30m`) or an RFC 3339 instant (`2026-02-03T20:00:00Z`). None when the
/// text is neither, or a negative or absurd duration; the CLI words the error.
pub fn parse_since(text: &str, now: Timestamp) -> Option<Timestamp> {
    let t = text.trim();
    if let Some(at) = parse_time(t) {
        return Some(at);
    }
    let span: jiff::Span = t.parse().ok()?;
    // Days here are 24 hours: an audit window, not a calendar day.
    let secs = span
        .total((
            jiff::Unit::Second,
            jiff::SpanRelativeTo::days_are_24_hours(),
        ))
        .ok()?;
    if !(0.0..=1e11).contains(&secs) {
        return None;
    }
    now.checked_sub(SignedDuration::from_secs(secs as i64)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = r#"{"time":"2026-02-03T20:00:00Z","event":"acquire","environment":"staging","user":"ann","host":"web1","pid":10,"holder":null,"lock_id":"lock_a","deployment_id":"dep_a"}
{"time":"2026-02-03T20:05:30Z","event":"release","environment":"staging","user":"ann","host":"web1","pid":10,"holder":null,"lock_id":"lock_a"}
this is not json
{"time":"2026-02-03T21:00:00Z","event":"takeover","environment":"production","user":"bob","host":"web2","pid":11,"holder":{"source":"state_file","locked_by":"cid@web9","pid":77},"lock_id":"lock_b","deployment_id":"dep_b"}
{"time":"2026-02-03T21:10:00Z","event":"force_unlock","environment":"production","user":"cid","host":"web2","pid":12,"holder":{"locked_by":"bob@web2","pid":11},"lock_dir_removed":true,"state_updated":true}
{"event":"release"}
"#;

    fn events(lines: &[Line]) -> Vec<&Event> {
        lines
            .iter()
            .filter_map(|l| match l {
                Line::Event(e) => Some(&**e),
                Line::Damaged { .. } => None,
            })
            .collect()
    }

    #[test]
    fn releases_are_paired_and_damage_is_kept() {
        let lines = parse(LOG);
        assert_eq!(lines.len(), 6);
        let ev = events(&lines);
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[1].kind, "release");
        assert_eq!(ev[1].held_for, Some(SignedDuration::from_secs(330)));
        assert_eq!(ev[1].deployment_id.as_deref(), Some("dep_a"));
        assert_eq!(ev[2].previous_holder.as_deref(), Some("cid@web9 (pid 77)"));
        assert_eq!(ev[3].previous_holder.as_deref(), Some("bob@web2 (pid 11)"));
        let damaged: Vec<(usize, &str)> = lines
            .iter()
            .filter_map(|l| match l {
                Line::Damaged { number, reason, .. } => Some((*number, reason.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(damaged[0].0, 3);
        assert!(damaged[0].1.starts_with("not JSON"), "{}", damaged[0].1);
        assert_eq!(damaged[1], (6, "no \"time\""));
    }

    #[test]
    fn command_end_and_sudo_are_read() {
        let lines = parse(concat!(
            r#"{"time":"2026-02-03T20:00:00Z","event":"release","environment":"staging","user":"ann","command":["deploy-lock","staging"],"exit_status":3}"#,
            "\n",
            r#"{"time":"2026-02-03T20:00:01Z","event":"release","environment":"staging","user":"ann","signal":"SIGINT","signal_number":2}"#,
            "\n",
            r#"{"time":"2026-02-03T20:00:02Z","event":"force_unlock","environment":"staging","user":"bob","sudo":true,"effective_user":"root"}"#,
            "\n",
        ));
        let ev = events(&lines);
        assert_eq!(ev[0].ended.as_deref(), Some("exit 3"));
        assert_eq!(
            ev[0].command.as_deref(),
            Some(&["deploy-lock".to_string(), "staging".to_string()][..])
        );
        assert_eq!(ev[1].ended.as_deref(), Some("SIGINT"));
        assert_eq!(ev[2].sudo_as.as_deref(), Some("root"));
        assert_eq!(ev[0].sudo_as, None);
    }

    #[test]
    fn several_logs_read_as_one_trail_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let line = |t: &str, who: &str| {
            format!(r#"{{"time":"{t}","event":"acquire","environment":"staging","user":"{who}"}}"#)
                + "\n"
        };
        std::fs::write(
            &a,
            line("2026-02-03T20:00:00Z", "ann") + "junk\n" + &line("2026-02-03T22:00:00Z", "ann"),
        )
        .unwrap();
        std::fs::write(&b, line("2026-02-03T21:00:00Z", "bob")).unwrap();
        let all = read_all(&[&a, &b, &dir.path().join("missing")]).unwrap();
        let who: Vec<String> = all
            .iter()
            .map(|l| match l {
                Line::Event(e) => e.user.clone().unwrap(),
                Line::Damaged { .. } => "damaged".into(),
            })
            .collect();
        assert_eq!(who, ["ann", "damaged", "bob", "ann"]);
    }

    #[test]
    fn filters_by_environment_time_and_count() {
        let since: Timestamp = "2026-02-03T20:30:00Z".parse().unwrap();
        let f = Filter {
            environment: Some(Environment::Production),
            since: Some(since),
            last: None,
        };
        let kept = select(parse(LOG), &f);
        let numbers: Vec<usize> = kept.iter().map(Line::number).collect();
        // Damaged lines are never filtered away.
        assert_eq!(numbers, vec![3, 4, 5, 6]);
        let f = Filter {
            last: Some(2),
            ..Filter::default()
        };
        let numbers: Vec<usize> = select(parse(LOG), &f).iter().map(Line::number).collect();
        assert_eq!(numbers, vec![5, 6]);
    }

    #[test]
    fn since_takes_durations_and_instants() {
        let now: Timestamp = "2026-02-03T20:00:00Z".parse().unwrap();
        let at = |s: &str| parse_since(s, now).map(|t| t.to_string());
        assert_eq!(at("2h").unwrap(), "2026-02-03T18:00:00Z");
        assert_eq!(at("1d").unwrap(), "2026-02-02T20:00:00Z");
        assert_eq!(at("1h 30m").unwrap(), "2026-02-03T18:30:00Z");
        assert_eq!(at("90s").unwrap(), "2026-02-03T19:58:30Z");
        assert_eq!(at("2026-02-01T00:00:00Z").unwrap(), "2026-02-01T00:00:00Z");
        assert_eq!(at("yesterday"), None);
        assert_eq!(at("-2h"), None);
    }
}
