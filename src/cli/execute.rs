//! Carrying out one [`Request`]: resolve the context once, pick the lock
//! store, run the operation. Returns what happened; printing an error and
//! choosing the exit status is `main`'s.

use deploy_lock::Context;
use deploy_lock::context::ResolveError;
use deploy_lock::etcd::settings::{Backend, SettingsError};
use deploy_lock::store::LockStore;
use deploy_lock::store::etcd::EtcdLockStore;
use deploy_lock::store::local::LocalStore;
use deploy_lock::supervise::ChildEnd;

use super::completions;
use super::docs;
use super::failure::Failure;
use super::freeze;
use super::ops::{self, Io};
use super::overview;
use super::request::{Generate, Operation, Persona, Request};
use super::reset;
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
        // A hook's runner: no lock, no checkout, nothing printed; its exit
        // status says whether the hook failed (see `deploy_lock::hook`).
        Operation::HookRun(r) => {
            return Ok(match deploy_lock::hook::run(r) {
                Ok(()) => Outcome::Done,
                Err(_) => Outcome::Exit(1),
            });
        }
        // The checkout's audit trail when in one, and the user's old log
        // under $HOME: no checkout needed.
        Operation::Log(l) => {
            let home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(std::path::PathBuf::from);
            let ctx = std::env::current_dir().ok().and_then(|cwd| {
                Context::resolve_lock_only(&req.settings, req.script.as_deref(), &cwd).ok()
            });
            let team = team_events(ctx.as_ref(), &req, io);
            return ops::log(ctx.as_ref(), home, team, l, io).map(|()| Outcome::Done);
        }
        _ => {}
    }
    if let Some(remote) = &req.remote
        && !matches!(req.op, Operation::Run(_))
    {
        return super::server::on_server(&req, remote, io).map(Outcome::Exit);
    }
    let cwd = std::env::current_dir().map_err(|source| Failure::Io {
        what: "cannot read the working directory".into(),
        source,
    })?;
    // status and wait need only the lock, which lives in the lock folder:
    // they work outside a checkout (without a state file to show).
    let lock_only = req.persona == Persona::DeployLock
        && matches!(
            req.op,
            Operation::Status { .. } | Operation::StatusAll { .. } | Operation::Wait { .. }
        );
    let resolve = if lock_only {
        Context::resolve_lock_only
    } else {
        Context::resolve
    };
    let ctx = resolve(&req.settings, req.script.as_deref(), &cwd).map_err(|e| match e {
        ResolveError::Setting(e) => Failure::Setting(e),
        ResolveError::NoCheckout(e) => Failure::NoCheckout(e),
        ResolveError::BadProjectRoot(e) => Failure::BadProjectRoot(e),
        ResolveError::Untrusted(e) => Failure::Untrusted(e),
    })?;
    // The store: the caller's variables and flags over the checkout's
    // deploy/config/deploy-lock.env (none outside a checkout).
    let lookup = |name: &str| req.settings.store_value(name);
    let (backend, warnings) =
        deploy_lock::store::etcd::choose(&ctx, &lookup).map_err(|e| match e {
            SettingsError::Io { path, source } => Failure::Io {
                what: path.display().to_string(),
                source,
            },
            e => Failure::Usage(e.to_string()),
        })?;
    for w in warnings {
        io.warn(&w.to_string());
    }
    let result = match backend {
        Backend::Local => execute_with(&ctx, &LocalStore::new(&ctx), req, io),
        Backend::Etcd(settings) => {
            let store = EtcdLockStore::open(&ctx, settings)?;
            let result = execute_with(&ctx, &store, req, io);
            // The audit events' copies, once the lock operation is done.
            if let Err((n, e)) = deploy_lock::audit::ship_copies() {
                io.warn(&super::messages::audit_copy_failed(n, &e));
            }
            result
        }
    };
    // A hook that failed while this command ran is said here; one still
    // running when it ends is only in the audit log (`hook_failed`).
    for event in deploy_lock::hook::failures_so_far() {
        io.warn(&format!(
            "the hook for the {event} event failed (deploy-lock log shows hook_failed)"
        ));
    }
    result
}

/// With the etcd backend, the audit events every machine copied there
/// (None with the local backend; settings that do not parse are left to
/// the commands that use the store).
fn team_events(
    ctx: Option<&Context>,
    req: &Request,
    io: &mut Io<'_>,
) -> Option<Result<Vec<serde_json::Value>, deploy_lock::etcd::EtcdError>> {
    use deploy_lock::etcd::settings;
    let lookup = |name: &str| req.settings.store_value(name);
    let chosen = match ctx {
        Some(ctx) => deploy_lock::store::etcd::choose(ctx, &lookup),
        None => settings::resolve(None, &lookup),
    };
    let Ok((Backend::Etcd(s), warnings)) = chosen else {
        return None;
    };
    for w in warnings {
        io.warn(&w.to_string());
    }
    let host = ctx.map_or_else(String::new, |c| c.host.clone());
    Some(deploy_lock::etcd::EtcdStore::open(&s).and_then(|store| {
        deploy_lock::etcd::audit_copy::AuditCopies::new(store.client().clone(), &s.prefix, &host)
            .read_all(store.client().call_timeout())
    }))
}

/// [`execute`] against a given store (the in-memory one in tests).
pub fn execute_with(
    ctx: &Context,
    store: &dyn LockStore,
    req: Request,
    io: &mut Io<'_>,
) -> Result<Outcome, Failure> {
    // A store where no lock can be taken (the lock folder missing or not
    // ours to write) is an error, never a lock shown as free, for both
    // personas (unlock.sh with its exit 1; the legacy's /tmp always passes);
    // `run` checks when its plan takes a local lock.
    if matches!(
        req.op,
        Operation::Status { .. }
            | Operation::StatusAll { .. }
            | Operation::Watch { .. }
            | Operation::Wait { .. }
            | Operation::Unlock { .. }
            | Operation::Unfreeze { .. }
    ) {
        store.check_usable()?;
    }
    let env = req.op.environment();
    match req.op {
        Operation::Status { env, json, quiet } => {
            ops::status(store, req.persona, env, json, quiet, io)
        }
        Operation::StatusAll { json, quiet } => overview::status_all(store, json, quiet, io),
        Operation::Watch { env } => super::watch::watch(store, env, io),
        Operation::Wait { env } => ops::wait(ctx, store, req.persona, env, io),
        Operation::Unlock {
            env,
            yes,
            id,
            reset_state: false,
        } => ops::unlock(store, req.persona, env, yes, id.as_deref(), io),
        Operation::Unlock {
            env,
            yes,
            id,
            reset_state: true,
        } => reset::reset_state(store, env, yes, id.as_deref(), io),
        Operation::Check { env, token } => match store.check(env, token)? {
            Some(true) => Ok(()),
            Some(false) => Err(Failure::NotHolder { env, token }),
            None => Err(Failure::Usage(format!(
                "`check` needs a lock store with fencing tokens: the {env} lock is this host's lock folder (set DEPLOY_LOCK_BACKEND=etcd)"
            ))),
        },
        Operation::Run(r) => {
            let conflict = r.conflict_exit;
            let plan = RunPlan::decide(ctx, r, req.remote);
            let env = plan.env;
            return run::run(ctx, store, plan, io)
                .map(Outcome::Child)
                .map_err(|f| f.for_env(env, store))
                .map_err(|f| match conflict {
                    Some(code) if f.is_conflict() => Failure::Conflict {
                        code,
                        failure: Box::new(f),
                    },
                    _ => f,
                });
        }
        Operation::Freeze(f) => {
            let env = f.env;
            return match freeze::freeze(ctx, store, f, io) {
                Ok(None) => Ok(Outcome::Done),
                Ok(Some(code)) => Ok(Outcome::Exit(code)),
                Err(f) => Err(f.for_env(env, store)),
            };
        }
        Operation::Unfreeze { env, id } => freeze::unfreeze(ctx, store, env, id.as_deref(), io),
        Operation::Log(l) => ops::log(Some(ctx), ctx.home.clone(), None, &l, io),
        Operation::Print(_) | Operation::Generate(_) | Operation::HookRun(_) => {
            unreachable!("handled by execute")
        }
    }
    .map(|()| Outcome::Done)
    .map_err(|f| match env {
        Some(env) => f.for_env(env, store),
        None => f,
    })
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

/// The CLI against the in-memory store: the same requests, flows and
/// outputs as against the directory store, which shows that a second store
/// fits without touching src/cli/.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::modern;
    use crate::cli::request::Persona;
    use crate::cli::style::Style;
    use deploy_lock::Environment;
    use deploy_lock::store::HolderRecord;
    use deploy_lock::store::memory::MemoryStore;

    fn ctx() -> Context {
        let settings = deploy_lock::Settings {
            lock_root: "/nonexistent-deploy-lock-memory".into(),
            ..Default::default()
        };
        let mut c = Context::new(settings, "/nonexistent-deploy-lock-memory/co".into());
        c.home = None;
        c
    }

    fn go(
        ctx: &Context,
        store: &MemoryStore,
        args: &[&str],
    ) -> (Result<Outcome, Failure>, String, String) {
        let mut argv = vec![std::ffi::OsString::from("deploy-lock")];
        argv.extend(args.iter().map(std::ffi::OsString::from));
        let req = modern::parse(argv).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Io {
            out: &mut out,
            err: &mut err,
            out_style: Style { color: false },
            err_style: Style { color: false },
            out_tty: false,
            err_tty: false,
        };
        let r = execute_with(ctx, store, req, &mut io);
        (
            r,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    fn record(pid: i32, lock_id: &str) -> HolderRecord {
        HolderRecord {
            environment: "staging".into(),
            lock_id: lock_id.into(),
            deployment_id: "dep_x".into(),
            locked_by: "someone@elsewhere".into(),
            locked_at: deploy_lock::times::utc_seconds(jiff::Timestamp::now()),
            hostname: deploy_lock::context::this_host(),
            pid,
            pid_start_ticks: None,
            holder_pid: pid,
            holder_start_ticks: None,
            boot_id: None,
            fencing_token: None,
            lease_id: None,
            lease_ttl_secs: None,
            reason: None,
            freeze: None,
        }
    }

    /// Issue 21: a refusal's "since" comes from the inspection's own clock
    /// reading (here a fixed one, years before the real clock), not from
    /// the clock read again while wording it.
    #[test]
    fn a_refusal_dates_the_lock_from_the_inspections_clock() {
        let mut c = ctx();
        let then = jiff::Timestamp::from_second(1_577_836_800).unwrap(); // 2020-01-01
        c.clock = deploy_lock::context::Clock::Fixed(then);
        let store = MemoryStore::new(&c);
        let mut rec = record(std::process::id() as i32, "lock_a");
        rec.locked_at = "2019-12-31T23:57:55Z".into();
        store.put(rec);
        let (r, _, _) = go(&c, &store, &["run", "staging", "--", "true"]);
        let Err(Failure::Held(busy)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(busy.inspection.now, then);
        assert_eq!(
            super::super::messages::busy_lines(&busy)[0],
            "ERROR: the staging lock is held by someone@elsewhere since 2019-12-31T23:57:55Z (2m 5s ago)."
        );
    }

    #[test]
    fn status_of_a_free_and_a_held_lock() {
        let c = ctx();
        let store = MemoryStore::new(&c);
        let (r, out, err) = go(&c, &store, &["status", "staging"]);
        assert_eq!(r.unwrap(), Outcome::Done);
        assert_eq!(err, "");
        assert!(
            out.ends_with("Verdict: free: no lock directory; a deploy may start\n"),
            "{out}"
        );
        store.put(record(std::process::id() as i32, "lock_live"));
        let (_, out, _) = go(&c, &store, &["status", "staging"]);
        assert!(
            out.contains("Lock directory exists: memory:staging\n"),
            "{out}"
        );
        assert!(out.contains("\nLock ID: lock_live\n"), "{out}");
        assert!(out.contains("Verdict: held: "), "{out}");
        let (_, json, _) = go(&c, &store, &["status", "staging", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["verdict"], "held");
        assert_eq!(v["holder"]["lock_id"], "lock_live");
    }

    /// Issue 12: every environment at once, and --quiet, against a second
    /// store: the view carries the store's own backend name.
    #[test]
    fn every_environment_and_quiet_against_another_store() {
        let c = ctx();
        let store = MemoryStore::new(&c);
        let (r, out, _) = go(&c, &store, &["list"]);
        assert_eq!(r.unwrap(), Outcome::Done);
        assert_eq!(
            out,
            "ENVIRONMENT  VERDICT  HOLDER  AGE  WAITING  BACKEND\n\
             development  free     -       -    -        memory\n\
             staging      free     -       -    -        memory\n\
             production   free     -       -    -        memory\n"
        );
        let (r, out, _) = go(&c, &store, &["status", "-q"]);
        assert_eq!((r.unwrap(), out.as_str()), (Outcome::Done, ""));
        store.put(record(std::process::id() as i32, "lock_live"));
        let (r, out, _) = go(&c, &store, &["status", "staging", "--quiet"]);
        assert_eq!(r.unwrap_err().code(Persona::DeployLock), 75);
        assert_eq!(out, "");
        let (_, json, _) = go(&c, &store, &["status", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["schema"], 1);
        assert_eq!(v["environments"][1]["verdict"], "held");
        assert_eq!(v["environments"][1]["backend"], "memory");
    }

    #[test]
    fn run_takes_runs_and_releases() {
        let c = ctx();
        let store = MemoryStore::new(&c);
        let (r, _, err) = go(&c, &store, &["run", "staging", "--", "sh", "-c", "exit 3"]);
        assert_eq!(r.unwrap(), Outcome::Child(ChildEnd::Exited(3)), "{err}");
        assert_eq!(store.holder(Environment::Staging), None);
        // A live holder: refused with 75 and the busy report.
        store.put(record(std::process::id() as i32, "lock_live"));
        let (r, _, _) = go(&c, &store, &["run", "staging", "--", "true"]);
        let f = r.unwrap_err();
        assert_eq!(f.code(Persona::DeployLock), 75);
        assert!(matches!(f, Failure::Held(_)), "{f:?}");
        assert_eq!(
            store.holder(Environment::Staging).map(|h| h.lock_id),
            Some("lock_live".to_string())
        );
    }

    #[test]
    fn unlock_removes_only_the_lock_it_was_told() {
        let c = ctx();
        let store = MemoryStore::new(&c);
        let dead = {
            let mut ch = std::process::Command::new("true").spawn().unwrap();
            let pid = ch.id() as i32;
            ch.wait().unwrap();
            pid
        };
        store.put(record(dead, "lock_a"));
        let (r, _, _) = go(
            &c,
            &store,
            &["unlock", "staging", "--yes", "--id", "lock_b"],
        );
        assert!(matches!(r, Err(Failure::WrongId { .. })));
        assert!(store.holder(Environment::Staging).is_some());
        let (r, out, _) = go(
            &c,
            &store,
            &["unlock", "staging", "--yes", "--id", "lock_a"],
        );
        assert_eq!(r.unwrap(), Outcome::Done);
        assert!(out.contains("✓ Lock directory removed\n"), "{out}");
        assert_eq!(store.holder(Environment::Staging), None);
    }
}
