//! Everything the engine needs from the outside world (settings, paths, host,
//! user, clock) in one value, so tests inject a lock dir and a clock instead of
//! touching /tmp, and the CLI layers resolve it once.

use std::ffi::OsString;
use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use crate::environment::Environment;

pub const ENV_LOCK_DIR: &str = "DEPLOY_LOCK_DIR";
pub const ENV_STALE_SECS: &str = "DEPLOY_LOCK_STALE_SECS";
pub const ENV_WAIT_INTERVAL: &str = "DEPLOY_LOCK_WAIT_INTERVAL";
pub const ENV_WAIT_TIMEOUT: &str = "DEPLOY_LOCK_WAIT_TIMEOUT";
pub const ENV_PROJECT_ROOT: &str = "DEPLOY_LOCK_PROJECT_ROOT";

/// The state file's place inside a checkout.
pub const STATE_FILE_REL: &str = "deploy/config/deployment-state.json";

/// Tunables, each settable by a `DEPLOY_LOCK_*` variable (and, for the
/// `deploy-lock` persona, a flag).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Folder holding `togather-deploy-{env}.lock`: literally `/tmp` by default,
    /// not `$TMPDIR`, because the legacy scripts hard-code it.
    pub lock_root: PathBuf,
    pub stale_after: Duration,
    pub wait_interval: Duration,
    pub wait_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lock_root: PathBuf::from("/tmp"),
            stale_after: Duration::from_secs(1800),
            wait_interval: Duration::from_secs(5),
            wait_timeout: Duration::from_secs(3600),
        }
    }
}

/// A setting whose value cannot be used; its Display is the one-line error.
#[derive(Debug, Clone, PartialEq)]
pub struct SettingError {
    pub name: String,
    pub value: String,
    pub expected: &'static str,
}

impl fmt::Display for SettingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} '{}': expected {}",
            self.name, self.value, self.expected
        )
    }
}

impl std::error::Error for SettingError {}

/// The largest number of seconds a setting may hold (about 31 years): more
/// means nothing for a deploy lock, and would overflow time arithmetic
/// (`9223372036854775808` wrapped negative and made every lock stale).
pub const MAX_SECS: u64 = 1_000_000_000;

/// Whole seconds (stale timeout). Zero is allowed: every lock then counts as
/// old, which is what a user asking for it means.
pub fn parse_whole_secs(name: &str, value: &str) -> Result<Duration, SettingError> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|v| *v <= MAX_SECS)
        .map(Duration::from_secs)
        .ok_or_else(|| SettingError {
            name: name.to_string(),
            value: value.to_string(),
            expected: "a whole number of seconds from 0 to 1000000000, e.g. 1800",
        })
}

/// Seconds with an optional fraction (`0.5`); must be finite and not negative.
pub fn parse_fractional_secs(name: &str, value: &str) -> Result<Duration, SettingError> {
    let err = || SettingError {
        name: name.to_string(),
        value: value.to_string(),
        expected: "a number of seconds from 0 to 1000000000, such as 5 or 0.25",
    };
    let v: f64 = value.trim().parse().map_err(|_| err())?;
    if !v.is_finite() || !(0.0..=MAX_SECS as f64).contains(&v) {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(v))
}

/// One setting as given: its text and where it came from (a variable's or a
/// flag's name), so an error names exactly what the user typed.
#[derive(Clone, Debug, PartialEq)]
pub struct Raw {
    pub value: OsString,
    pub origin: String,
}

impl Raw {
    pub fn new(value: impl Into<OsString>, origin: impl Into<String>) -> Raw {
        Raw {
            value: value.into(),
            origin: origin.into(),
        }
    }

    fn text(&self) -> String {
        self.value.to_string_lossy().into_owned()
    }
}

/// Every setting as the entry point found it (variables, flags), not yet
/// checked. [`Context::resolve`] is the one place that turns it into a
/// [`Context`], for both personas.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SettingInputs {
    pub lock_dir: Option<Raw>,
    pub stale_secs: Option<Raw>,
    pub wait_interval: Option<Raw>,
    pub wait_timeout: Option<Raw>,
    pub project_root: Option<Raw>,
    /// The lock store's settings (`DEPLOY_LOCK_BACKEND`, `DEPLOY_LOCK_ETCD_*`,
    /// `DEPLOY_LOCK_LOST_GRACE`, `DEPLOY_LOCK_ON_LOST`) by variable name, a
    /// flag over its variable; checked with the checkout file's
    /// (`crate::store::etcd::choose`).
    pub store: Vec<(&'static str, Raw)>,
}

impl SettingInputs {
    /// The caller's value for a store setting, flag or variable.
    pub fn store_value(&self, name: &str) -> Option<String> {
        self.store
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, r)| r.text())
    }

    /// The `DEPLOY_LOCK_*` variables found by `get` (empty means unset).
    pub fn from_vars(get: impl Fn(&str) -> Option<OsString>) -> SettingInputs {
        let raw = |name: &str| {
            get(name)
                .filter(|v| !v.is_empty())
                .map(|v| Raw::new(v, name))
        };
        SettingInputs {
            lock_dir: raw(ENV_LOCK_DIR),
            stale_secs: raw(ENV_STALE_SECS),
            wait_interval: raw(ENV_WAIT_INTERVAL),
            wait_timeout: raw(ENV_WAIT_TIMEOUT),
            project_root: raw(ENV_PROJECT_ROOT),
            store: crate::etcd::settings::VARIABLES
                .iter()
                .filter_map(|name| raw(name).map(|r| (*name, r)))
                .collect(),
        }
    }

    /// Defaults overridden by every input given (an empty value is unset).
    pub fn settings(&self) -> Result<Settings, SettingError> {
        let mut s = Settings::default();
        let given = |r: &Option<Raw>| r.clone().filter(|r| !r.value.is_empty());
        if let Some(r) = given(&self.lock_dir) {
            s.lock_root = PathBuf::from(r.value);
        }
        if let Some(r) = given(&self.stale_secs) {
            s.stale_after = parse_whole_secs(&r.origin, &r.text())?;
        }
        if let Some(r) = given(&self.wait_interval) {
            s.wait_interval = parse_fractional_secs(&r.origin, &r.text())?;
            if s.wait_interval.is_zero() {
                return Err(SettingError {
                    value: r.text(),
                    name: r.origin,
                    expected: "a number of seconds greater than 0",
                });
            }
        }
        if let Some(r) = given(&self.wait_timeout) {
            s.wait_timeout = parse_fractional_secs(&r.origin, &r.text())?;
        }
        Ok(s)
    }
}

impl Settings {
    /// Defaults overridden by the `DEPLOY_LOCK_*` variables found by `get`
    /// (a function so tests need not mutate the process environment).
    pub fn from_vars(get: impl Fn(&str) -> Option<OsString>) -> Result<Settings, SettingError> {
        SettingInputs::from_vars(get).settings()
    }

    pub fn lock_dir(&self, env: Environment) -> PathBuf {
        self.lock_root.join(env.lock_dir_name())
    }

    pub fn guard_file(&self, env: Environment) -> PathBuf {
        self.lock_root.join(env.guard_file_name())
    }

    pub fn run_file(&self, env: Environment) -> PathBuf {
        self.lock_root.join(env.run_file_name())
    }

    pub fn announce_file(&self, env: Environment) -> PathBuf {
        self.lock_root.join(env.announce_file_name())
    }
}

/// Where "now" comes from: the system clock, or a fixed instant in tests.
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    System,
    Fixed(Timestamp),
}

impl Clock {
    pub fn now(self) -> Timestamp {
        match self {
            Clock::System => Timestamp::now(),
            Clock::Fixed(t) => t,
        }
    }
}

/// The resolved world one command runs in.
#[derive(Clone, Debug)]
pub struct Context {
    pub settings: Settings,
    pub project_root: PathBuf,
    pub state_file: PathBuf,
    /// This host's name as `hostname` prints it.
    pub host: String,
    /// `$USER`, else the name of the effective uid; looked up only when a
    /// lock is taken or audited (status never needs the passwd database).
    user: std::cell::OnceCell<String>,
    /// Where the audit log goes: `$HOME/.togather/logs/deployments/locks.log`.
    pub home: Option<PathBuf>,
    pub clock: Clock,
    /// Set when no checkout was found and the operation needs only the lock
    /// (status, wait): there is no state file then, and `project_root` and
    /// `state_file` name nothing.
    pub no_checkout: Option<NoProjectRoot>,
}

impl Context {
    pub fn new(settings: Settings, project_root: PathBuf) -> Context {
        let state_file = project_root.join(STATE_FILE_REL);
        Context {
            settings,
            project_root,
            state_file,
            host: this_host(),
            user: std::cell::OnceCell::new(),
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from),
            clock: Clock::System,
            no_checkout: None,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn lock_dir(&self, env: Environment) -> PathBuf {
        self.settings.lock_dir(env)
    }

    pub fn user(&self) -> &str {
        self.user.get_or_init(this_user)
    }

    /// `$USER@host`, the legacy `locked_by`.
    pub fn locked_by(&self) -> String {
        format!("{}@{}", self.user(), self.host)
    }
}

pub fn this_host() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "localhost".to_string())
}

pub fn this_user() -> String {
    if let Some(u) = std::env::var_os("USER").filter(|u| !u.is_empty()) {
        return u.to_string_lossy().into_owned();
    }
    let uid = nix::unistd::geteuid().as_raw();
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| uid.to_string())
}

/// Why no project root could be found. Display is neutral; the CLI says
/// which flag or variable names one.
#[derive(Debug, Clone, PartialEq)]
pub struct NoProjectRoot {
    pub searched_from: PathBuf,
}

impl fmt::Display for NoProjectRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no checkout found: neither {} nor any folder above it has deploy/scripts or deploy/config",
            self.searched_from.display()
        )
    }
}

impl std::error::Error for NoProjectRoot {}

/// What is wrong with a project root given by flag or variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRoot {
    Missing,
    NotADirectory,
    NoDeployFolder,
}

/// A project root named by `origin` (a flag or variable) that is not a
/// checkout: refused before anything is read or created in it.
#[derive(Debug, Clone, PartialEq)]
pub struct BadProjectRoot {
    pub path: PathBuf,
    pub origin: String,
    pub why: BadRoot,
}

impl fmt::Display for BadProjectRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.why {
            BadRoot::Missing => "does not exist",
            BadRoot::NotADirectory => "is not a folder",
            BadRoot::NoDeployFolder => "has no deploy/ folder",
        };
        write!(f, "{} {} {what}", self.origin, self.path.display())
    }
}

/// Why [`Context::resolve`] failed.
#[derive(Debug)]
pub enum ResolveError {
    Setting(SettingError),
    NoCheckout(NoProjectRoot),
    BadProjectRoot(BadProjectRoot),
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::Setting(e) => e.fmt(f),
            ResolveError::NoCheckout(e) => e.fmt(f),
            ResolveError::BadProjectRoot(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for ResolveError {}

impl Context {
    /// The single resolution of settings and checkout, for both personas.
    ///
    /// The checkout is, in order: the `project_root` input (flag or
    /// variable); for a script invoked from a `deploy/scripts/` folder, the
    /// folder two levels above it (the legacy rule); else the nearest folder
    /// above `cwd` holding `deploy/scripts` or `deploy/config`. `cwd` is the
    /// physical working directory (git's rule: `std::env::current_dir`, never
    /// `$PWD`), so a shortcut (symlink) into a checkout's `deploy/` folder
    /// finds that checkout.
    ///
    /// A project root given by flag or variable must be a folder with a
    /// `deploy/` folder in it (nothing is created in a mistyped one).
    pub fn resolve(
        inputs: &SettingInputs,
        script: Option<&Path>,
        cwd: &Path,
    ) -> Result<Context, ResolveError> {
        Context::resolve_with(inputs, script, cwd, false)
    }

    /// [`Context::resolve`] for operations that need only the lock (status,
    /// wait): no checkout found is not an error but a context without a
    /// state file ([`Context::no_checkout`]).
    pub fn resolve_lock_only(
        inputs: &SettingInputs,
        script: Option<&Path>,
        cwd: &Path,
    ) -> Result<Context, ResolveError> {
        Context::resolve_with(inputs, script, cwd, true)
    }

    fn resolve_with(
        inputs: &SettingInputs,
        script: Option<&Path>,
        cwd: &Path,
        lock_only: bool,
    ) -> Result<Context, ResolveError> {
        let settings = inputs.settings().map_err(ResolveError::Setting)?;
        let given = inputs.project_root.as_ref().filter(|r| !r.value.is_empty());
        let root = match given {
            Some(r) => {
                let path = PathBuf::from(&r.value);
                let bad = |why| {
                    ResolveError::BadProjectRoot(BadProjectRoot {
                        path: path.clone(),
                        origin: r.origin.clone(),
                        why,
                    })
                };
                match std::fs::metadata(&path) {
                    Err(_) => return Err(bad(BadRoot::Missing)),
                    Ok(m) if !m.is_dir() => return Err(bad(BadRoot::NotADirectory)),
                    Ok(_) if !path.join("deploy").is_dir() => {
                        return Err(bad(BadRoot::NoDeployFolder));
                    }
                    Ok(_) => path,
                }
            }
            None => match script.and_then(|s| script_project_root(s, cwd)) {
                Some(r) => r,
                None => match find_project_root(cwd) {
                    Ok(r) => r,
                    Err(e) if lock_only => {
                        let mut ctx = Context::new(settings, PathBuf::new());
                        ctx.state_file = PathBuf::new();
                        ctx.no_checkout = Some(e);
                        return Ok(ctx);
                    }
                    Err(e) => return Err(ResolveError::NoCheckout(e)),
                },
            },
        };
        Ok(Context::new(settings, root))
    }
}

/// The nearest ancestor of `start` (itself included) holding `deploy/scripts`
/// or `deploy/config`.
pub fn find_project_root(start: &Path) -> Result<PathBuf, NoProjectRoot> {
    start
        .ancestors()
        .find(|dir| dir.join("deploy/scripts").is_dir() || dir.join("deploy/config").is_dir())
        .map(Path::to_path_buf)
        .ok_or_else(|| NoProjectRoot {
            searched_from: start.to_path_buf(),
        })
}

/// The project root for a script invoked as `invoked` (`argv[0]`), the way the
/// legacy computed it: `cd "$(dirname "$0")/../.." && pwd`. That walk is
/// lexical (bash's `cd` without -P), so `..` is removed lexically and
/// symlinks in the typed path stay as typed; a relative path starts at the
/// physical `cwd`. Returns None when the script is not inside a
/// `deploy/scripts` folder (e.g. installed on PATH).
pub fn script_project_root(invoked: &Path, cwd: &Path) -> Option<PathBuf> {
    let dir = invoked.parent()?;
    let abs = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        cwd.join(dir)
    };
    let dir = lexical_normalize(&abs);
    let scripts = dir.file_name()?;
    let deploy = dir.parent()?.file_name()?;
    if scripts != "scripts" || deploy != "deploy" {
        return None;
    }
    dir.parent()?.parent().map(Path::to_path_buf)
}

/// `.` dropped and `..` applied to the preceding component, as bash's logical
/// `cd` does.
pub fn lexical_normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("/");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    if out.as_os_str().is_empty() {
        out.push("/");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_project_root_must_be_a_checkout_and_lock_only_needs_none() {
        let t = tempfile::tempdir().unwrap();
        let inputs = |root: &Path| SettingInputs {
            project_root: Some(Raw::new(root, "--project-root")),
            ..SettingInputs::default()
        };
        let why = |root: &Path| match Context::resolve(&inputs(root), None, t.path()) {
            Err(ResolveError::BadProjectRoot(e)) => Some(e.why),
            _ => None,
        };
        assert_eq!(why(&t.path().join("nope")), Some(BadRoot::Missing));
        assert_eq!(why(t.path()), Some(BadRoot::NoDeployFolder));
        std::fs::write(t.path().join("f"), "").unwrap();
        assert_eq!(why(&t.path().join("f")), Some(BadRoot::NotADirectory));
        std::fs::create_dir(t.path().join("deploy")).unwrap();
        assert_eq!(why(t.path()), None);
        // No checkout around the working directory: an error for run, a
        // context without a state file for status and wait.
        let none = SettingInputs::default();
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            Context::resolve(&none, None, empty.path()),
            Err(ResolveError::NoCheckout(_))
        ));
        let ctx = Context::resolve_lock_only(&none, None, empty.path()).unwrap();
        assert_eq!(
            ctx.no_checkout.map(|e| e.searched_from),
            Some(empty.path().to_path_buf())
        );
    }

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn settings_defaults_and_overrides() {
        assert_eq!(Settings::from_vars(vars(&[])).unwrap(), Settings::default());
        let s = Settings::from_vars(vars(&[
            (ENV_LOCK_DIR, "/var/tmp/x"),
            (ENV_STALE_SECS, "60"),
            (ENV_WAIT_INTERVAL, "0.25"),
            (ENV_WAIT_TIMEOUT, "2"),
        ]))
        .unwrap();
        assert_eq!(s.lock_root, PathBuf::from("/var/tmp/x"));
        assert_eq!(s.stale_after, Duration::from_secs(60));
        assert_eq!(s.wait_interval, Duration::from_millis(250));
        assert_eq!(s.wait_timeout, Duration::from_secs(2));
        assert_eq!(
            s.lock_dir(Environment::Staging),
            PathBuf::from("/var/tmp/x/togather-deploy-staging.lock")
        );
    }

    #[test]
    fn bad_settings_name_the_variable_and_value() {
        let e = Settings::from_vars(vars(&[(ENV_STALE_SECS, "soon")])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid DEPLOY_LOCK_STALE_SECS 'soon': expected a whole number of seconds from 0 to 1000000000, e.g. 1800"
        );
        // Too large to mean anything (it used to wrap negative).
        let e = Settings::from_vars(vars(&[(ENV_STALE_SECS, "9223372036854775808")])).unwrap_err();
        assert_eq!(e.name, ENV_STALE_SECS);
        assert!(Settings::from_vars(vars(&[(ENV_STALE_SECS, "1000000001")])).is_err());
        assert!(Settings::from_vars(vars(&[(ENV_WAIT_TIMEOUT, "1e300")])).is_err());
        assert!(Settings::from_vars(vars(&[(ENV_WAIT_INTERVAL, "0")])).is_err());
        assert!(Settings::from_vars(vars(&[(ENV_WAIT_INTERVAL, "-1")])).is_err());
        assert!(Settings::from_vars(vars(&[(ENV_WAIT_TIMEOUT, "NaN")])).is_err());
    }

    #[test]
    fn script_root_is_two_levels_above_the_script_dir() {
        let cwd = Path::new("/home/u/app");
        assert_eq!(
            script_project_root(Path::new("./deploy/scripts/unlock.sh"), cwd),
            Some(PathBuf::from("/home/u/app"))
        );
        assert_eq!(
            script_project_root(Path::new("/opt/x/deploy/scripts/unlock.sh"), cwd),
            Some(PathBuf::from("/opt/x"))
        );
        assert_eq!(
            script_project_root(Path::new("../app/deploy/scripts/../scripts/unlock.sh"), cwd),
            Some(PathBuf::from("/home/u/app"))
        );
        assert_eq!(script_project_root(Path::new("unlock.sh"), cwd), None);
        assert_eq!(
            script_project_root(Path::new("/usr/local/bin/unlock.sh"), cwd),
            None
        );
    }

    #[test]
    fn lexical_normalize_never_climbs_above_root() {
        assert_eq!(
            lexical_normalize(Path::new("/a/../../b")),
            PathBuf::from("/b")
        );
        assert_eq!(
            lexical_normalize(Path::new("/a/./b/..")),
            PathBuf::from("/a")
        );
    }
}
