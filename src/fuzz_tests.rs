//! Property tests (bounded fuzzing) of the state-file reader and of what the
//! status builds from a record: any bytes give a document or an error, never
//! a panic; a document rewrites to bytes that read back the same; an
//! unusable file is never rewritten. PROPTEST_CASES sets the case count
//! (256 by default; CI may run more).

use std::path::Path;

use proptest::prelude::*;
use serde_json::{Map, Value};

use crate::environment::Environment;
use crate::holder::{holder_from, liveness_of};
use crate::liveness::valid_pid;
use crate::state::{Edit, StateDoc, StateError, update};
use crate::times::parse_time;

/// Keys the engine reads, often enough that records collide with them.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::sample::select(vec![
            "lock", "locked", "pid", "locked_at", "locked_by", "hostname",
            "environment", "lock_id", "deployment_id", "holder_pid",
            "pid_start_ticks", "holder_start_ticks", "boot_id", "lock_expires_at",
        ])
        .prop_map(str::to_string),
        1 => ".{0,12}",
    ]
}

/// Arbitrary JSON, with the number shapes hand edits produce.
fn json() -> impl Strategy<Value = Value> {
    let number = prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1e300f64..1e300).prop_map(Value::from),
        prop::sample::select(vec![
            "0",
            "-1",
            "1.5",
            "1e3",
            "2147483648",
            "99999999999999999999999",
            "-0",
            "1.50",
        ])
        .prop_map(|s| serde_json::from_str(s).unwrap()),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number,
        ".{0,24}".prop_map(Value::String),
        prop::sample::select(vec![
            "2026-02-03T20:25:46Z",
            "2026-02-30T00:00:00Z",
            "garbage",
            "",
            "1; rm -rf /",
            "$(touch x)",
            "12345",
            " 1",
            "vm",
            "localhost",
        ])
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// A state document of the documented shape: an object, `lock` an object
/// (or null, or absent), the rest anything.
fn document() -> impl Strategy<Value = Map<String, Value>> {
    (
        prop::option::of(prop_oneof![
            prop::collection::vec((key(), json()), 0..10)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            Just(Value::Null),
        ]),
        prop::collection::vec((key(), json()), 0..6),
    )
        .prop_map(|(lock, rest)| {
            let mut root: Map<String, Value> = rest.into_iter().collect();
            match lock {
                Some(l) => {
                    root.insert("lock".into(), l);
                }
                None => {
                    root.remove("lock");
                }
            }
            root
        })
}

fn path() -> &'static Path {
    Path::new("/checkout/deploy/config/deployment-state.json")
}

/// `v` with every number that has an exponent as its f64 value: a rewrite
/// keeps every digit, but writes an exponent with its sign (`1e3` as
/// `1e+3`), which is the same number.
fn same_numbers(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.to_string().contains(['e', 'E']) => {
            serde_json::json!(format!("{:e}", n.as_f64().unwrap_or(f64::NAN)))
        }
        Value::Array(a) => Value::Array(a.iter().map(same_numbers).collect()),
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| (k.clone(), same_numbers(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn same(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    same_numbers(&Value::Object(a.clone())) == same_numbers(&Value::Object(b.clone()))
}

/// What must hold for any outcome of a parse.
fn check_outcome(bytes: &[u8], r: &Result<StateDoc, StateError>) -> Result<(), TestCaseError> {
    match r {
        Ok(doc) => {
            prop_assert!(matches!(
                doc.root.get("lock"),
                None | Some(Value::Null) | Some(Value::Object(_))
            ));
            // What status and run read from it never panics either.
            let _ = doc.environment();
            let _ = doc.is_locked();
            if let Some(h) = holder_from(None, Some(doc), Environment::Staging) {
                for p in &h.processes {
                    prop_assert!(p.pid > 0, "a pid that is not positive would be probed");
                }
                if let Some(pid) = h.pid {
                    prop_assert!(pid > 0);
                }
                let _ = liveness_of(&h, "fuzz-host-that-is-not-this-one");
                if let Some(t) = &h.locked_at {
                    let _ = parse_time(t);
                }
            }
            // A document always rewrites to bytes that read back the same.
            let out = doc.to_bytes();
            let again = StateDoc::parse(path(), &out).expect("rewritten bytes parse");
            prop_assert!(same(&again.root, &doc.root), "{:?} became {:?}", doc, again);
            prop_assert_eq!(again.to_bytes(), out);
        }
        Err(e) => {
            let msg = e.to_string();
            prop_assert!(
                msg.starts_with(&format!("state file {} is not ", path().display())),
                "{}",
                msg
            );
            if let StateError::Parse { line, .. } = e {
                prop_assert!(*line >= 1 && *line <= bytes.split(|&b| b == b'\n').count().max(1));
            }
        }
    }
    Ok(())
}

proptest! {
    /// Any bytes at all.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let r = StateDoc::parse(path(), &bytes);
        check_outcome(&bytes, &r)?;
    }

    /// Valid documents, then truncated, with bytes flipped or inserted:
    /// near-misses reach deeper into the parser than random bytes.
    #[test]
    fn damaged_documents_never_panic(
        doc in document(),
        cut in any::<prop::sample::Index>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 0..4),
        truncate in any::<bool>(),
    ) {
        let mut bytes = serde_json::to_vec_pretty(&doc).unwrap();
        for (at, byte, how) in edits {
            let i = at.index(bytes.len() + 1);
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                _ if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => {}
            }
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        let r = StateDoc::parse(path(), &bytes);
        check_outcome(&bytes, &r)?;
    }

    /// Every documented-shape document is read as itself, compact or pretty.
    #[test]
    fn documents_read_back_as_themselves(doc in document(), pretty in any::<bool>()) {
        let bytes = if pretty {
            serde_json::to_vec_pretty(&doc).unwrap()
        } else {
            serde_json::to_vec(&doc).unwrap()
        };
        let parsed = StateDoc::parse(path(), &bytes).unwrap();
        prop_assert!(same(&parsed.root, &doc), "{:?} became {:?}", doc, parsed);
        check_outcome(&bytes, &Ok(parsed))?;
    }

    /// Any JSON value: accepted exactly when it has the documented shape.
    #[test]
    fn shape_is_checked_exactly(v in json()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        let r = StateDoc::parse(path(), &bytes);
        let documented = match &v {
            Value::Object(o) => matches!(o.get("lock"), None | Some(Value::Null) | Some(Value::Object(_))),
            _ => false,
        };
        prop_assert_eq!(r.is_ok(), documented);
        if !documented {
            prop_assert!(matches!(r, Err(StateError::Shape { .. })), "{:?}", r);
        }
        check_outcome(&bytes, &r)?;
    }

    /// Only integers in 1..=i32::MAX (or such digit strings) are pids.
    #[test]
    fn pids_are_positive_i32_only(v in json()) {
        if let Some(p) = valid_pid(&v) {
            prop_assert!(p > 0);
            let as_text = match &v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            prop_assert_eq!(as_text, p.to_string());
        }
    }

    /// Any string as a time: a timestamp or None, never a panic.
    #[test]
    fn any_locked_at_text_is_a_time_or_none(s in ".{0,40}") {
        let _ = parse_time(&s);
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.min(64),
        ..ProptestConfig::default()
    })]

    /// An update of a file that does not parse, or is not the documented
    /// shape, fails and leaves it byte for byte; one that parses keeps
    /// every key the edit did not touch.
    #[test]
    fn update_never_rewrites_what_it_cannot_parse(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            document().prop_map(|d| serde_json::to_vec(&d).unwrap()),
            json().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        ],
    ) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("deployment-state.json");
        std::fs::write(&p, &bytes).unwrap();
        // Written long ago: a file that does not parse is refused at once,
        // without the re-reads a file being written gets.
        std::fs::File::options()
            .write(true)
            .open(&p)
            .and_then(|f| f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000)))
            .unwrap();
        let before = StateDoc::parse(&p, &bytes);
        let r: Result<(), StateError> = update(&p, true, |doc| {
            let doc = doc.expect("the file exists");
            doc.lock_mut().insert("locked".into(), Value::Bool(false));
            Ok(Edit::Write(()))
        });
        match before {
            Err(_) => {
                prop_assert!(r.is_err());
                prop_assert_eq!(std::fs::read(&p).unwrap(), bytes);
            }
            Ok(mut doc) => {
                prop_assert!(r.is_ok(), "{:?}", r);
                doc.lock_mut().insert("locked".into(), Value::Bool(false));
                let after = StateDoc::parse(&p, &std::fs::read(&p).unwrap()).unwrap();
                prop_assert!(same(&after.root, &doc.root), "{:?} became {:?}", doc, after);
            }
        }
    }
}

/// Nesting far beyond the parser's limit is an error, not a stack overflow.
#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    for depth in [128usize, 1_000, 100_000, 1_000_000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert!(StateDoc::parse(path(), arrays.as_bytes()).is_err());
        let objects = format!(
            "{{\"lock\": null, \"h\": {}1{}}}",
            "{\"a\": ".repeat(depth),
            "}".repeat(depth)
        );
        assert!(StateDoc::parse(path(), objects.as_bytes()).is_err());
        let unclosed = "[".repeat(depth);
        assert!(StateDoc::parse(path(), unclosed.as_bytes()).is_err());
    }
}

// Issue 19: the one sanitiser, on any text: nothing a terminal acts on comes
// out, a value is cut to a bounded length, and JSON stays the same value.
proptest! {
    #[test]
    fn the_sanitiser_lets_no_control_character_through(
        bytes in prop::collection::vec(any::<u8>(), 0..400),
        chars in prop::collection::vec(any::<char>(), 0..400),
        repeat in prop::sample::select(vec![1usize, 1, 1, 11, 40]),
    ) {
        use crate::sanitize::{MAX_CHARS, MAX_JSON_CHARS, MAX_LINE_CHARS, is_unsafe, json, line, text};
        let base: [String; 2] = [String::from_utf8_lossy(&bytes).into_owned(), chars.into_iter().collect()];
        for s in base.map(|s| s.repeat(repeat)) {
            let shown = text(&s);
            prop_assert!(!shown.chars().any(is_unsafe), "{:?}", shown);
            prop_assert!(shown.chars().count() <= MAX_CHARS + 1);
            let whole = line(&s);
            prop_assert!(!whole.chars().any(is_unsafe));
            prop_assert!(whole.chars().count() <= MAX_LINE_CHARS + 1);
            let v = serde_json::json!({ "value": s });
            let out = json(serde_json::to_string_pretty(&v).unwrap());
            prop_assert!(!out.chars().any(|c| is_unsafe(c) && c != '\n'), "{:?}", out);
            // The same value within the bound; beyond it, its first
            // MAX_JSON_CHARS characters and `…`.
            let back = serde_json::from_str::<Value>(&out).unwrap();
            let want: String = if s.chars().count() <= MAX_JSON_CHARS {
                s.clone()
            } else {
                s.chars().take(MAX_JSON_CHARS).chain(['…']).collect()
            };
            prop_assert_eq!(back, serde_json::json!({ "value": want }));
        }
    }
}
