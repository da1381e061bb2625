//! The `deploy-lock ENV [DEPLOY_SH_ARGS...]` shorthand: deploy-lock's own
//! flags taken out of deploy.sh's, and for `--remote`, the server's lock
//! checked over ssh before deploy.sh's own remote mode runs.

use std::ffi::OsString;

use deploy_lock::context::parse_fractional_secs;
use deploy_lock::{Context, Environment};

use super::exit;
use super::modern::DeployArgs;
use super::remote::{self, Program, Remote};
use super::run;
use super::style::Style;

/// Runs a deploy-lock subcommand on the server; 74 when ssh itself failed.
pub fn on_server(remote: &Remote, args: &[&str]) -> i32 {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    match remote::run(remote, Program::DeployLock, &args) {
        Ok(code) => code,
        Err(e) => {
            remote::report(&e);
            exit::IO_ERROR
        }
    }
}

/// deploy-lock's own flags inside the shorthand's arguments, taken out before
/// the rest goes to deploy.sh: `--wait[=SECS]` and `--remote-dir DIR`.
#[derive(Debug, Default, PartialEq)]
struct OwnFlags {
    wait: Option<Option<String>>,
    remote_dir: Option<String>,
    remote: Option<String>,
}

fn take_own_flags(args: Vec<OsString>) -> (OwnFlags, Vec<OsString>) {
    let mut own = OwnFlags::default();
    let mut rest = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let s = a.to_string_lossy().into_owned();
        if s == "--wait" {
            own.wait = Some(None);
        } else if let Some(v) = s.strip_prefix("--wait=") {
            own.wait = Some(Some(v.to_string()));
        } else if s == "--remote-dir" {
            own.remote_dir = it.next().map(|v| v.to_string_lossy().into_owned());
        } else if let Some(v) = s.strip_prefix("--remote-dir=") {
            own.remote_dir = Some(v.to_string());
        } else {
            if s == "--remote" {
                // deploy.sh's flag: seen here, passed on unchanged.
                rest.push(a);
                if let Some(v) = it.next() {
                    own.remote = Some(v.to_string_lossy().into_owned());
                    rest.push(v);
                }
                continue;
            }
            if let Some(v) = s.strip_prefix("--remote=") {
                own.remote = Some(v.to_string());
            }
            rest.push(a);
        }
    }
    (own, rest)
}

pub fn deploy(ctx: &Context, env: Environment, d: DeployArgs) -> i32 {
    let (own, args) = take_own_flags(d.args);
    let wait = match own.wait {
        None => None,
        Some(None) => Some(ctx.settings.wait_timeout),
        Some(Some(v)) => match parse_fractional_secs("--wait", &v) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("{}", Style::for_stderr().red(&format!("ERROR: {e}")));
                return exit::USAGE;
            }
        },
    };
    if let Some(target) = own.remote {
        let remote = Remote {
            target,
            dir: own
                .remote_dir
                .unwrap_or_else(|| remote::DEFAULT_REMOTE_DIR.into()),
        };
        if let Err(code) = server_lock_free(&remote, env, wait) {
            return code;
        }
    }
    let mut plan = run::shorthand_plan(ctx, env, args);
    plan.wait = wait;
    run::run(ctx, plan)
}

/// Before deploy.sh's own remote mode: Ok once the server's lock is not held
/// by a live deployment (waiting for it with --wait), else the exit code.
/// What the server prints goes to stderr: stdout is deploy.sh's.
fn server_lock_free(
    remote: &Remote,
    env: Environment,
    wait: Option<std::time::Duration>,
) -> Result<(), i32> {
    let query = |args: &[&str]| -> Result<String, i32> {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        match remote::capture(remote, Program::DeployLock, &args) {
            Ok((0, out)) => Ok(out),
            Ok((code, _)) => Err(code),
            Err(e) => {
                remote::report(&e);
                Err(exit::IO_ERROR)
            }
        }
    };
    let verdict = || -> Result<String, i32> {
        let out = query(&["status", env.as_str(), "--json"])?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| {
            eprintln!("ERROR: the server's status is not JSON ({e})");
            exit::IO_ERROR
        })?;
        Ok(v["verdict"].as_str().unwrap_or("").to_string())
    };
    let dir_flag = if remote.dir == remote::DEFAULT_REMOTE_DIR {
        String::new()
    } else {
        format!(" --remote-dir {}", remote::sh_quote(&remote.dir))
    };
    if let Some(limit) = wait {
        let deadline = std::time::Instant::now() + limit;
        while verdict()? == "held" {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let timeout = format!("--wait-timeout={}", left.as_secs_f64());
            let args: Vec<String> = ["wait", env.as_str(), timeout.as_str()]
                .iter()
                .map(|a| a.to_string())
                .collect();
            match remote::run_to(remote, Program::DeployLock, &args, remote::Output::Stderr) {
                Ok(0) => {}
                Ok(code) => return Err(code),
                Err(e) => {
                    remote::report(&e);
                    return Err(exit::IO_ERROR);
                }
            }
        }
        return Ok(());
    }
    if verdict()? != "held" {
        return Ok(());
    }
    if let Ok(block) = query(&["status", env.as_str()]) {
        eprint!("{block}");
    }
    eprintln!(
        "{}",
        Style::for_stderr().red(&format!(
            "ERROR: a deployment holds the {env} lock on {}: wait for it with deploy-lock {env} --remote {}{dir_flag} --wait, or watch it with deploy-lock wait {env} --remote {}{dir_flag}",
            remote.target, remote.target, remote.target
        ))
    );
    Err(exit::LOCK_HELD)
}
