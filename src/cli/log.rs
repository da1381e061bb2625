//! `deploy-lock log`: the audit trail rendered as aligned text or JSON lines.
//! Pure functions of the parsed log (`deploy_lock::audit_log`); no I/O here.

use deploy_lock::audit_log::{Event, Line};
use serde_json::{Value, json};

/// Widths that fit the longest environment (`development`) and event
/// (`release_skipped`), so columns line up for every known value.
const ENV_WIDTH: usize = 11;
const EVENT_WIDTH: usize = 15;

/// One line per event, oldest first:
/// `TIME  ENV  EVENT  USER@HOST (pid N) [via sudo]  DEPLOYMENT_ID  [held 5m 30s]
/// [exit N | SIGNAL] [from HOLDER] [reason: TEXT] [NOTE]  [$ COMMAND]`.
pub fn text(lines: &[Line]) -> String {
    let mut out = String::new();
    for line in lines {
        match line {
            Line::Event(e) => out.push_str(&event_line(e)),
            Line::Damaged {
                number,
                text,
                reason,
            } => out.push_str(&format!(
                "line {number}: damaged ({reason}): {}",
                printable(text)
            )),
        }
        out.push('\n');
    }
    out
}

fn event_line(e: &Event) -> String {
    let who = match (&e.user, &e.host) {
        (Some(u), Some(h)) => format!("{u}@{h}"),
        (Some(u), None) => u.clone(),
        (None, Some(h)) => format!("?@{h}"),
        (None, None) => "?".to_string(),
    };
    let who = match e.pid {
        Some(pid) => format!("{who} (pid {pid})"),
        None => who,
    };
    let who = match &e.sudo_as {
        Some(_) => format!("{who} via sudo"),
        None => who,
    };
    let mut parts = vec![
        deploy_lock::times::utc_seconds(e.time),
        format!("{:<ENV_WIDTH$}", printable(&e.environment)),
        format!("{:<EVENT_WIDTH$}", printable(&e.kind)),
        printable(&who),
    ];
    if let Some(dep) = &e.deployment_id {
        parts.push(printable(dep));
    }
    if let Some(held) = e.held_for {
        parts.push(format!("held {}", minutes_seconds(held.as_secs())));
    }
    if let Some(ended) = &e.ended {
        parts.push(printable(ended));
    }
    if let Some(prev) = &e.previous_holder {
        let what = match e.kind.as_str() {
            "force_unlock" => "removed",
            _ => "from",
        };
        parts.push(format!("{what} {}", printable(prev)));
    }
    if let Some(reason) = &e.reason {
        parts.push(format!("reason: {}", printable(reason)));
    }
    if let Some(note) = &e.note {
        parts.push(format!("({})", printable(note)));
    }
    if let Some(command) = &e.command {
        parts.push(format!(
            "$ {}",
            printable_at_most(&shell_words(command), deploy_lock::sanitize::MAX_LINE_CHARS)
        ));
    }
    parts.join("  ")
}

/// The command line as a shell would take it back: words with anything
/// but plain characters single-quoted.
fn shell_words(words: &[String]) -> String {
    let plain = |w: &str| {
        !w.is_empty()
            && w.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+%".contains(c))
    };
    words
        .iter()
        .map(|w| {
            if plain(w) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `5m 30s`, `2h 5m 30s`: the audit spans hours, unlike the legacy age line.
fn minutes_seconds(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h {m}m {s}s")
    } else {
        format!("{m}m {s}s")
    }
}

/// A line from a file anyone in the team appends to: control characters
/// would rewrite the operator's terminal, so they are shown escaped.
fn printable(s: &str) -> String {
    printable_at_most(s, deploy_lock::sanitize::MAX_CHARS)
}

/// What the log holds, for a terminal: every character the sanitiser calls
/// unsafe (controls, bidi overrides) escaped as Rust does (`\u{1b}`), so a
/// damaged or planted line shows what it holds without acting on the
/// terminal; cut after `max` characters with `…`, so no line is unbounded.
fn printable_at_most(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .flat_map(|c| {
            if deploy_lock::sanitize::is_unsafe(c) {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if s.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// JSON lines: each event as recorded plus `line` (and `held_seconds` for a
/// paired release); a damaged line as `{"line", "damaged": true, "reason",
/// "text"}`.
pub fn json_lines(lines: &[Line]) -> String {
    let mut out = String::new();
    for line in lines {
        let v = match line {
            Line::Event(e) => {
                let mut v = e.raw.clone();
                if let Value::Object(m) = &mut v {
                    m.insert("line".into(), json!(e.number));
                    if let Some(held) = e.held_for {
                        m.insert("held_seconds".into(), json!(held.as_secs()));
                    }
                    if let Some(dep) = &e.deployment_id {
                        m.entry("deployment_id").or_insert(json!(dep));
                    }
                }
                v
            }
            Line::Damaged {
                number,
                text,
                reason,
            } => json!({
                "line": number,
                "damaged": true,
                "reason": reason,
                "text": text,
            }),
        };
        out.push_str(&deploy_lock::sanitize::json(
            serde_json::to_string(&v).expect("serialisable"),
        ));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use deploy_lock::audit_log::parse;

    const LOG: &str = concat!(
        r#"{"time":"2026-02-03T20:00:00Z","event":"acquire","environment":"staging","user":"ann","host":"web1","pid":10,"holder":null,"lock_id":"lock_a","deployment_id":"dep_a"}"#,
        "\n",
        r#"{"time":"2026-02-03T22:05:30Z","event":"release","environment":"staging","user":"ann","host":"web1","pid":10,"holder":null,"lock_id":"lock_a"}"#,
        "\n",
        "oops\u{1b}[2J\n",
        r#"{"time":"2026-02-03T23:00:00Z","event":"force_unlock","environment":"development","user":"cid","host":"web2","pid":12,"holder":{"locked_by":"bob@web2","pid":11}}"#,
        "\n",
    );

    #[test]
    fn text_is_aligned_and_escapes_control_characters() {
        assert_eq!(
            text(&parse(LOG)),
            "2026-02-03T20:00:00Z  staging      acquire          ann@web1 (pid 10)  dep_a\n\
             2026-02-03T22:05:30Z  staging      release          ann@web1 (pid 10)  dep_a  held 2h 5m 30s\n\
             line 3: damaged (not JSON (expected value at line 1 column 1)): oops\\u{1b}[2J\n\
             2026-02-03T23:00:00Z  development  force_unlock     cid@web2 (pid 12)  removed bob@web2 (pid 11)\n"
        );
    }

    #[test]
    fn text_shows_how_the_run_ended_its_command_and_sudo() {
        let log = concat!(
            r#"{"time":"2026-02-03T20:00:00Z","event":"release","environment":"staging","user":"ann","host":"web1","pid":10,"command":["deploy-lock","run","staging","--","sh","-c","exit 3"],"exit_status":3}"#,
            "\n",
            r#"{"time":"2026-02-03T20:00:01Z","event":"force_unlock","environment":"staging","user":"bob","host":"web1","pid":11,"sudo":true,"effective_user":"root","command":["deploy-lock","unlock","staging"]}"#,
            "\n",
        );
        assert_eq!(
            text(&parse(log)),
            "2026-02-03T20:00:00Z  staging      release          ann@web1 (pid 10)  exit 3  $ deploy-lock run staging -- sh -c 'exit 3'\n\
             2026-02-03T20:00:01Z  staging      force_unlock     bob@web1 (pid 11) via sudo  $ deploy-lock unlock staging\n"
        );
    }

    #[test]
    fn json_lines_keep_the_record_and_add_pairing() {
        let out = json_lines(&parse(LOG));
        let rows: Vec<Value> = out
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1]["held_seconds"], 7530);
        assert_eq!(rows[1]["deployment_id"], "dep_a");
        assert_eq!(rows[1]["line"], 2);
        assert_eq!(rows[2]["damaged"], true);
        assert_eq!(rows[2]["text"], "oops\u{1b}[2J");
        assert_eq!(rows[3]["event"], "force_unlock");
    }
}
