//! The `unlock.sh` persona: the legacy `unlock.sh ENVIRONMENT [ACTION]`,
//! parsed by hand so every message and exit code stays exactly the legacy's,
//! into the same typed [`Request`] as `deploy-lock`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use deploy_lock::Environment;
use deploy_lock::context::{Raw, SettingInputs};

use super::failure::{Failure, LEGACY, LegacyUsage};
use super::remote::{self, Remote};
use super::request::{Operation, Persona, Request};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Status,
    Wait,
    Force,
}

/// What the legacy command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    Usage {
        exit: i32,
    },
    InvalidEnvironment(String),
    InvalidAction(String),
    Run {
        env: Environment,
        action: Action,
        project_root: Option<PathBuf>,
        /// `--remote USER@HOST [--remote-dir DIR]`: run it on the server.
        remote: Option<Remote>,
    },
}

/// Legacy positional parsing (`$1` environment, `$2` action, the rest
/// ignored as the bash script ignored it), plus our one extension:
/// `--project-root DIR` anywhere.
pub fn parse(args: &[OsString]) -> Parsed {
    let mut positional: Vec<String> = Vec::new();
    let mut project_root = None;
    let (mut remote_target, mut remote_dir) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy();
        if s == "--project-root" {
            match it.next() {
                Some(dir) => project_root = Some(PathBuf::from(dir)),
                None => {
                    return Parsed::Usage { exit: LEGACY };
                }
            }
        } else if let Some(dir) = s.strip_prefix("--project-root=") {
            project_root = Some(PathBuf::from(dir));
        } else if s == "--remote" || s == "--remote-dir" {
            let Some(v) = it.next().map(|v| v.to_string_lossy().into_owned()) else {
                return Parsed::Usage { exit: LEGACY };
            };
            if s == "--remote" {
                remote_target = Some(v);
            } else {
                remote_dir = Some(v);
            }
        } else if let Some(v) = s.strip_prefix("--remote=") {
            remote_target = Some(v.to_string());
        } else if let Some(v) = s.strip_prefix("--remote-dir=") {
            remote_dir = Some(v.to_string());
        } else {
            positional.push(s.into_owned());
        }
    }
    let Some(env) = positional.first().filter(|e| !e.is_empty()) else {
        return Parsed::Usage { exit: LEGACY };
    };
    if env == "-h" || env == "--help" {
        return Parsed::Usage { exit: 0 };
    }
    let Some(env) = Environment::parse(env) else {
        return Parsed::InvalidEnvironment(env.clone());
    };
    let action = match positional.get(1).map(String::as_str) {
        None | Some("--status") | Some("status") => Action::Status,
        Some("--wait") | Some("wait") => Action::Wait,
        Some("--force") | Some("force") => Action::Force,
        Some(other) => return Parsed::InvalidAction(other.to_string()),
    };
    let remote = remote_target.map(|target| Remote {
        target,
        dir: remote_dir.unwrap_or_else(|| remote::DEFAULT_REMOTE_DIR.to_string()),
    });
    Parsed::Run {
        env,
        action,
        project_root,
        remote,
    }
}

/// `$0` as bash would have it: the path as typed, or, for a bare name found
/// on PATH, the full path the shell ran.
fn invoked_path(argv0: &OsString) -> PathBuf {
    let p = Path::new(argv0);
    if p.as_os_str().as_encoded_bytes().contains(&b'/') {
        return p.to_path_buf();
    }
    which::which(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Parses `unlock.sh ARGS` into a request; `get` reads the variables.
pub fn request(
    argv0: &OsString,
    args: &[OsString],
    get: impl Fn(&str) -> Option<OsString>,
) -> Result<Request, Failure> {
    let invoked = invoked_path(argv0);
    let (env, action, project_root, remote) = match parse(args) {
        Parsed::Usage { exit: 0 } => {
            return Ok(Request {
                persona: Persona::Unlock,
                script: Some(invoked.clone()),
                settings: SettingInputs::default(),
                remote: None,
                op: Operation::Print(super::texts::help(&invoked.to_string_lossy())),
            });
        }
        Parsed::Usage { .. } => {
            return Err(Failure::LegacyUsage(LegacyUsage::NoEnvironment {
                invoked: invoked.to_string_lossy().into_owned(),
            }));
        }
        Parsed::InvalidEnvironment(e) => {
            return Err(Failure::LegacyUsage(LegacyUsage::InvalidEnvironment(e)));
        }
        Parsed::InvalidAction(a) => {
            return Err(Failure::LegacyUsage(LegacyUsage::InvalidAction(a)));
        }
        Parsed::Run {
            env,
            action,
            project_root,
            remote,
        } => (env, action, project_root, remote),
    };
    let mut settings = SettingInputs::from_vars(get);
    if let Some(root) = project_root {
        settings.project_root = Some(Raw::new(root, "--project-root"));
    }
    let op = match action {
        Action::Status => Operation::Status {
            env,
            json: false,
            quiet: false,
        },
        Action::Wait => Operation::Wait { env },
        Action::Force => Operation::Unlock {
            env,
            yes: false,
            id: None,
            reset_state: false,
        },
    };
    Ok(Request {
        persona: Persona::Unlock,
        script: Some(invoked),
        settings,
        remote,
        op,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Parsed {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn legacy_parsing() {
        assert_eq!(p(&[]), Parsed::Usage { exit: 1 });
        assert_eq!(p(&[""]), Parsed::Usage { exit: 1 });
        assert_eq!(p(&["--help"]), Parsed::Usage { exit: 0 });
        assert_eq!(p(&["bogus"]), Parsed::InvalidEnvironment("bogus".into()));
        assert_eq!(
            p(&["--status"]),
            Parsed::InvalidEnvironment("--status".into())
        );
        assert_eq!(
            p(&["staging", "--bogus"]),
            Parsed::InvalidAction("--bogus".into())
        );
        for (word, action) in [
            ("--status", Action::Status),
            ("status", Action::Status),
            ("--wait", Action::Wait),
            ("wait", Action::Wait),
            ("--force", Action::Force),
            ("force", Action::Force),
        ] {
            assert_eq!(
                p(&["production", word, "ignored"]),
                Parsed::Run {
                    env: Environment::Production,
                    action,
                    project_root: None,
                    remote: None
                }
            );
        }
        assert_eq!(
            p(&["--project-root", "/x", "staging"]),
            Parsed::Run {
                env: Environment::Staging,
                action: Action::Status,
                project_root: Some("/x".into()),
                remote: None
            }
        );
        assert_eq!(
            p(&[
                "staging",
                "--force",
                "--remote",
                "deploy@h",
                "--remote-dir=/srv/x y"
            ]),
            Parsed::Run {
                env: Environment::Staging,
                action: Action::Force,
                project_root: None,
                remote: Some(Remote {
                    target: "deploy@h".into(),
                    dir: "/srv/x y".into()
                })
            }
        );
    }
}
