//! Carrying out one [`Request`]: resolve the context once, pick the lock
//! store, run the operation. Returns what happened; printing an error and
//! choosing the exit status is `main`'s.

use deploy_lock::Context;
use deploy_lock::context::ResolveError;
use deploy_lock::store::LockStore;
use deploy_lock::store::local::LocalStore;
use deploy_lock::supervise::ChildEnd;

use super::completions;
use super::docs;
use super::failure::Failure;
use super::modern;
use super::ops::{self, Io};
use super::remote::{self, Program, Remote};
use super::request::{Generate, Operation, Persona, Request};
use super::run::{self, RunPlan};

/// How a successful invocation ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// The server's exit status (`--remote`), passed through.
    Exit(i32),
    /// `run`: the command's own end, to be ended the same way.
    Child(ChildEnd),
}

pub fn execute(req: Request, io: &mut Io<'_>) -> Result<Outcome, Failure> {
    match &req.op {
        Operation::Print(text) => {
            io.out.write_all(text.as_bytes())?;
            io.out.flush()?;
            return Ok(Outcome::Done);
        }
        Operation::Generate(g) => return generate(g, io),
        _ => {}
    }
    if let Some(remote) = &req.remote
        && !matches!(req.op, Operation::Run(_))
    {
        return on_server(&req, remote, io);
    }
    let cwd = std::env::current_dir().map_err(|source| Failure::Io {
        what: "cannot read the working directory".into(),
        source,
    })?;
    let ctx =
        Context::resolve(&req.settings, req.script.as_deref(), &cwd).map_err(|e| match e {
            ResolveError::Setting(e) => Failure::Setting(e),
            ResolveError::NoCheckout(e) => Failure::NoCheckout(e),
        })?;
    let store = LocalStore::new(&ctx);
    execute_with(&ctx, &store, req, io)
}

/// [`execute`] against a given store (the in-memory one in tests).
pub fn execute_with(
    ctx: &Context,
    store: &dyn LockStore,
    req: Request,
    io: &mut Io<'_>,
) -> Result<Outcome, Failure> {
    match req.op {
        Operation::Status { env, json } => ops::status(ctx, store, req.persona, env, json, io),
        Operation::Wait { env } => ops::wait(ctx, store, req.persona, env, io),
        Operation::Unlock { env, yes, id } => {
            ops::unlock(ctx, store, req.persona, env, yes, id.as_deref(), io)
        }
        Operation::Run(r) => {
            let plan = RunPlan::decide(ctx, r, req.remote);
            return run::run(ctx, store, plan, io).map(Outcome::Child);
        }
        Operation::Print(_) | Operation::Generate(_) => unreachable!("handled by execute"),
    }
    .map(|()| Outcome::Done)
}

/// status, wait and unlock on the server, its output and code passed through.
fn on_server(req: &Request, remote: &Remote, io: &mut Io<'_>) -> Result<Outcome, Failure> {
    let (program, args): (Program, Vec<&str>) = match (req.persona, &req.op) {
        (Persona::Unlock, op) => {
            let word = match op {
                Operation::Wait { .. } => "--wait",
                Operation::Unlock { .. } => "--force",
                _ => "--status",
            };
            let env = op.environment().expect("an operation on an environment");
            (Program::UnlockSh, vec![env.as_str(), word])
        }
        (Persona::DeployLock, Operation::Status { env, json }) => {
            let mut a = vec!["status", env.as_str()];
            if *json {
                a.push("--json");
            }
            (Program::DeployLock, a)
        }
        (Persona::DeployLock, Operation::Wait { env }) => {
            (Program::DeployLock, vec!["wait", env.as_str()])
        }
        (Persona::DeployLock, Operation::Unlock { env, yes, id }) => {
            let mut a = vec!["unlock", env.as_str()];
            if *yes {
                a.push("--yes");
            }
            if let Some(id) = id {
                a.extend(["--id", id.as_str()]);
            }
            (Program::DeployLock, a)
        }
        (Persona::DeployLock, _) => unreachable!("only status, wait and unlock go here"),
    };
    if req.persona == Persona::DeployLock && modern::flags_given(&req.settings) {
        io.warn(&super::messages::remote_settings_ignored(&remote.target));
    }
    io.out.flush()?;
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    Ok(Outcome::Exit(remote::run(remote, program, &args)?))
}

fn generate(what: &Generate, io: &mut Io<'_>) -> Result<Outcome, Failure> {
    let io_err = |what: &str| {
        let what = what.to_string();
        move |source| Failure::Io { what, source }
    };
    match what {
        Generate::Man { dir } => {
            docs::write_man_pages(dir).map_err(io_err(&dir.display().to_string()))?;
        }
        Generate::Completions { shell, persona } => {
            io.out
                .write_all(&completions::completions(*shell, persona))?;
            io.out.flush()?;
        }
        Generate::All { root } => {
            docs::write_man_pages(&root.join("man"))
                .map_err(io_err(&root.join("man").display().to_string()))?;
            for (rel, bytes) in completions::all_completions() {
                let path = root.join("completions").join(rel);
                let place = path.display().to_string();
                std::fs::create_dir_all(path.parent().expect("has a parent"))
                    .and_then(|()| std::fs::write(&path, bytes))
                    .map_err(io_err(&place))?;
            }
        }
    }
    Ok(Outcome::Done)
}
