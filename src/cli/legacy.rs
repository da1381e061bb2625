//! The `unlock.sh` persona: the legacy `unlock.sh ENVIRONMENT [ACTION]`,
//! parsed by hand so every message and exit code stays exactly the legacy's.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use deploy_lock::context::{ENV_PROJECT_ROOT, find_project_root, logical_cwd, script_project_root};
use deploy_lock::{Context, Environment, Settings};

use super::exit::LEGACY_FAILURE;
use super::ops::{self, ForceEnd, WaitEnd};
use super::remote::{self, Program, Remote};
use super::render;
use super::style::Style;
use super::texts;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Status,
    Wait,
    Force,
}

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
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
pub fn parse(args: &[OsString]) -> Request {
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
                    return Request::Usage {
                        exit: LEGACY_FAILURE,
                    };
                }
            }
        } else if let Some(dir) = s.strip_prefix("--project-root=") {
            project_root = Some(PathBuf::from(dir));
        } else if s == "--remote" || s == "--remote-dir" {
            let Some(v) = it.next().map(|v| v.to_string_lossy().into_owned()) else {
                return Request::Usage {
                    exit: LEGACY_FAILURE,
                };
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
        return Request::Usage {
            exit: LEGACY_FAILURE,
        };
    };
    if env == "-h" || env == "--help" {
        return Request::Usage { exit: 0 };
    }
    let Some(env) = Environment::parse(env) else {
        return Request::InvalidEnvironment(env.clone());
    };
    let action = match positional.get(1).map(String::as_str) {
        None | Some("--status") | Some("status") => Action::Status,
        Some("--wait") | Some("wait") => Action::Wait,
        Some("--force") | Some("force") => Action::Force,
        Some(other) => return Request::InvalidAction(other.to_string()),
    };
    let remote = remote_target.map(|target| Remote {
        target,
        dir: remote_dir.unwrap_or_else(|| remote::DEFAULT_REMOTE_DIR.to_string()),
    });
    Request::Run {
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

fn print_error_lines(lines: &[String]) {
    let style = Style::for_stdout();
    let mut out = std::io::stdout().lock();
    for (i, l) in lines.iter().enumerate() {
        let _ = writeln!(out, "{}", if i == 0 { style.red(l) } else { l.clone() });
    }
}

pub fn main(argv0: OsString, args: Vec<OsString>) -> i32 {
    let invoked = invoked_path(&argv0);
    let (env, action, flag_root) = match parse(&args) {
        Request::Usage { exit } => {
            print!("{}", texts::usage(&invoked.to_string_lossy()));
            return exit;
        }
        Request::InvalidEnvironment(e) => {
            print_error_lines(&texts::invalid_environment(&e));
            return LEGACY_FAILURE;
        }
        Request::InvalidAction(a) => {
            print_error_lines(&texts::invalid_action(&a));
            return LEGACY_FAILURE;
        }
        Request::Run {
            env,
            action,
            remote: Some(remote),
            ..
        } => {
            let word = match action {
                Action::Status => "--status",
                Action::Wait => "--wait",
                Action::Force => "--force",
            };
            let args = [env.as_str().to_string(), word.to_string()];
            return match remote::run(&remote, Program::UnlockSh, &args) {
                Ok(code) => code,
                Err(e) => {
                    remote::report(&e);
                    LEGACY_FAILURE
                }
            };
        }
        Request::Run {
            env,
            action,
            project_root,
            remote: None,
        } => (env, action, project_root),
    };
    let ctx = match context(&invoked, flag_root) {
        Ok(ctx) => ctx,
        Err(msg) => {
            eprintln!("{}", Style::for_stderr().red(&format!("ERROR: {msg}")));
            return LEGACY_FAILURE;
        }
    };
    let inspection = match ops::inspect(&ctx, env) {
        Ok(i) => i,
        Err(e) => {
            ops::report_error(&e);
            return LEGACY_FAILURE;
        }
    };
    print!(
        "{}",
        render::status_block(&inspection, &ctx, Style::for_stdout())
    );
    let _ = std::io::stdout().flush();
    match action {
        Action::Status => 0,
        Action::Wait => match ops::wait_for_release(&ctx, env) {
            Ok(WaitEnd::Released) => 0,
            Ok(WaitEnd::TimedOut) => LEGACY_FAILURE,
            Err(e) => {
                eprintln!("ERROR: {e}");
                LEGACY_FAILURE
            }
        },
        Action::Force => match ops::force_unlock(
            &ctx,
            env,
            false,
            &inspection,
            &deploy_lock::lock::Shown::of(&inspection),
            ops::Persona::Legacy,
        ) {
            Ok(ForceEnd::Done | ForceEnd::Cancelled) => 0,
            Ok(ForceEnd::ChangedHands) => LEGACY_FAILURE,
            Err(e) => {
                ops::report_error(&e);
                LEGACY_FAILURE
            }
        },
    }
}

/// Settings from the environment; the project root from `--project-root`,
/// `$DEPLOY_LOCK_PROJECT_ROOT`, the script's own place in
/// `deploy/scripts/`, or else the working directory's nearest checkout.
fn context(invoked: &Path, flag_root: Option<PathBuf>) -> Result<Context, String> {
    let settings = Settings::from_process_env().map_err(|e| e.to_string())?;
    let cwd = logical_cwd().map_err(|e| format!("cannot read the working directory: {e}"))?;
    let root = match flag_root.or_else(|| {
        std::env::var_os(ENV_PROJECT_ROOT)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }) {
        Some(r) => r,
        None => match script_project_root(invoked, &cwd) {
            Some(r) => r,
            None => find_project_root(&cwd).map_err(|e| e.to_string())?,
        },
    };
    Ok(Context::new(settings, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Request {
        parse(&args.iter().map(OsString::from).collect::<Vec<_>>())
    }

    #[test]
    fn legacy_parsing() {
        assert_eq!(p(&[]), Request::Usage { exit: 1 });
        assert_eq!(p(&[""]), Request::Usage { exit: 1 });
        assert_eq!(p(&["--help"]), Request::Usage { exit: 0 });
        assert_eq!(p(&["bogus"]), Request::InvalidEnvironment("bogus".into()));
        assert_eq!(
            p(&["--status"]),
            Request::InvalidEnvironment("--status".into())
        );
        assert_eq!(
            p(&["staging", "--bogus"]),
            Request::InvalidAction("--bogus".into())
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
                Request::Run {
                    env: Environment::Production,
                    action,
                    project_root: None,
                    remote: None
                }
            );
        }
        assert_eq!(
            p(&["--project-root", "/x", "staging"]),
            Request::Run {
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
            Request::Run {
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
