//! The flows both personas share, against any lock store: show the status,
//! wait for a release, force-unlock with the legacy confirmation. Output is
//! the legacy text, written with `?` so a failed write ends the flow.

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::Instant;

use deploy_lock::status::{Inspection, Liveness};
use deploy_lock::store::{Expect, LockStore, Unlock, Woke};
use deploy_lock::{Context, Environment};

use super::failure::Failure;
use super::messages;
use super::render;
use super::request::{LogRequest, Persona};
use super::style::Style;
use super::texts;

/// Where output goes, and how it looks there.
pub struct Io<'a> {
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
    pub out_style: Style,
    pub err_style: Style,
    /// Progress lines are rewritten in place on a terminal.
    pub out_tty: bool,
    pub err_tty: bool,
}

impl Io<'_> {
    pub fn warn(&mut self, message: &str) {
        messages::warn(self.err, self.err_style, message);
    }

    pub fn warn_all(&mut self, warnings: &[deploy_lock::store::Warning]) {
        for w in warnings {
            self.warn(&messages::warning(w));
        }
    }
}

pub fn status(
    store: &dyn LockStore,
    persona: Persona,
    env: Environment,
    json: bool,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let insp = store.inspect(env)?;
    if json {
        let v = render::status_json(&insp);
        let text = serde_json::to_string_pretty(&v).expect("serialisable");
        writeln!(io.out, "{text}")?;
    } else {
        io.out
            .write_all(block(&insp, persona, io.out_style).as_bytes())?;
        if persona == Persona::DeployLock {
            if let Some(l) = render::lock_id_line(&insp) {
                writeln!(io.out, "{l}")?;
            }
            writeln!(io.out, "{}", render::verdict_line(&insp))?;
        }
    }
    io.out.flush()?;
    Ok(())
}

/// The persona's status block: the legacy one, or with an interpreter
/// holder named with its script (`bash (deploy.sh)`).
fn block(insp: &Inspection, persona: Persona, style: super::style::Style) -> String {
    match persona {
        Persona::Unlock => render::status_block(insp, style),
        Persona::DeployLock => render::status_block_modern(insp, style),
    }
}

/// The status block, then the legacy `--wait`: header, a progress line every
/// interval (rewritten in place on a terminal), then `✓ Lock released!` the
/// moment the lock goes, or the timeout text.
pub fn wait(
    ctx: &Context,
    store: &dyn LockStore,
    persona: Persona,
    env: Environment,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let insp = store.inspect(env)?;
    io.out
        .write_all(block(&insp, persona, io.out_style).as_bytes())?;
    // A dead holder's lock is never released by waiting: say so at once.
    if persona == Persona::DeployLock && insp.lock_dir_exists() && insp.liveness == Liveness::Dead {
        io.out.flush()?;
        return Err(Failure::WaitForDead {
            env,
            pid: insp.holder.as_ref().and_then(|h| h.pid),
        });
    }
    let out = &mut *io.out;
    for l in texts::WAITING_HEADER {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    let watcher = store.watch(env);
    let interval = ctx.settings.wait_interval;
    let timeout = ctx.settings.wait_timeout;
    let start = Instant::now();
    let deadline = start + timeout;
    let mut ticks: u32 = 0;
    let mut progress_open = false;
    let released = loop {
        let elapsed = start.elapsed();
        if watcher.gone() {
            break true;
        }
        if elapsed >= timeout {
            break false;
        }
        let progress = texts::waiting_progress(elapsed.as_secs());
        if io.out_tty {
            write!(out, "\r{progress}\x1b[K")?;
            progress_open = true;
        } else {
            writeln!(out, "{progress}")?;
        }
        out.flush()?;
        ticks += 1;
        let next_tick = start + interval.saturating_mul(ticks);
        let woke = watcher
            .wait(next_tick.min(deadline), None)
            .map_err(|source| Failure::Io {
                what: format!("cannot wait for {}", store.location(env).display()),
                source,
            })?;
        if woke == Woke::Released {
            break true;
        }
    };
    if progress_open {
        writeln!(out)?;
    }
    if released {
        writeln!(out, "{}", io.out_style.green(texts::LOCK_RELEASED))?;
        out.flush()?;
        return Ok(());
    }
    // Timeouts are said on stderr, like every error of ours; unlock.sh keeps
    // the legacy text on stdout.
    if persona == Persona::DeployLock {
        out.flush()?;
        return Err(Failure::TimedOut {
            env,
            limit: timeout,
            phrase: Some(messages::still_held(env)),
        });
    }
    writeln!(out)?;
    for l in texts::wait_timeout(timeout.as_secs_f64()) {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    Err(Failure::TimedOut {
        env,
        limit: timeout,
        phrase: None,
    })
}

/// The status block, then the legacy force-unlock: the warning, the
/// confirmation (skipped with `yes`), then the removal report.
///
/// What the person saw (the status block just printed, or the `--id` they
/// named) is re-checked by the store right before anything is removed; a
/// lock that changed hands since is left alone.
pub fn unlock(
    store: &dyn LockStore,
    persona: Persona,
    env: Environment,
    yes: bool,
    id: Option<&str>,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let insp = store.inspect(env)?;
    let style = io.out_style;
    io.out.write_all(block(&insp, persona, style).as_bytes())?;
    if persona == Persona::DeployLock
        && let Some(l) = render::lock_id_line(&insp)
    {
        writeln!(io.out, "{l}")?;
    }
    writeln!(io.out)?;
    for l in texts::force_warning(&store.location(env)) {
        if l.starts_with('⚠') {
            writeln!(io.out, "{}", style.yellow(&l))?;
        } else {
            writeln!(io.out, "{l}")?;
        }
    }
    io.out.flush()?;
    if !yes {
        // A live holder is said on its own line before the question (stderr:
        // stdout stays the legacy's).
        if let Liveness::Alive { pid, comm } = &insp.liveness {
            let line = match persona {
                Persona::Unlock => texts::holder_still_running(*pid, comm),
                Persona::DeployLock => render::holder_still_running(*pid, &insp.liveness),
            };
            let _ = writeln!(io.err, "{}", io.err_style.yellow(&line));
        }
        if !confirmed(io.err) {
            writeln!(io.out, "{}", texts::CANCELLED)?;
            io.out.flush()?;
            return Err(Failure::Cancelled);
        }
    }
    let expect = match id {
        Some(id) => Expect::LockId(id),
        None => Expect::Shown(&insp),
    };
    let forced = store.force_unlock(env, Some(expect));
    if let Ok(f) = &forced {
        io.warn_all(&f.warnings);
    }
    let done = match forced?.outcome {
        Unlock::Done(done) => done,
        Unlock::ChangedHands { now } => {
            return Err(Failure::ChangedHands {
                env,
                now: now.map(Box::new),
            });
        }
    };
    let out = &mut *io.out;
    match &done.dir_removed {
        None => writeln!(out, "{}", texts::DIR_ALREADY_REMOVED)?,
        Some(r) if r.had_foreign_entries => {
            writeln!(out, "{}", style.yellow(texts::DIR_NOT_EMPTY[0]))?;
            writeln!(out, "{}", texts::DIR_NOT_EMPTY[1])?;
            writeln!(out, "{}", style.green(texts::DIR_NOT_EMPTY[2]))?;
        }
        Some(_) => writeln!(out, "{}", style.green(texts::DIR_REMOVED))?,
    }
    if done.state_updated {
        writeln!(out, "{}", style.green(texts::STATE_UPDATED))?;
    } else {
        writeln!(out, "{}", texts::STATE_MISSING)?;
    }
    for l in texts::FORCE_DONE {
        if l.starts_with('✓') {
            writeln!(out, "{}", style.green(l))?;
        } else {
            writeln!(out, "{l}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// One line from stdin, the prompt on stderr only when stdin is a terminal
/// (as bash's `read -p`). Like `read`, surrounding blanks are dropped; a last
/// line without a newline still counts.
fn confirmed(err: &mut dyn Write) -> bool {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        let _ = write!(err, "{}", texts::CONFIRM_PROMPT);
        let _ = err.flush();
    }
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).is_err() {
        return false;
    }
    line.trim_end_matches('\n').trim_matches([' ', '\t']) == "yes"
}

/// `deploy-lock log`: the audit trail, filtered, as text or JSON lines. A
/// damaged line is shown as damaged; a missing log is an empty one, said on
/// stderr so the empty stdout is not a mystery.
pub fn log(
    home: Option<std::path::PathBuf>,
    req: &LogRequest,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    use deploy_lock::audit_log::{self, Filter};
    let since = match &req.since {
        None => None,
        Some(text) => Some(
            audit_log::parse_since(text, jiff::Timestamp::now())
                .ok_or_else(|| Failure::Usage(messages::bad_since(text)))?,
        ),
    };
    let Some(home) = home else {
        return Err(Failure::Usage(
            "HOME is not set, so there is no audit log to read ($HOME/.togather/logs/deployments/locks.log)".into(),
        ));
    };
    let path = deploy_lock::audit::log_path_in(&home);
    let lines = audit_log::read(&path).map_err(|source| Failure::Io {
        what: format!("cannot read the audit log {}", path.display()),
        source,
    })?;
    let filter = Filter {
        environment: req.env,
        since,
        last: req.last,
    };
    let lines = audit_log::select(lines, &filter);
    if req.json {
        io.out
            .write_all(super::log::json_lines(&lines).as_bytes())?;
    } else if lines.is_empty() {
        let _ = writeln!(io.err, "{}", messages::no_events(&path));
    } else {
        io.out.write_all(super::log::text(&lines).as_bytes())?;
    }
    io.out.flush()?;
    Ok(())
}
