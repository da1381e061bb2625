//! The gateway's JSON shapes: keys and values in base64, 64-bit numbers as
//! strings, zero and false fields omitted, errors as `{error, code}`, and a
//! watch as newline-separated answers on one streamed response.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;

use super::error::EtcdError;

/// A key-value pair as etcd stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    /// 0 when the key has no lease.
    pub lease: i64,
}

/// One key read: its value if present and the store's revision at the read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    pub revision: i64,
    pub kv: Option<KeyValue>,
}

/// A comparison for [`super::client::Client::txn`].
#[derive(Clone, Debug)]
pub enum Compare {
    /// The key's create revision (0: the key does not exist).
    CreateRevision(i64),
    /// The key's lease.
    Lease(i64),
}

/// A request inside a txn.
#[derive(Clone, Debug)]
pub enum Op {
    Put { value: Vec<u8>, lease: i64 },
    Delete,
    Get,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnResult {
    pub succeeded: bool,
    pub revision: i64,
    /// The key as read by a `Get` op of the branch that ran, if any.
    pub kv: Option<KeyValue>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

/// What one read of a watch stream gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchNext {
    Events {
        revision: i64,
        events: Vec<Event>,
    },
    /// The watch's time is up (not an error: the caller decides).
    TimedOut,
    /// etcd cancelled the watch (e.g. the start revision was compacted).
    Cancelled {
        compact_revision: i64,
    },
}

/// A live watch on one key: newline-separated JSON answers on one response.
pub struct Watch {
    pub(crate) endpoint: String,
    pub(crate) reader: BufReader<ureq::BodyReader<'static>>,
    pub(crate) deadline: Instant,
}

impl Watch {
    /// Blocks for the next answer, at most until the watch's deadline.
    pub fn next_answer(&mut self) -> Result<WatchNext, EtcdError> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) if Instant::now() >= self.deadline => return Ok(WatchNext::TimedOut),
            Ok(0) => {
                return Err(EtcdError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    detail: "the watch stream ended".into(),
                });
            }
            Ok(_) => {}
            Err(_) if Instant::now() + Duration::from_millis(5) >= self.deadline => {
                return Ok(WatchNext::TimedOut);
            }
            Err(e) => {
                return Err(EtcdError::Unreachable {
                    endpoint: self.endpoint.clone(),
                    detail: format!("the watch stream broke: {e}"),
                });
            }
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| EtcdError::Protocol {
            endpoint: self.endpoint.clone(),
            detail: format!("watch answer is not JSON ({e}): {line:?}"),
        })?;
        if let Some(err) = v.get("error") {
            return Err(server_error(&self.endpoint, err));
        }
        let r = v.get("result").unwrap_or(&v);
        if r.get("canceled").and_then(Value::as_bool) == Some(true) {
            return Ok(WatchNext::Cancelled {
                compact_revision: num(r.get("compact_revision")),
            });
        }
        let mut events = Vec::new();
        for e in r
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let kind = match e.get("type").and_then(Value::as_str) {
                Some("DELETE") => EventKind::Delete,
                _ => EventKind::Put,
            };
            let kv = e
                .get("kv")
                .map(|kv| parse_kv(&self.endpoint, kv))
                .transpose()?
                .ok_or_else(|| EtcdError::Protocol {
                    endpoint: self.endpoint.clone(),
                    detail: format!("watch event without kv: {e}"),
                })?;
            events.push(Event { kind, kv });
        }
        Ok(WatchNext::Events {
            revision: num(r.get("header").and_then(|h| h.get("revision"))),
            events,
        })
    }
}

/// The JSON of a 200, or the error etcd put in a non-200 answer.
pub(crate) fn parse_answer(
    ep: &str,
    path: &str,
    (status, text): (u16, String),
) -> Result<Value, EtcdError> {
    let v: Value = serde_json::from_str(&text).map_err(|_| EtcdError::Protocol {
        endpoint: ep.to_string(),
        detail: format!(
            "HTTP {status} on {path} is not JSON: {:?}",
            text.chars().take(120).collect::<String>()
        ),
    })?;
    if status == 200 && v.get("error").is_none() {
        return Ok(v);
    }
    if v.get("code").is_some() || v.get("error").is_some() {
        return Err(server_error(ep, &v));
    }
    Err(EtcdError::Protocol {
        endpoint: ep.to_string(),
        detail: format!("HTTP {status} on {path}"),
    })
}

pub(crate) fn server_error(ep: &str, v: &Value) -> EtcdError {
    let code = num(v.get("code"));
    let message = v
        .get("message")
        .or_else(|| v.get("error"))
        .and_then(Value::as_str)
        .unwrap_or("unknown error")
        .to_string();
    // 7 PermissionDenied; "user name is empty": auth is on and we sent none.
    if code == 7 || message.contains("user name is empty") {
        return EtcdError::PermissionDenied {
            endpoint: ep.to_string(),
            detail: message,
        };
    }
    EtcdError::Server {
        endpoint: ep.to_string(),
        code,
        message,
    }
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// A gateway number: a string for 64-bit fields, absent for zero.
pub(crate) fn num(v: Option<&Value>) -> i64 {
    match v {
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        _ => 0,
    }
}

pub(crate) fn header_revision(v: &Value) -> i64 {
    num(v.get("header").and_then(|h| h.get("revision")))
}

pub(crate) fn first_kv(ep: &str, range: &Value) -> Result<Option<KeyValue>, EtcdError> {
    range
        .get("kvs")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .map(|kv| parse_kv(ep, kv))
        .transpose()
}

pub(crate) fn parse_kv(ep: &str, kv: &Value) -> Result<KeyValue, EtcdError> {
    let bytes = |field: &str| -> Result<Vec<u8>, EtcdError> {
        match kv.get(field).and_then(Value::as_str) {
            None => Ok(Vec::new()),
            Some(s) => B64.decode(s).map_err(|e| EtcdError::Protocol {
                endpoint: ep.to_string(),
                detail: format!("{field} is not base64: {e}"),
            }),
        }
    };
    Ok(KeyValue {
        key: bytes("key")?,
        value: bytes("value")?,
        create_revision: num(kv.get("create_revision")),
        mod_revision: num(kv.get("mod_revision")),
        version: num(kv.get("version")),
        lease: num(kv.get("lease")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gateway_numbers_are_strings_and_zero_is_absent() {
        assert_eq!(
            num(Some(&json!("2324035712843788293"))),
            2324035712843788293
        );
        assert_eq!(num(Some(&json!(7))), 7);
        assert_eq!(num(None), 0);
        let kv = parse_kv(
            "e",
            &json!({"key": "L3QvbG9jaw==", "create_revision": "2", "mod_revision": "3"}),
        )
        .unwrap();
        assert_eq!(kv.key, b"/t/lock");
        assert_eq!((kv.create_revision, kv.mod_revision, kv.lease), (2, 3, 0));
        assert!(kv.value.is_empty());
    }

    #[test]
    fn errors_from_the_gateway_are_typed() {
        let e = parse_answer(
            "http://e",
            "/v3/lease/revoke",
            (
                400,
                r#"{"error":"etcdserver: requested lease not found","code":5}"#.into(),
            ),
        )
        .unwrap_err();
        assert!(matches!(e, EtcdError::Server { code: 5, .. }));
        let e = parse_answer("http://e", "/x", (502, "<html>".into())).unwrap_err();
        assert!(matches!(e, EtcdError::Protocol { .. }), "{e:?}");
        let e = server_error(
            "http://e",
            &json!({"error": "etcdserver: permission denied", "code": 7}),
        );
        assert!(matches!(e, EtcdError::PermissionDenied { .. }));
    }
}
