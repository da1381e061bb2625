//! A blocking client for etcd's JSON gateway (`/v3/...` over HTTP/1.1): the
//! handful of calls the lock needs, endpoint failover, auth tokens, and a
//! time bound on every call.
//!
//! Gateway quirks handled here: 64-bit numbers come as strings, zero and
//! false fields are omitted, keys and values are base64, a keepalive on a
//! gone lease answers 200 without `TTL`, a failed txn has no `succeeded`.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::error::EtcdError;
use super::settings::{Credentials, EtcdSettings};
pub use super::wire::{Compare, Event, EventKind, KeyValue, Op, Read, TxnResult, Watch, WatchNext};
use super::wire::{b64, first_kv, header_revision, num, parse_answer};

/// The whole of a connection attempt, over all endpoints (issue 13: one line
/// within 5 s, nothing run).
pub const CONNECT_BUDGET: Duration = Duration::from_secs(5);
/// One call once connected; the keeper uses less (a third of the TTL).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// One attempt at one endpoint when no TTL says otherwise (see
/// [`attempt_budget`]).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long one endpoint gets to answer one request before the next one is
/// asked: a fifth of the lease TTL, between 200 ms and 2 s. A hung member
/// (SIGSTOPped, or a dark network path) accepts connections and never
/// answers; waiting on it longer would let the lease run out while two
/// healthy members could have renewed it. A renewal sent at TTL/3 has
/// then time for every endpoint of a 3-member cluster before the holder's
/// own deadline (see `keeper::stop_margin`).
pub fn attempt_budget(ttl: Duration) -> Duration {
    (ttl / 5).clamp(Duration::from_millis(200), Duration::from_secs(2))
}

#[derive(Clone, Debug)]
pub struct ClientConfig {
    pub endpoints: Vec<String>,
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<Credentials>,
    /// Bound for `connect` over all endpoints.
    pub connect_budget: Duration,
    /// Default bound of one call.
    pub call_timeout: Duration,
    /// Bound of one attempt at one endpoint within a call.
    pub attempt_timeout: Duration,
}

impl ClientConfig {
    pub fn new(endpoints: Vec<String>) -> ClientConfig {
        ClientConfig {
            endpoints,
            ca_file: None,
            credentials: None,
            connect_budget: CONNECT_BUDGET,
            call_timeout: CALL_TIMEOUT,
            attempt_timeout: ATTEMPT_TIMEOUT,
        }
    }

    pub fn from_settings(s: &EtcdSettings) -> ClientConfig {
        ClientConfig {
            ca_file: s.ca_file.clone(),
            credentials: s.credentials.clone(),
            attempt_timeout: attempt_budget(s.ttl),
            ..ClientConfig::new(s.endpoints.clone())
        }
    }
}

/// A cheap handle (shared by the lease keeper's threads).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<String>,
    agent: ureq::Agent,
    /// Index of the endpoint that answered last; calls start there.
    current: AtomicUsize,
    credentials: Option<Credentials>,
    token: Mutex<Option<String>>,
    call_timeout: Duration,
    attempt_timeout: Duration,
    version: Mutex<String>,
}

impl Client {
    /// Finds the first endpoint, in order, that is an etcd ≥ 3.4 with its
    /// gateway on and (with credentials) accepts the login, all within the
    /// config's connect budget.
    pub fn connect(cfg: &ClientConfig) -> Result<Client, EtcdError> {
        let agent = agent(cfg.ca_file.as_deref())?;
        let client = Client {
            inner: Arc::new(Inner {
                endpoints: cfg.endpoints.clone(),
                agent,
                current: AtomicUsize::new(0),
                credentials: cfg.credentials.clone(),
                token: Mutex::new(None),
                call_timeout: cfg.call_timeout,
                attempt_timeout: cfg.attempt_timeout,
                version: Mutex::new(String::new()),
            }),
        };
        let deadline = Instant::now() + cfg.connect_budget;
        let mut errors = Vec::new();
        let n = cfg.endpoints.len();
        for (i, ep) in cfg.endpoints.iter().enumerate() {
            // An unreachable first endpoint must leave time for the others.
            let left = deadline.saturating_duration_since(Instant::now());
            // A hung endpoint costs at most one attempt (a login, bcrypt,
            // may take longer than a renewal: at least 1 s), an even share
            // of the budget when that is less; the last one gets the rest.
            let share = if i + 1 == n {
                left
            } else {
                (left / (n - i) as u32).min(cfg.attempt_timeout.max(Duration::from_secs(1)))
            };
            if share.is_zero() {
                errors.push(EtcdError::Unreachable {
                    endpoint: ep.clone(),
                    detail: "not tried: the connect time was used up".into(),
                });
                continue;
            }
            match client.probe(ep, Instant::now() + share) {
                Ok(()) => {
                    client.inner.current.store(i, Ordering::Relaxed);
                    return Ok(client);
                }
                Err(e) => errors.push(e),
            }
        }
        Err(one_or_all(errors))
    }

    /// The endpoint the client talks to now.
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoints[self.inner.current.load(Ordering::Relaxed)]
    }

    /// etcd's server version as `/version` gave it at connect.
    pub fn server_version(&self) -> String {
        self.inner.version.lock().unwrap().clone()
    }

    pub fn call_timeout(&self) -> Duration {
        self.inner.call_timeout
    }

    /// The bound of one attempt at one endpoint.
    pub fn attempt_timeout(&self) -> Duration {
        self.inner.attempt_timeout
    }

    /// One request in the common case: the gateway's status answer names
    /// the version (and proves the gateway on). Only when it fails or has
    /// no version is `/version` asked, to say which of the two is wrong.
    fn probe(&self, ep: &str, deadline: Instant) -> Result<(), EtcdError> {
        let status = if self.inner.credentials.is_some() {
            self.authenticate(ep, deadline).and_then(|()| {
                self.request(ep, "/v3/maintenance/status", Some(&json!({})), deadline)
            })
        } else {
            self.request(ep, "/v3/maintenance/status", Some(&json!({})), deadline)
        };
        let status = match status {
            Ok(v) => v,
            Err(e @ EtcdError::GatewayDisabled { .. }) => {
                // Too old (its gateway lives elsewhere), or no etcd at all.
                self.version_of(ep, deadline)?;
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        match status.get("version").and_then(Value::as_str) {
            Some(v) => self.accept_version(ep, v.to_string()),
            None => self.version_of(ep, deadline),
        }
    }

    /// `/version`, served with or without the gateway.
    fn version_of(&self, ep: &str, deadline: Instant) -> Result<(), EtcdError> {
        let v = self.request(ep, "/version", None, deadline)?;
        let version = v
            .get("etcdserver")
            .and_then(Value::as_str)
            .ok_or_else(|| EtcdError::Protocol {
                endpoint: ep.to_string(),
                detail: format!("/version has no etcdserver field: {v}"),
            })?
            .to_string();
        self.accept_version(ep, version)
    }

    fn accept_version(&self, ep: &str, version: String) -> Result<(), EtcdError> {
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        if (major, minor) < (3, 4) {
            return Err(EtcdError::TooOld {
                endpoint: ep.to_string(),
                version,
            });
        }
        *self.inner.version.lock().unwrap() = version;
        Ok(())
    }

    fn authenticate(&self, ep: &str, deadline: Instant) -> Result<(), EtcdError> {
        let Some(c) = &self.inner.credentials else {
            return Ok(());
        };
        let body = json!({"name": c.user, "password": c.password});
        // Never with the old token: etcd refuses a login that carries an
        // expired one ("invalid auth token"), so a re-login would fail.
        match self.request_as(ep, "/v3/auth/authenticate", Some(&body), deadline, false) {
            Ok(v) => {
                let token = v.get("token").and_then(Value::as_str).map(str::to_string);
                *self.inner.token.lock().unwrap() = token;
                Ok(())
            }
            // Credentials for an etcd that does not ask for them: harmless.
            Err(EtcdError::Server { code: 9, .. }) => Ok(()),
            // No leader, the leader changed, a timeout: the cluster could
            // not answer the login, which says nothing of the credentials
            // (seen under load: "refused the login: etcdserver: leader
            // changed (check DEPLOY_LOCK_ETCD_USER ...)"). Unavailable, so
            // the next endpoint is asked and a waiter keeps trying.
            Err(e @ EtcdError::Server { .. }) if e.retryable() => Err(e),
            Err(EtcdError::Server {
                endpoint, message, ..
            }) => Err(EtcdError::AuthRefused {
                endpoint,
                detail: message,
            }),
            Err(e) => Err(e),
        }
    }

    /// POST `path` with `body`: each endpoint at most once, starting at the
    /// one that answered last, each but the last given at most the attempt
    /// budget (a hung member must not use up the call), all within `timeout`. An expired or
    /// invalid token is replaced by one fresh login, then the request is
    /// sent once more.
    pub fn call(&self, path: &str, body: &Value, timeout: Duration) -> Result<Value, EtcdError> {
        let deadline = Instant::now() + timeout;
        self.each_endpoint(deadline, |ep, until| {
            let result = self.request(ep, path, Some(body), until);
            match result {
                Err(e) if is_bad_token(&e) && self.inner.credentials.is_some() => {
                    self.authenticate(ep, until)?;
                    self.request(ep, path, Some(body), until)
                }
                other => other,
            }
        })
    }

    /// `attempt(endpoint, its deadline)` at each endpoint in turn from the
    /// last good one, until one answers or fails for a reason another
    /// endpoint would not fix. The one that answers becomes the current one.
    fn each_endpoint<T>(
        &self,
        deadline: Instant,
        mut attempt: impl FnMut(&str, Instant) -> Result<T, EtcdError>,
    ) -> Result<T, EtcdError> {
        let n = self.inner.endpoints.len();
        let start = self.inner.current.load(Ordering::Relaxed);
        let mut errors = Vec::new();
        for k in 0..n {
            let i = (start + k) % n;
            let now = Instant::now();
            if k > 0 && now >= deadline {
                break;
            }
            // The last endpoint of the round (the only one, often) has no
            // one to hand over to: it gets whatever time is left.
            let until = if k + 1 == n {
                deadline
            } else {
                deadline.min(now + self.inner.attempt_timeout)
            };
            match attempt(&self.inner.endpoints[i], until) {
                Ok(v) => {
                    self.inner.current.store(i, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if e.is_transport() => errors.push(e),
                Err(e) => return Err(e),
            }
        }
        Err(one_or_all(errors))
    }

    /// One HTTP exchange with one endpoint; `body` None is a GET.
    fn request(
        &self,
        ep: &str,
        path: &str,
        body: Option<&Value>,
        deadline: Instant,
    ) -> Result<Value, EtcdError> {
        self.request_as(ep, path, body, deadline, true)
    }

    /// `with_token` false: without the Authorization header (a login).
    fn request_as(
        &self,
        ep: &str,
        path: &str,
        body: Option<&Value>,
        deadline: Instant,
        with_token: bool,
    ) -> Result<Value, EtcdError> {
        let how = Exchange {
            headers_by: deadline,
            deadline,
            with_token,
        };
        let text = self.exchange(ep, path, body, how, |status, body| {
            read_all(ep, status, body)
        })?;
        parse_answer(ep, path, text)
    }

    fn exchange<T>(
        &self,
        ep: &str,
        path: &str,
        body: Option<&Value>,
        how: Exchange,
        read: impl FnOnce(u16, ureq::Body) -> Result<T, EtcdError>,
    ) -> Result<T, EtcdError> {
        let deadline = how.deadline;
        let headers_in = how.headers_by.saturating_duration_since(Instant::now());
        let timeout = deadline.saturating_duration_since(Instant::now());
        if timeout.is_zero() {
            return Err(EtcdError::Unreachable {
                endpoint: ep.to_string(),
                detail: "no time left to ask".into(),
            });
        }
        let url = format!("{ep}{path}");
        let token = if how.with_token {
            self.inner.token.lock().unwrap().clone()
        } else {
            None
        };
        let result = match body {
            None => {
                let mut r = self
                    .inner
                    .agent
                    .get(&url)
                    .config()
                    .timeout_global(Some(timeout))
                    .timeout_recv_response(Some(headers_in))
                    .build();
                if let Some(t) = &token {
                    r = r.header("Authorization", t);
                }
                r.call()
            }
            Some(b) => {
                let mut r = self
                    .inner
                    .agent
                    .post(&url)
                    .config()
                    .timeout_global(Some(timeout))
                    .timeout_recv_response(Some(headers_in))
                    .build();
                if let Some(t) = &token {
                    r = r.header("Authorization", t);
                }
                r.content_type("application/json").send(b.to_string())
            }
        };
        let resp = result.map_err(|e| transport_error(ep, &e, timeout.min(headers_in)))?;
        let status = resp.status().as_u16();
        if status == 404 {
            // etcd's own "not found" (a lease revoked twice: gRPC code 5)
            // comes as a 404 with its JSON error; anything else on 404 is
            // no gateway at all.
            let body = resp.into_body().read_to_string().unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<Value>(&body)
                && v.get("code").is_some()
            {
                return Err(super::wire::server_error(ep, &v));
            }
            return Err(EtcdError::GatewayDisabled {
                endpoint: ep.to_string(),
                path: path.to_string(),
            });
        }
        read(status, resp.into_body())
    }

    /// The key, with the store's revision at the read.
    pub fn get(&self, key: &[u8], timeout: Duration) -> Result<Read, EtcdError> {
        let v = self.call("/v3/kv/range", &json!({"key": b64(key)}), timeout)?;
        Ok(Read {
            revision: header_revision(&v),
            kv: first_kv(self.endpoint(), &v)?,
        })
    }

    /// Puts every key in one txn (one raft write), with no lease: the
    /// store's revision after it.
    pub fn put_all(&self, kvs: &[(Vec<u8>, Vec<u8>)], timeout: Duration) -> Result<i64, EtcdError> {
        let success: Vec<Value> = kvs
            .iter()
            .map(|(k, v)| json!({"request_put": {"key": b64(k), "value": b64(v)}}))
            .collect();
        let v = self.call("/v3/kv/txn", &json!({"success": success}), timeout)?;
        Ok(header_revision(&v))
    }

    /// Every key under `prefix`, in key order (at most `limit`, 0: all),
    /// keys only when `keys_only`.
    pub fn range_prefix(
        &self,
        prefix: &[u8],
        limit: i64,
        keys_only: bool,
        timeout: Duration,
    ) -> Result<Vec<KeyValue>, EtcdError> {
        let body = json!({"key": b64(prefix), "range_end": b64(&prefix_end(prefix)),
            "limit": limit.to_string(), "keys_only": keys_only});
        let v = self.call("/v3/kv/range", &body, timeout)?;
        let ep = self.endpoint().to_string();
        v.get("kvs")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|kv| super::wire::parse_kv(&ep, kv)).collect())
            .unwrap_or(Ok(Vec::new()))
    }

    /// How many keys lie under `prefix` (a serializable read: this
    /// member's view, no round through the leader).
    pub fn count_prefix(&self, prefix: &[u8], timeout: Duration) -> Result<i64, EtcdError> {
        let body = json!({"key": b64(prefix), "range_end": b64(&prefix_end(prefix)),
            "count_only": true, "serializable": true});
        let v = self.call("/v3/kv/range", &body, timeout)?;
        Ok(num(v.get("count")))
    }

    /// Deletes the keys from `start` up to and including `last`.
    pub fn delete_through(
        &self,
        start: &[u8],
        last: &[u8],
        timeout: Duration,
    ) -> Result<(), EtcdError> {
        let mut end = last.to_vec();
        end.push(0);
        self.call(
            "/v3/kv/deleterange",
            &json!({"key": b64(start), "range_end": b64(&end)}),
            timeout,
        )?;
        Ok(())
    }

    /// Deletes `key` if its create revision and lease are still these, and
    /// puts `extra` (keys without a lease) either way: one txn, one raft
    /// write. Not succeeded: the key as it is.
    pub fn delete_if_and_put(
        &self,
        key: &[u8],
        create_revision: i64,
        lease: i64,
        extra: &[(Vec<u8>, Vec<u8>)],
        timeout: Duration,
    ) -> Result<TxnResult, EtcdError> {
        let k = b64(key);
        let puts = extra
            .iter()
            .map(|(k, v)| json!({"request_put": {"key": b64(k), "value": b64(v)}}));
        let success: Vec<Value> = std::iter::once(json!({"request_delete_range": {"key": k}}))
            .chain(puts.clone())
            .collect();
        let failure: Vec<Value> = std::iter::once(json!({"request_range": {"key": k}}))
            .chain(puts)
            .collect();
        let body = json!({
            "compare": [
                {"key": k, "result": "EQUAL", "target": "CREATE", "create_revision": create_revision.to_string()},
                {"key": k, "result": "EQUAL", "target": "LEASE", "lease": lease.to_string()},
            ],
            "success": success,
            "failure": failure,
        });
        let v = self.call("/v3/kv/txn", &body, timeout)?;
        self.txn_result(&v)
    }

    /// A txn's answer: whether it succeeded, and the key a range op read.
    fn txn_result(&self, v: &Value) -> Result<TxnResult, EtcdError> {
        let mut kv = None;
        if let Some(rs) = v.get("responses").and_then(Value::as_array) {
            for r in rs {
                if let Some(range) = r.get("response_range") {
                    kv = first_kv(self.endpoint(), range)?;
                }
            }
        }
        Ok(TxnResult {
            succeeded: v.get("succeeded").and_then(Value::as_bool).unwrap_or(false),
            revision: header_revision(v),
            kv,
        })
    }

    /// `if all(compares) then success else failure`, on one key.
    pub fn txn(
        &self,
        key: &[u8],
        compares: &[Compare],
        success: &[Op],
        failure: &[Op],
        timeout: Duration,
    ) -> Result<TxnResult, EtcdError> {
        let k = b64(key);
        let compare: Vec<Value> = compares
            .iter()
            .map(|c| match c {
                Compare::CreateRevision(r) => json!({"key": k, "result": "EQUAL",
                    "target": "CREATE", "create_revision": r.to_string()}),
                Compare::Lease(l) => json!({"key": k, "result": "EQUAL",
                    "target": "LEASE", "lease": l.to_string()}),
            })
            .collect();
        let ops = |ops: &[Op]| -> Vec<Value> {
            ops.iter()
                .map(|o| match o {
                    Op::Put { value, lease } => json!({"request_put": {"key": k,
                        "value": b64(value), "lease": lease.to_string()}}),
                    Op::Delete => json!({"request_delete_range": {"key": k}}),
                    Op::Get => json!({"request_range": {"key": k}}),
                })
                .collect()
        };
        let body = json!({"compare": compare, "success": ops(success), "failure": ops(failure)});
        let v = self.call("/v3/kv/txn", &body, timeout)?;
        self.txn_result(&v)
    }

    /// A new lease of `ttl` seconds: its id and the TTL etcd granted (never
    /// less; more when `ttl` is below etcd's minimum, 1.5 election timeouts).
    pub fn lease_grant(&self, ttl: Duration, timeout: Duration) -> Result<(i64, u64), EtcdError> {
        let v = self.call(
            "/v3/lease/grant",
            &json!({"TTL": ttl.as_secs().to_string()}),
            timeout,
        )?;
        let id = num(v.get("ID"));
        if id == 0 {
            return Err(EtcdError::Protocol {
                endpoint: self.endpoint().to_string(),
                detail: format!(
                    "lease grant without an ID: {}",
                    v.get("error").unwrap_or(&v)
                ),
            });
        }
        let granted = num(v.get("TTL")).max(0) as u64;
        Ok((id, granted.max(ttl.as_secs())))
    }

    /// Renews the lease; its new TTL in seconds, or None when it is gone
    /// (expired or revoked: the gateway answers 200 without a TTL).
    pub fn lease_keepalive(&self, id: i64, timeout: Duration) -> Result<Option<i64>, EtcdError> {
        let v = self.call(
            "/v3/lease/keepalive",
            &json!({"ID": id.to_string()}),
            timeout,
        )?;
        let r = v.get("result").unwrap_or(&v);
        Ok(Some(num(r.get("TTL"))).filter(|t| *t > 0))
    }

    /// Seconds left on the lease, None when it is gone.
    pub fn lease_time_to_live(&self, id: i64, timeout: Duration) -> Result<Option<i64>, EtcdError> {
        let v = self.call(
            "/v3/lease/timetolive",
            &json!({"ID": id.to_string()}),
            timeout,
        )?;
        Ok(Some(num(v.get("TTL"))).filter(|t| *t >= 0))
    }

    /// Revokes the lease, deleting its keys; false when it was already gone.
    pub fn lease_revoke(&self, id: i64, timeout: Duration) -> Result<bool, EtcdError> {
        match self.call("/v3/lease/revoke", &json!({"ID": id.to_string()}), timeout) {
            Ok(_) => Ok(true),
            Err(EtcdError::Server { code: 5, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Watches one key from `start_revision` until `deadline`, starting at
    /// the current endpoint and moving on in order as `call` does. The first
    /// answer (the watch's creation) is read here, so a returned watch is live.
    pub fn watch(
        &self,
        key: &[u8],
        start_revision: i64,
        deadline: Instant,
    ) -> Result<Watch, EtcdError> {
        self.watch_range(key, None, start_revision, deadline)
    }

    /// [`Client::watch`] of every key in `[key, range_end)` (a prefix: the
    /// key with its last byte plus one), for `status --watch`.
    pub fn watch_range(
        &self,
        key: &[u8],
        range_end: Option<&[u8]>,
        start_revision: i64,
        deadline: Instant,
    ) -> Result<Watch, EtcdError> {
        self.each_endpoint(deadline, |ep, confirm_by| {
            self.watch_at(ep, (key, range_end), start_revision, confirm_by, deadline)
        })
    }

    fn watch_at(
        &self,
        ep: &str,
        (key, range_end): (&[u8], Option<&[u8]>),
        start_revision: i64,
        confirm_by: Instant,
        deadline: Instant,
    ) -> Result<Watch, EtcdError> {
        let ep = ep.to_string();
        let mut body = json!({"create_request": {"key": b64(key),
            "start_revision": start_revision.to_string()}});
        if let Some(end) = range_end {
            body["create_request"]["range_end"] = json!(b64(end));
        }
        let how = Exchange {
            headers_by: confirm_by,
            deadline,
            with_token: true,
        };
        let mut w = self.exchange(&ep, "/v3/watch", Some(&body), how, |status, body| {
            if status != 200 {
                let text = read_all(&ep, status, body)?;
                return Err(parse_answer(&ep, "/v3/watch", text)
                    .err()
                    .unwrap_or_else(|| EtcdError::Protocol {
                        endpoint: ep.clone(),
                        detail: format!("watch answered HTTP {status}"),
                    }));
            }
            Ok(Watch {
                endpoint: ep.clone(),
                reader: BufReader::new(body.into_reader()),
                deadline,
            })
        })?;
        match w.next_answer()? {
            WatchNext::Events { .. } => Ok(w),
            WatchNext::TimedOut => Err(EtcdError::Unreachable {
                endpoint: ep,
                detail: "the watch was not confirmed in time".into(),
            }),
            WatchNext::Cancelled { compact_revision } => Err(EtcdError::Server {
                endpoint: ep,
                code: 11,
                message: format!("watch cancelled (compacted at {compact_revision})"),
            }),
        }
    }
}

/// The end of the range of keys that start with `prefix` (etcd's
/// `range_end`): the prefix with its last byte below 0xff raised by one.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The time bounds of one HTTP exchange.
#[derive(Clone, Copy)]
struct Exchange {
    /// The answer's status line and headers by then (a watch's creation).
    headers_by: Instant,
    /// The whole exchange, body included, by then.
    deadline: Instant,
    with_token: bool,
}

/// etcd's answers to a token it no longer knows (simple tokens live in
/// each member's memory: expired after `--auth-token-ttl` of disuse, lost
/// on a restart) or to one older than the auth store.
fn is_bad_token(e: &EtcdError) -> bool {
    match e {
        EtcdError::Server { code, message, .. } => {
            *code == 16
                || message.contains("invalid auth token")
                || message.contains("revision of auth store is old")
        }
        _ => false,
    }
}

fn agent(ca_file: Option<&Path>) -> Result<ureq::Agent, EtcdError> {
    let mut cfg = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections_per_host(4);
    if let Some(path) = ca_file {
        let ca_err = |detail: String| EtcdError::CaFile {
            path: path.to_path_buf(),
            detail,
        };
        let pem = std::fs::read(path).map_err(|e| ca_err(e.to_string()))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let ureq::tls::PemItem::Certificate(c) =
                item.map_err(|e| ca_err(format!("not a PEM file: {e}")))?
            {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            return Err(ca_err("holds no PEM certificate".into()));
        }
        cfg = cfg.tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                .build(),
        );
    }
    Ok(ureq::Agent::with_parts(
        cfg.build(),
        ureq::unversioned::transport::DefaultConnector::default(),
        LiteralResolver::default(),
    ))
}

/// Endpoints are usually IP addresses: those need no lookup. ureq's own
/// resolver starts a thread per request to bound a lookup's time, even for
/// `127.0.0.1` and a pooled connection (five threads in a short run); a
/// host name still goes to it.
#[derive(Debug, Default)]
struct LiteralResolver {
    names: ureq::unversioned::resolver::DefaultResolver,
}

impl ureq::unversioned::resolver::Resolver for LiteralResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or_default();
        let ip = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().or_else(|| match uri.scheme_str() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        match (ip.parse::<std::net::IpAddr>(), port) {
            (Ok(ip), Some(port)) => {
                let mut addrs = self.empty();
                addrs.push(std::net::SocketAddr::new(ip, port));
                Ok(addrs)
            }
            _ => self.names.resolve(uri, config, timeout),
        }
    }
}

fn transport_error(ep: &str, e: &ureq::Error, timeout: Duration) -> EtcdError {
    let detail = match e {
        ureq::Error::Timeout(_) => format!("no answer within {:.1} s", timeout.as_secs_f64()),
        ureq::Error::Io(io) => io.to_string(),
        other => other.to_string(),
    };
    EtcdError::Unreachable {
        endpoint: ep.to_string(),
        detail,
    }
}

/// The most of one answer read: base64 makes a value a third larger, and
/// etcd stores values up to its `--max-request-bytes` (1.5 MiB by
/// default; some raise it). A lock key holding more is shown as a foreign
/// value up to this size, and is one clear error past it.
pub const ANSWER_LIMIT: u64 = 64 << 20;

fn read_all(ep: &str, status: u16, mut body: ureq::Body) -> Result<(u16, String), EtcdError> {
    let text = body
        .with_config()
        .limit(ANSWER_LIMIT)
        .read_to_string()
        .map_err(|e| match e {
            ureq::Error::BodyExceedsLimit(limit) => EtcdError::Oversized {
                endpoint: ep.to_string(),
                limit,
            },
            e => EtcdError::Unreachable {
                endpoint: ep.to_string(),
                detail: format!("the answer broke off: {e}"),
            },
        })?;
    Ok((status, text))
}

fn one_or_all(mut errors: Vec<EtcdError>) -> EtcdError {
    match errors.len() {
        0 => EtcdError::Unreachable {
            endpoint: String::new(),
            detail: "no endpoint configured".into(),
        },
        1 => errors.remove(0),
        _ => EtcdError::AllEndpoints(errors),
    }
}
