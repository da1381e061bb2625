//! The checkout's `deploy/config/deployment-state.json`: read it strictly, view
//! its `lock` record, and rewrite it atomically under an flock, keeping every
//! key we do not own exactly as it was.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::fsops;

/// The state file could not be used. Display is one line naming the file.
#[derive(Debug)]
pub enum StateError {
    Io {
        path: PathBuf,
        source: io::Error,
    },
    /// Not JSON; line and column as the parser reports them (1-based line).
    Parse {
        path: PathBuf,
        message: String,
        line: usize,
        column: usize,
    },
    /// Valid JSON, but not an object at the top (or `lock` is not an object).
    Shape {
        path: PathBuf,
        what: String,
        /// The top level is an object and only `lock` is wrong, so the lock
        /// record alone can be reset.
        only_lock: bool,
    },
}

impl StateError {
    pub fn path(&self) -> &Path {
        match self {
            StateError::Io { path, .. }
            | StateError::Parse { path, .. }
            | StateError::Shape { path, .. } => path,
        }
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Io { path, source } => {
                write!(f, "cannot use state file {}: {source}", path.display())
            }
            StateError::Parse {
                path,
                message,
                line,
                column,
            } => write!(
                f,
                "state file {} is not valid JSON: {message} (line {line}, column {column})",
                path.display()
            ),
            StateError::Shape { path, what, .. } => {
                write!(f, "state file {} is not usable: {what}", path.display())
            }
        }
    }
}

impl std::error::Error for StateError {}

/// serde_json reports an error found at a newline as column 0 of the next
/// line; a person looks for it at the end of the line before.
fn position(bytes: &[u8], line: usize, column: usize) -> (usize, usize) {
    if column > 0 || line < 2 {
        return (line, column);
    }
    let prev = bytes.split(|&b| b == b'\n').nth(line - 2).unwrap_or(&[]);
    (
        line - 1,
        String::from_utf8_lossy(prev).chars().count().max(1),
    )
}

/// How long a state file that does not parse is re-read before it is
/// called corrupt (see [`StateDoc::load`]).
pub const REREAD_WITHIN: std::time::Duration = std::time::Duration::from_millis(200);

/// Whether the file was modified within [`REREAD_WITHIN`]: a writer may
/// still be at it. The modification time, not the inode's change time: a
/// writer in progress keeps it at now (`mv` across file systems copies the
/// data, then sets the source's time, which jq set a moment before), and
/// it is what `touch -d` can date back. A time in the future (the clock was
/// set back) or a file that cannot be looked at counts as recent, which
/// only costs the wait.
fn modified_lately(path: &Path) -> bool {
    let Ok(modified) = std::fs::metadata(path).and_then(|m| m.modified()) else {
        return true;
    };
    std::time::SystemTime::now()
        .duration_since(modified)
        .map_or(true, |age| age < REREAD_WITHIN)
}

/// A parsed state file: a JSON object, keys in their original order.
#[derive(Clone, Debug, PartialEq)]
pub struct StateDoc {
    pub root: Map<String, Value>,
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl StateDoc {
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<StateDoc, StateError> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            let full = e.to_string();
            // serde_json appends " at line L column C"; we report those apart.
            let message = match full.rfind(" at line ") {
                Some(i) => full[..i].to_string(),
                None => full,
            };
            let (line, column) = position(bytes, e.line(), e.column());
            StateError::Parse {
                path: path.to_path_buf(),
                message,
                line,
                column,
            }
        })?;
        match value {
            Value::Object(root) => {
                if let Some(lock) = root.get("lock")
                    && !lock.is_object()
                    && !lock.is_null()
                {
                    return Err(StateError::Shape {
                        path: path.to_path_buf(),
                        what: format!("\"lock\" is {}, expected an object", json_type(lock)),
                        only_lock: true,
                    });
                }
                Ok(StateDoc { root })
            }
            other => Err(StateError::Shape {
                path: path.to_path_buf(),
                what: format!("the top level is {}, expected an object", json_type(&other)),
                only_lock: false,
            }),
        }
    }

    /// Loads the file; Ok(None) when it does not exist.
    ///
    /// A file that does not parse, and was modified within the last 200 ms,
    /// is read again until it is 200 ms old before it is called corrupt:
    /// the legacy deploy.sh writes it with `jq > tmp; mv tmp FILE`, and
    /// with the temp file on another filesystem that `mv` is an unlink and
    /// a copy, so a reader can see the file empty or half written for a
    /// moment. A file not modified for longer is not being written: it is
    /// refused at once, so a corrupt file costs no wait.
    pub fn load(path: &Path) -> Result<Option<StateDoc>, StateError> {
        let pause = std::time::Duration::from_millis(5);
        let until = std::time::Instant::now() + REREAD_WITHIN;
        loop {
            match StateDoc::load_once(path) {
                Err(StateError::Parse { .. })
                    if std::time::Instant::now() < until && modified_lately(path) =>
                {
                    std::thread::sleep(pause);
                }
                other => return other,
            }
        }
    }

    fn load_once(path: &Path) -> Result<Option<StateDoc>, StateError> {
        match read_regular_file(path) {
            Ok(bytes) => StateDoc::parse(path, &bytes).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Io {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The top-level `environment` the current lock record belongs to.
    pub fn environment(&self) -> Option<&str> {
        self.root.get("environment").and_then(Value::as_str)
    }

    pub fn lock(&self) -> Option<&Map<String, Value>> {
        self.root.get("lock").and_then(Value::as_object)
    }

    pub fn lock_field(&self, key: &str) -> Option<&Value> {
        self.lock().and_then(|l| l.get(key))
    }

    /// `lock.locked` is the JSON boolean true (the only way the legacy reads
    /// "locked").
    pub fn is_locked(&self) -> bool {
        self.lock_field("locked") == Some(&Value::Bool(true))
    }

    pub fn lock_str(&self, key: &str) -> Option<&str> {
        self.lock_field(key).and_then(Value::as_str)
    }

    pub fn lock_mut(&mut self) -> &mut Map<String, Value> {
        let slot = self
            .root
            .entry("lock")
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        slot.as_object_mut().expect("just made an object")
    }

    /// Pretty-printed with two-space indents and a final newline, as jq wrote it.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = serde_json::to_vec_pretty(&self.root).expect("a JSON map always serialises");
        out.push(b'\n');
        out
    }
}

/// Reads a regular file. Anything else at the path is refused before a byte
/// is read: a FIFO would block the open (and so every command) forever, and a
/// device such as /dev/zero never ends.
fn read_regular_file(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file but {}", fsops::file_type_name(&meta)),
        ));
    }
    // Through `take`, whose read_to_end fills the sized buffer without a
    // second fstat and an lseek of its own (File's asks both for a size hint
    // we already have). The limit is no limit: a file that grew since the
    // fstat is still read whole.
    let mut bytes = Vec::with_capacity(meta.len() as usize + 1);
    (&mut f).take(u64::MAX).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The state file's bytes and mode for `--reset-state`, which copies them
/// beside it: opened without following a symlink (a symlink planted there
/// would make us copy its target, another user's private file, into a file
/// the planter can read), and only a regular file owned by us or root.
fn read_for_reset(path: &Path) -> io::Result<(Vec<u8>, std::fs::Permissions)> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not reset: it is a symbolic link, which --reset-state never follows; \
                 check where it points (ls -la) and put the real file there",
            ));
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file but {}", fsops::file_type_name(&meta)),
        ));
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me && meta.uid() != 0 {
        let owner = crate::accounts::user_name(meta.uid()).map_or_else(
            || format!("uid {}", meta.uid()),
            |n| format!("{n} (uid {})", meta.uid()),
        );
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "not reset: it is owned by {owner}, not by you or root; ask its owner (or \
                 root) to run --reset-state"
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.read_to_end(&mut bytes)?;
    Ok((bytes, meta.permissions()))
}

/// Sidecar flock file serialising read-modify-write of the state file.
pub fn sidecar_lock_path(state_file: &Path) -> PathBuf {
    let mut name = state_file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".lock");
    state_file.with_file_name(name)
}

/// Removes `.NAME.tmp.PID` files that `fsops::atomic_write` left when its
/// process was killed between creating and renaming one. Only called under
/// the sidecar flock, which every writer holds while writing: any such file
/// then belongs to a writer that is gone.
fn remove_leftover_temp_files(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".tmp.");
    let prefix = prefix.as_encoded_bytes().to_vec();
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let n = n.as_encoded_bytes();
        if n.len() > prefix.len()
            && n.starts_with(&prefix)
            && n[prefix.len()..].iter().all(u8::is_ascii_digit)
            && e.file_type().is_ok_and(|t| t.is_file())
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// What an update closure decided.
pub enum Edit<T> {
    /// Write the document back.
    Write(T),
    /// Leave the file as it is.
    Keep(T),
}

/// Read-modify-write under the sidecar flock, so two processes updating the
/// same checkout never lose each other's changes. `edit` receives the current
/// document (None if there is no file). A file that does not parse is never
/// passed to `edit` and never rewritten. `create` says whether a missing file
/// (and its folder) may be created.
pub fn update<T, E: From<StateError>>(
    path: &Path,
    create: bool,
    edit: impl FnOnce(Option<&mut StateDoc>) -> Result<Edit<T>, E>,
) -> Result<T, E> {
    update_noting_creation(path, create, |doc, _| edit(doc))
}

/// [`update`] whose `edit` also learns whether the document is new (the file
/// did not exist and is being created): the top-level `environment` is
/// written only then, as the legacy deploy.sh did, because the legacy's
/// release removes the lock directory that key names.
pub fn update_noting_creation<T, E: From<StateError>>(
    path: &Path,
    create: bool,
    edit: impl FnOnce(Option<&mut StateDoc>, bool) -> Result<Edit<T>, E>,
) -> Result<T, E> {
    let io_err = |source: io::Error| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    if create && let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    let sidecar = sidecar_lock_path(path);
    let _guard = match fsops::flock_exclusive(&sidecar) {
        Ok(g) => Some(g),
        // A checkout we may read but not write into (another user's): without
        // the sidecar we cannot write the state either, so go on unguarded and
        // let the write report the real error.
        Err(e) if !create && e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(e).into()),
    };
    if _guard.is_some() {
        remove_leftover_temp_files(path);
    }
    let mut doc = StateDoc::load(path)?;
    let existed = doc.is_some();
    if doc.is_none() && create {
        doc = Some(StateDoc { root: Map::new() });
    }
    match edit(doc.as_mut(), !existed)? {
        Edit::Keep(t) => Ok(t),
        Edit::Write(t) => {
            if let Some(doc) = doc
                && (existed || create)
            {
                fsops::atomic_write(path, &doc.to_bytes()).map_err(io_err)?;
            }
            Ok(t)
        }
    }
}

/// What [`reset`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reset {
    /// The unusable file was copied to `backup` (same bytes, same mode) and
    /// replaced by a fresh state with the lock released.
    Done { backup: PathBuf },
    /// The file parses (again): nothing was changed.
    Usable,
    /// There is no state file: nothing was changed.
    Missing,
}

/// Replaces an unusable state file (not JSON, or not the documented shape)
/// under the sidecar flock: first a byte-for-byte backup beside it named
/// with the time (`deployment-state.json.corrupt-20260203T202546Z`, a
/// counter added if that name is taken), then a fresh file holding only
/// `environment` and `"lock": {"locked": false}`, written atomically. A file
/// that parses is left alone: it has keys other tools own.
pub fn reset(path: &Path, environment: &str, stamp: &str) -> Result<Reset, StateError> {
    let io_err = |source: io::Error| StateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let sidecar = sidecar_lock_path(path);
    let _guard = fsops::flock_exclusive(&sidecar).map_err(io_err)?;
    let (bytes, mode) = match read_for_reset(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Reset::Missing),
        Err(e) => return Err(io_err(e)),
    };
    if StateDoc::parse(path, &bytes).is_ok() {
        return Ok(Reset::Usable);
    }
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".corrupt-{stamp}"));
    let first = path.with_file_name(&name);
    let mut backup = first.clone();
    let mut n = 1;
    let mut file = loop {
        use std::os::unix::fs::OpenOptionsExt;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&backup)
        {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100 => {
                n += 1;
                let mut other = name.clone();
                other.push(format!("-{n}"));
                backup = path.with_file_name(other);
            }
            Err(e) => return Err(io_err(e)),
        }
    };
    let copied = (|| {
        use std::io::Write;
        file.write_all(&bytes)?;
        file.set_permissions(mode)?;
        file.sync_all()
    })();
    if let Err(e) = copied {
        let _ = std::fs::remove_file(&backup);
        return Err(io_err(e));
    }
    let mut root = Map::new();
    root.insert("environment".into(), Value::String(environment.into()));
    root.insert("lock".into(), serde_json::json!({ "locked": false }));
    fsops::atomic_write(path, &StateDoc { root }.to_bytes()).map_err(io_err)?;
    Ok(Reset::Done { backup })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_carry_position() {
        let e = StateDoc::parse(
            Path::new("/x/s.json"),
            b"{\n  \"lock\": {\n    \"locked\": nope\n}",
        )
        .unwrap_err();
        match &e {
            StateError::Parse { line, .. } => assert_eq!(*line, 3),
            other => panic!("{other:?}"),
        }
        assert!(
            e.to_string()
                .starts_with("state file /x/s.json is not valid JSON: ")
        );
    }

    #[test]
    fn shapes_are_checked() {
        assert!(matches!(
            StateDoc::parse(Path::new("s"), b"[1]"),
            Err(StateError::Shape { .. })
        ));
        assert!(matches!(
            StateDoc::parse(Path::new("s"), b"{\"lock\": [1]}"),
            Err(StateError::Shape { .. })
        ));
        assert!(StateDoc::parse(Path::new("s"), b"{\"lock\": null}").is_ok());
    }

    #[test]
    fn rewrite_keeps_unknown_keys_order_and_number_digits() {
        // Digits are kept exactly; only an exponent gains its explicit sign.
        let src = b"{\"zeta\": 1.50, \"lock\": {\"locked\": true, \"x\": 1e3}, \"alpha\": [10000000000000000000001]}";
        let mut doc = StateDoc::parse(Path::new("s"), src).unwrap();
        doc.lock_mut().insert("locked".into(), Value::Bool(false));
        let out = String::from_utf8(doc.to_bytes()).unwrap();
        assert_eq!(
            out,
            "{\n  \"zeta\": 1.50,\n  \"lock\": {\n    \"locked\": false,\n    \"x\": 1e+3\n  },\n  \"alpha\": [\n    10000000000000000000001\n  ]\n}\n"
        );
    }

    #[test]
    fn update_sweeps_temp_files_left_by_killed_writers() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.json");
        std::fs::write(&p, b"{}").unwrap();
        std::fs::write(t.path().join(".s.json.tmp.12345"), b"{half").unwrap();
        std::fs::write(t.path().join(".s.json.tmp.x"), b"not ours").unwrap();
        std::fs::write(t.path().join(".other.json.tmp.1"), b"not ours").unwrap();
        let r: Result<(), StateError> = update(&p, false, |_| Ok(Edit::Keep(())));
        r.unwrap();
        let mut names: Vec<String> = std::fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".other.json.tmp.1",
                ".s.json.tmp.x",
                "s.json",
                "s.json.lock"
            ]
        );
    }

    #[test]
    fn update_never_rewrites_an_unparsable_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.json");
        std::fs::write(&p, b"{broken").unwrap();
        let r: Result<(), StateError> = update(&p, true, |_| Ok(Edit::Write(())));
        assert!(matches!(r, Err(StateError::Parse { .. })));
        assert_eq!(std::fs::read(&p).unwrap(), b"{broken");
    }

    #[test]
    fn reset_keeps_the_unusable_file_as_a_backup_and_leaves_a_usable_one() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("s.json");
        std::fs::write(&p, b"{broken").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let stamp = "20260203T202546Z";
        let Reset::Done { backup } = reset(&p, "staging", stamp).unwrap() else {
            panic!("not reset")
        };
        assert_eq!(backup, t.path().join("s.json.corrupt-20260203T202546Z"));
        assert_eq!(std::fs::read(&backup).unwrap(), b"{broken");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&backup), mode(&p)), (0o640, 0o640));
        let fresh = StateDoc::load(&p).unwrap().unwrap();
        assert_eq!(fresh.environment(), Some("staging"));
        assert!(!fresh.is_locked());
        // Usable now: left alone. Broken again in the same second: a second
        // backup beside the first.
        assert_eq!(reset(&p, "staging", stamp).unwrap(), Reset::Usable);
        std::fs::write(&p, b"[1]").unwrap();
        let Reset::Done { backup } = reset(&p, "staging", stamp).unwrap() else {
            panic!("not reset")
        };
        assert_eq!(backup, t.path().join("s.json.corrupt-20260203T202546Z-2"));
        assert_eq!(
            reset(&t.path().join("none.json"), "staging", stamp).unwrap(),
            Reset::Missing
        );
    }
}
