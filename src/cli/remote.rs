//! Locks that live on a server: the same operation run over ssh in the
//! server's checkout, its output passed through and its exit code returned.
//! ssh failures become one clear line each (not installed, unreachable,
//! authentication refused, no checkout, no deploy-lock there).

use std::ffi::OsString;
use std::io::{IsTerminal, Read, Write};
use std::process::{Command, Stdio};

use super::style::Style;

pub const DEFAULT_REMOTE_DIR: &str = "/opt/togather/src";
pub const ENV_SSH: &str = "DEPLOY_LOCK_SSH";

/// Where the lock lives: `USER@HOST` and the checkout there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    pub target: String,
    pub dir: String,
}

/// What to run on the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// `./deploy/scripts/unlock.sh` in the checkout (legacy or deploy-lock).
    UnlockSh,
    /// `deploy-lock` on the server's PATH (or ~/.local/bin, /usr/local/bin).
    DeployLock,
}

/// Why the remote operation did not run; Display is the one-line error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemoteError {
    NoSsh,
    Unreachable {
        host: String,
        detail: String,
    },
    AuthRefused {
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
    Ssh {
        host: String,
        detail: String,
    },
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::NoSsh => write!(
                f,
                "ssh is not installed: install the OpenSSH client (e.g. apt-get install openssh-client) or set {ENV_SSH} to the ssh command to use"
            ),
            RemoteError::Unreachable { host, detail } => write!(
                f,
                "cannot reach {host} ({detail}): check the host name, the network and that sshd runs there"
            ),
            RemoteError::AuthRefused { host, detail } => write!(
                f,
                "{host} refused the ssh login ({detail}): check the user name and your key (ssh-add -l), or set {ENV_SSH}=\"ssh -i KEY\""
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
                Program::DeployLock => write!(
                    f,
                    "{host} has no deploy-lock on its PATH, in ~/.local/bin or in /usr/local/bin: install it there (./install.sh), or use unlock.sh ENV --remote {host}"
                ),
            },
            RemoteError::Ssh { host, detail } => write!(f, "ssh to {host} failed: {detail}"),
        }
    }
}

/// `'…'`-quotes a word for the remote POSIX shell.
pub fn sh_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

const MARK: &str = "deploy-lock-remote:";

/// The script the remote shell runs: enter the checkout, find the program,
/// exec it with the quoted arguments. Failures print a marker line we turn
/// into one clear error.
pub fn remote_script(dir: &str, program: Program, args: &[String]) -> String {
    let quoted: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    let args = quoted.join(" ");
    let enter = format!(
        "cd {} 2>/dev/null || {{ echo '{MARK} no-checkout' >&2; exit 97; }}",
        sh_quote(dir)
    );
    let run = match program {
        Program::UnlockSh => format!(
            "[ -x ./deploy/scripts/unlock.sh ] || {{ echo '{MARK} no-program' >&2; exit 98; }}; exec ./deploy/scripts/unlock.sh {args}"
        ),
        Program::DeployLock => format!(
            "b=$(command -v deploy-lock) || {{ for b in \"$HOME/.local/bin/deploy-lock\" /usr/local/bin/deploy-lock; do [ -x \"$b\" ] && break; b=; done; }}; \
             [ -n \"$b\" ] || {{ echo '{MARK} no-program' >&2; exit 98; }}; exec \"$b\" {args}"
        ),
    };
    format!("{enter}; {run}")
}

/// The ssh command: `$DEPLOY_LOCK_SSH` (run by sh, so it may carry options,
/// as git's GIT_SSH_COMMAND), else `ssh` found on PATH.
fn ssh_command(extra: &[&str], target: &str, script: &str) -> Result<Command, RemoteError> {
    let mut args: Vec<OsString> = extra.iter().map(OsString::from).collect();
    args.push(target.into());
    args.push(script.into());
    match std::env::var(ENV_SSH).ok().filter(|s| !s.trim().is_empty()) {
        Some(custom) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("{custom} \"$@\""))
                .arg("ssh")
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

fn host_of(target: &str) -> String {
    target.rsplit('@').next().unwrap_or(target).to_string()
}

/// Turns ssh's own failure text (exit 255) into one of our errors.
fn classify(target: &str, stderr: &str) -> RemoteError {
    let host = host_of(target);
    let detail = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with("Warning: Permanently added"))
        .unwrap_or("no details")
        .trim()
        .trim_start_matches("ssh: ")
        .to_string();
    let l = stderr.to_ascii_lowercase();
    if l.contains("permission denied")
        || l.contains("authentication")
        || l.contains("host key verification failed")
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

/// Runs `program args` on the server and passes its output through. Returns
/// the remote exit code, or the reason it could not run. A terminal on both
/// stdin and stdout gets a remote tty (`ssh -t`), so prompts, progress lines
/// and Ctrl-C behave as they do locally; otherwise stdin is passed through
/// (so `echo yes | … --force` answers the remote prompt) and ssh never asks
/// for a password (BatchMode).
pub fn run(remote: &Remote, program: Program, args: &[String]) -> Result<i32, RemoteError> {
    let script = remote_script(&remote.dir, program, args);
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let mut extra = vec!["-o", "ConnectTimeout=10"];
    if interactive {
        extra.push("-t");
    } else {
        extra.extend(["-T", "-o", "BatchMode=yes"]);
    }
    let mut cmd = ssh_command(&extra, &remote.target, &script)?;
    cmd.stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => RemoteError::NoSsh,
        _ => RemoteError::Ssh {
            host: host_of(&remote.target),
            detail: e.to_string(),
        },
    })?;
    // The remote program's stderr comes through ssh's; pass it on line by line,
    // holding back only our markers and ssh's own complaints for classifying.
    let mut stderr = child.stderr.take().expect("piped");
    let mut captured = Vec::new();
    let mut buf = [0u8; 4096];
    let mut pending = Vec::new();
    loop {
        match stderr.read(&mut buf) {
            Ok(0) | Err(_) => break,
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
    let text = String::from_utf8_lossy(&captured);
    let host = host_of(&remote.target);
    if text.contains(&format!("{MARK} no-checkout")) {
        return Err(RemoteError::NoCheckout {
            host,
            dir: remote.dir.clone(),
        });
    }
    if text.contains(&format!("{MARK} no-program")) {
        return Err(RemoteError::NoProgram {
            host,
            dir: remote.dir.clone(),
            program,
        });
    }
    match status.code() {
        Some(255) => Err(classify(&remote.target, &text)),
        Some(c) => Ok(c),
        None => Ok(128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(1)),
    }
}

/// Lines that are ssh's own (or our markers), not the remote program's.
fn is_ssh_noise(line: &[u8]) -> bool {
    let l = String::from_utf8_lossy(line);
    l.starts_with(MARK)
        || l.starts_with("ssh: ")
        || l.starts_with("Warning: Permanently added")
        || l.contains("Permission denied (")
        || l.starts_with("Host key verification failed")
        || l.starts_with("kex_exchange_identification")
        || l.starts_with("Connection closed by")
        || l.starts_with("Connection timed out")
        || l.starts_with("Pseudo-terminal will not be allocated")
}

/// Prints a remote error as the one line it is.
pub fn report(e: &RemoteError) {
    eprintln!("{}", Style::for_stderr().red(&format!("ERROR: {e}")));
}

/// Runs a query on the server and captures its stdout (for `status --json`
/// before a remote deploy). stderr is passed through.
pub fn capture(
    remote: &Remote,
    program: Program,
    args: &[String],
) -> Result<(i32, String), RemoteError> {
    let script = remote_script(&remote.dir, program, args);
    let mut cmd = ssh_command(
        &["-o", "ConnectTimeout=10", "-T", "-o", "BatchMode=yes"],
        &remote.target,
        &script,
    )?;
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|_| RemoteError::NoSsh)?;
    let err = String::from_utf8_lossy(&out.stderr);
    let host = host_of(&remote.target);
    if err.contains(&format!("{MARK} no-checkout")) {
        return Err(RemoteError::NoCheckout {
            host,
            dir: remote.dir.clone(),
        });
    }
    if err.contains(&format!("{MARK} no-program")) {
        return Err(RemoteError::NoProgram {
            host,
            dir: remote.dir.clone(),
            program,
        });
    }
    match out.status.code() {
        Some(255) => Err(classify(&remote.target, &err)),
        code => {
            for l in err.lines().filter(|l| !is_ssh_noise(l.as_bytes())) {
                eprintln!("{l}");
            }
            Ok((
                code.unwrap_or(1),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            ))
        }
    }
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
            Program::UnlockSh,
            &["staging".into(), "--force".into()],
        );
        assert_eq!(
            s,
            "cd '/srv/a b' 2>/dev/null || { echo 'deploy-lock-remote: no-checkout' >&2; exit 97; }; \
             [ -x ./deploy/scripts/unlock.sh ] || { echo 'deploy-lock-remote: no-program' >&2; exit 98; }; \
             exec ./deploy/scripts/unlock.sh 'staging' '--force'"
        );
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
    }
}
