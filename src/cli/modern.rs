//! The `deploy-lock` persona: one clap definition (which also feeds the man
//! pages and completions) and the dispatch of its subcommands.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use deploy_lock::context::{
    ENV_PROJECT_ROOT, find_project_root, parse_fractional_secs, parse_whole_secs,
};
use deploy_lock::{Context, Environment, Settings};

use super::completions;
use super::deploy;
use super::docs;
use super::exit;
use super::ops::{self, ForceEnd, WaitEnd};
use super::remote::{self, Remote};
use super::render;
use super::run;
use super::style::Style;

const AFTER_HELP: &str = "\
Rules: a lock whose holder is alive is never taken, whatever its age. A lock
whose holder is dead (or on another host) is taken over automatically once
older than the stale timeout (30 minutes), or at any age with --force.

Exit status: 0 success; 1 cancelled at the confirmation; 2 usage error;
65 state file not valid; 74 I/O error; 75 lock held (or not a directory
at the lock path); 124 wait timed out.
`run` and the ENV shorthand exit with the command's own status.";

#[derive(Parser, Debug)]
#[command(
    name = "deploy-lock",
    version,
    about = "Deployment locks for bash deploy scripts, safe against races, crashes and pre-emption",
    long_about = "Deployment locks for bash deploy scripts.\n\n\
        `deploy-lock ENV [DEPLOY_SH_ARGS...]` runs deploy/scripts/deploy.sh ENV under the \
        environment's lock. The lock is the legacy one (/tmp/togather-deploy-ENV.lock plus \
        deploy/config/deployment-state.json), so the legacy unlock.sh and deploy.sh see it. \
        Invoked as `unlock.sh`, this binary is the legacy unlock.sh, byte for byte.",
    after_help = AFTER_HELP,
    subcommand_value_name = "ENV|COMMAND",
    allow_external_subcommands = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings shared by every subcommand; each defaults to its variable.
#[derive(Args, Debug, Default)]
pub struct GlobalOpts {
    /// Folder holding togather-deploy-ENV.lock [env: DEPLOY_LOCK_DIR; default: /tmp]
    #[arg(long, global = true, value_name = "DIR")]
    pub lock_dir: Option<PathBuf>,
    /// Checkout whose deploy/config/deployment-state.json records the lock [env: DEPLOY_LOCK_PROJECT_ROOT; default: nearest folder above the working directory with deploy/scripts or deploy/config]
    #[arg(long, global = true, value_name = "DIR")]
    pub project_root: Option<PathBuf>,
    /// A lock older than this is stale [env: DEPLOY_LOCK_STALE_SECS; default: 1800]
    #[arg(long, global = true, value_name = "SECS", value_parser = stale_secs)]
    pub stale_secs: Option<Duration>,
    /// Seconds between progress lines while waiting; decimals allowed [env: DEPLOY_LOCK_WAIT_INTERVAL; default: 5]
    #[arg(long, global = true, value_name = "SECS", value_parser = wait_interval)]
    pub wait_interval: Option<Duration>,
    /// Give up waiting after this many seconds [env: DEPLOY_LOCK_WAIT_TIMEOUT; default: 3600]
    #[arg(long, global = true, value_name = "SECS", value_parser = wait_timeout)]
    pub wait_timeout: Option<Duration>,
}

const RUN_AFTER_HELP: &str = "\
Rules, liveness first and age second:
  - A holder that is alive on this host (its pid runs, with the recorded start
    time and boot id when the record has them) is never taken over, whatever
    the lock's age, even with --force: exit 75, or wait with --wait.
  - A holder that is dead, or on another host, is taken over automatically
    once the lock is older than the stale timeout (30 minutes), or at any age
    with --force. A lock directory without a readable locked_at is aged by
    its modification time.
  - Judge, remove and re-create happen under a guard flock, so of several
    processes taking over one stale lock exactly one wins.
  - The lock is released only after COMMAND has exited, and only if it is
    still ours; deploy-lock then exits with COMMAND's status (or dies of the
    same signal).
Signals INT, QUIT, TERM, HUP, USR1, USR2 and WINCH sent to deploy-lock reach
COMMAND once; the terminal's own Ctrl-C and Ctrl-\\ reach it directly.";

/// Where a lock that lives on a server is.
#[derive(Args, Debug, Default, Clone)]
pub struct RemoteOpts {
    /// Run it on USER@HOST over ssh (DEPLOY_LOCK_SSH sets the ssh command)
    #[arg(long, value_name = "USER@HOST", value_hint = clap::ValueHint::Hostname)]
    pub remote: Option<String>,
    /// The server's checkout
    #[arg(long, value_name = "DIR", requires = "remote", default_value = remote::DEFAULT_REMOTE_DIR, hide_default_value = false)]
    pub remote_dir: String,
}

impl RemoteOpts {
    fn get(&self) -> Option<Remote> {
        self.remote.clone().map(|target| Remote {
            target,
            dir: self.remote_dir.clone(),
        })
    }
}

/// Arguments handed to deploy.sh unchanged (see THE LEGACY DEPLOY.SH).
#[derive(Args, Debug)]
pub struct DeployArgs {
    /// deploy.sh's own flags: --force, --remote USER@HOST, --dry-run, --skip-migrations, --version COMMIT, --branch BRANCH, --env-diff, --help
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "DEPLOY_SH_ARGS"
    )]
    pub args: Vec<OsString>,
}

#[derive(Subcommand, Debug)]
pub enum Generate {
    /// Man pages for both personas into DIR
    Man { dir: PathBuf },
    /// One completion script on stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        /// Which persona to complete
        #[arg(long = "for", default_value = "deploy-lock", value_parser = ["deploy-lock", "unlock.sh"])]
        persona: String,
    },
    /// Everything: ROOT/man/*.1 and ROOT/completions/{bash,zsh,fish}/*
    All { root: PathBuf },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Wait for the lock instead of exiting 75, at most SECS (default: --wait-timeout)
    #[arg(long, value_name = "SECS", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub wait: Option<String>,
    /// Take over a dead holder's lock before it is stale (never a live holder's)
    #[arg(long)]
    pub force: bool,
    #[arg(value_enum)]
    pub env: Environment,
    /// The command to run (default: deploy/scripts/deploy.sh ENV --force, deploy-lock holding the lock for it)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

impl GlobalOpts {
    fn any_set(&self) -> bool {
        self.lock_dir.is_some()
            || self.project_root.is_some()
            || self.stale_secs.is_some()
            || self.wait_interval.is_some()
            || self.wait_timeout.is_some()
    }
}

fn stale_secs(s: &str) -> Result<Duration, String> {
    parse_whole_secs("--stale-secs", s).map_err(|e| e.to_string())
}
fn wait_interval(s: &str) -> Result<Duration, String> {
    match parse_fractional_secs("--wait-interval", s) {
        Ok(d) if d.is_zero() => Err("--wait-interval must be greater than 0".into()),
        r => r.map_err(|e| e.to_string()),
    }
}
fn wait_timeout(s: &str) -> Result<Duration, String> {
    parse_fractional_secs("--wait-timeout", s).map_err(|e| e.to_string())
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the lock status (the unlock.sh status block, or JSON)
    Status {
        #[arg(value_enum)]
        env: Environment,
        /// Print one JSON object instead of the status block
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: RemoteOpts,
    },
    /// Wait until the lock is released (exit 124 on timeout)
    Wait {
        #[arg(value_enum)]
        env: Environment,
        #[command(flatten)]
        remote: RemoteOpts,
    },
    /// Force-unlock: remove the lock whoever holds it (asks for 'yes')
    Unlock {
        #[arg(value_enum)]
        env: Environment,
        /// Do not ask for confirmation
        #[arg(long, short = 'y')]
        yes: bool,
        /// Remove the lock only if it is still this one (the Lock ID `status` shows)
        #[arg(long, value_name = "LOCK_ID")]
        id: Option<String>,
        #[command(flatten)]
        remote: RemoteOpts,
    },
    /// Run a command (default: deploy/scripts/deploy.sh ENV) under the lock
    #[command(after_help = RUN_AFTER_HELP)]
    Run(RunArgs),
    /// Run deploy/scripts/deploy.sh development [DEPLOY_SH_ARGS...] under the lock
    #[command(disable_help_flag = true)]
    Development(DeployArgs),
    /// Run deploy/scripts/deploy.sh staging [DEPLOY_SH_ARGS...] under the lock
    #[command(disable_help_flag = true)]
    Staging(DeployArgs),
    /// Run deploy/scripts/deploy.sh production [DEPLOY_SH_ARGS...] under the lock
    #[command(disable_help_flag = true)]
    Production(DeployArgs),
    /// Write the man pages or completions (used to refresh man/ and completions/)
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: Generate,
    },
    /// Anything else: reported as an unknown environment or command.
    #[command(external_subcommand)]
    Other(Vec<OsString>),
}

pub fn main(args: Vec<OsString>) -> i32 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    if let Command::Generate { what } = &cli.command {
        return generate(what);
    }
    // A lock on a server needs nothing local: no checkout, no settings.
    let remote_target = match &cli.command {
        Command::Status { remote, .. }
        | Command::Wait { remote, .. }
        | Command::Unlock { remote, .. } => remote.remote.as_deref(),
        _ => None,
    };
    if let Some(target) = remote_target
        && cli.global.any_set()
    {
        ops::warn(&format!(
            "--lock-dir, --project-root, --stale-secs and --wait-* apply to local locks; \
             {target} uses its own settings (set DEPLOY_LOCK_* there, or pass them with ssh's SendEnv)"
        ));
    }
    match &cli.command {
        Command::Status { env, json, remote } if remote.remote.is_some() => {
            let r = remote.get().expect("checked");
            let mut args = vec!["status", env.as_str()];
            if *json {
                args.push("--json");
            }
            return deploy::on_server(&r, &args);
        }
        Command::Wait { env, remote } if remote.remote.is_some() => {
            return deploy::on_server(&remote.get().expect("checked"), &["wait", env.as_str()]);
        }
        Command::Unlock {
            env,
            yes,
            id,
            remote,
        } if remote.remote.is_some() => {
            let mut args = vec!["unlock", env.as_str()];
            if *yes {
                args.push("--yes");
            }
            if let Some(id) = id {
                args.push("--id");
                args.push(id);
            }
            return deploy::on_server(&remote.get().expect("checked"), &args);
        }
        _ => {}
    }
    let ctx = match context(&cli.global) {
        Ok(ctx) => ctx,
        Err(msg) => {
            eprintln!("{}", Style::for_stderr().red(&format!("ERROR: {msg}")));
            return exit::USAGE;
        }
    };
    match cli.command {
        Command::Status { env, json, .. } => status(&ctx, env, json),
        Command::Wait { env, .. } => wait(&ctx, env),
        Command::Unlock { env, yes, id, .. } => unlock(&ctx, env, yes, id.as_deref()),
        Command::Run(r) => {
            let wait = match r.wait.as_deref() {
                None => None,
                Some("") => Some(ctx.settings.wait_timeout),
                Some(v) => match parse_fractional_secs("--wait", v) {
                    Ok(d) => Some(d),
                    Err(e) => {
                        eprintln!("{}", Style::for_stderr().red(&format!("ERROR: {e}")));
                        return exit::USAGE;
                    }
                },
            };
            run::run(&ctx, run::run_plan(&ctx, r.env, wait, r.force, r.command))
        }
        Command::Development(d) => deploy::deploy(&ctx, Environment::Development, d),
        Command::Staging(d) => deploy::deploy(&ctx, Environment::Staging, d),
        Command::Production(d) => deploy::deploy(&ctx, Environment::Production, d),
        Command::Generate { .. } => unreachable!("handled before the context"),
        Command::Other(words) => {
            let first = words
                .first()
                .map(|w| w.to_string_lossy().into_owned())
                .unwrap_or_default();
            eprintln!(
                "{}",
                Style::for_stderr().red(&format!(
                    "ERROR: '{first}' is neither an environment (development, staging, production) nor a command; see deploy-lock --help"
                ))
            );
            exit::USAGE
        }
    }
}

fn generate(what: &Generate) -> i32 {
    let result = match what {
        Generate::Man { dir } => docs::write_man_pages(dir).map(|_| ()),
        Generate::Completions { shell, persona } => {
            completions::completions(*shell, persona, &mut std::io::stdout());
            Ok(())
        }
        Generate::All { root } => docs::write_man_pages(&root.join("man")).and_then(|_| {
            for (rel, bytes) in completions::all_completions() {
                let path = root.join("completions").join(rel);
                std::fs::create_dir_all(path.parent().expect("has a parent"))?;
                std::fs::write(path, bytes)?;
            }
            Ok(())
        }),
    };
    match result {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("ERROR: {e}");
            exit::IO_ERROR
        }
    }
}

/// Variables first, flags over them; then the checkout.
fn context(g: &GlobalOpts) -> Result<Context, String> {
    use deploy_lock::context::{ENV_LOCK_DIR, ENV_STALE_SECS, ENV_WAIT_INTERVAL, ENV_WAIT_TIMEOUT};
    // A flag replaces its variable outright, so a valid flag rescues an
    // invalid variable instead of failing on it.
    let overridden = |name: &str| match name {
        ENV_LOCK_DIR => g.lock_dir.is_some(),
        ENV_STALE_SECS => g.stale_secs.is_some(),
        ENV_WAIT_INTERVAL => g.wait_interval.is_some(),
        ENV_WAIT_TIMEOUT => g.wait_timeout.is_some(),
        _ => false,
    };
    let mut s = Settings::from_vars(|name| {
        if overridden(name) {
            None
        } else {
            std::env::var_os(name)
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some(d) = &g.lock_dir {
        s.lock_root = d.clone();
    }
    if let Some(v) = g.stale_secs {
        s.stale_after = v;
    }
    if let Some(v) = g.wait_interval {
        s.wait_interval = v;
    }
    if let Some(v) = g.wait_timeout {
        s.wait_timeout = v;
    }
    let root = match g.project_root.clone().or_else(|| {
        std::env::var_os(ENV_PROJECT_ROOT)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    }) {
        Some(r) => r,
        None => {
            let cwd = std::env::current_dir()
                .map_err(|e| format!("cannot read the working directory: {e}"))?;
            find_project_root(&cwd).map_err(|e| e.to_string())?
        }
    };
    Ok(Context::new(s, root))
}

fn status(ctx: &Context, env: Environment, json: bool) -> i32 {
    let insp = match ops::inspect(ctx, env) {
        Ok(i) => i,
        Err(e) => return ops::report_error(&e),
    };
    if json {
        let v = render::status_json(&insp, ctx);
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("serialisable")
        );
    } else {
        print!(
            "{}",
            render::status_block_modern(&insp, ctx, Style::for_stdout())
        );
        if let Some(l) = render::lock_id_line(&insp) {
            println!("{l}");
        }
        println!("{}", render::verdict_line(&insp, ctx));
    }
    exit::OK
}

fn wait(ctx: &Context, env: Environment) -> i32 {
    let insp = match ops::inspect(ctx, env) {
        Ok(i) => i,
        Err(e) => return ops::report_error(&e),
    };
    print!(
        "{}",
        render::status_block_modern(&insp, ctx, Style::for_stdout())
    );
    let _ = std::io::stdout().flush();
    // A dead holder's lock is never released by waiting: say so at once.
    if insp.lock_dir_exists() && insp.liveness == deploy_lock::status::Liveness::Dead {
        let pid = insp
            .holder
            .as_ref()
            .and_then(|h| h.pid)
            .map(|p| format!(" (pid {p})"))
            .unwrap_or_default();
        eprintln!(
            "{}",
            Style::for_stderr().red(&format!(
                "ERROR: the {env} lock's holder{pid} is not running, so waiting would never end; clear it with `deploy-lock unlock {env}`, or take it over with `deploy-lock run --force {env}`"
            ))
        );
        return exit::LOCK_HELD;
    }
    match ops::wait_for_release(ctx, env) {
        Ok(WaitEnd::Released) => exit::OK,
        Ok(WaitEnd::TimedOut) => exit::WAIT_TIMED_OUT,
        Err(e) => {
            eprintln!("ERROR: {e}");
            exit::IO_ERROR
        }
    }
}

fn unlock(ctx: &Context, env: Environment, yes: bool, id: Option<&str>) -> i32 {
    let insp = match ops::inspect(ctx, env) {
        Ok(i) => i,
        Err(e) => return ops::report_error(&e),
    };
    print!(
        "{}",
        render::status_block_modern(&insp, ctx, Style::for_stdout())
    );
    if let Some(l) = render::lock_id_line(&insp) {
        println!("{l}");
    }
    let shown = match id {
        Some(id) => deploy_lock::lock::Shown::LockId(id.to_string()),
        None => deploy_lock::lock::Shown::of(&insp),
    };
    match ops::force_unlock(ctx, env, yes, &insp, &shown, ops::Persona::Modern) {
        Ok(ForceEnd::Done) => exit::OK,
        Ok(ForceEnd::Cancelled) => exit::CANCELLED,
        Ok(ForceEnd::ChangedHands) => exit::LOCK_HELD,
        Err(e) => ops::report_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn env_shorthand_passes_everything_through() {
        let cli = Cli::try_parse_from(["deploy-lock", "staging", "--dry-run", "--help", "--force"])
            .unwrap();
        match cli.command {
            Command::Staging(d) => assert_eq!(
                d.args,
                vec![
                    OsString::from("--dry-run"),
                    "--help".into(),
                    "--force".into()
                ]
            ),
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from(["deploy-lock", "bogus"]).unwrap();
        assert!(matches!(cli.command, Command::Other(_)));
    }
}
