//! `deploy-lock unlock ENV --reset-state`: recovery from a state file that is
//! not valid JSON (or not the documented shape), which every other command
//! refuses to touch. Shows the lock and the error, confirms like `unlock`,
//! then keeps the file as a backup beside itself, writes a fresh one with the
//! lock released and removes the lock directory.

use deploy_lock::Environment;
use deploy_lock::state::Reset;
use deploy_lock::store::{Expect, LockStore, ResetOutcome};

use super::failure::Failure;
use super::messages;
use super::ops::{self, Answer, Io, early_answer};
use super::render;
use super::request::Persona;
use super::texts;

pub fn reset_state(
    store: &dyn LockStore,
    env: Environment,
    yes: bool,
    id: Option<&str>,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let (insp, err) = store.inspect_despite_records(env)?;
    let Some(err) = err else {
        return Err(Failure::Usage(format!(
            "--reset-state is for a state file that is not valid JSON (or not the documented shape), and {} is not one; to unlock, run deploy-lock unlock {env}",
            insp.state_file.display()
        )));
    };
    let early = if yes { None } else { early_answer() };
    if early == Some(Answer::Eof) {
        writeln!(io.out, "{}", render::holder_line(&insp))?;
        io.out.flush()?;
        return Err(Failure::NoAnswer);
    }
    let style = io.out_style;
    let out = &mut *io.out;
    out.write_all(render::lock_part(&insp, style).as_bytes())?;
    if insp.lock_dir_exists() {
        writeln!(out, "{}", render::holder_line(&insp))?;
    }
    let problem = format!("⚠ {}", messages::lock_error(&err));
    writeln!(out, "{}", style.yellow(&problem))?;
    writeln!(out)?;
    writeln!(out, "{}", style.yellow("⚠ RESET STATE"))?;
    writeln!(out)?;
    writeln!(out, "This will:")?;
    writeln!(
        out,
        "  1. Keep the state file as {}.corrupt-<UTC time>",
        insp.state_file.display()
    )?;
    writeln!(
        out,
        "  2. Write a fresh state file with the lock released (other keys stay only in the backup)"
    )?;
    writeln!(
        out,
        "  3. Remove lock directory: {}",
        store.location(env).display()
    )?;
    writeln!(out)?;
    out.flush()?;
    if !yes {
        ops::confirm(&insp, Persona::DeployLock, early, io)?;
    }
    let expect = match id {
        Some(id) => Expect::LockId(id),
        None => Expect::Shown(&insp),
    };
    let done = match store.reset_records(env, Some(expect))? {
        ResetOutcome::Done(done) => {
            io.warn_all(&done.warnings);
            done
        }
        ResetOutcome::ChangedHands { now } => {
            return Err(Failure::ChangedHands {
                env,
                now: now.map(Box::new),
            });
        }
    };
    let out = &mut *io.out;
    match &done.state {
        Reset::Done { backup } => {
            let kept = format!("✓ State file kept as {}", backup.display());
            writeln!(out, "{}", style.green(&kept))?;
            writeln!(
                out,
                "{}",
                style.green("✓ Fresh state file written (lock released)")
            )?;
        }
        Reset::Usable => writeln!(
            out,
            "State file is usable again (someone repaired it): left as it is"
        )?,
        Reset::Missing => writeln!(out, "{}", texts::STATE_MISSING)?,
    }
    match &done.dir_removed {
        None => writeln!(out, "{}", texts::DIR_ALREADY_REMOVED)?,
        Some(_) => writeln!(out, "{}", style.green(texts::DIR_REMOVED))?,
    }
    out.flush()?;
    Ok(())
}
