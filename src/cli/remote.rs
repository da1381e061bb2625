//! Locks that live on a server: the same operation run over ssh in the
//! server's checkout, its output passed through and its exit code returned.
//! ssh failures become one clear line each (not installed, unreachable,
//! authentication refused, no checkout, no deploy-lock there).

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::process::{Command, Stdio};

pub const DEFAULT_REMOTE_DIR: &str = "/opt/togather/src";
pub const ENV_SSH: &str = "DEPLOY_LOCK_SSH";

/// Where the lock lives: `USER@HOST` and the checkout there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub target: String,
    pub dir: String,
}

/// What to run on the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Program {
    /// `./deploy/scripts/unlock.sh` in the checkout (legacy or deploy-lock).
    UnlockSh,
    /// `deploy-lock` on the server's PATH (or ~/.local/bin, /usr/local/bin);
    /// failing that, the checkout's `deploy/scripts/unlock.sh`: as
    /// deploy-lock (through [`ENV_PERSONA`]) when it is a link to it, else,
    /// the legacy bash script, with `legacy`'s words.
    DeployLock { legacy: Option<LegacyCall> },
}

/// What to ask the legacy `unlock.sh` instead, when the server has nothing
/// else. None in [`Program::DeployLock`]: the legacy script cannot do it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LegacyCall {
    pub args: Vec<String>,
    /// Answer its confirmation with `yes` (`unlock --yes`).
    pub answer_yes: bool,
}

/// Makes the binary answer as the named persona whatever its file name
/// (`deploy-lock` or `unlock.sh`); how a server's `deploy/scripts/unlock.sh`
/// link is run as `deploy-lock`.
pub const ENV_PERSONA: &str = "DEPLOY_LOCK_PERSONA";

/// Why the remote operation did not run; Display is the one-line error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    /// A target ssh would read as an option (`-oProxyCommand=...`).
    BadTarget {
        target: String,
    },
    NoSsh,
    /// `$DEPLOY_LOCK_SSH` names a program that is not there.
    SshCommandMissing {
        program: String,
    },
    Unreachable {
        host: String,
        detail: String,
    },
    AuthRefused {
        host: String,
        detail: String,
    },
    HostKey {
        host: String,
        detail: String,
    },
    NoCheckout {
        host: String,
        dir: String,
    },
    NoProgram {
        host: String,
        dir: String,
        program: Program,
    },
    /// Only the legacy unlock.sh is there, and it cannot do what was asked.
    LegacyCannot {
        host: String,
        dir: String,
    },
    Ssh {
        host: String,
        detail: String,
    },
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::BadTarget { target } => write!(
                f,
                "invalid --remote '{target}': a host cannot start with '-'; give USER@HOST"
            ),
            RemoteError::NoSsh => write!(
                f,
                "ssh is not installed: install the OpenSSH client (e.g. apt-get install openssh-client) or set {ENV_SSH} to the ssh command to use"
            ),
            RemoteError::SshCommandMissing { program } => write!(
                f,
                "{ENV_SSH} runs '{program}', which is not installed or not on PATH: fix {ENV_SSH} (e.g. {ENV_SSH}=\"ssh -p 2222\") or unset it to use ssh"
            ),
            RemoteError::Unreachable { host, detail } => write!(
                f,
                "cannot reach {host} ({detail}): check the host name, the network and that sshd runs there"
            ),
            RemoteError::AuthRefused { host, detail } => write!(
                f,
                "{host} refused the ssh login ({detail}): check the user name and your key (ssh-add -l), or set {ENV_SSH}=\"ssh -i KEY\""
            ),
            RemoteError::HostKey { host, detail } => write!(
                f,
                "{host}'s host key is not trusted ({detail}): connect once with ssh {host} to check and accept it, or fix ~/.ssh/known_hosts"
            ),
            RemoteError::NoCheckout { host, dir } => write!(
                f,
                "no checkout at {dir} on {host}: pass the server's checkout with --remote-dir DIR"
            ),
            RemoteError::NoProgram { host, dir, program } => match program {
                Program::UnlockSh => write!(
                    f,
                    "{host} has no {dir}/deploy/scripts/unlock.sh: install deploy-lock there (./install.sh --project {dir}) or pass the right --remote-dir"
                ),
                Program::DeployLock { .. } => write!(
                    f,
                    "{host} has no deploy-lock on its PATH, in ~/.local/bin or in /usr/local/bin, and no {dir}/deploy/scripts/unlock.sh: install deploy-lock there (./install.sh), or pass the right --remote-dir"
                ),
            },
            RemoteError::LegacyCannot { host, dir } => write!(
                f,
                "{host} has only the legacy {dir}/deploy/scripts/unlock.sh, which cannot check a lock id: unlock without --id (the status is shown before the question), or install deploy-lock there (./install.sh --project {dir})"
            ),
            RemoteError::Ssh { host, detail } => write!(f, "ssh to {host} failed: {detail}"),
        }
    }
}

/// `'…'`-quotes a word for the remote POSIX shell.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The directory for the remote `cd`: quoted whole, except that a leading
/// `~/` (or a lone `~`) is the remote user's home, as scp and rsync read it.
fn quote_dir(dir: &str) -> String {
    if dir == "~" {
        "\"$HOME\"".to_string()
    } else if let Some(rest) = dir.strip_prefix("~/") {
        format!("\"$HOME\"/{}", sh_quote(rest))
    } else {
        sh_quote(dir)
    }
}

const MARK: &str = "deploy-lock-remote:";
/// The remote script's own exit codes (none of them a code deploy-lock or
/// the legacy unlock.sh uses).
const NO_CHECKOUT: i32 = 97;
const NO_PROGRAM: i32 = 98;
const LEGACY_CANNOT: i32 = 96;

/// On a remote tty, Ctrl-C and Ctrl-\ reach the whole remote foreground
/// group: the program dies of the signal and the shell, not exec'd away so
/// that it can, exits 128+N for it (ssh itself reports a remote death by
/// signal as a lost connection, 255).
const TRAPS: &str = "trap 'exit 130' INT; trap 'exit 131' QUIT";

/// The script the remote shell runs: enter the checkout, find the program,
/// run it with the quoted arguments. Failures exit 97/98 and, when stderr
/// is not a terminal (where it would show), print a marker line as well.
pub fn remote_script(dir: &str, program: &Program, args: &[String]) -> String {
    let quoted = |args: &[String]| {
        args.iter()
            .map(|a| sh_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let fail =
        |what: &str, code: i32| format!("{{ [ -t 2 ] || echo '{MARK} {what}' >&2; exit {code}; }}");
    let enter = format!(
        "cd {} 2>/dev/null || {}",
        quote_dir(dir),
        fail("no-checkout", NO_CHECKOUT)
    );
    let args = quoted(args);
    let run = match program {
        Program::UnlockSh => format!(
            "[ -x ./deploy/scripts/unlock.sh ] || {}; {TRAPS}; ./deploy/scripts/unlock.sh {args}; exit $?",
            fail("no-program", NO_PROGRAM)
        ),
        Program::DeployLock { legacy } => {
            // The checkout's unlock.sh is deploy-lock when, asked as
            // deploy-lock, it says so; else it is the legacy script.
            let legacy = match legacy {
                Some(call) => format!(
                    "[ -t 2 ] || echo '{MARK} legacy' >&2; {TRAPS}; {}./deploy/scripts/unlock.sh {}; exit $?",
                    if call.answer_yes { "echo yes | " } else { "" },
                    quoted(&call.args)
                ),
                None => fail("legacy-cannot", LEGACY_CANNOT),
            };
            format!(
                "b=$(command -v deploy-lock) || {{ for b in \"$HOME/.local/bin/deploy-lock\" /usr/local/bin/deploy-lock; do [ -x \"$b\" ] && break; b=; done; }}; \
                 if [ -z \"$b\" ] && [ -x ./deploy/scripts/unlock.sh ]; then \
                 case $({ENV_PERSONA}=deploy-lock ./deploy/scripts/unlock.sh --version 2>/dev/null </dev/null) in \
                 'deploy-lock '*) b=./deploy/scripts/unlock.sh; {ENV_PERSONA}=deploy-lock; export {ENV_PERSONA};; \
                 *) {legacy};; esac; fi; \
                 [ -n \"$b\" ] || {}; {TRAPS}; \"$b\" {args}; exit $?",
                fail("no-program", NO_PROGRAM)
            )
        }
    };
    format!("{enter}; {run}")
}

/// The remote command as one `sh -c` word, quoted so that any login shell
/// reads it the same: POSIX shells, fish (where `\\` and `\'` are escapes
/// even inside single quotes) and csh. Inside the single quotes there is
/// never a `'` or a `\`: a `'` is written `"'"` and a `\` is written `\\`,
/// both outside the quotes, which every one of those shells reads alike.
pub fn login_command(script: &str) -> String {
    let mut out = String::from("sh -c '");
    for c in script.chars() {
        match c {
            '\'' => out.push_str("'\"'\"'"),
            '\\' => out.push_str("'\\\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The program `$DEPLOY_LOCK_SSH` starts with, when it can be told without a
/// shell: its first word after any `NAME=value` assignments, unless quoting
/// or expansions are involved.
fn custom_program(custom: &str) -> Option<&str> {
    let first = custom.split_whitespace().find(|w| {
        let assignment = w.split_once('=').is_some_and(|(name, _)| {
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        !assignment
    })?;
    let plain = !first.contains(['\'', '"', '\\', '$', '`', '(', ')', ';', '&', '|', '<', '>']);
    // Shell words that run what follows: the program is not the first word.
    let builtin = ["exec", "command", "eval", "time", "!", "{"].contains(&first);
    (plain && !builtin).then_some(first)
}

/// The ssh command: `$DEPLOY_LOCK_SSH` (run by sh, so it may carry options,
/// as git's GIT_SSH_COMMAND), else `ssh` found on PATH.
fn ssh_command(extra: &[&str], target: &str, script: &str) -> Result<Command, RemoteError> {
    // A leading '-' would make the target an ssh option, and `--` ends ssh's
    // options for good measure.
    if target.starts_with('-') {
        return Err(RemoteError::BadTarget {
            target: target.to_string(),
        });
    }
    let mut args: Vec<OsString> = extra.iter().map(OsString::from).collect();
    args.push("--".into());
    args.push(target.into());
    args.push(login_command(script).into());
    match std::env::var(ENV_SSH).ok().filter(|s| !s.trim().is_empty()) {
        Some(custom) => {
            if let Some(program) = custom_program(&custom)
                && which::which(program).is_err()
            {
                return Err(RemoteError::SshCommandMissing {
                    program: program.to_string(),
                });
            }
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("{custom} \"$@\""))
                .arg(ENV_SSH)
                .args(args);
            Ok(c)
        }
        None => {
            let ssh = which::which("ssh").map_err(|_| RemoteError::NoSsh)?;
            let mut c = Command::new(ssh);
            c.args(args);
            Ok(c)
        }
    }
}

/// Options every connection gets: a bounded connect (the issue's "fails
/// within 15 s"), and keep-alives so a dropped link ends a long `wait`.
/// Options in `$DEPLOY_LOCK_SSH` come first, so they win (ssh keeps the first
/// value it sees).
const COMMON: [&str; 6] = [
    "-o",
    "ConnectTimeout=10",
    "-o",
    "ServerAliveInterval=15",
    "-o",
    "ServerAliveCountMax=4",
];

fn host_of(target: &str) -> String {
    target.rsplit('@').next().unwrap_or(target).to_string()
}

/// Turns ssh's own failure text (exit 255) into one of our errors.
fn classify(target: &str, stderr: &str) -> RemoteError {
    let host = host_of(target);
    let detail = stderr
        .lines()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty() && !l.starts_with("Warning: Permanently added"))
        .map(|l| {
            l.trim_start_matches("ssh: ")
                .trim_end_matches('.')
                .to_string()
        });
    let l = stderr.to_ascii_lowercase();
    let Some(detail) = detail else {
        return RemoteError::Ssh {
            host,
            detail: "the connection ended without an exit status (dropped, or the remote command was killed)".into(),
        };
    };
    if l.contains("host key verification failed")
        || l.contains("remote host identification has changed")
    {
        RemoteError::HostKey { host, detail }
    } else if l.contains("permission denied")
        || l.contains("authentication")
        || l.contains("no more authentication methods")
    {
        RemoteError::AuthRefused { host, detail }
    } else if l.contains("could not resolve")
        || l.contains("connection refused")
        || l.contains("timed out")
        || l.contains("no route to host")
        || l.contains("network is unreachable")
        || l.contains("connection closed")
        || l.contains("connection reset")
    {
        RemoteError::Unreachable { host, detail }
    } else {
        RemoteError::Ssh { host, detail }
    }
}

/// Where the remote program's stdout goes, and whether it may read stdin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// Our stdout, stdin passed through: the operation itself.
    Stdout,
    /// Our stderr, stdin left alone and no remote tty: a check before a
    /// deploy, whose stdout and stdin are deploy.sh's.
    Stderr,
}

/// Runs `program args` on the server and passes its output through. Returns
/// the remote exit code, or the reason it could not run. A terminal on both
/// stdin and stdout gets a remote tty (`ssh -t`), so prompts, progress lines
/// and Ctrl-C behave as they do locally; otherwise stdin is passed through
/// (so `echo yes | … --force` answers the remote prompt) and ssh never asks
/// for a password (BatchMode).
pub fn run(remote: &Remote, program: &Program, args: &[String]) -> Result<i32, RemoteError> {
    run_to(remote, program, args, Output::Stdout)
}

/// [`run`], with the remote stdout sent where `output` says.
pub fn run_to(
    remote: &Remote,
    program: &Program,
    args: &[String],
    output: Output,
) -> Result<i32, RemoteError> {
    let script = remote_script(&remote.dir, program, args);
    let interactive = output == Output::Stdout
        && std::io::stdin().is_terminal()
        && std::io::stdout().is_terminal();
    let mut extra = COMMON.to_vec();
    if interactive {
        extra.push("-t");
    } else {
        extra.extend(["-T", "-o", "BatchMode=yes"]);
    }
    let mut cmd = ssh_command(&extra, &remote.target, &script)?;
    let stdout = match output {
        Output::Stdout => Stdio::inherit(),
        Output::Stderr => Stdio::from(std::io::stderr()),
    };
    let stdin = match output {
        Output::Stdout => Stdio::inherit(),
        Output::Stderr => Stdio::null(),
    };
    cmd.stdin(stdin).stdout(stdout).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| spawn_error(remote, e))?;
    // The remote program's stderr comes through ssh's; pass it on line by line,
    // holding back only our markers and ssh's own complaints for classifying.
    let mut stderr = child.stderr.take().expect("piped");
    let mut captured = Vec::new();
    let mut buf = [0u8; 4096];
    let mut pending = Vec::new();
    loop {
        match stderr.read(&mut buf) {
            Ok(0) => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
            Ok(n) => {
                pending.extend_from_slice(&buf[..n]);
                while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    captured.extend_from_slice(&line);
                    if !is_ssh_noise(&line) {
                        let _ = std::io::stderr().write_all(&line);
                    }
                }
            }
        }
    }
    captured.extend_from_slice(&pending);
    if !pending.is_empty() && !is_ssh_noise(&pending) {
        let _ = std::io::stderr().write_all(&pending);
    }
    let status = child.wait().map_err(|e| RemoteError::Ssh {
        host: host_of(&remote.target),
        detail: e.to_string(),
    })?;
    let code = match status.code() {
        Some(c) => c,
        None => 128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(1),
    };
    let text = String::from_utf8_lossy(&captured);
    ending(remote, program, code, &text, interactive)
}

/// The remote exit code, or the error that ssh's code and text mean. On a
/// remote tty our marker lines are not printed, so the code alone tells.
fn ending(
    remote: &Remote,
    program: &Program,
    code: i32,
    stderr: &str,
    tty: bool,
) -> Result<i32, RemoteError> {
    let host = host_of(&remote.target);
    let marked = |what: &str| tty || stderr.contains(&format!("{MARK} {what}"));
    match code {
        NO_CHECKOUT if marked("no-checkout") => Err(RemoteError::NoCheckout {
            host,
            dir: remote.dir.clone(),
        }),
        NO_PROGRAM if marked("no-program") => Err(RemoteError::NoProgram {
            host,
            dir: remote.dir.clone(),
            program: program.clone(),
        }),
        LEGACY_CANNOT if marked("legacy-cannot") => Err(RemoteError::LegacyCannot {
            host,
            dir: remote.dir.clone(),
        }),
        255 => Err(classify(&remote.target, stderr)),
        c => Ok(c),
    }
}

fn spawn_error(remote: &Remote, e: std::io::Error) -> RemoteError {
    match e.kind() {
        std::io::ErrorKind::NotFound => RemoteError::NoSsh,
        _ => RemoteError::Ssh {
            host: host_of(&remote.target),
            detail: e.to_string(),
        },
    }
}

/// Lines that are ssh's own (or our markers), not the remote program's: held
/// back, as the one-line error says what they meant.
fn is_ssh_noise(line: &[u8]) -> bool {
    const PREFIXES: [&str; 12] = [
        MARK,
        "ssh: ",
        "Warning: Permanently added",
        "Host key verification failed",
        "kex_exchange_identification",
        "Connection closed by",
        "Connection reset by",
        "Connection timed out",
        "Connection to ",
        "Received disconnect from",
        "Disconnected from",
        "Pseudo-terminal will not be allocated",
    ];
    let l = String::from_utf8_lossy(line);
    let l = l.trim_end();
    PREFIXES.iter().any(|p| l.starts_with(p))
        || l.contains("Permission denied (")
        || l.contains("you have requested strict checking")
}

/// What a query on the server printed on stdout, and whether it came from
/// the checkout's legacy unlock.sh (so it is a status block to read).
#[derive(Debug)]
pub struct Captured {
    pub code: i32,
    pub stdout: String,
    pub legacy: bool,
}

/// Runs a query on the server and captures its stdout (a status, read or
/// shown by the caller). stderr is passed through.
pub fn capture(
    remote: &Remote,
    program: &Program,
    args: &[String],
) -> Result<Captured, RemoteError> {
    let script = remote_script(&remote.dir, program, args);
    let mut extra = COMMON.to_vec();
    extra.extend(["-T", "-o", "BatchMode=yes"]);
    let mut cmd = ssh_command(&extra, &remote.target, &script)?;
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| spawn_error(remote, e))?;
    let err = String::from_utf8_lossy(&out.stderr);
    let code = match out.status.code() {
        Some(c) => c,
        None => 128 + std::os::unix::process::ExitStatusExt::signal(&out.status).unwrap_or(1),
    };
    let code = ending(remote, program, code, &err, false)?;
    let legacy = err.lines().any(|l| l == format!("{MARK} legacy"));
    let mut stderr = std::io::stderr().lock();
    for l in err.lines().filter(|l| !is_ssh_noise(l.as_bytes())) {
        let _ = writeln!(stderr, "{}", deploy_lock::sanitize::line(l));
    }
    Ok(Captured {
        code,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        legacy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_hostile_words() {
        assert_eq!(
            sh_quote("odd dir; echo INJECTED"),
            "'odd dir; echo INJECTED'"
        );
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        let s = remote_script(
            "/srv/a b",
            &Program::UnlockSh,
            &["staging".into(), "--force".into()],
        );
        assert_eq!(
            s,
            "cd '/srv/a b' 2>/dev/null || { [ -t 2 ] || echo 'deploy-lock-remote: no-checkout' >&2; exit 97; }; \
             [ -x ./deploy/scripts/unlock.sh ] || { [ -t 2 ] || echo 'deploy-lock-remote: no-program' >&2; exit 98; }; \
             trap 'exit 130' INT; trap 'exit 131' QUIT; ./deploy/scripts/unlock.sh 'staging' '--force'; exit $?"
        );
        assert_eq!(quote_dir("~/src/it's"), "\"$HOME\"/'src/it'\\''s'");
        assert_eq!(quote_dir("~"), "\"$HOME\"");
        assert_eq!(quote_dir("~other/x"), "'~other/x'");
    }

    /// Issue 12: the remote command is one `sh -c` word that sh, bash,
    /// fish and csh login shells all hand to sh unchanged, hostile words
    /// included (run for real with each shell that is installed).
    #[test]
    fn the_login_command_reads_alike_in_every_login_shell() {
        let words = [
            "it's",
            r"back\slash\'quote",
            "$HOME `id` $(id)",
            "\"double\"",
            "a  b",
            "semi;colon|pipe&",
            "~user",
        ];
        let script = format!(
            "printf '[%s]\\n' {}",
            words
                .iter()
                .map(|w| sh_quote(w))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let want: String = words.iter().map(|w| format!("[{w}]\n")).collect();
        let line = login_command(&script);
        assert!(line.starts_with("sh -c '"), "{line}");
        let mut tried = 0;
        for shell in ["sh", "bash", "fish", "csh", "tcsh"] {
            let Ok(path) = which::which(shell) else {
                continue;
            };
            tried += 1;
            let out = Command::new(path).arg("-c").arg(&line).output().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                want,
                "{shell}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(tried >= 2, "no shells to try");
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            assert!(which::which("fish").is_ok(), "fish is not installed");
        }
    }

    #[test]
    fn the_deploy_lock_program_falls_back_to_the_checkout() {
        let legacy = Program::DeployLock {
            legacy: Some(LegacyCall {
                args: vec!["staging".into(), "--force".into()],
                answer_yes: true,
            }),
        };
        let s = remote_script("/srv", &legacy, &["unlock".into(), "staging".into()]);
        assert!(
            s.contains("case $(DEPLOY_LOCK_PERSONA=deploy-lock ./deploy/scripts/unlock.sh --version 2>/dev/null </dev/null) in 'deploy-lock '*)"),
            "{s}"
        );
        assert!(
            s.contains("echo yes | ./deploy/scripts/unlock.sh 'staging' '--force'; exit $?"),
            "{s}"
        );
        let none = remote_script("/srv", &Program::DeployLock { legacy: None }, &[]);
        assert!(
            none.contains("deploy-lock-remote: legacy-cannot' >&2; exit 96;"),
            "{none}"
        );
    }

    #[test]
    fn the_custom_ssh_program_is_found_when_it_can_be() {
        assert_eq!(custom_program("ssh -p 2222"), Some("ssh"));
        assert_eq!(custom_program("  /usr/bin/ssh"), Some("/usr/bin/ssh"));
        assert_eq!(custom_program("A=1 B_2=x ssh -i k"), Some("ssh"));
        assert_eq!(custom_program("\"$HOME/bin/ssh\" -v"), None);
        assert_eq!(custom_program("=x ssh"), Some("=x"));
        assert_eq!(custom_program("exec ssh -p 2"), None);
    }

    #[test]
    fn ssh_failures_are_classified() {
        assert!(matches!(
            classify(
                "deploy@h",
                "ssh: connect to host h port 22: Connection refused\n"
            ),
            RemoteError::Unreachable { .. }
        ));
        assert!(matches!(
            classify("deploy@h", "deploy@h: Permission denied (publickey).\n"),
            RemoteError::AuthRefused { .. }
        ));
        assert!(matches!(
            classify(
                "h",
                "ssh: Could not resolve hostname h: Name or service not known\n"
            ),
            RemoteError::Unreachable { .. }
        ));
        let e = classify(
            "deploy@h",
            "ssh: connect to host h port 22: Connection timed out\n",
        );
        assert_eq!(
            e.to_string(),
            "cannot reach h (connect to host h port 22: Connection timed out): check the host name, the network and that sshd runs there"
        );
        assert!(matches!(
            classify("h", "Host key verification failed.\n"),
            RemoteError::HostKey { .. }
        ));
        assert!(matches!(classify("h", ""), RemoteError::Ssh { .. }));
    }
}
