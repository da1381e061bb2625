//! What one invocation asks for, whichever persona parsed it: the typed
//! [`Request`] that `execute` carries out.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::time::Duration;

use deploy_lock::Environment;
use deploy_lock::context::SettingInputs;

use super::remote::Remote;

/// Which command-line interface answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persona {
    /// The legacy `deploy/scripts/unlock.sh`, byte for byte.
    Unlock,
    /// `deploy-lock`, the modern interface.
    DeployLock,
}

/// The persona is the invoked file's full name (`file_name`, not the stem:
/// the legacy name is literally `unlock.sh`).
pub fn persona(argv0: &OsStr) -> Persona {
    match Path::new(argv0).file_name() {
        Some(name) if name == "unlock.sh" => Persona::Unlock,
        _ => Persona::DeployLock,
    }
}

/// The persona: `DEPLOY_LOCK_PERSONA` (`deploy-lock` or `unlock.sh`) when
/// set to one of those, else the invoked name. The override lets a
/// checkout's `deploy/scripts/unlock.sh` link answer as `deploy-lock` on a
/// server that has nothing else; any other value is ignored.
pub fn persona_with(argv0: &OsStr, var: Option<&OsStr>) -> Persona {
    match var.and_then(|v| v.to_str()) {
        Some("deploy-lock") => Persona::DeployLock,
        Some("unlock.sh") => Persona::Unlock,
        _ => persona(argv0),
    }
}

/// One parsed invocation.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub persona: Persona,
    /// The script as invoked (`$0` as bash has it), for the legacy rule that
    /// finds the checkout two folders above `deploy/scripts/unlock.sh`.
    pub script: Option<PathBuf>,
    /// Variables and flags, not yet checked (see `Context::resolve`).
    pub settings: SettingInputs,
    /// Where the lock lives when it is on a server.
    pub remote: Option<Remote>,
    pub op: Operation,
}

#[derive(Debug, PartialEq)]
pub enum Operation {
    /// Text to print on stdout and exit 0 (help, version).
    Print(String),
    /// `quiet`: no output, only the exit status (see `ops::status`).
    Status {
        env: Environment,
        json: bool,
        quiet: bool,
    },
    /// `deploy-lock status` without an environment (`deploy-lock list`):
    /// one line per environment.
    StatusAll {
        json: bool,
        quiet: bool,
    },
    /// `status --watch [ENV]`: a live view, redrawn on every change.
    Watch {
        env: Option<Environment>,
    },
    Wait {
        env: Environment,
    },
    /// Force-unlock; the legacy persona always asks (`yes` false). With
    /// `id`, only the lock with that lock id.
    Unlock {
        env: Environment,
        yes: bool,
        id: Option<String>,
        /// `--reset-state`: recover from a state file that is not usable.
        reset_state: bool,
    },
    /// Whether fencing token `token` still holds `env`'s lock.
    Check {
        env: Environment,
        token: i64,
    },
    Run(RunRequest),
    /// `deploy-lock freeze ENV --reason TEXT [--until TIME] [--wait[=SECS]]`.
    Freeze(FreezeRequest),
    /// `deploy-lock unfreeze ENV [--id LOCK_ID]`: lifts a freeze only.
    Unfreeze {
        env: Environment,
        id: Option<String>,
    },
    /// `deploy-lock log`: the audit trail.
    Log(LogRequest),
    /// The hidden `hook-run`: one hook, bounded (see `deploy_lock::hook`).
    HookRun(deploy_lock::hook::Run),
    Generate(Generate),
}

/// `deploy-lock log [ENV] [--json] [-n N] [--since DURATION]`.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRequest {
    pub env: Option<Environment>,
    pub json: bool,
    pub last: Option<usize>,
    /// As typed; checked when the clock is read.
    pub since: Option<String>,
}

/// `freeze`: hold the lock with no command until `until` or `unfreeze`.
#[derive(Debug, Clone, PartialEq)]
pub struct FreezeRequest {
    pub env: Environment,
    pub reason: String,
    /// `--until` as typed; read against the clock when the freeze starts.
    pub until: Option<String>,
    /// As `run`'s.
    pub wait: Option<Option<Duration>>,
    /// Set in the detached holder process the command starts: when the
    /// freeze ends (`never`, or UTC seconds).
    pub holder: Option<String>,
    /// The words as typed, for the retry command a refusal suggests.
    pub typed: Typed,
}

/// `run` and the `ENV` shorthand, which is `run` by another spelling.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub env: Environment,
    /// `--wait` alone: `Some(None)` (the wait timeout); `--wait=SECS`:
    /// `Some(Some(secs))`.
    pub wait: Option<Option<Duration>>,
    pub force: bool,
    /// `--conflict-exit-code N`: the exit code of a refusal, a --wait that
    /// gives up and a lost lock, instead of 75, 124 and 76.
    pub conflict_exit: Option<i32>,
    /// `--reason TEXT` (or DEPLOY_LOCK_REASON) as given; an empty one is
    /// none. The plan (`RunPlan::reason`) adds the default.
    pub reason: Option<String>,
    /// Words for deploy.sh: every word before `--` that is not ours, in order
    /// (`--force` and `--remote USER@HOST` are ours *and* deploy.sh's).
    pub deploy_args: Vec<OsString>,
    /// The command after `--`, instead of deploy.sh.
    pub command: Vec<OsString>,
    /// The words as typed, for the retry command a refusal suggests.
    pub typed: Typed,
}

/// The words after `deploy-lock` as the user typed them, and where the
/// environment stood, so a refusal can suggest the user's own command with
/// `--wait` (or `--force`) added: `deploy-lock --wait staging --branch
/// hotfix`. How a request was spelled is not part of what it means, so two
/// spellings of one request still compare equal.
#[derive(Debug, Clone, Default)]
pub struct Typed {
    pub words: Vec<OsString>,
    /// Index in `words` of the environment.
    pub env_at: usize,
}

impl PartialEq for Typed {
    fn eq(&self, _: &Typed) -> bool {
        true
    }
}

impl Eq for Typed {}

impl Typed {
    /// `deploy-lock` and the typed words with `flag` added before the
    /// environment, each word quoted for a POSIX shell where it needs it.
    pub fn with(&self, flag: &str) -> String {
        let mut words = vec!["deploy-lock".to_string()];
        for (i, w) in self.words.iter().enumerate() {
            if i == self.env_at {
                words.push(flag.to_string());
            }
            words.push(shell_word(&w.to_string_lossy()));
        }
        if self.env_at >= self.words.len() {
            words.push(flag.to_string());
        }
        words.join(" ")
    }
}

/// A word as a POSIX shell would need it typed: as is when it holds only
/// characters no shell treats specially, else in single quotes.
pub fn shell_word(w: &str) -> String {
    let plain = !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c));
    if plain {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

/// `deploy-lock generate ...`: the docs the binary writes about itself.
#[derive(Debug, Clone, PartialEq)]
pub enum Generate {
    Man {
        dir: PathBuf,
    },
    Completions {
        shell: clap_complete::Shell,
        persona: String,
    },
    All {
        root: PathBuf,
    },
}

impl Operation {
    pub fn environment(&self) -> Option<Environment> {
        match self {
            Operation::Status { env, .. }
            | Operation::Wait { env }
            | Operation::Unlock { env, .. }
            | Operation::Check { env, .. }
            | Operation::Unfreeze { env, .. } => Some(*env),
            Operation::Run(r) => Some(r.env),
            Operation::Freeze(f) => Some(f.env),
            Operation::Log(l) => l.env,
            Operation::Watch { env } => *env,
            Operation::Print(_)
            | Operation::Generate(_)
            | Operation::StatusAll { .. }
            | Operation::HookRun(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_on_the_invoked_name() {
        for (argv0, want) in [
            ("unlock.sh", Persona::Unlock),
            ("./deploy/scripts/unlock.sh", Persona::Unlock),
            ("/opt/x/deploy/scripts/unlock.sh", Persona::Unlock),
            ("deploy-lock", Persona::DeployLock),
            ("/usr/local/bin/deploy-lock", Persona::DeployLock),
            ("unlock", Persona::DeployLock),
            ("unlock.sh.legacy", Persona::DeployLock),
            ("", Persona::DeployLock),
        ] {
            assert_eq!(persona(OsStr::new(argv0)), want, "{argv0}");
        }
    }

    #[test]
    fn the_persona_variable_overrides_the_name() {
        let v = |s: &'static str| Some(OsStr::new(s));
        let link = OsStr::new("/srv/co/deploy/scripts/unlock.sh");
        assert_eq!(persona_with(link, v("deploy-lock")), Persona::DeployLock);
        assert_eq!(persona_with(link, None), Persona::Unlock);
        assert_eq!(persona_with(link, v("bogus")), Persona::Unlock);
        let bin = OsStr::new("deploy-lock");
        assert_eq!(persona_with(bin, v("unlock.sh")), Persona::Unlock);
    }

    #[test]
    fn retry_keeps_the_typed_words() {
        let t = Typed {
            words: ["run", "staging", "--", "make", "deploy it"]
                .iter()
                .map(OsString::from)
                .collect(),
            env_at: 1,
        };
        assert_eq!(
            t.with("--wait"),
            "deploy-lock run --wait staging -- make 'deploy it'"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
