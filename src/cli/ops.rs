//! The flows both personas share, against any lock store: show the status,
//! wait for a release, force-unlock with the legacy confirmation. Output is
//! the legacy text, written with `?` so a failed write ends the flow.

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::Instant;

use deploy_lock::lock::LockError;
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
    quiet: bool,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    // The modern status still shows the lock when the state file is not
    // usable, then fails with the state's error (65); unlock.sh keeps the
    // legacy's error alone.
    let (insp, state_err) = match persona {
        Persona::DeployLock => store.inspect_despite_records(env)?,
        Persona::Unlock => (store.inspect(env)?, None),
    };
    let state_failure = |e: LockError| Err(Failure::Lock(e).for_env(env, store));
    if quiet {
        if let Some(e) = state_err {
            return state_failure(e);
        }
        return if deploy_lock::lock::would_take(&insp) {
            Ok(())
        } else {
            Err(Failure::NotFree)
        };
    }
    if json {
        let text = state_err.as_ref().map(messages::lock_error);
        let v = render::status_json_with(&insp, text);
        let text =
            deploy_lock::sanitize::json(serde_json::to_string_pretty(&v).expect("serialisable"));
        writeln!(io.out, "{text}")?;
    } else if state_err.is_some() {
        io.out
            .write_all(render::lock_part(&insp, io.out_style).as_bytes())?;
        if insp.lock_dir_exists() {
            writeln!(io.out, "{}", render::holder_line(&insp))?;
            writeln!(io.out)?;
        }
    } else {
        io.out
            .write_all(block(&insp, persona, io.out_style).as_bytes())?;
        if persona == Persona::DeployLock {
            if let Some(l) = render::reason_line(&insp) {
                writeln!(io.out, "{l}")?;
            }
            // The queue: deploy-lock's own line (unlock.sh's bytes are the
            // legacy's).
            if let Some(l) = messages::queue_line(&insp.waiters) {
                writeln!(io.out, "{l}")?;
            }
            if let Some(l) = render::lock_id_line(&insp) {
                writeln!(io.out, "{l}")?;
            }
            writeln!(io.out, "{}", render::verdict_line(&insp))?;
        }
    }
    io.out.flush()?;
    match state_err {
        Some(e) => state_failure(e),
        None => Ok(()),
    }
}

/// The persona's status block: the legacy one, or with an interpreter
/// holder named with its script (`bash (deploy.sh)`).
///
/// A migration lock beside the lock follows the block on a line of its own
/// (then an empty line), so the block's bytes stay the legacy's.
fn block(insp: &Inspection, persona: Persona, style: super::style::Style) -> String {
    let mut out = match persona {
        Persona::Unlock => render::status_block(insp, style),
        Persona::DeployLock => render::status_block_modern(insp, style),
    };
    if let Some(m) = &insp.migration {
        let env = insp.environment;
        let how = match persona {
            Persona::Unlock => format!("unlock.sh {env} --force"),
            Persona::DeployLock => format!("deploy-lock unlock {env}"),
        };
        out.push_str(&style.yellow(&texts::migration_lock(&m.path, m.age_seconds, &how)));
        out.push_str("\n\n");
    }
    out
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
    // Nothing to wait for: one line, not the whole block (unlock.sh keeps
    // the legacy's block, header and release line).
    if persona == Persona::DeployLock && insp.verdict == deploy_lock::status::Verdict::Free {
        writeln!(
            io.out,
            "The {env} lock is free (no lock directory at {}); nothing to wait for.",
            store.location(env).display()
        )?;
        io.out.flush()?;
        return Ok(());
    }
    io.out
        .write_all(block(&insp, persona, io.out_style).as_bytes())?;
    // A dead holder's lock is never released by waiting: say so at once.
    // But a run's command ends a moment before its deploy-lock releases the
    // lock: never judge while a run holds the lock's kernel lock, and look
    // once more after that moment (the same lock, still dead).
    let dead = |i: &Inspection| {
        i.lock_dir_exists() && i.liveness == Liveness::Dead && i.run_holder.is_none()
    };
    if persona == Persona::DeployLock && dead(&insp) {
        io.out.flush()?;
        std::thread::sleep(std::time::Duration::from_millis(200));
        let again = store.inspect(env)?;
        let lock_id = |i: &Inspection| i.holder.as_ref().and_then(|h| h.lock_id.clone());
        if dead(&again) && lock_id(&again) == lock_id(&insp) {
            return Err(Failure::WaitForDead {
                env,
                pid: again.holder.as_ref().and_then(|h| h.pid),
            });
        }
    }
    // A run file another program holds: no release of the lock would let a
    // deploy start, so waiting for one would say "released" falsely.
    if persona == Persona::DeployLock
        && let Some(holder) = deploy_lock::lock::run_file_squatted(&insp)
    {
        io.out.flush()?;
        return Err(Failure::RunFileSquatted {
            env,
            run_file: insp.lock_dir.with_file_name(env.run_file_name()),
            holder,
        });
    }
    // The same-host holder seen holding the lock, to tell once it is
    // released whether its process still runs.
    let seen_holder = deploy_lock::exit_wait::live_holder_processes(&insp);
    let reason = (persona == Persona::DeployLock)
        .then(|| messages::holder_reason(&insp))
        .flatten();
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
        let mut progress = texts::waiting_progress(elapsed.as_secs());
        // The modern wait says why the lock is held (unlock.sh's line stays
        // the legacy's).
        if let Some(r) = &reason {
            progress.push_str(&format!(" (reason: {r})"));
        }
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
        // The legacy deploy.sh releases while it still runs (and again on
        // TERM/INT): say so, without waiting for it (a waiter's exit timing
        // is the lock's, as the legacy's was).
        let running = deploy_lock::exit_wait::still_running(&seen_holder);
        if !running.is_empty() {
            io.warn(&messages::holder_still_running_after_release(env, &running));
        }
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
    let modern = persona == Persona::DeployLock;
    // Nothing locked (no lock directory, no record saying locked): say so
    // and change nothing, not even an audit line. A record still saying
    // locked is reset as the legacy did.
    if modern
        && !insp.locked()
        && !insp.state.as_ref().is_some_and(|d| d.is_locked())
        && insp.migration.is_none()
    {
        writeln!(
            io.out,
            "Nothing to unlock: the {env} lock is free (no lock directory at {}); nothing changed.",
            store.location(env).display()
        )?;
        io.out.flush()?;
        return Ok(());
    }
    // An id that is not the lock's is a mistake to say at once, before the
    // banner and the question (the store checks again right before removal,
    // for a lock that changes hands meanwhile).
    if modern && let Some(given) = id {
        let current = insp
            .lock_dir_exists()
            .then(|| insp.holder.as_ref().and_then(|h| h.lock_id.clone()))
            .flatten();
        if current.as_deref() != Some(given) {
            return Err(Failure::WrongId {
                env,
                given: given.to_string(),
                current,
            });
        }
    }
    // Without a terminal the answer is on stdin already or never: with none
    // (EOF), show only who holds the lock and say how to confirm.
    let early = if modern && !yes { early_answer() } else { None };
    if early == Some(Answer::Eof) {
        writeln!(io.out, "{}", render::holder_line(&insp))?;
        io.out.flush()?;
        return Err(Failure::NoAnswer);
    }
    io.out.write_all(block(&insp, persona, style).as_bytes())?;
    if persona == Persona::DeployLock
        && let Some(l) = render::reason_line(&insp)
    {
        writeln!(io.out, "{l}")?;
    }
    if persona == Persona::DeployLock
        && let Some(l) = render::lock_id_line(&insp)
    {
        writeln!(io.out, "{l}")?;
    }
    writeln!(io.out)?;
    // A lease lock (etcd) has no directory or state file to speak of.
    let network = modern && insp.network.is_some();
    // A key written by hand may have no lease: it is deleted, not revoked.
    let has_lease = insp
        .network
        .as_ref()
        .and_then(|n| n.foreign.as_ref())
        .is_none_or(|f| f.has_lease);
    let banner = if network {
        super::messages::force_warning_network(
            &store.location(env).display().to_string(),
            has_lease,
        )
    } else {
        texts::force_warning(&store.location(env))
    };
    let mut banner = banner;
    if let Some(m) = &insp.migration {
        // After "2. Update state file to unlocked".
        let at = banner
            .iter()
            .position(|l| l.starts_with("  2. "))
            .map_or(banner.len(), |i| i + 1);
        banner.insert(at, texts::remove_migration_lock(&m.path));
    }
    for l in banner {
        if l.starts_with('⚠') {
            writeln!(io.out, "{}", style.yellow(&l))?;
        } else {
            writeln!(io.out, "{l}")?;
        }
    }
    io.out.flush()?;
    if !yes {
        confirm(&insp, persona, early, io)?;
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
    if network {
        let line = super::messages::network_unlocked(done.dir_removed.is_some(), has_lease);
        match done.dir_removed {
            Some(_) => writeln!(out, "{}", style.green(line))?,
            None => writeln!(out, "{line}")?,
        }
    }
    match &done.dir_removed {
        _ if network => {}
        None => writeln!(out, "{}", texts::DIR_ALREADY_REMOVED)?,
        // The legacy's `rmdir` fails on any directory holding a file (every
        // real lock holds `locked_at`); it then said so in three lines. The
        // modern persona says it only for files that were not ours.
        Some(r)
            if (if modern {
                r.had_foreign_entries
            } else {
                r.had_entries
            }) =>
        {
            writeln!(out, "{}", style.yellow(texts::DIR_NOT_EMPTY[0]))?;
            writeln!(out, "{}", texts::DIR_NOT_EMPTY[1])?;
            writeln!(out, "{}", style.green(texts::DIR_NOT_EMPTY[2]))?;
        }
        Some(_) => writeln!(out, "{}", style.green(texts::DIR_REMOVED))?,
    }
    match (network, done.state_updated) {
        (true, _) => {}
        (false, true) => writeln!(out, "{}", style.green(texts::STATE_UPDATED))?,
        (false, false) => writeln!(out, "{}", texts::STATE_MISSING)?,
    }
    // The migration lock shown, only if it is still that very directory.
    if let Some(m) = &insp.migration {
        use deploy_lock::migration::{MigrationRemoval, remove_shown};
        match remove_shown(m).map_err(|source| Failure::Io {
            what: format!("cannot remove {}", m.path.display()),
            source,
        })? {
            MigrationRemoval::Removed => {
                writeln!(out, "{}", style.green(texts::MIGRATION_REMOVED))?
            }
            MigrationRemoval::AlreadyGone => writeln!(out, "{}", texts::MIGRATION_GONE)?,
            MigrationRemoval::ChangedSinceShown => {
                writeln!(out, "{}", style.yellow(texts::MIGRATION_CHANGED))?
            }
        }
    }
    // The modern persona says what a run would now do (a force-unlocked run
    // still running keeps the lock until it ends); unlock.sh keeps the
    // legacy's closing words.
    let after = if modern {
        store
            .inspect(env)
            .ok()
            .filter(|i| i.verdict == deploy_lock::status::Verdict::ReleasedRunning)
    } else {
        None
    };
    for l in texts::FORCE_DONE {
        if l.starts_with('✓') {
            writeln!(out, "{}", style.green(l))?;
        } else if l.starts_with("Next deployment")
            && let Some(after) = &after
        {
            writeln!(out, "{}", render::released_running_after_unlock(after))?;
        } else {
            writeln!(out, "{l}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// The confirmation of a force-unlock or a reset: a live holder said on its
/// own line first (stderr: stdout stays the legacy's), then the answer,
/// given early or read now. `yes` goes on; no answer at all is
/// [`Failure::NoAnswer`] for `deploy-lock` (the legacy cancels); anything
/// else prints `Cancelled.`.
pub fn confirm(
    insp: &Inspection,
    persona: Persona,
    early: Option<Answer>,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    if let Liveness::Alive { pid, comm } = &insp.liveness {
        let line = match persona {
            Persona::Unlock => texts::holder_still_running(*pid, comm),
            Persona::DeployLock => render::holder_still_running(*pid, &insp.liveness),
        };
        let _ = writeln!(io.err, "{}", io.err_style.yellow(&line));
    }
    match early.unwrap_or_else(|| answer(io.err)) {
        Answer::Yes => Ok(()),
        Answer::Eof if persona == Persona::DeployLock => Err(Failure::NoAnswer),
        Answer::Eof | Answer::Other => {
            writeln!(io.out, "{}", texts::CANCELLED)?;
            io.out.flush()?;
            Err(Failure::Cancelled)
        }
    }
}

/// What came on stdin at the confirmation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Yes,
    Other,
    /// Nothing at all: stdin ended (no terminal, no `echo yes |`).
    Eof,
}

/// One line from stdin, the prompt on stderr only when stdin is a terminal
/// (as bash's `read -p`). Like `read`, surrounding blanks are dropped; a last
/// line without a newline still counts.
pub fn answer(err: &mut dyn Write) -> Answer {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        let _ = write!(err, "{}", texts::CONFIRM_PROMPT);
        let _ = err.flush();
    }
    read_answer()
}

fn read_answer() -> Answer {
    let mut line = String::new();
    match io::stdin().lock().read_line(&mut line) {
        Err(_) => Answer::Other,
        Ok(0) => Answer::Eof,
        Ok(_) if line.trim_end_matches('\n').trim_matches([' ', '\t']) == "yes" => Answer::Yes,
        Ok(_) => Answer::Other,
    }
}

/// The answer, read now, when stdin is not a terminal and holds a line or
/// has ended (a file, /dev/null, a closed pipe) within 200 ms (an `echo yes
/// |` still starting); None when it must be waited for after the banner (a
/// terminal, a pipe whose writer answers what it sees).
pub fn early_answer() -> Option<Answer> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let stdin = io::stdin();
    if stdin.is_terminal() {
        return None;
    }
    let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
    match poll(&mut fds, PollTimeout::from(200u8)) {
        Ok(n) if n > 0 => Some(read_answer()),
        _ => None,
    }
}

/// `deploy-lock log`: the audit trail, filtered, as text or JSON lines. A
/// damaged line is shown as damaged; a missing log is an empty one, said on
/// stderr so the empty stdout is not a mystery.
pub fn log(
    ctx: Option<&deploy_lock::Context>,
    home: Option<std::path::PathBuf>,
    team: Option<Result<Vec<serde_json::Value>, deploy_lock::etcd::EtcdError>>,
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
    // The checkout's trail (every operator's), then the user's own old
    // log, which earlier versions wrote: one trail in time order.
    let mut paths: Vec<std::path::PathBuf> = Vec::new();
    if let Some(p) = deploy_lock::audit::override_path() {
        paths.push(p);
    } else if let Some(ctx) = ctx.filter(|c| c.no_checkout.is_none()) {
        paths.push(deploy_lock::audit::checkout_log(&ctx.state_file));
    }
    if let Some(home) = &home {
        let old = deploy_lock::audit::log_path_in(home);
        if !paths.contains(&old) {
            paths.push(old);
        }
    }
    if paths.is_empty() {
        return Err(Failure::Usage(
            "HOME is not set and no checkout was found, so there is no audit log to read (deploy/config/deployment-audit.log, $HOME/.togather/logs/deployments/locks.log)".into(),
        ));
    }
    let refs: Vec<&std::path::Path> = paths.iter().map(|p| p.as_path()).collect();
    let lines = audit_log::read_all(&refs).map_err(|source| Failure::Io {
        what: format!(
            "cannot read the audit log {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
        source,
    })?;
    // With the etcd backend: every machine's events too.
    let lines = match team {
        None => lines,
        Some(Ok(copies)) => audit_log::merge(lines, &copies),
        Some(Err(e)) => {
            io.warn(&messages::team_log_unreadable(&e));
            lines
        }
    };
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
        let _ = writeln!(io.err, "{}", messages::no_events(&refs));
    } else {
        io.out.write_all(super::log::text(&lines).as_bytes())?;
    }
    io.out.flush()?;
    Ok(())
}
