//! Every way an invocation can end other than success, as one type, and the
//! exit code each means for each persona. Only `main` turns a [`Failure`]
//! into text (through `report`) and an exit status.
//!
//! | kind | `deploy-lock` | `unlock.sh` |
//! | --- | --- | --- |
//! | usage (clap, ours, settings, no checkout, an untrusted checkout) | 2 | 1 |
//! | data (state file not JSON / not the shape) | 65 | 1 |
//! | I/O (a file, ssh, our own stdout) | 74 | 1 |
//! | held (live holder, not stale, obstructed; `check`: token not the holder) | 75 | 1 |
//! | timed out | 124 | 1 |
//! | cancelled at the confirmation, or no answer | 1 | 0 (legacy) |
//! | `status --quiet`: a run would not start now | 75 | - |
//! | command not executable / not found | 126 / 127 | - |
//! | signal while waiting for the lock | death by that signal (128+N if it survives) | - |
//! | lock lost while the command ran (etcd) | 76 | - |
//! | stdout closed by the reader | quiet, 0 | quiet, 0 |

use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use deploy_lock::Environment;
use deploy_lock::context::{BadProjectRoot, NoProjectRoot, SettingError};
use deploy_lock::lock::{BusyReason, LockError};
use deploy_lock::state::StateError;
use deploy_lock::status::{Holder, Inspection};
use deploy_lock::store::{LockStore, RunHolder};
use deploy_lock::trust::UntrustedCheckout;

use super::remote::{Remote, RemoteError};
use super::request::Persona;

pub const USAGE: i32 = 2;
pub const DATA: i32 = 65;
pub const IO: i32 = 74;
pub const HELD: i32 = 75;
pub const TIMED_OUT: i32 = 124;
/// run: the lock was lost while the command ran (a network store's lease
/// expired or was revoked), whatever the command's own end.
pub const LOST: i32 = 76;
pub const CANCELLED: i32 = 1;
pub const NOT_EXECUTABLE: i32 = 126;
pub const NOT_FOUND: i32 = 127;
/// The legacy `unlock.sh`: everything that is not success.
pub const LEGACY: i32 = 1;

/// One exit status as the documentation says it, per persona (an empty
/// `unlock_sh`: that persona never exits so).
pub struct ExitRow {
    pub code: &'static str,
    /// A few words, for `--help`.
    pub brief: &'static str,
    pub deploy_lock: &'static str,
    pub unlock_sh: &'static str,
}

/// Every exit status, in the words every list of them uses: the man pages'
/// EXIT STATUS (deploy-lock(1), unlock.sh(1)), `--help`'s summary, and
/// README's table, which a test compares with [`exit_table_markdown`], so
/// none of them can drift from the others or from [`Failure::code`]
/// (another test checks that each code it returns is a row here).
/// Backquotes mark code in the README; the man pages drop them.
pub const EXIT_TABLE: &[ExitRow] = &[
    ExitRow {
        code: "0",
        brief: "success",
        deploy_lock: "success; `status --quiet`: a run would start now",
        unlock_sh: "success, also a force unlock cancelled at the confirmation (any answer but `yes`, or none), as the legacy script did",
    },
    ExitRow {
        code: "1",
        brief: "unlock cancelled or unanswered",
        deploy_lock: "`unlock`: cancelled at the confirmation, or no answer on stdin without a terminal (nothing changed)",
        unlock_sh: "usage error, invalid environment or action, `--wait` timed out, a state file that is not valid JSON (left untouched), an I/O error; with `--remote`, ssh could not run it",
    },
    ExitRow {
        code: "2",
        brief: "usage error",
        deploy_lock: "usage error: a bad flag, value, environment or setting, no checkout, a checkout owned by someone you do not trust",
        unlock_sh: "",
    },
    ExitRow {
        code: "65",
        brief: "state file not valid",
        deploy_lock: "the state file is not valid JSON or not the documented shape (left untouched; the recovery commands are printed)",
        unlock_sh: "",
    },
    ExitRow {
        code: "74",
        brief: "I/O error",
        deploy_lock: "I/O error: a file or folder could not be read or written (also deploy-lock's own output), the lock folder is missing or not writable, etcd or the `--remote` host could not be reached",
        unlock_sh: "",
    },
    ExitRow {
        code: "75",
        brief: "lock held",
        deploy_lock: "the lock is held: `run` refused; an `unlock` found the lock changed hands since it was shown; `wait` for a holder that is not running; `check`: the token no longer holds the lock; `status --quiet`: a run would not start now",
        unlock_sh: "",
    },
    ExitRow {
        code: "76",
        brief: "lock lost while running",
        deploy_lock: "`run`: the lock (etcd) was lost while the command ran, however the command ended",
        unlock_sh: "",
    },
    ExitRow {
        code: "124",
        brief: "wait timed out",
        deploy_lock: "waiting for the lock timed out (`run --wait`, `wait`)",
        unlock_sh: "",
    },
    ExitRow {
        code: "126, 127",
        brief: "command not executable / not found",
        deploy_lock: "`run`: the command could not be executed / was not found (127 also for a checkout without deploy/scripts/deploy.sh)",
        unlock_sh: "",
    },
    ExitRow {
        code: "128+N",
        brief: "signal N while waiting",
        deploy_lock: "signal N ended the wait for the lock (`run --wait`, `wait`): deploy-lock dies of that signal, as flock(1) does, so a shell shows 128+N; nothing was started",
        unlock_sh: "",
    },
    ExitRow {
        code: "other",
        brief: "run: the command's own status",
        deploy_lock: "`run`: the command's own exit status; a command killed by a signal kills deploy-lock by the same signal (a shell shows 128+N). With `--remote`: the server's exit status",
        unlock_sh: "with `--remote`: the server's exit status",
    },
    ExitRow {
        code: "N",
        brief: "--conflict-exit-code N instead of 75, 124, 76",
        deploy_lock: "`run --conflict-exit-code N` (or `DEPLOY_LOCK_CONFLICT_EXIT=N`), like `flock -E`: a refusal, a `--wait` that gave up and a lost lock exit N instead of 75, 124 and 76, so that the command's own 75 cannot be mistaken for them; other errors keep their codes",
        unlock_sh: "",
    },
];

/// README's exit-status table, exactly as it must read there.
#[cfg(test)]
fn exit_table_markdown() -> String {
    let mut out = String::from("| code | `deploy-lock` | `unlock.sh` |\n| --- | --- | --- |\n");
    for r in EXIT_TABLE {
        let legacy = match r.unlock_sh {
            "" => " ".to_string(),
            text => format!(" {text} "),
        };
        out.push_str(&format!("| {} | {} |{legacy}|\n", r.code, r.deploy_lock));
    }
    out
}

/// `--help`'s summary: every code in a few words, wrapped as the rest of
/// the help is.
pub fn exit_summary() -> String {
    let codes: Vec<String> = EXIT_TABLE
        .iter()
        .map(|r| match r.code {
            "other" | "N" => r.brief.to_string(),
            code => format!("{code} {}", r.brief),
        })
        .collect();
    let text = format!(
        "Exit status: {}. Every case in full: EXIT STATUS in deploy-lock(1).",
        codes.join("; ")
    );
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        if !line.is_empty() && line.len() + 1 + word.len() > 76 {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

/// The legacy parser's refusals (printed on stdout, as the bash script did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyUsage {
    /// No environment: the usage text with `$0`.
    NoEnvironment {
        invoked: String,
    },
    InvalidEnvironment(String),
    InvalidAction(String),
}

/// Why a lock could not be taken (run without `--wait`).
#[derive(Debug)]
pub struct Busy {
    pub env: Environment,
    pub reason: BusyReason,
    /// For another deploy-lock run's kernel lock: that run, when known.
    pub run_holder: Option<RunHolder>,
    pub inspection: Box<Inspection>,
    pub stale_after: Duration,
    /// The live holder runs on this host under the caller's uid (`kill`
    /// is then worth suggesting).
    pub holder_is_callers: bool,
    /// The run file is flocked by a process that is not a deploy-lock run.
    pub squatter: Option<deploy_lock::lock::runlock::FlockHolder>,
    /// The user's words, for the retry command.
    pub typed: super::request::Typed,
}

#[derive(Debug)]
pub enum Failure {
    /// clap's own usage error, rendered by clap.
    Clap(clap::Error),
    /// A usage error of ours, one line.
    Usage(String),
    LegacyUsage(LegacyUsage),
    Setting(SettingError),
    NoCheckout(NoProjectRoot),
    /// `--project-root` (or its variable) names no checkout.
    BadProjectRoot(BadProjectRoot),
    /// The checkout is owned by someone the caller does not trust.
    Untrusted(UntrustedCheckout),
    /// `wait`: the run file is flocked by a process that is not a
    /// deploy-lock run; the lock directory going away would not free it.
    RunFileSquatted {
        env: Environment,
        run_file: PathBuf,
        holder: deploy_lock::lock::runlock::FlockHolder,
    },
    Lock(LockError),
    /// The state file is not usable, for an operation on `env` (the modern
    /// recovery advice names the environment).
    State {
        env: Option<Environment>,
        error: LockError,
        /// The environment's lock directory exists and its holder is not
        /// known to be dead: `--reset-state` (which removes it) is not advised.
        live_lock: bool,
    },
    /// `status --quiet`: a run would not start now. Nothing to print.
    NotFree,
    /// unlock without a terminal and no answer on stdin (EOF).
    NoAnswer,
    Held(Box<Busy>),
    /// A live deployment holds the lock on a server.
    ServerHeld {
        env: Environment,
        remote: Remote,
        /// The server's status, as `status --json` has it.
        status: Box<serde_json::Value>,
        /// The user's words, for the retry command.
        typed: super::request::Typed,
    },
    /// The server's status query failed with this exit code (its own
    /// message already passed through).
    ServerExit(i32),
    /// The server's status could not be read as JSON.
    ServerAnswer(String),
    /// A wait gave up. `phrase` says what was waited for (run), or None when
    /// the legacy timeout text was already printed (wait).
    TimedOut {
        env: Environment,
        limit: Duration,
        phrase: Option<String>,
    },
    Cancelled,
    /// A force-unlock found another lock than the one shown: nothing changed.
    ChangedHands {
        env: Environment,
        now: Option<Box<Holder>>,
    },
    /// `unlock --id ID` where ID is not the lock's (checked before anything
    /// is shown or asked): the current id, or none when no record names one.
    WrongId {
        env: Environment,
        given: String,
        current: Option<String>,
    },
    /// `wait` for a lock whose holder is dead: it would never end.
    WaitForDead {
        env: Environment,
        pid: Option<i32>,
    },
    Remote(RemoteError),
    /// A file or folder (or signal set-up) failed; `what` says which.
    Io {
        what: String,
        source: io::Error,
    },
    /// Writing our own output failed (a full disk, a closed pipe).
    Output(io::Error),
    /// run: the command could not be started.
    CannotRun {
        program: PathBuf,
        source: io::Error,
    },
    /// run: deploy.sh (the default command) is not in the checkout.
    NoDeployScript {
        path: PathBuf,
        env: Environment,
    },
    /// A signal ended the wait for the lock before the command started.
    Interrupted(i32),
    /// check: the token no longer holds the lock.
    NotHolder {
        env: Environment,
        token: i64,
    },
    /// run: the lock was lost while the command ran (already said, loudly,
    /// when it happened), however the command ended.
    LockLost,
    /// run: deploy.sh words and a command after `--` at once.
    ArgsAndCommand {
        words: Vec<OsString>,
    },
    /// run --conflict-exit-code N: a conflict ([`Failure::is_conflict`])
    /// said as itself, exiting N.
    Conflict {
        code: i32,
        failure: Box<Failure>,
    },
}

impl Failure {
    /// What --conflict-exit-code renumbers: the lock refused (held), a
    /// --wait that gave up, the lock lost while the command ran. Never the
    /// command's own exit, a usage error or an I/O failure.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            Failure::Held(_) | Failure::TimedOut { .. } | Failure::LockLost
        ) || matches!(self, Failure::Lock(e) if lock_error_code(e) == HELD)
    }

    pub fn code(&self, persona: Persona) -> i32 {
        let modern = match self {
            Failure::Conflict { code, .. } => *code,
            Failure::Clap(_)
            | Failure::Usage(_)
            | Failure::LegacyUsage(_)
            | Failure::Setting(_)
            | Failure::NoCheckout(_)
            | Failure::BadProjectRoot(_)
            | Failure::Untrusted(_)
            | Failure::ArgsAndCommand { .. } => USAGE,
            Failure::Lock(e) | Failure::State { error: e, .. } => lock_error_code(e),
            Failure::NotFree => HELD,
            Failure::NoAnswer => CANCELLED,
            Failure::Held(_)
            | Failure::ServerHeld { .. }
            | Failure::ChangedHands { .. }
            | Failure::WrongId { .. }
            | Failure::WaitForDead { .. }
            | Failure::NotHolder { .. }
            | Failure::RunFileSquatted { .. } => HELD,
            Failure::TimedOut { .. } => TIMED_OUT,
            Failure::Cancelled => CANCELLED,
            Failure::Remote(_)
            | Failure::ServerAnswer(_)
            | Failure::Io { .. }
            | Failure::Output(_) => IO,
            Failure::CannotRun { source, .. } => {
                if source.kind() == io::ErrorKind::PermissionDenied {
                    NOT_EXECUTABLE
                } else {
                    NOT_FOUND
                }
            }
            Failure::NoDeployScript { .. } => NOT_FOUND,
            Failure::Interrupted(signo) => 128 + signo,
            Failure::LockLost => LOST,
            Failure::ServerExit(code) => *code,
        };
        if self.is_quiet() {
            return 0;
        }
        match persona {
            Persona::DeployLock => modern,
            // The legacy's cancellation was a normal end.
            Persona::Unlock if matches!(self, Failure::Cancelled) => 0,
            Persona::Unlock => LEGACY,
        }
    }

    /// A reader that went away (`| head`): nothing to say, nothing failed.
    pub fn is_quiet(&self) -> bool {
        matches!(self, Failure::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }
}

fn lock_error_code(e: &LockError) -> i32 {
    match e {
        LockError::State(StateError::Io { .. }) | LockError::Io { .. } => IO,
        LockError::State(_) => DATA,
        LockError::OtherEnvironment { .. } | LockError::NotADirectory { .. } => HELD,
        LockError::NotPermitted { .. } | LockError::LockFolder { .. } | LockError::Store(_) => IO,
        LockError::Interrupted => CANCELLED,
    }
}

impl Failure {
    /// A state-file error of an operation on `env` carries the environment
    /// (for the recovery advice); anything else is unchanged.
    pub fn for_env(self, env: Environment, store: &dyn LockStore) -> Failure {
        match self {
            Failure::Lock(error @ LockError::State(_)) => Failure::State {
                env: Some(env),
                error,
                live_lock: lock_may_be_live(store, env),
            },
            other => other,
        }
    }
}

/// Whether `env`'s lock is there with a holder not known to be dead and not
/// stale yet (an unreadable state file hides a legacy holder's record, so
/// one without a record of its own counts as live until stale, as the lock
/// rules treat it).
fn lock_may_be_live(store: &dyn LockStore, env: Environment) -> bool {
    use deploy_lock::status::Liveness;
    match store.inspect_despite_records(env) {
        Ok((insp, _)) => insp.lock_dir_exists() && insp.liveness != Liveness::Dead && !insp.stale,
        Err(_) => true,
    }
}

impl From<LockError> for Failure {
    fn from(e: LockError) -> Self {
        Failure::Lock(e)
    }
}

impl From<RemoteError> for Failure {
    fn from(e: RemoteError) -> Self {
        Failure::Remote(e)
    }
}

/// For `?` on writes to our own stdout.
impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Output(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code `code` returns has its row, so no list built from the
    /// table can omit one.
    #[test]
    fn every_exit_code_has_a_row() {
        let codes: Vec<&str> = EXIT_TABLE.iter().flat_map(|r| r.code.split(", ")).collect();
        for code in [
            0,
            CANCELLED,
            USAGE,
            DATA,
            IO,
            HELD,
            LOST,
            TIMED_OUT,
            NOT_EXECUTABLE,
            NOT_FOUND,
        ] {
            assert!(
                codes.contains(&code.to_string().as_str()),
                "no row for {code}"
            );
        }
        // Interrupted(signo), the command's own, --conflict-exit-code's.
        for code in ["128+N", "other", "N"] {
            assert!(codes.contains(&code), "no row for {code}");
        }
        // The legacy persona: 0 and 1, and a server's own code.
        let legacy: Vec<&str> = EXIT_TABLE
            .iter()
            .filter(|r| !r.unlock_sh.is_empty())
            .map(|r| r.code)
            .collect();
        assert_eq!(legacy, ["0", "1", "other"]);
        assert_eq!(LEGACY, 1);
    }

    /// README's table is this table, word for word.
    #[test]
    fn readme_exit_table_is_the_table() {
        let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
            .expect("README.md");
        let want = exit_table_markdown();
        assert!(
            readme.contains(&want),
            "README.md's exit-status table differs from EXIT_TABLE in src/cli/failure.rs; it should read:\n{want}"
        );
    }

    #[test]
    fn codes_per_persona() {
        let full = || Failure::Output(io::Error::from_raw_os_error(28));
        assert_eq!(full().code(Persona::DeployLock), IO);
        assert_eq!(full().code(Persona::Unlock), LEGACY);
        let pipe = Failure::Output(io::ErrorKind::BrokenPipe.into());
        assert!(pipe.is_quiet());
        assert_eq!(pipe.code(Persona::DeployLock), 0);
        assert_eq!(Failure::Cancelled.code(Persona::DeployLock), 1);
        assert_eq!(Failure::Cancelled.code(Persona::Unlock), 0);
        assert_eq!(Failure::Usage("x".into()).code(Persona::DeployLock), 2);
        assert_eq!(Failure::Usage("x".into()).code(Persona::Unlock), 1);
        assert_eq!(Failure::Interrupted(15).code(Persona::DeployLock), 143);
        let nf = Failure::CannotRun {
            program: "x".into(),
            source: io::ErrorKind::NotFound.into(),
        };
        assert_eq!(nf.code(Persona::DeployLock), 127);
        let ne = Failure::CannotRun {
            program: "x".into(),
            source: io::ErrorKind::PermissionDenied.into(),
        };
        assert_eq!(ne.code(Persona::DeployLock), 126);
    }
}
