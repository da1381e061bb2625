//! The `deploy-lock` persona's command line: one clap definition (which also
//! feeds the man pages and completions), the `ENV` shorthand rewritten into
//! `run` before parsing (the way cargo expands an alias), and the parse into
//! one typed [`Request`].

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use deploy_lock::Environment;
use deploy_lock::context::{
    ENV_LOCK_DIR, ENV_PROJECT_ROOT, ENV_STALE_SECS, ENV_WAIT_INTERVAL, ENV_WAIT_TIMEOUT, Raw,
    SettingInputs, parse_fractional_secs,
};

use super::failure::Failure;
use super::remote::{self, Remote};
use super::request::{
    FreezeRequest, Generate, LogRequest, Operation, Persona, Request, RunRequest, Typed,
};

const RULES_HELP: &str = "\
Rules: a lock whose holder is alive is never taken, whatever its age. A lock
whose holder is dead (or on another host) is taken over automatically once
older than the stale timeout (30 minutes), or at any age with --force. A lock
no record explains (holder unknown) is taken over only once stale, never
with --force.";

const HOOKS_HELP: &str = "\
Hooks: DEPLOY_LOCK_HOOK (or a DEPLOY_LOCK_HOOK= line in the checkout's
deploy/config/deploy-lock.env) is run with `sh -c` on every acquire,
takeover, release, lost, force_unlock, freeze and unfreeze, with the
event's audit line (log --json's object) on stdin; detached, killed after
DEPLOY_LOCK_HOOK_TIMEOUT seconds (10). Its failure never changes the lock
or the run: it is a hook_failed line in the audit log.";

/// The top-level help's notes: the rules, hooks, then every exit status
/// (from the one table the man pages and README also say).
fn after_help() -> String {
    format!(
        "{RULES_HELP}\n\n{HOOKS_HELP}\n\n{}",
        super::failure::exit_summary()
    )
}

#[derive(Parser, Debug)]
#[command(
    name = "deploy-lock",
    version,
    about = "Deployment locks for bash deploy scripts, safe against races, crashes and pre-emption",
    long_about = "Deployment locks for bash deploy scripts.\n\n\
        `deploy-lock ENV [DEPLOY_SH_ARGS...]` is `deploy-lock run ENV [DEPLOY_SH_ARGS...]`: \
        it runs deploy/scripts/deploy.sh ENV under the environment's lock. The lock is the \
        legacy one (/tmp/togather-deploy-ENV.lock plus deploy/config/deployment-state.json), \
        so the legacy unlock.sh and deploy.sh see it. \
        Invoked as `unlock.sh`, this binary is the legacy unlock.sh, byte for byte.",
    after_help = after_help(),
    subcommand_value_name = "ENV|COMMAND",
    override_usage = "deploy-lock [OPTIONS] <ENV> [DEPLOY_SH_ARGS]...\n       deploy-lock [OPTIONS] <COMMAND>"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

/// Settings (global args) that do nothing for a subcommand, left off its
/// --help, its man page and its completions: the wait settings where
/// nothing waits, the etcd lease TTL where no lease is taken, every lock
/// setting but the checkout for log (it reads the checkout's audit trail
/// only), all of them for generate.
pub(super) fn inapplicable(sub: &str) -> &'static [&'static str] {
    match sub {
        "status" | "list" | "unlock" | "check" | "unfreeze" => {
            &["wait_interval", "wait_timeout", "etcd_ttl"]
        }
        "wait" => &["etcd_ttl"],
        // log reads the checkout's audit trail, so it keeps --project-root.
        "log" => &[
            "lock_dir",
            "stale_secs",
            "wait_interval",
            "wait_timeout",
            "backend",
            "etcd_endpoints",
            "etcd_prefix",
            "etcd_ttl",
        ],
        "generate" | "hook-run" => &[
            "lock_dir",
            "project_root",
            "stale_secs",
            "wait_interval",
            "wait_timeout",
            "backend",
            "etcd_endpoints",
            "etcd_prefix",
            "etcd_ttl",
        ],
        _ => &[],
    }
}

/// The definition the man pages describe: a setting that does nothing for a
/// subcommand gets a hidden local copy there, which keeps clap from adding
/// the global one; parsing is unchanged (it uses `Cli` itself).
pub fn deploy_lock_command() -> clap::Command {
    let cmd = Cli::command();
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    let mut cmd = cmd;
    for sub in names {
        let ids = inapplicable(&sub);
        cmd = cmd.mut_subcommand(sub.as_str(), |mut s| {
            for a in globals
                .iter()
                .filter(|a| ids.contains(&a.get_id().as_str()))
            {
                s = s.arg(a.clone().global(false).hide(true));
            }
            s
        });
    }
    cmd
}

/// run's --conflict-exit-code as a variable.
pub const ENV_CONFLICT_EXIT: &str = "DEPLOY_LOCK_CONFLICT_EXIT";

/// DEPLOY_LOCK_CONFLICT_EXIT, read as the flag would be (the parser here
/// leaves variables to us): unset or empty is none, else 1-255.
fn conflict_exit_from_env() -> Result<Option<i32>, Failure> {
    let Some(v) = std::env::var_os(ENV_CONFLICT_EXIT).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    let text = v.to_string_lossy();
    match text.parse::<u8>() {
        Ok(n) if n > 0 => Ok(Some(i32::from(n))),
        _ => Err(Failure::Usage(format!(
            "{ENV_CONFLICT_EXIT}={text} is not an exit code from 1 to 255 (unset it for the usual 75, 124 and 76)"
        ))),
    }
}

/// run's --reason as a variable.
pub const ENV_REASON: &str = "DEPLOY_LOCK_REASON";

/// DEPLOY_LOCK_REASON, read as the flag would be (the parser here leaves
/// variables to us): unset or empty is none. Bytes that are not UTF-8 are
/// replaced, as every foreign string is before it is shown.
fn reason_from_env() -> Option<String> {
    std::env::var_os(ENV_REASON)
        .filter(|v| !v.is_empty())
        .map(|v| v.to_string_lossy().into_owned())
}

/// A reason as given (`--reason` or DEPLOY_LOCK_REASON): empty is none;
/// longer than [`MAX_REASON_CHARS`] is a usage error (exit 2), so what
/// everyone is shown is what was typed, never a cut of it.
fn checked_reason(text: Option<String>) -> Result<Option<String>, Failure> {
    use deploy_lock::status::MAX_REASON_CHARS;
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    let n = text.chars().count();
    if n > MAX_REASON_CHARS {
        return Err(Failure::Usage(format!(
            "--reason (or {ENV_REASON}) is {n} characters long; give at most {MAX_REASON_CHARS} (a ticket or a link says more)"
        )));
    }
    Ok(Some(text))
}

/// Settings shared by every subcommand; each defaults to its variable.
#[derive(Args, Debug, Default)]
pub struct GlobalOpts {
    /// Folder holding togather-deploy-ENV.lock
    #[arg(long, global = true, value_name = "DIR", env = ENV_LOCK_DIR, default_value = "/tmp", hide_env_values = true)]
    pub lock_dir: Option<OsString>,
    /// Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]
    #[arg(long, global = true, value_name = "DIR", env = ENV_PROJECT_ROOT, hide_env_values = true, value_hint = clap::ValueHint::DirPath)]
    pub project_root: Option<OsString>,
    /// A lock older than this is stale
    #[arg(long, global = true, value_name = "SECS", env = ENV_STALE_SECS, default_value = "1800", hide_env_values = true)]
    pub stale_secs: Option<OsString>,
    /// Seconds between progress lines while waiting; decimals allowed
    #[arg(long, global = true, value_name = "SECS", env = ENV_WAIT_INTERVAL, default_value = "5", hide_env_values = true)]
    pub wait_interval: Option<OsString>,
    /// Give up waiting after this many seconds
    #[arg(long, global = true, value_name = "SECS", env = ENV_WAIT_TIMEOUT, default_value = "3600", hide_env_values = true)]
    pub wait_timeout: Option<OsString>,
    /// Where locks live: this host's lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env's, else local]
    #[arg(
        long,
        global = true,
        value_name = "local|etcd",
        env = "DEPLOY_LOCK_BACKEND",
        hide_env_values = true
    )]
    pub backend: Option<OsString>,
    /// etcd client URLs, comma-separated, tried in order
    #[arg(
        long,
        global = true,
        value_name = "URLS",
        env = "DEPLOY_LOCK_ETCD_ENDPOINTS",
        hide_env_values = true
    )]
    pub etcd_endpoints: Option<OsString>,
    /// etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]
    #[arg(
        long,
        global = true,
        value_name = "PREFIX",
        env = "DEPLOY_LOCK_ETCD_PREFIX",
        hide_env_values = true
    )]
    pub etcd_prefix: Option<OsString>,
    /// etcd lease TTL: a dead holder blocks others this long at most [default: 30]
    #[arg(
        long,
        global = true,
        value_name = "SECS",
        env = "DEPLOY_LOCK_ETCD_TTL",
        hide_env_values = true
    )]
    pub etcd_ttl: Option<OsString>,
}

const STATUS_AFTER_HELP: &str = "\
Exit status: 0, also for a held lock (the status block or JSON says how it
is held). With --quiet, like `flock -n` and `systemctl is-active`: 0 when
`deploy-lock run ENV` would start now without --force (the lock is free, or
its holder is not running and it is older than the stale timeout), 75 when
it would not (held, frozen, holder unknown, something else at the lock path, a dead
holder's lock not yet stale, a deploy-lock run still holding it, or run
--wait waiters in line for it: the queue, shown after the status block and
as `waiters` in the JSON, is served first); without ENV, 0 only when that
holds for every environment. Errors print
on stderr either way: 65 state file not valid, 74 lock folder or I/O
error, 2 usage.";

const RUN_AFTER_HELP: &str = "\
`deploy-lock ENV [DEPLOY_SH_ARGS...]` is this command: run's own flags
(--wait[=SECS], --force, --remote, --remote-dir and the settings) are
deploy-lock's wherever they stand before `--`; every other word goes to
deploy.sh. --force and --remote USER@HOST are also passed on to deploy.sh
(--remote=USER@HOST as two words); --help after ENV is deploy.sh's. Without
a COMMAND, deploy.sh gets --force added (deploy-lock holds the lock for it);
with --help no lock is taken; with --remote the server's lock is checked and
no local lock is taken.

Rules, liveness first and age second:
  - A holder that is alive on this host (its pid runs, with the recorded start
    time and boot id when the record has them) is never taken over, whatever
    the lock's age, even with --force: exit 75, or wait with --wait.
  - A holder that is dead, or on another host, is taken over automatically
    once the lock is older than the stale timeout (30 minutes), or at any age
    with --force. A lock directory without a readable locked_at is aged by
    its modification time.
  - A lock directory that no record explains (holder unknown: maybe a legacy
    deploy.sh that has not written its record yet) is taken over only once
    stale, never with --force; deploy-lock unlock ENV removes it.
  - Judge, remove and re-create happen under a guard flock, so of several
    processes taking over one stale lock exactly one wins.
  - Every --wait run waits in line and waiters are served in arrival order;
    while any wait, a run without --wait is refused (exit 75) rather than
    jump the queue. A waiter leaves the line when it gets the lock, gives up
    or dies.
  - The lock is released only after COMMAND has exited, and only if it is
    still ours; deploy-lock then exits with COMMAND's status (or dies of the
    same signal).
Signals INT, QUIT, TERM, HUP, USR1, USR2 and WINCH sent to deploy-lock reach
COMMAND once; the terminal's own Ctrl-C and quit key reach it directly.
A signal while waiting for the lock ends deploy-lock by that same signal.";

const FREEZE_AFTER_HELP: &str = "\
A freeze is a lock held by a detached deploy-lock process with no command:
every run is refused with its reason and who froze it (exit 75, or
--conflict-exit-code's N), `wait` and `run --wait` wait for its end, and the
legacy deploy.sh and unlock.sh see a held lock (on this host's lock folder
its locked_at is kept fresh). `freeze` returns once the lock is held (exit
75 if it is busy, unless --wait). It ends at --until (within a second),
with `deploy-lock unfreeze ENV` (or `unlock`), or if its holder is stopped
(TERM, INT, HUP: a clean shutdown lifts it). A holder that dies without
releasing (kill -9, a crash, power loss) leaves a dead holder's lock, which
the usual rules handle: taken over once stale, `run --force` before that,
`unlock` any time. Events: freeze, then unfreeze (by `unfreeze`, `unlock`,
--until or a signal), in the audit log.";

const LOG_AFTER_HELP: &str = "\
The audit trail is the checkout's deploy/config/deployment-audit.log, beside
the state file (DEPLOY_LOCK_AUDIT_LOG names another file), shared by everyone
who deploys from the checkout: one JSON object per line, appended (never
rewritten) by every acquire, takeover, release, release_skipped,
force_unlock, reset_state, restore, lost, freeze, unfreeze and hook_failed event, with time (UTC), event,
environment, user (under sudo, the person who ran sudo, with sudo: true),
host, pid, command (the command line as typed), holder (the previous holder,
for a takeover or force-unlock), lock_id and, on acquisitions,
deployment_id; a run's release also has exit_status, or signal, of its
command. The log shows it merged with $HOME/.togather/logs/deployments/
locks.log, where earlier versions wrote each user's events. A release shows
how long the lock was held when its acquisition is in the log. A line that
is not such an object is shown as damaged, with its number, and never stops
the rest. With the etcd backend every event is also copied to etcd, under
PREFIX/v1/env/ENV/audit/ (the newest 1000 of each environment; a copy that
fails is a warning, never a failed lock), and the log adds the events every
other machine copied there, each once (line 0 in --json: in no file here).";

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
    fn get(self) -> Option<Remote> {
        let dir = self.remote_dir;
        self.remote.map(|target| Remote { target, dir })
    }
}

#[derive(Subcommand, Debug)]
pub enum GenerateCmd {
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
    /// Wait for the lock instead of exiting 75, at most SECS (default: --wait-timeout), in line: waiters are served in arrival order
    #[arg(long, value_name = "SECS", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub wait: Option<String>,
    /// Take over a dead holder's lock before it is stale (never a live holder's); also passed to deploy.sh
    #[arg(long)]
    pub force: bool,
    /// Exit N (1-255) instead of 75, 124 or 76 when the lock is refused, --wait gives up, or the lock is lost, so the command's own exit codes stay apart (like flock -E)
    #[arg(long, value_name = "N", env = ENV_CONFLICT_EXIT, hide_env_values = true, value_parser = clap::value_parser!(u8).range(1..))]
    pub conflict_exit_code: Option<u8>,
    /// Why this run holds the lock, shown to whoever looks (status, refusals, waiting, log) [default: deploy.sh's arguments]
    #[arg(long, value_name = "TEXT", env = ENV_REASON, hide_env_values = true)]
    pub reason: Option<String>,
    #[command(flatten)]
    pub remote: RemoteOpts,
    #[arg(value_enum)]
    pub env: Environment,
    /// deploy.sh's own arguments: --dry-run, --skip-migrations, --version COMMIT, --branch BRANCH, --env-diff, --help (see THE LEGACY DEPLOY.SH)
    #[arg(value_name = "DEPLOY_SH_ARGS", allow_hyphen_values = true)]
    pub deploy_args: Vec<OsString>,
    /// The command to run instead of deploy/scripts/deploy.sh ENV --force (deploy-lock holds the lock for it)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<OsString>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show the lock status (the unlock.sh status block, or JSON); without ENV, one line per environment
    #[command(visible_alias = "list", after_help = STATUS_AFTER_HELP)]
    Status {
        /// The environment; without it, every environment (`deploy-lock list` is the same)
        #[arg(value_enum)]
        env: Option<Environment>,
        /// Print one JSON object instead of the status block
        #[arg(long)]
        json: bool,
        /// Print nothing; exit 0 if `deploy-lock run ENV` would start now without --force, else 75
        #[arg(long, short = 'q', conflicts_with = "json")]
        quiet: bool,
        /// Keep watching: every environment (or ENV) with its holder, age and waiters, redrawn on every change until Ctrl-C; off a terminal, one block per change
        #[arg(long, short = 'w', conflicts_with_all = ["json", "quiet", "remote"])]
        watch: bool,
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
        /// Recover from a state file that is not valid JSON: back it up beside itself (the time in its name), write a fresh one with the lock released, and remove the lock directory
        #[arg(long)]
        reset_state: bool,
        #[command(flatten)]
        remote: RemoteOpts,
    },
    /// Exit 0 only while the fencing token N still holds the lock (etcd; before an irreversible step)
    Check {
        #[arg(value_enum)]
        env: Environment,
        /// The token the command got as DEPLOY_LOCK_FENCING_TOKEN
        #[arg(long, value_name = "N")]
        token: i64,
    },
    /// Run deploy/scripts/deploy.sh ENV (or COMMAND) under the lock; `deploy-lock ENV ...` is short for it
    #[command(after_help = RUN_AFTER_HELP)]
    Run(RunArgs),
    /// Freeze ENV: hold its lock with no command, so no deploy starts, until `unfreeze` or --until
    #[command(after_help = FREEZE_AFTER_HELP)]
    Freeze {
        #[arg(value_enum)]
        env: Environment,
        /// Why (shown to everyone who is refused); required
        #[arg(long, value_name = "TEXT", env = ENV_REASON, hide_env_values = true)]
        reason: Option<String>,
        /// Lift it by itself then: an RFC 3339 time (2026-02-03T18:00:00Z), HH:MM today (local time), or a duration (2h, 90m, "1h 30m", 1d)
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
        /// Wait for the lock if it is held, at most SECS (default: --wait-timeout)
        #[arg(long, value_name = "SECS", num_args = 0..=1, require_equals = true, default_missing_value = "")]
        wait: Option<String>,
        /// The detached holder's own flag (the freeze's end, or `never`)
        #[arg(long, value_name = "UNTIL", hide = true)]
        holder: Option<String>,
    },
    /// Lift a freeze: remove the lock `freeze` holds (only a freeze; audited)
    Unfreeze {
        #[arg(value_enum)]
        env: Environment,
        /// Lift it only if it is still this freeze (the Lock ID `status` shows)
        #[arg(long, value_name = "LOCK_ID")]
        id: Option<String>,
    },
    /// Show the audit trail: who took, released, took over or force-unlocked which lock, when
    #[command(after_help = LOG_AFTER_HELP)]
    Log {
        /// Only this environment's events
        #[arg(value_enum)]
        env: Option<Environment>,
        /// One JSON object per line, as recorded, plus `line` and `held_seconds`
        #[arg(long)]
        json: bool,
        /// Only the last N lines
        #[arg(short = 'n', long = "lines", value_name = "N")]
        last: Option<usize>,
        /// Only events since DURATION ago (90s, 30m, 2h, 1d, "1h 30m") or a UTC time (2026-02-03T20:00:00Z)
        #[arg(long, value_name = "DURATION")]
        since: Option<String>,
    },
    /// Run a hook for one lock event (deploy-lock starts it, detached; the event on stdin)
    #[command(hide = true, name = "hook-run")]
    HookRun {
        #[arg(long)]
        timeout: f64,
        #[arg(long)]
        event: String,
        #[arg(long)]
        environment: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        state_file: PathBuf,
        #[arg(long)]
        log: Option<PathBuf>,
        #[arg(last = true, required = true)]
        command: OsString,
    },
    /// Write the man pages or completions (used to refresh man/ and completions/)
    #[command(hide = true)]
    Generate {
        #[command(subcommand)]
        what: GenerateCmd,
    },
}

/// One of run's flags, as the clap definition declares it.
struct Flag {
    long: String,
    takes_value: bool,
    /// `--wait[=SECS]`: a value only after `=`.
    equals_only: bool,
}

/// run's flags (its own and the global settings), from the definition.
fn run_flags() -> Vec<Flag> {
    let mut cmd = Cli::command();
    cmd.build();
    let run = cmd.find_subcommand("run").expect("run is defined");
    run.get_arguments()
        // Help after the environment is deploy.sh's (see sort_run_words).
        .filter(|a| !matches!(a.get_long(), Some("help" | "version")))
        .filter_map(|a| {
            Some(Flag {
                long: a.get_long()?.to_string(),
                takes_value: a.get_action().takes_values(),
                equals_only: a.is_require_equals_set(),
            })
        })
        .collect()
}

/// deploy.sh reads these too: seen by us, and passed on.
const SHARED_WITH_DEPLOY_SH: [&str; 2] = ["force", "remote"];

/// The words after `run`, sorted: ours (for clap), the environment,
/// deploy.sh's, and the command after `--`.
#[derive(Debug, Default, PartialEq)]
struct RunWords {
    ours: Vec<OsString>,
    env: Option<OsString>,
    deploy: Vec<OsString>,
    command: Option<Vec<OsString>>,
    /// Index of the environment in the words.
    env_at: usize,
}

fn sort_run_words(words: Vec<OsString>, flags: &[Flag]) -> Result<RunWords, Failure> {
    let mut w = RunWords::default();
    let mut it = words.into_iter().enumerate().peekable();
    while let Some((at, word)) = it.next() {
        if word == "--" {
            w.command = Some(it.map(|(_, v)| v).collect());
            break;
        }
        let text = word.to_str().unwrap_or("");
        // Help before the environment is ours; after it, deploy.sh's.
        if w.env.is_none() && (text == "-h" || text == "--help") {
            w.ours.push(word);
            continue;
        }
        let (name, value) = match text.strip_prefix("--") {
            Some(rest) => match rest.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (rest, None),
            },
            None => ("", None),
        };
        if let Some(flag) = flags.iter().find(|f| !name.is_empty() && f.long == name) {
            if flag.equals_only && value.is_none() {
                let next = it.peek().map(|(_, v)| v.clone());
                value_apart(flag, next.as_deref())?;
            }
            let shared = SHARED_WITH_DEPLOY_SH.contains(&name);
            w.ours.push(word.clone());
            if flag.takes_value && !flag.equals_only && value.is_none() {
                let v = it.next().map(|(_, v)| v);
                if let Some(v) = &v {
                    w.ours.push(v.clone());
                }
                if shared {
                    w.deploy.push(word);
                    w.deploy.extend(v);
                }
            } else if shared {
                // deploy.sh reads `--remote USER@HOST` as two words.
                match value {
                    Some(v) if flag.takes_value => {
                        w.deploy.push(format!("--{name}").into());
                        w.deploy.push(v.into());
                    }
                    _ => w.deploy.push(word),
                }
            }
            continue;
        }
        if w.env.is_none() {
            if text.starts_with('-') {
                // Not ours and before the environment: clap says what is wrong.
                w.ours.push(word);
            } else {
                w.env = Some(word);
                w.env_at = at;
            }
            continue;
        }
        w.deploy.push(word);
    }
    Ok(w)
}

/// `--wait 5`: a flag whose value goes only after `=`, followed by a number
/// as its own word. Read as written, `5` would be the environment (or a
/// deploy.sh argument), so it is refused with the spelling that works.
fn value_apart(flag: &Flag, next: Option<&std::ffi::OsStr>) -> Result<(), Failure> {
    let Some(next) = next.and_then(|n| n.to_str()) else {
        return Ok(());
    };
    if next.parse::<f64>().is_ok() {
        let long = &flag.long;
        return Err(Failure::Usage(format!(
            "--{long} takes its seconds after '=': write --{long}={next} (a separate '{next}' would be read as the environment or a deploy.sh argument)"
        )));
    }
    Ok(())
}

const SUBCOMMANDS: [&str; 12] = [
    "status", "list", "wait", "unlock", "check", "run", "freeze", "unfreeze", "log", "generate",
    "hook-run", "help",
];

/// The command or environment `word` is a likely typo of: within one edit
/// (a transposition counts as one) for short words, two from six letters.
fn similar(word: &str) -> Option<(&'static str, &'static str)> {
    let max = if word.chars().count() >= 6 { 2 } else { 1 };
    let envs = ["development", "staging", "production"];
    let commands = SUBCOMMANDS.iter().map(|c| ("command", *c));
    commands
        .chain(envs.iter().map(|e| ("environment", *e)))
        .map(|(kind, c)| (edit_distance(word, c), kind, c))
        .filter(|(d, ..)| *d <= max)
        .min_by_key(|(d, ..)| *d)
        .map(|(_, kind, c)| (kind, c))
}

/// Optimal string alignment distance: insertions, deletions, substitutions
/// and swaps of two neighbours, each one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The argument list clap parses: the `ENV` shorthand becomes `run ENV`
/// (cargo-alias style), and run's words are sorted so that its flags are
/// ours wherever they stand before `--`. Returns the deploy.sh words aside,
/// and the words as typed.
fn rewrite(args: Vec<OsString>) -> Result<(Vec<OsString>, Vec<OsString>, Typed), Failure> {
    let flags = run_flags();
    let mut it = args.into_iter();
    let mut out: Vec<OsString> = it.next().into_iter().collect();
    let rest: Vec<OsString> = it.collect();
    // Find the first word that is not a flag (or a flag's value).
    let mut i = 0;
    while i < rest.len() {
        let text = rest[i].to_str().unwrap_or("");
        if text == "--" || matches!(text, "-h" | "--help" | "-V" | "--version") {
            break;
        }
        if let Some(name) = text.strip_prefix("--") {
            let flag = flags.iter().find(|f| f.long == name);
            if let Some(f) = flag.filter(|f| f.equals_only) {
                value_apart(f, rest.get(i + 1).map(|w| w.as_os_str()))?;
            }
            let takes = flag.is_some_and(|f| f.takes_value && !f.equals_only);
            i += if takes { 2 } else { 1 };
            continue;
        }
        if text.starts_with('-') {
            i += 1;
            continue;
        }
        break;
    }
    let Some(first) = rest.get(i).cloned() else {
        out.extend(rest);
        return Ok((out, Vec::new(), Typed::default()));
    };
    let first_text = first.to_string_lossy();
    let typed_words = rest.clone();
    let (before, words, offset) = if Environment::parse(&first_text).is_some() {
        // The shorthand: everything, flags before ENV included, is run's.
        (Vec::new(), rest, 0)
    } else if first_text == "run" {
        let mut rest = rest;
        let words = rest.split_off(i + 1);
        rest.pop();
        (rest, words, i + 1)
    } else if SUBCOMMANDS.contains(&first_text.as_ref()) || first_text.starts_with('-') {
        out.extend(rest);
        return Ok((out, Vec::new(), Typed::default()));
    } else {
        // A typo gets the suggestion clap gives `status stagign`, for the
        // commands and the environments alike.
        let tip = similar(&first_text)
            .map(|(kind, word)| format!("; a similar {kind} exists: '{word}'"))
            .unwrap_or_default();
        return Err(Failure::Usage(format!(
            "'{first_text}' is neither an environment (development, staging, production) nor a command{tip}; see deploy-lock --help"
        )));
    };
    let sorted = sort_run_words(words, &flags)?;
    let typed = Typed {
        words: typed_words,
        env_at: offset + sorted.env_at,
    };
    out.extend(before);
    out.push("run".into());
    out.extend(sorted.ours);
    out.extend(sorted.env);
    if let Some(command) = sorted.command {
        out.push("--".into());
        out.extend(command);
    }
    Ok((out, sorted.deploy, typed))
}

/// Parses `deploy-lock ARGS` (argv[0] first) into a request.
pub fn parse(args: Vec<OsString>) -> Result<Request, Failure> {
    let (args, deploy_args, typed) = rewrite(args)?;
    let matches = match parsing_command().try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) if e.use_stderr() => return Err(Failure::Clap(e)),
        // --help, --version: clap's text on stdout, from the whole definition
        // (the variables shown beside their flags), each subcommand showing
        // only the settings it reads (as its man page does).
        Err(e) => {
            let e = deploy_lock_command()
                .try_get_matches_from(&args)
                .err()
                .unwrap_or(e);
            return Ok(Request {
                persona: Persona::DeployLock,
                script: None,
                settings: SettingInputs::default(),
                remote: None,
                op: Operation::Print(e.render().to_string()),
            });
        }
    };
    let cli = Cli::from_arg_matches(&matches).map_err(Failure::Clap)?;
    let sub = matches.subcommand().map(|(_, m)| m);
    let settings = setting_inputs(&matches, sub);
    let (op, remote) = match cli.command {
        Command::Status {
            env,
            json,
            quiet,
            watch,
            remote,
        } => (
            match env {
                _ if watch => Operation::Watch { env },
                Some(env) => Operation::Status { env, json, quiet },
                None => Operation::StatusAll { json, quiet },
            },
            remote.get(),
        ),
        Command::Wait { env, remote } => (Operation::Wait { env }, remote.get()),
        Command::Check { env, token } => (Operation::Check { env, token }, None),
        Command::Unlock {
            env,
            yes,
            id,
            reset_state,
            remote,
        } => (
            Operation::Unlock {
                env,
                yes,
                id,
                reset_state,
            },
            remote.get(),
        ),
        Command::Run(r) => {
            let wait = match r.wait.as_deref() {
                None => None,
                Some("") => Some(None),
                Some(v) => Some(Some(
                    parse_fractional_secs("--wait", v).map_err(Failure::Setting)?,
                )),
            };
            let mut deploy = r.deploy_args;
            deploy.extend(deploy_args);
            let run = RunRequest {
                env: r.env,
                wait,
                force: r.force,
                conflict_exit: match r.conflict_exit_code {
                    Some(n) => Some(i32::from(n)),
                    None => conflict_exit_from_env()?,
                },
                reason: checked_reason(r.reason.or_else(reason_from_env))?,
                deploy_args: deploy,
                command: r.command,
                typed,
            };
            if !run.command.is_empty() && !run.deploy_args.is_empty() {
                let words = run
                    .deploy_args
                    .iter()
                    .filter(|w| !["--force", "--remote"].contains(&w.to_str().unwrap_or("")))
                    .cloned()
                    .collect::<Vec<_>>();
                if !words.is_empty() || r.remote.remote.is_some() {
                    return Err(Failure::ArgsAndCommand {
                        words: run.deploy_args,
                    });
                }
            }
            (Operation::Run(run), r.remote.get())
        }
        Command::Freeze {
            env,
            reason,
            until,
            wait,
            holder,
        } => {
            let Some(reason) = checked_reason(reason.or_else(reason_from_env))? else {
                return Err(Failure::Usage(format!(
                    "freeze needs a reason: deploy-lock freeze {env} --reason TEXT (or {ENV_REASON}); it is shown to everyone it refuses"
                )));
            };
            let wait = match wait.as_deref() {
                None => None,
                Some("") => Some(None),
                Some(v) => Some(Some(
                    parse_fractional_secs("--wait", v).map_err(Failure::Setting)?,
                )),
            };
            // The retry a refusal suggests: this freeze, `--wait` added.
            let mut words: Vec<OsString> = vec!["freeze".into(), env.as_str().into()];
            words.extend(["--reason".into(), reason.clone().into()]);
            if let Some(u) = &until {
                words.extend(["--until".into(), u.into()]);
            }
            let typed = Typed { words, env_at: 1 };
            (
                Operation::Freeze(FreezeRequest {
                    env,
                    reason,
                    until,
                    wait,
                    holder,
                    typed,
                }),
                None,
            )
        }
        Command::Unfreeze { env, id } => (Operation::Unfreeze { env, id }, None),
        Command::HookRun {
            timeout,
            event,
            environment,
            user,
            state_file,
            log,
            command,
        } => (
            Operation::HookRun(deploy_lock::hook::Run {
                command,
                timeout: std::time::Duration::try_from_secs_f64(timeout)
                    .unwrap_or(deploy_lock::hook::DEFAULT_TIMEOUT),
                event,
                environment,
                user,
                log,
                state_file,
            }),
            None,
        ),
        Command::Log {
            env,
            json,
            last,
            since,
        } => (
            Operation::Log(LogRequest {
                env,
                json,
                last,
                since,
            }),
            None,
        ),
        Command::Generate { what } => (
            Operation::Generate(match what {
                GenerateCmd::Man { dir } => Generate::Man { dir },
                GenerateCmd::Completions { shell, persona } => {
                    Generate::Completions { shell, persona }
                }
                GenerateCmd::All { root } => Generate::All { root },
            }),
            None,
        ),
    };
    Ok(Request {
        persona: Persona::DeployLock,
        script: None,
        settings,
        remote,
        op,
    })
}

/// The definition without its `env = ...`: those are for help and the man
/// page; the variables are read in one place ([`SettingInputs::from_vars`],
/// as for `unlock.sh`), so clap never mixes them into its own messages.
fn parsing_command() -> clap::Command {
    fn strip(cmd: clap::Command) -> clap::Command {
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|s| s.get_name().to_string())
            .collect();
        let mut cmd = cmd.mut_args(|a| a.env(None));
        for name in names {
            cmd = cmd.mut_subcommand(name, strip);
        }
        cmd
    }
    strip(Cli::command())
}

/// The variables, then each setting given as a flag over its variable.
fn setting_inputs(top: &ArgMatches, sub: Option<&ArgMatches>) -> SettingInputs {
    let mut s = SettingInputs::from_vars(|name| std::env::var_os(name));
    let flag = |id: &str, flag: &str| -> Option<Raw> {
        sub.into_iter()
            .chain([top])
            .find(|m| m.value_source(id) == Some(ValueSource::CommandLine))
            .and_then(|m| m.get_one::<OsString>(id))
            .map(|v| Raw::new(v.clone(), flag))
    };
    let set = |slot: &mut Option<Raw>, id: &str, name: &str| {
        if let Some(r) = flag(id, name) {
            *slot = Some(r);
        }
    };
    set(&mut s.lock_dir, "lock_dir", "--lock-dir");
    set(&mut s.stale_secs, "stale_secs", "--stale-secs");
    set(&mut s.wait_interval, "wait_interval", "--wait-interval");
    set(&mut s.wait_timeout, "wait_timeout", "--wait-timeout");
    set(&mut s.project_root, "project_root", "--project-root");
    for (id, long, name) in [
        ("backend", "--backend", "DEPLOY_LOCK_BACKEND"),
        (
            "etcd_endpoints",
            "--etcd-endpoints",
            "DEPLOY_LOCK_ETCD_ENDPOINTS",
        ),
        ("etcd_prefix", "--etcd-prefix", "DEPLOY_LOCK_ETCD_PREFIX"),
        ("etcd_ttl", "--etcd-ttl", "DEPLOY_LOCK_ETCD_TTL"),
    ] {
        if let Some(r) = flag(id, long) {
            s.store.push((name, r));
        }
    }
    s
}

/// Whether any setting was given as a flag (they do not travel with
/// `--remote`).
pub fn flags_given(s: &SettingInputs) -> bool {
    [
        &s.lock_dir,
        &s.stale_secs,
        &s.wait_interval,
        &s.wait_timeout,
        &s.project_root,
    ]
    .iter()
    .any(|r| r.as_ref().is_some_and(|r| r.origin.starts_with("--")))
        || s.store.iter().any(|(_, r)| r.origin.starts_with("--"))
}

#[cfg(test)]
pub fn os(words: &[&str]) -> Vec<OsString> {
    words.iter().map(OsString::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    fn run_of(words: &[&str]) -> (RunRequest, Option<Remote>) {
        let mut args = os(&["deploy-lock"]);
        args.extend(os(words));
        match parse(args).unwrap() {
            Request {
                op: Operation::Run(r),
                remote,
                ..
            } => (r, remote),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_shorthand_is_run() {
        let (r, _) = run_of(&["staging", "--dry-run", "--help", "--force"]);
        assert_eq!(r.env, Environment::Staging);
        assert!(r.force);
        assert_eq!(r.deploy_args, os(&["--dry-run", "--help", "--force"]));
        assert_eq!(
            run_of(&["staging", "--dry-run"]),
            run_of(&["run", "staging", "--dry-run"])
        );
    }

    /// Issue 11: the shorthand's flags are ours wherever they stand before `--`.
    #[test]
    fn shorthand_flags_are_position_independent() {
        let a = run_of(&["staging", "--dry-run", "--lock-dir", "/x", "--wait=5"]);
        let b = run_of(&["--lock-dir", "/x", "staging", "--wait=5", "--dry-run"]);
        let c = run_of(&["--wait=5", "staging", "--dry-run", "--lock-dir=/x"]);
        assert_eq!(a.0.deploy_args, os(&["--dry-run"]));
        assert_eq!(a.0.wait, Some(Some(std::time::Duration::from_secs(5))));
        assert_eq!(a, b);
        assert_eq!(a.0, c.0);
        let parse_dir = |words: &[&str]| {
            let mut args = os(&["deploy-lock"]);
            args.extend(os(words));
            parse(args).unwrap().settings.lock_dir.map(|r| r.value)
        };
        for words in [
            &["staging", "--dry-run", "--lock-dir", "/x"][..],
            &["staging", "--lock-dir", "/x", "--dry-run"],
            &["--lock-dir=/x", "staging", "--dry-run"],
        ] {
            assert_eq!(parse_dir(words), Some("/x".into()), "{words:?}");
        }
    }

    /// Issue 11: `--remote=H` and `--remote H` are one request.
    #[test]
    fn remote_with_or_without_equals_is_the_same() {
        let a = run_of(&["staging", "--remote=deploy@h", "--dry-run"]);
        let b = run_of(&["staging", "--remote", "deploy@h", "--dry-run"]);
        assert_eq!(a, b);
        assert_eq!(a.0.deploy_args, os(&["--remote", "deploy@h", "--dry-run"]));
        assert_eq!(a.1.unwrap().target, "deploy@h");
    }

    #[test]
    fn words_after_dashdash_are_the_command() {
        let (r, _) = run_of(&["run", "--wait", "staging", "--", "make", "--force"]);
        assert_eq!(r.wait, Some(None));
        assert!(!r.force);
        assert_eq!(r.command, os(&["make", "--force"]));
        assert!(r.deploy_args.is_empty());
    }

    #[test]
    fn unknown_words_are_one_clear_error() {
        let err = parse(os(&["deploy-lock", "bogus"])).unwrap_err();
        assert!(matches!(err, Failure::Usage(_)), "{err:?}");
        assert!(matches!(
            parse(os(&["deploy-lock", "status", "bogus"])).unwrap_err(),
            Failure::Clap(_)
        ));
    }
}
