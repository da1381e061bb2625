//! The flows both personas share: load a consistent look at the lock, wait
//! for a release, force-unlock with the legacy confirmation, and turn errors
//! into one clear message. Output is the legacy text.

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::Instant;

use deploy_lock::lock::{LocalLock, LockError, Shown, Unlock};
use deploy_lock::state::StateError;
use deploy_lock::status::Inspection;
use deploy_lock::wait::{Watcher, Woke};
use deploy_lock::{Context, Environment};

use super::exit;
use super::style::Style;
use super::texts;

/// Prints `err` on stderr as one `ERROR:` line (plus the guide's recovery
/// steps for a state file that cannot be parsed) and returns the modern exit
/// code for it.
pub fn report_error(err: &LockError) -> i32 {
    let style = Style::for_stderr();
    let mut msg = style.red(&format!("ERROR: {err}"));
    msg.push('\n');
    let code = match err {
        LockError::State(StateError::Io { .. }) | LockError::Io { .. } => exit::IO_ERROR,
        LockError::State(e) => {
            let broken = match e {
                StateError::Shape {
                    only_lock: true, ..
                } => texts::Broken::LockNotObject,
                StateError::Shape { .. } => texts::Broken::NotObject,
                _ => texts::Broken::NotJson,
            };
            for l in texts::state_recovery(e.path(), broken) {
                msg.push_str(&l);
                msg.push('\n');
            }
            exit::DATA_ERROR
        }
        LockError::OtherEnvironment { .. } | LockError::NotADirectory { .. } => exit::LOCK_HELD,
        LockError::NotPermitted { .. } => exit::IO_ERROR,
        LockError::Interrupted => exit::CANCELLED,
    };
    let _ = io::stderr().write_all(msg.as_bytes());
    code
}

pub fn warn(message: &str) {
    let style = Style::for_stderr();
    eprintln!("{}", style.yellow(&format!("warning: {message}")));
}

/// Warns about what the engine could not write to the audit log.
pub fn warn_all(lock: &LocalLock<'_>) {
    for w in lock.take_warnings() {
        warn(&w);
    }
}

pub fn inspect(ctx: &Context, env: Environment) -> Result<Inspection, LockError> {
    LocalLock::new(ctx, env).inspect()
}

fn out_line(out: &mut impl Write, style_fn: impl Fn(&str) -> String, s: &str) -> io::Result<()> {
    writeln!(out, "{}", style_fn(s))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitEnd {
    Released,
    TimedOut,
}

/// The legacy `--wait` after the status block: header, a progress line every
/// interval (rewritten in place on a terminal), then `✓ Lock released!` the
/// moment the directory goes, or the timeout message.
pub fn wait_for_release(ctx: &Context, env: Environment) -> io::Result<WaitEnd> {
    let style = Style::for_stdout();
    let stdout = io::stdout();
    let tty = stdout.is_terminal();
    let mut out = stdout.lock();
    for l in texts::WAITING_HEADER {
        writeln!(out, "{l}")?;
    }
    out.flush()?;
    let watcher = Watcher::new(&ctx.lock_dir(env));
    let interval = ctx.settings.wait_interval;
    let timeout = ctx.settings.wait_timeout;
    let start = Instant::now();
    let deadline = start + timeout;
    let mut ticks: u32 = 0;
    let mut progress_open = false;
    let end = loop {
        let elapsed = start.elapsed();
        if watcher.gone() {
            break WaitEnd::Released;
        }
        if elapsed >= timeout {
            break WaitEnd::TimedOut;
        }
        let progress = texts::waiting_progress(elapsed.as_secs());
        if tty {
            write!(out, "\r{progress}\x1b[K")?;
            progress_open = true;
        } else {
            writeln!(out, "{progress}")?;
        }
        out.flush()?;
        ticks += 1;
        let next_tick = start + interval.saturating_mul(ticks);
        match watcher.wait(next_tick.min(deadline), None)? {
            Woke::Released => break WaitEnd::Released,
            Woke::Timeout | Woke::Extra => {}
        }
    };
    if progress_open {
        writeln!(out)?;
    }
    match end {
        WaitEnd::Released => out_line(&mut out, |s| style.green(s), texts::LOCK_RELEASED)?,
        WaitEnd::TimedOut => {
            writeln!(out)?;
            for l in texts::wait_timeout(timeout.as_secs_f64()) {
                writeln!(out, "{l}")?;
            }
        }
    }
    out.flush()?;
    Ok(end)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForceEnd {
    Done,
    Cancelled,
    /// The lock changed hands since it was shown: nothing changed.
    ChangedHands,
}

/// Which persona's words a force-unlock uses around the legacy block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persona {
    Legacy,
    Modern,
}

/// The legacy force-unlock after the status block: the warning, the
/// confirmation (skipped with `assume_yes`), then the removal report.
///
/// `shown` is what the person saw (the status block just printed, or the
/// `--id` they named); it is re-checked under the guard right before anything
/// is removed, and a lock that changed hands since is left alone.
pub fn force_unlock(
    ctx: &Context,
    env: Environment,
    assume_yes: bool,
    insp: &Inspection,
    shown: &Shown,
    persona: Persona,
) -> Result<ForceEnd, LockError> {
    let style = Style::for_stdout();
    let lock_dir = ctx.lock_dir(env);
    {
        let mut out = io::stdout().lock();
        let _ = writeln!(out);
        for l in texts::force_warning(&lock_dir) {
            let painted = if l.starts_with('⚠') {
                style.yellow(&l)
            } else {
                l
            };
            let _ = writeln!(out, "{painted}");
        }
        let _ = out.flush();
    }
    if !assume_yes {
        // A live holder is said on its own line before the question (stderr:
        // stdout stays the legacy's).
        if let deploy_lock::status::Liveness::Alive { pid, comm } = &insp.liveness {
            let line = match persona {
                Persona::Legacy => texts::holder_still_running(*pid, comm),
                Persona::Modern => super::render::holder_still_running(*pid, &insp.liveness),
            };
            eprintln!("{}", Style::for_stderr().yellow(&line));
        }
        if !confirmed() {
            println!("{}", texts::CANCELLED);
            return Ok(ForceEnd::Cancelled);
        }
    }
    let lock = LocalLock::new(ctx, env);
    let done = lock.force_unlock(Some(shown));
    warn_all(&lock);
    let done = match done? {
        Unlock::Done(d) => d,
        Unlock::ChangedHands { now } => {
            let line = match persona {
                Persona::Legacy => texts::changed_hands(
                    &now.as_ref()
                        .map(deploy_lock::holder::describe)
                        .unwrap_or_else(|| "an unknown holder".into()),
                ),
                Persona::Modern => super::render::changed_hands(env, now.as_ref()),
            };
            eprintln!("{}", Style::for_stderr().red(&line));
            return Ok(ForceEnd::ChangedHands);
        }
    };
    let mut out = io::stdout().lock();
    let mut say = |s: String| {
        let _ = writeln!(out, "{s}");
    };
    match &done.dir_removed {
        None => say(texts::DIR_ALREADY_REMOVED.to_string()),
        Some(r) if r.had_foreign_entries => {
            say(style.yellow(texts::DIR_NOT_EMPTY[0]));
            say(texts::DIR_NOT_EMPTY[1].to_string());
            say(style.green(texts::DIR_NOT_EMPTY[2]));
        }
        Some(_) => say(style.green(texts::DIR_REMOVED)),
    }
    if done.state_updated {
        say(style.green(texts::STATE_UPDATED));
    } else {
        say(texts::STATE_MISSING.to_string());
    }
    for l in texts::FORCE_DONE {
        say(if l.starts_with('✓') {
            style.green(l)
        } else {
            l.to_string()
        });
    }
    let _ = out.flush();
    Ok(ForceEnd::Done)
}

/// One line from stdin, the prompt on stderr only when stdin is a terminal
/// (as bash's `read -p`). Like `read`, surrounding blanks are dropped; a last
/// line without a newline still counts.
fn confirmed() -> bool {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        eprint!("{}", texts::CONFIRM_PROMPT);
        let _ = io::stderr().flush();
    }
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).is_err() {
        return false;
    }
    line.trim_end_matches('\n').trim_matches([' ', '\t']) == "yes"
}
