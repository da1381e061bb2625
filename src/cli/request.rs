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
    Status {
        env: Environment,
        json: bool,
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
    },
    /// Whether fencing token `token` still holds `env`'s lock.
    Check {
        env: Environment,
        token: i64,
    },
    Run(RunRequest),
    Generate(Generate),
}

/// `run` and the `ENV` shorthand, which is `run` by another spelling.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    pub env: Environment,
    /// `--wait` alone: `Some(None)` (the wait timeout); `--wait=SECS`:
    /// `Some(Some(secs))`.
    pub wait: Option<Option<Duration>>,
    pub force: bool,
    /// Words for deploy.sh: every word before `--` that is not ours, in order
    /// (`--force` and `--remote USER@HOST` are ours *and* deploy.sh's).
    pub deploy_args: Vec<OsString>,
    /// The command after `--`, instead of deploy.sh.
    pub command: Vec<OsString>,
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
            | Operation::Check { env, .. } => Some(*env),
            Operation::Run(r) => Some(r.env),
            Operation::Print(_) | Operation::Generate(_) => None,
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
}
