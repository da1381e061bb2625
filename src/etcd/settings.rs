//! Which lock store to use and how to reach etcd: the checkout's
//! `deploy/config/deploy-lock.env` merged with the caller's variables.
//!
//! The checkout file is checked into the team's repository so every operator
//! uses the same store; the caller's values win, with a warning when they pick
//! another backend than the checkout does. Pure: the caller passes the
//! file's text and a lookup for its own variables (environment and flags).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

pub use super::checkout_file::{
    CHECKOUT_FILE, CheckoutFile, Entry, parse_checkout_file, read_checkout_file,
};

pub const BACKEND: &str = "DEPLOY_LOCK_BACKEND";
pub const ENDPOINTS: &str = "DEPLOY_LOCK_ETCD_ENDPOINTS";
pub const PREFIX: &str = "DEPLOY_LOCK_ETCD_PREFIX";
pub const TTL: &str = "DEPLOY_LOCK_ETCD_TTL";
pub const CACERT: &str = "DEPLOY_LOCK_ETCD_CACERT";
pub const USER: &str = "DEPLOY_LOCK_ETCD_USER";
pub const PASSWORD: &str = "DEPLOY_LOCK_ETCD_PASSWORD";
pub const LOST_GRACE: &str = "DEPLOY_LOCK_LOST_GRACE";
pub const ON_LOST: &str = "DEPLOY_LOCK_ON_LOST";

/// Every variable this module reads, in documentation order.
pub const VARIABLES: [&str; 9] = [
    BACKEND, ENDPOINTS, PREFIX, TTL, CACERT, USER, PASSWORD, LOST_GRACE, ON_LOST,
];

pub const DEFAULT_PREFIX: &str = "/togather/deploy-lock";
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
pub const DEFAULT_LOST_GRACE: Duration = Duration::from_secs(30);
/// etcd caps lease TTLs far above this; a deploy lock renewed every TTL/3
/// gains nothing from a longer one, and a dead holder blocks for the TTL.
pub const MAX_TTL_SECS: u64 = 3600;
/// A lost lock's command is SIGKILLed at most this long after its SIGTERM:
/// longer would leave a command running unlocked beside the next holder's
/// for more than a TTL's worth of hours.
pub const MAX_LOST_GRACE_SECS: u64 = 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    Local,
    Etcd,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Local => "local",
            BackendKind::Etcd => "etcd",
        }
    }
}

/// What a holder that lost its lock does to its command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnLost {
    /// SIGTERM, then SIGKILL after the grace period.
    Term,
    /// Only say so (and audit it).
    Warn,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never in a log or a panic message.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Base URLs (`http://host:port` or `https://...`), tried in order.
    pub endpoints: Vec<String>,
    /// Key prefix without a trailing slash.
    pub prefix: String,
    pub ttl: Duration,
    pub ca_file: Option<PathBuf>,
    pub credentials: Option<Credentials>,
    /// Time between SIGTERM and SIGKILL after a loss; None = never SIGKILL.
    pub lost_grace: Option<Duration>,
    pub on_lost: OnLost,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Local,
    Etcd(EtcdSettings),
}

impl Backend {
    pub fn kind(&self) -> BackendKind {
        match self {
            Backend::Local => BackendKind::Local,
            Backend::Etcd(_) => BackendKind::Etcd,
        }
    }
}

/// Where a value came from, for messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The caller's environment or flags.
    Caller,
    File {
        path: PathBuf,
        line: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SettingsWarning {
    /// The caller chose another backend than the checkout file.
    BackendOverridden {
        caller: BackendKind,
        checkout: BackendKind,
        file: PathBuf,
    },
}

impl fmt::Display for SettingsWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsWarning::BackendOverridden {
                caller,
                checkout,
                file,
            } => write!(
                f,
                "{BACKEND}={} overrides {}'s {BACKEND}={}: this lock is not the one the rest \
                 of the team uses",
                caller.as_str(),
                file.display(),
                checkout.as_str()
            ),
        }
    }
}

#[derive(Debug)]
pub enum SettingsError {
    /// A line of the checkout file that is not `KEY=VALUE`, a comment or blank.
    BadLine {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A value that does not parse; `fix` says what would.
    BadValue {
        variable: &'static str,
        value: String,
        origin: Origin,
        fix: String,
    },
    /// A variable the chosen backend needs.
    Missing { variable: &'static str, fix: String },
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingsError::BadLine { path, line, reason } => {
                write!(f, "{}:{line}: {reason}", path.display())
            }
            SettingsError::BadValue {
                variable,
                value,
                origin,
                fix,
            } => {
                write!(f, "{variable}={value:?}")?;
                if let Origin::File { path, line } = origin {
                    write!(f, " ({}:{line})", path.display())?;
                }
                write!(f, ": {fix}")
            }
            SettingsError::Missing { variable, fix } => write!(f, "{variable} is not set: {fix}"),
            SettingsError::Io { path, source } => write!(f, "{}: {source}", path.display()),
        }
    }
}

impl std::error::Error for SettingsError {}

/// The caller's values (variables, or flags the CLI folded in) over the
/// checkout file's. An empty caller value counts as unset.
pub fn resolve(
    file: Option<&CheckoutFile>,
    caller: &dyn Fn(&str) -> Option<String>,
) -> Result<(Backend, Vec<SettingsWarning>), SettingsError> {
    let get = |key: &'static str| -> Option<(String, Origin)> {
        if let Some(v) = caller(key).filter(|v| !v.is_empty()) {
            return Some((v, Origin::Caller));
        }
        let f = file?;
        f.get(key).map(|e| {
            (
                e.value.clone(),
                Origin::File {
                    path: f.path.clone(),
                    line: e.line,
                },
            )
        })
    };
    let bad = |variable: &'static str, (value, origin): (String, Origin), fix: &str| {
        SettingsError::BadValue {
            variable,
            value,
            origin,
            fix: fix.to_string(),
        }
    };

    let mut warnings = Vec::new();
    let kind = match get(BACKEND) {
        None => BackendKind::Local,
        Some((v, origin)) => {
            let kind = match v.as_str() {
                "local" => BackendKind::Local,
                "etcd" => BackendKind::Etcd,
                _ => {
                    return Err(bad(
                        BACKEND,
                        (v, origin),
                        "use DEPLOY_LOCK_BACKEND=local (this host's lock folder) or \
                         DEPLOY_LOCK_BACKEND=etcd",
                    ));
                }
            };
            if let (Origin::Caller, Some(f)) = (&origin, file)
                && let Some(e) = f.get(BACKEND)
                && e.value != v
            {
                let checkout = match e.value.as_str() {
                    "etcd" => BackendKind::Etcd,
                    _ => BackendKind::Local,
                };
                warnings.push(SettingsWarning::BackendOverridden {
                    caller: kind,
                    checkout,
                    file: f.path.clone(),
                });
            }
            kind
        }
    };
    if kind == BackendKind::Local {
        return Ok((Backend::Local, warnings));
    }

    let Some(eps) = get(ENDPOINTS) else {
        return Err(SettingsError::Missing {
            variable: ENDPOINTS,
            fix: format!(
                "{BACKEND}=etcd needs the etcd client URLs, comma-separated, e.g. \
                 {ENDPOINTS}=https://etcd1:2379,https://etcd2:2379"
            ),
        });
    };
    let endpoints = parse_endpoints(&eps.0).map_err(|why| {
        // The value is shown without any user info it carries: never a password.
        let shown = (redact_user_info(&eps.0), eps.1.clone());
        bad(ENDPOINTS, shown, &why)
    })?;

    let prefix = match get(PREFIX) {
        None => DEFAULT_PREFIX.to_string(),
        Some(p) => {
            let trimmed = p.0.trim_end_matches('/');
            if !p.0.starts_with('/') || trimmed.is_empty() || trimmed.contains("//") {
                return Err(bad(
                    PREFIX,
                    p,
                    &format!("use an absolute key path, e.g. {PREFIX}={DEFAULT_PREFIX}"),
                ));
            }
            trimmed.to_string()
        }
    };

    let ttl = match get(TTL) {
        None => DEFAULT_TTL,
        Some(t) => match t.0.parse::<u64>() {
            Ok(s) if (1..=MAX_TTL_SECS).contains(&s) => Duration::from_secs(s),
            _ => {
                return Err(bad(
                    TTL,
                    t,
                    &format!(
                        "use whole seconds from 1 to {MAX_TTL_SECS}, e.g. {TTL}=30 (a dead \
                         holder blocks others for up to this long)"
                    ),
                ));
            }
        },
    };

    let ca_file = get(CACERT).map(|(v, origin)| {
        let p = PathBuf::from(v);
        match (&origin, file.and_then(CheckoutFile::root)) {
            // A checked-in relative path means the checkout's own file.
            (Origin::File { .. }, Some(root)) if p.is_relative() => root.join(p),
            _ => p,
        }
    });

    let credentials = match (get(USER), caller(PASSWORD).filter(|p| !p.is_empty())) {
        (None, None) => None,
        (Some((user, _)), Some(password)) => Some(Credentials { user, password }),
        (Some(_), None) => {
            return Err(SettingsError::Missing {
                variable: PASSWORD,
                fix: format!("{USER} is set; set {PASSWORD} in the environment too"),
            });
        }
        (None, Some(_)) => {
            return Err(SettingsError::Missing {
                variable: USER,
                fix: format!("{PASSWORD} is set; set {USER} to the etcd user it belongs to"),
            });
        }
    };

    // A user and password travel in every request's body or header: never
    // in clear text off this host (i19: a planted or mistyped file must not
    // make the password leave over plain http).
    if credentials.is_some()
        && let Some(plain) = endpoints.iter().find(|u| !safe_for_credentials(u))
    {
        return Err(bad(
            ENDPOINTS,
            eps,
            &format!(
                "{plain} is plain http to another host and {USER}/{PASSWORD} are set: the \
                 password would cross the network unencrypted; use https://, e.g. \
                 {ENDPOINTS}=https://etcd1:2379 (plain http is allowed only to a loopback \
                 address)"
            ),
        ));
    }

    let lost_grace = match get(LOST_GRACE) {
        None => Some(DEFAULT_LOST_GRACE),
        Some(g) => match g.0.parse::<u64>() {
            Ok(0) => None,
            Ok(s) if s <= MAX_LOST_GRACE_SECS => Some(Duration::from_secs(s)),
            _ => {
                return Err(bad(
                    LOST_GRACE,
                    g,
                    &format!(
                        "use whole seconds from 0 to {MAX_LOST_GRACE_SECS} between SIGTERM and \
                         SIGKILL after a lost lock, e.g. {LOST_GRACE}=30, or 0 for never SIGKILL"
                    ),
                ));
            }
        },
    };

    let on_lost = match get(ON_LOST) {
        None => OnLost::Term,
        Some(o) => match o.0.as_str() {
            "term" => OnLost::Term,
            "warn" => OnLost::Warn,
            _ => {
                return Err(bad(
                    ON_LOST,
                    o,
                    &format!(
                        "use {ON_LOST}=term (stop the command when the lock is lost) or \
                         {ON_LOST}=warn (only say so)"
                    ),
                ));
            }
        },
    };

    Ok((
        Backend::Etcd(EtcdSettings {
            endpoints,
            prefix,
            ttl,
            ca_file,
            credentials,
            lost_grace,
            on_lost,
        }),
        warnings,
    ))
}

/// Whether credentials may be sent to base URL `u`: https, or plain http to
/// a loopback address (`localhost`, 127.0.0.0/8, `[::1]`), which never leaves
/// the host.
pub fn safe_for_credentials(u: &str) -> bool {
    let Some(hostport) = u.strip_prefix("http://") else {
        return u.starts_with("https://");
    };
    // `http://127.0.0.1@evil:1` goes to `evil`: judge what follows the last '@'.
    let hostport = hostport.rsplit('@').next().unwrap_or(hostport);
    let host = match hostport.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => hostport.rsplit_once(':').map_or(hostport, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// `http://h:p,https://h2:p2` to base URLs without a trailing slash.
fn parse_endpoints(v: &str) -> Result<Vec<String>, String> {
    let fix = format!(
        "use comma-separated http:// or https:// URLs of etcd's client port, e.g. \
         {ENDPOINTS}=https://etcd1:2379,https://etcd2:2379"
    );
    let mut out = Vec::new();
    for part in v.split(',') {
        let u = part.trim().trim_end_matches('/');
        let rest = u
            .strip_prefix("http://")
            .or_else(|| u.strip_prefix("https://"));
        match rest {
            Some(hostport) if hostport.contains('@') => {
                return Err(format!(
                    "an endpoint must not carry a user or password; set {USER} and \
                     {PASSWORD} instead"
                ));
            }
            Some(hostport) if !hostport.is_empty() && !hostport.contains(['/', '?', '#', ' ']) => {
                out.push(u.to_string())
            }
            _ => return Err(fix),
        }
    }
    Ok(out)
}

/// `http://user:pw@host:1` as `http://***@host:1`, for messages.
fn redact_user_info(v: &str) -> String {
    v.split(',')
        .map(|part| match part.rsplit_once('@') {
            Some((before, after)) => {
                let scheme = before.find("://").map_or("", |i| &before[..i + 3]);
                format!("{scheme}***@{after}")
            }
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::path::Path;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    fn file(text: &str) -> CheckoutFile {
        parse_checkout_file(Path::new("/co/deploy/config/deploy-lock.env"), text).unwrap()
    }

    #[test]
    fn nothing_set_is_the_local_lock() {
        assert_eq!(resolve(None, &env(&[])).unwrap(), (Backend::Local, vec![]));
    }

    #[test]
    fn the_checkout_file_chooses_etcd_with_defaults() {
        let f = file(
            "# the team's lock\n\nDEPLOY_LOCK_BACKEND=etcd\n\
             export DEPLOY_LOCK_ETCD_ENDPOINTS=\"http://a:2379, https://b:2379/\"\n\
             DEPLOY_LOCK_ETCD_CACERT=deploy/config/etcd-ca.pem\n",
        );
        let (b, w) = resolve(Some(&f), &env(&[])).unwrap();
        assert!(w.is_empty());
        let Backend::Etcd(s) = b else { panic!() };
        assert_eq!(s.endpoints, ["http://a:2379", "https://b:2379"]);
        assert_eq!(s.prefix, DEFAULT_PREFIX);
        assert_eq!(s.ttl, Duration::from_secs(30));
        assert_eq!(s.lost_grace, Some(Duration::from_secs(30)));
        assert_eq!(s.on_lost, OnLost::Term);
        assert_eq!(
            s.ca_file.as_deref(),
            Some(Path::new("/co/deploy/config/etcd-ca.pem"))
        );
        assert_eq!(s.credentials, None);
    }

    #[test]
    fn the_caller_wins_and_is_warned_when_it_picks_another_backend() {
        let f = file("DEPLOY_LOCK_BACKEND=etcd\nDEPLOY_LOCK_ETCD_ENDPOINTS=http://a:1\n");
        let (b, w) = resolve(Some(&f), &env(&[(BACKEND, "local")])).unwrap();
        assert_eq!(b, Backend::Local);
        assert_eq!(
            w,
            [SettingsWarning::BackendOverridden {
                caller: BackendKind::Local,
                checkout: BackendKind::Etcd,
                file: f.path.clone()
            }]
        );
        // Same backend, other values: no warning.
        let (b, w) = resolve(
            Some(&f),
            &env(&[(BACKEND, "etcd"), (TTL, "5"), (ENDPOINTS, "http://c:2")]),
        )
        .unwrap();
        assert!(w.is_empty());
        let Backend::Etcd(s) = b else { panic!() };
        assert_eq!(s.ttl, Duration::from_secs(5));
        assert_eq!(s.endpoints, ["http://c:2"]);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let p = Path::new("/co/deploy/config/deploy-lock.env");
        let e = parse_checkout_file(p, "# x\nDEPLOY_LOCK_BACKEND etcd\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "/co/deploy/config/deploy-lock.env:2: expected KEY=VALUE or a # comment, found \
             \"DEPLOY_LOCK_BACKEND etcd\""
        );
        let e = parse_checkout_file(p, "DEPLOY_LOCK_BACKNED=etcd\n").unwrap_err();
        assert!(
            e.to_string().starts_with(
                "/co/deploy/config/deploy-lock.env:1: \"DEPLOY_LOCK_BACKNED\" is not a setting"
            ),
            "{e}"
        );
        let e = parse_checkout_file(p, "\nDEPLOY_LOCK_ETCD_PASSWORD=x\n").unwrap_err();
        assert!(
            e.to_string()
                .contains(":2: DEPLOY_LOCK_ETCD_PASSWORD does not belong")
        );
        let e = parse_checkout_file(p, "DEPLOY_LOCK_ETCD_PREFIX=\"/a\n").unwrap_err();
        assert!(e.to_string().contains(":1: unbalanced \" quote"));
    }

    #[test]
    fn bad_values_name_the_variable_and_the_fix() {
        let f = file(
            "DEPLOY_LOCK_BACKEND=etcd\nDEPLOY_LOCK_ETCD_ENDPOINTS=http://a:1\nDEPLOY_LOCK_ETCD_TTL=0\n",
        );
        let e = resolve(Some(&f), &env(&[])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "DEPLOY_LOCK_ETCD_TTL=\"0\" (/co/deploy/config/deploy-lock.env:3): use whole \
             seconds from 1 to 3600, e.g. DEPLOY_LOCK_ETCD_TTL=30 (a dead holder blocks others \
             for up to this long)"
        );
        let e = resolve(None, &env(&[(BACKEND, "consul")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("DEPLOY_LOCK_BACKEND=\"consul\": use")
        );
        let e = resolve(None, &env(&[(BACKEND, "etcd")])).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("DEPLOY_LOCK_ETCD_ENDPOINTS is not set:")
        );
        for (k, v) in [
            (ENDPOINTS, "etcd1:2379"),
            (ENDPOINTS, "http://a:1,"),
            (PREFIX, "togather"),
            (LOST_GRACE, "-1"),
            (ON_LOST, "kill"),
        ] {
            let mut vars = vec![(BACKEND, "etcd"), (ENDPOINTS, "http://a:1")];
            vars.retain(|(key, _)| *key != k);
            vars.push((k, v));
            let e = resolve(None, &env(&vars)).unwrap_err();
            assert!(e.to_string().starts_with(&format!("{k}={v:?}: use")), "{e}");
        }
    }

    #[test]
    fn out_of_range_graces_and_user_info_are_refused_without_the_password() {
        let base = [(BACKEND, "etcd"), (ENDPOINTS, "http://a:1")];
        for g in ["3601", "18446744073709551615", "18446744073709551616"] {
            let mut v = base.to_vec();
            v.push((LOST_GRACE, g));
            let e = resolve(None, &env(&v)).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!(
                    "DEPLOY_LOCK_LOST_GRACE=\"{g}\": use whole seconds from 0 to 3600 between \
                     SIGTERM and SIGKILL after a lost lock, e.g. DEPLOY_LOCK_LOST_GRACE=30, or 0 \
                     for never SIGKILL"
                )
            );
        }
        let mut v = base.to_vec();
        v.push((LOST_GRACE, "3600"));
        assert!(resolve(None, &env(&v)).is_ok());
        let e = resolve(
            None,
            &env(&[
                (BACKEND, "etcd"),
                (ENDPOINTS, "http://a:1,https://deploy:s3cret@b:2379"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "DEPLOY_LOCK_ETCD_ENDPOINTS=\"http://a:1,https://***@b:2379\": an endpoint must not \
             carry a user or password; set DEPLOY_LOCK_ETCD_USER and DEPLOY_LOCK_ETCD_PASSWORD \
             instead"
        );
        assert!(!format!("{e:?}").contains("s3cret"));
    }

    #[test]
    fn grace_zero_is_never_and_credentials_come_in_pairs() {
        let base = [(BACKEND, "etcd"), (ENDPOINTS, "http://127.0.0.1:1")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            resolve(None, &env(&v))
        };
        let Backend::Etcd(s) = with(&[(LOST_GRACE, "0"), (ON_LOST, "warn")]).unwrap().0 else {
            panic!()
        };
        assert_eq!((s.lost_grace, s.on_lost), (None, OnLost::Warn));
        assert!(with(&[(USER, "deploy")]).is_err());
        assert!(with(&[(PASSWORD, "pw")]).is_err());
        let Backend::Etcd(s) = with(&[(USER, "deploy"), (PASSWORD, "pw")]).unwrap().0 else {
            panic!()
        };
        let c = s.credentials.unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("deploy", "pw"));
        assert!(!format!("{c:?}").contains("pw"));
    }

    #[test]
    fn credentials_never_go_over_plain_http_off_the_host() {
        for ok in [
            "https://etcd1:2379",
            "http://127.0.0.1:2379",
            "http://127.3.4.5:1",
            "http://localhost:2379",
            "http://LOCALHOST",
            "http://[::1]:2379",
        ] {
            assert!(safe_for_credentials(ok), "{ok}");
        }
        for bad in [
            "http://etcd1:2379",
            "http://10.0.0.1:2379",
            "http://[::2]:1",
            "http://localhost.evil.example:1",
            "http://127.0.0.1@evil:1",
            "http://[::1]@evil:1",
        ] {
            assert!(!safe_for_credentials(bad), "{bad}");
        }
        let e = resolve(
            None,
            &env(&[
                (BACKEND, "etcd"),
                (ENDPOINTS, "https://a:1,http://b:2"),
                (USER, "deploy"),
                (PASSWORD, "pw"),
            ]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "DEPLOY_LOCK_ETCD_ENDPOINTS=\"https://a:1,http://b:2\": http://b:2 is plain http to \
             another host and DEPLOY_LOCK_ETCD_USER/DEPLOY_LOCK_ETCD_PASSWORD are set: the \
             password would cross the network unencrypted; use https://, e.g. \
             DEPLOY_LOCK_ETCD_ENDPOINTS=https://etcd1:2379 (plain http is allowed only to a \
             loopback address)"
        );
        // Without credentials plain http stays allowed (nothing secret to leak).
        assert!(resolve(None, &env(&[(BACKEND, "etcd"), (ENDPOINTS, "http://b:2")])).is_ok());
    }
}
