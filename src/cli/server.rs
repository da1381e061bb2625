//! status, wait and unlock on a server, whatever it has: deploy-lock on its
//! PATH first, else its checkout's `deploy/scripts/unlock.sh`, run as
//! deploy-lock when it links to it, or, the legacy bash script, asked in its
//! own words with its status block read back (`deploy_lock::legacy_block`).

use deploy_lock::Environment;
use deploy_lock::legacy_block::{self, LegacyBlock, ProcessLine};
use deploy_lock::status::{Liveness, Verdict};
use serde_json::{Value, json};

use super::failure::Failure;
use super::modern;
use super::ops::Io;
use super::remote::{self, LegacyCall, Program, Remote};
use super::request::{Operation, Persona, Request};

/// The legacy status block's stale rule (it prints `⚠ Lock is stale (>30
/// minutes)`; its timeout is not configurable).
const LEGACY_STALE_SECS: u64 = 1800;

/// The server's words for `status ENV` (modern) and the legacy equivalent.
pub fn status_program(env: Environment) -> Program {
    Program::DeployLock {
        legacy: Some(LegacyCall {
            args: vec![env.as_str().into(), "--status".into()],
            answer_yes: false,
        }),
    }
}

/// `wait ENV` with the legacy `--wait` (its hour and its exit 1) as fallback.
pub fn wait_program(env: Environment) -> Program {
    Program::DeployLock {
        legacy: Some(LegacyCall {
            args: vec![env.as_str().into(), "--wait".into()],
            answer_yes: false,
        }),
    }
}

/// status, wait and unlock on the server. Output and exit code are the
/// server's; a legacy server's status block is read and shown as `status`
/// shows it.
pub fn on_server(req: &Request, remote: &Remote, io: &mut Io<'_>) -> Result<i32, Failure> {
    let strings = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (program, args): (Program, Vec<String>) = match (req.persona, &req.op) {
        (Persona::Unlock, op) => {
            let word = match op {
                Operation::Wait { .. } => "--wait",
                Operation::Unlock { .. } => "--force",
                _ => "--status",
            };
            let env = op.environment().expect("an operation on an environment");
            (Program::UnlockSh, strings(&[env.as_str(), word]))
        }
        (Persona::DeployLock, Operation::Status { env, json, quiet }) => {
            if modern::flags_given(&req.settings) {
                io.warn(&super::messages::remote_settings_ignored(&remote.target));
            }
            return status(remote, *env, *json, *quiet, io);
        }
        // Every environment at once needs deploy-lock on the server: the
        // legacy script answers for one environment only.
        (Persona::DeployLock, Operation::StatusAll { json, quiet }) => {
            let mut a = strings(&["status"]);
            if *json {
                a.push("--json".into());
            }
            if *quiet {
                a.push("--quiet".into());
            }
            (Program::DeployLock { legacy: None }, a)
        }
        (Persona::DeployLock, Operation::Wait { env }) => {
            (wait_program(*env), strings(&["wait", env.as_str()]))
        }
        (
            Persona::DeployLock,
            Operation::Unlock {
                env,
                yes,
                id,
                reset_state,
            },
        ) => {
            let mut a = strings(&["unlock", env.as_str()]);
            if *yes {
                a.push("--yes".into());
            }
            if *reset_state {
                a.push("--reset-state".into());
            }
            if let Some(id) = id {
                a.extend(["--id".to_string(), id.clone()]);
            }
            // The legacy cannot check an id or reset a state file: never a
            // --force it cannot check.
            let legacy = (id.is_none() && !reset_state).then(|| LegacyCall {
                args: strings(&[env.as_str(), "--force"]),
                answer_yes: *yes,
            });
            (Program::DeployLock { legacy }, a)
        }
        (Persona::DeployLock, _) => unreachable!("only status, wait and unlock go here"),
    };
    if req.persona == Persona::DeployLock && modern::flags_given(&req.settings) {
        io.warn(&super::messages::remote_settings_ignored(&remote.target));
    }
    io.out.flush()?;
    Ok(remote::run(remote, &program, &args)?)
}

/// `status ENV [--json] --remote`: the server's output as it printed it, or,
/// from a legacy unlock.sh, its block read back and shown our way.
fn status(
    remote: &Remote,
    env: Environment,
    json: bool,
    quiet: bool,
    io: &mut Io<'_>,
) -> Result<i32, Failure> {
    let mut args = vec!["status".to_string(), env.as_str().to_string()];
    if json {
        args.push("--json".into());
    }
    if quiet {
        args.push("--quiet".into());
    }
    let got = remote::capture(remote, &status_program(env), &args)?;
    if !got.legacy || got.code != 0 {
        io.out.write_all(got.stdout.as_bytes())?;
        io.out.flush()?;
        return Ok(got.code);
    }
    let block = read_block(&got.stdout)?;
    if quiet {
        // The legacy block cannot show the kernel lock or foreign files, so
        // this is the verdict's answer: free, or stale with no live holder.
        return Ok(match block.verdict() {
            Verdict::Free | Verdict::Stale => 0,
            _ => super::failure::HELD,
        });
    }
    let text = if json {
        let mut t = deploy_lock::sanitize::json(
            serde_json::to_string_pretty(&legacy_json(env, &block)).expect("serialisable"),
        );
        t.push('\n');
        t
    } else {
        legacy_text(&got.stdout, &block, &remote.target)
    };
    io.out.write_all(text.as_bytes())?;
    io.out.flush()?;
    Ok(0)
}

pub fn read_block(text: &str) -> Result<LegacyBlock, Failure> {
    legacy_block::parse(text).map_err(|e| {
        Failure::ServerAnswer(format!(
            "the server's legacy unlock.sh printed no status block ({e:?})"
        ))
    })
}

/// A server's status as JSON: its own, or read from its legacy block.
pub fn status_value(env: Environment, got: &remote::Captured) -> Result<Value, Failure> {
    if got.legacy {
        return Ok(legacy_json(env, &read_block(&got.stdout)?));
    }
    serde_json::from_str(&got.stdout).map_err(|e| Failure::ServerAnswer(e.to_string()))
}

/// The block as the legacy printed it (without its colours, which it wrote
/// even into pipes), then the verdict line, saying where it was read.
pub fn legacy_text(raw: &str, block: &LegacyBlock, target: &str) -> String {
    let clean = legacy_block::strip_ansi(raw);
    // Only the block: the legacy's trailing blank line ends it.
    let mut out = String::new();
    let mut blanks = 0;
    for line in clean.lines() {
        // A remote host's text: no control character passes.
        out.push_str(&deploy_lock::sanitize::line(line));
        out.push('\n');
        if line.is_empty() {
            blanks += 1;
            if blanks == 2 {
                break;
            }
        }
    }
    out.push_str(&format!(
        "Verdict: {} (read from the legacy unlock.sh status block on {target})\n",
        block.verdict().as_str()
    ));
    out
}

/// `status --json` from a legacy block: the same keys as a local status,
/// what the block cannot say null, and `read_from` saying so.
pub fn legacy_json(env: Environment, b: &LegacyBlock) -> Value {
    let st = b.state.as_ref();
    let locked_st = st.filter(|s| s.locked);
    let liveness = b.liveness();
    let holder = locked_st.map(|s| {
        let process_name = match &s.process {
            Some(ProcessLine::Running { comm, .. }) => Some(comm.clone()),
            _ => None,
        };
        json!({
            "source": "state_file",
            "lock_id": null,
            "deployment_id": s.deployment_id,
            "locked_by": s.locked_by,
            "locked_at": s.locked_at,
            "pid": s.pid,
            "hostname": s.hostname,
            "process_name": process_name,
        })
    });
    let verdict = b.verdict();
    json!({
        "schema": 1,
        "environment": env.as_str(),
        "locked": b.lock_dir.is_some(),
        "verdict": verdict.as_str(),
        "lock_dir": b.lock_dir,
        "lock_dir_exists": b.lock_dir.is_some() && verdict != Verdict::Obstructed,
        "state_file": b.state_file_missing,
        "state_file_exists": st.is_some(),
        "holder": holder,
        "holder_alive": match liveness {
            Liveness::Alive { .. } => Some(true),
            Liveness::Dead => Some(false),
            _ => None,
        },
        "age_seconds": locked_st.and_then(|s| s.age_seconds),
        "stale": locked_st.is_some_and(|s| s.stale),
        "stale_after_seconds": LEGACY_STALE_SECS,
        "read_from": "legacy unlock.sh",
    })
}
