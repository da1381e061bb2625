//! The one sanitiser for text that came from outside (a lock file, the state
//! file, an etcd record, a remote host): every renderer passes such text here.
//!
//! Text views show each unsafe character as `?` (as `ps` and the legacy
//! status block do) and cut a value to [`MAX_CHARS`], so a planted value can
//! neither move the cursor, ring the bell, forge a line ("Verdict: free") nor
//! make a line without end. JSON escapes what serde_json leaves raw (DEL,
//! C1 controls, bidirectional overrides) and cuts a string longer than
//! [`MAX_JSON_CHARS`] the same way, so no view is unbounded (SECURITY.md).

use std::borrow::Cow;

/// The longest value a text view shows, in characters; longer ones end in `…`.
pub const MAX_CHARS: usize = 256;

/// A character a terminal may act on instead of showing: C0 and C1 controls,
/// DEL (all of Unicode's Cc), and the bidirectional embeddings, overrides
/// and isolates that reorder what follows them on the line.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200E}' | '\u{200F}' | '\u{061C}')
        || ('\u{202A}'..='\u{202E}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// `s` for a text view: unsafe characters as `?`, at most [`MAX_CHARS`].
pub fn text(s: &str) -> Cow<'_, str> {
    let long = s.len() > MAX_CHARS && s.chars().nth(MAX_CHARS).is_some();
    if !long && !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out: String = s
        .chars()
        .take(MAX_CHARS)
        .map(|c| if is_unsafe(c) { '?' } else { c })
        .collect();
    if long {
        out.push('…');
    }
    Cow::Owned(out)
}

/// The longest whole line from elsewhere shown, in characters.
pub const MAX_LINE_CHARS: usize = 2048;

/// A whole line from elsewhere (a remote host's message) with unsafe
/// characters as `?`, cut only at [`MAX_LINE_CHARS`]: it is already a
/// line, not a value in one.
pub fn line(s: &str) -> Cow<'_, str> {
    let long = s.len() > MAX_LINE_CHARS && s.chars().nth(MAX_LINE_CHARS).is_some();
    if !long && !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out: String = s
        .chars()
        .take(MAX_LINE_CHARS)
        .map(|c| if is_unsafe(c) { '?' } else { c })
        .collect();
    if long {
        out.push('…');
    }
    Cow::Owned(out)
}

/// An optional value for a text view.
pub fn text_opt(s: Option<&str>) -> Option<String> {
    s.map(|s| text(s).into_owned())
}

/// The longest string a JSON view shows, in characters (an escape such as
/// `\n` or `\u001b` counts as one); longer ones are cut and end in `…`.
/// Linux's PATH_MAX, so no real path (`lock_dir`, `state_file`) is ever cut,
/// while a planted 64 KiB holder is: scripts get every value a lock can
/// honestly hold, and no reader gets a string without end.
pub const MAX_JSON_CHARS: usize = 4096;

/// Serialised JSON with every string cut to [`MAX_JSON_CHARS`] and the
/// characters serde_json leaves raw inside strings (DEL, C1, bidi controls)
/// escaped as `\uXXXX`: valid JSON, the same value for every string within
/// the bound, with no control character in the bytes. (Outside strings JSON
/// is ASCII.)
pub fn json(serialised: String) -> String {
    let serialised = cut_json_strings(serialised);
    if !serialised.chars().any(is_unsafe) {
        return serialised;
    }
    let mut out = String::with_capacity(serialised.len() + 16);
    for c in serialised.chars() {
        // serde_json already escaped C0 controls; only raw ones remain.
        if is_unsafe(c) && c != '\n' {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Cuts each string of serialised JSON (serde_json's output: escapes are
/// `\X` or `\uXXXX`) to [`MAX_JSON_CHARS`] units, ending a cut one in `…`.
fn cut_json_strings(serialised: String) -> String {
    // No string can be longer than the whole text.
    if serialised.chars().count() <= MAX_JSON_CHARS {
        return serialised;
    }
    let mut out = String::with_capacity(serialised.len().min(64 * 1024));
    let mut chars = serialised.chars();
    let mut in_string = false;
    let mut units = 0;
    let mut cut = false;
    while let Some(c) = chars.next() {
        if !in_string {
            out.push(c);
            if c == '"' {
                (in_string, units, cut) = (true, 0, false);
            }
            continue;
        }
        if c == '"' {
            if cut {
                out.push('…');
            }
            out.push('"');
            in_string = false;
            continue;
        }
        let mut unit = String::from(c);
        if c == '\\' {
            let escaped = chars.next();
            unit.extend(escaped);
            if escaped == Some('u') {
                unit.extend(chars.by_ref().take(4));
            }
        }
        if units < MAX_JSON_CHARS {
            out.push_str(&unit);
            units += 1;
        } else {
            cut = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_shows_question_marks_and_cuts_long_values() {
        assert_eq!(text("deploy@web1"), "deploy@web1");
        assert_eq!(text("a\x1b[2Jb\x07\u{9b}c\nVerdict"), "a?[2Jb??c?Verdict");
        assert_eq!(text("x\u{202E}y\u{2066}"), "x?y?");
        let long = "é".repeat(70_000);
        let shown = text(&long);
        assert_eq!(shown.chars().count(), MAX_CHARS + 1);
        assert!(shown.ends_with('…'));
        assert_eq!(text(&"a".repeat(MAX_CHARS)).len(), MAX_CHARS);
    }

    #[test]
    fn json_escapes_what_serde_leaves_raw_and_stays_the_same_value() {
        let v = serde_json::json!({"by": "a\u{7f}b\u{85}c\u{202e}d\x1b"});
        let s = json(serde_json::to_string_pretty(&v).unwrap());
        assert!(!s.chars().any(|c| is_unsafe(c) && c != '\n'), "{s}");
        assert_eq!(serde_json::from_str::<serde_json::Value>(&s).unwrap(), v);
    }

    #[test]
    fn json_cuts_long_strings_and_keeps_short_ones() {
        let planted = "\x1b".repeat(70_000);
        let path = format!("/{}", "p".repeat(MAX_JSON_CHARS - 1));
        let v = serde_json::json!({"by": planted, "path": path, "n": [1, "é\"q"]});
        let s = json(serde_json::to_string_pretty(&v).unwrap());
        let back: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(back["path"], path);
        assert_eq!(back["n"], v["n"]);
        let by = back["by"].as_str().unwrap();
        assert_eq!(by.chars().count(), MAX_JSON_CHARS + 1);
        assert!(by.ends_with("\x1b…"));
        assert!(s.len() < 40_000, "{}", s.len());
    }
}
