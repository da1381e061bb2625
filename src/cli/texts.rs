//! Every user-facing text of the legacy `unlock.sh`, as whole lines. Texts
//! that are ours (not legacy) are marked so. The contract they keep, in
//! this repository's words:
//!
//! - `unlock.sh ENVIRONMENT [ACTION]`: the environment is exactly
//!   `development`, `staging` or `production`; ACTION is `--status` (the
//!   default), `--wait` or `--force`, or the same words without dashes;
//!   later words are ignored. No environment prints [`usage`] with `$0` on
//!   stdout, exit 1; a wrong environment or action prints
//!   [`invalid_environment`] / [`invalid_action`], exit 1.
//! - Every action first prints the status block: [`header`], [`RULE`] (44
//!   `=`), then either [`LOCK_DIR_EXISTS_LABEL`] with the lock path and the
//!   exact line GNU `ls -ld` prints for it, or [`LOCK_DIR_LABEL`]
//!   [`NOT_FOUND_UNLOCKED`]; an empty line; then [`STATE_FILE_INFO`] and six
//!   [`field`] lines (Locked, Locked by, Locked at, Deployment ID, PID,
//!   Hostname: a missing or null value is `N/A`, Locked is `false`), or
//!   [`state_file_not_found`]; an empty line.
//! - Only while Locked is `true` with a parseable Locked at: [`lock_age`]
//!   (minutes and seconds, no hours) and, past the stale timeout (1800 s,
//!   strictly greater), [`lock_is_stale`]. Only when the record's host is
//!   this host: [`process_running`] with the name `ps -o comm=` shows, or
//!   [`process_not_running`].
//! - `--wait`: [`WAITING_HEADER`], a [`waiting_progress`] line every
//!   interval (rewritten in place on a terminal), [`LOCK_RELEASED`] (exit 0)
//!   or, after an hour, an empty line and [`wait_timeout`] (exit 1).
//! - `--force`: an empty line, [`force_warning`], the [`CONFIRM_PROMPT`] on
//!   stderr when stdin is a terminal; one line read from stdin; anything but
//!   `yes` prints [`CANCELLED`], exit 0, nothing changed. On `yes`:
//!   [`DIR_REMOVED`] or [`DIR_ALREADY_REMOVED`] (the three [`DIR_NOT_EMPTY`]
//!   lines only for a directory holding files that are not ours), then
//!   [`STATE_UPDATED`] or [`STATE_MISSING`], then [`FORCE_DONE`], exit 0.
//! - Colours only on a terminal (header and "State file info:" blue, the
//!   "Lock directory exists:" label yellow, "Not found (unlocked)" green, ✓
//!   lines green, ⚠ lines yellow, ERROR lines red).

use std::path::Path;

pub const RULE: &str = "============================================";

pub fn usage(argv0: &str) -> String {
    format!(
        "Usage: {argv0} ENVIRONMENT [--force|--wait|--status]

Environments: development, staging, production

Options:
  --status    Show lock status (default)
  --force     Force unlock (DANGEROUS - use only if deployment crashed)
  --wait      Wait for lock to be released naturally

Examples:
  {argv0} staging                  # Show lock status
  {argv0} staging --wait           # Wait for deployment to finish
  {argv0} staging --force          # Force unlock (last resort)
"
    )
}

/// `unlock.sh --help` (ours; the legacy had no help flag): the legacy
/// usage, then every flag the man page lists that the legacy did not have.
/// The usage alone (no environment, exit 1) stays the legacy's.
pub fn help(argv0: &str) -> String {
    format!(
        "{}
Also (deploy-lock):
  --project-root DIR    Checkout whose deploy/config/deployment-state.json to use
                        (default: two folders above the script)
  --remote USER@HOST    Run it on USER@HOST over ssh, in the server's checkout
  --remote-dir DIR      The server's checkout (default: /opt/togather/src)
  -h, --help            Show this help (man unlock.sh for more)
",
        usage(argv0)
    )
}

pub fn invalid_environment(env: &str) -> [String; 2] {
    [
        format!("ERROR: Invalid environment '{env}'"),
        "Must be one of: development, staging, production".to_string(),
    ]
}

pub fn invalid_action(action: &str) -> [String; 2] {
    [
        format!("ERROR: Invalid action '{action}'"),
        "Use: --status, --wait, or --force".to_string(),
    ]
}

// Status block.
pub fn header(env: &str) -> String {
    format!("Deployment Lock Status: {env}")
}
pub const LOCK_DIR_EXISTS_LABEL: &str = "Lock directory exists:";
pub const LOCK_DIR_LABEL: &str = "Lock directory:";
pub const NOT_FOUND_UNLOCKED: &str = "Not found (unlocked)";
pub const STATE_FILE_INFO: &str = "State file info:";
pub fn state_file_not_found(path: &Path) -> String {
    format!("State file not found: {}", path.display())
}
pub const NA: &str = "N/A";
pub fn field(label: &str, value: &str) -> String {
    format!("  {label}: {value}")
}
pub fn lock_age(age_secs: i64) -> String {
    // Bash arithmetic: division and remainder truncate toward zero.
    format!("  Lock age: {}m {}s", age_secs / 60, age_secs % 60)
}
/// `⚠ Lock is stale (>30 minutes)`; the span follows DEPLOY_LOCK_STALE_SECS.
pub fn lock_is_stale(stale_secs: u64) -> String {
    format!("⚠ Lock is stale (>{})", span(stale_secs))
}
pub fn process_running(pid: &str, comm: &str) -> String {
    format!("✓ Process {pid} is still running: {comm}")
}
pub fn process_not_running(pid: &str) -> String {
    format!("⚠ Process {pid} is not running (deployment may have crashed)")
}

// --wait.
pub const WAITING_HEADER: [&str; 3] = [
    "Waiting for deployment to complete...",
    "Press Ctrl+C to cancel",
    "",
];
pub fn waiting_progress(elapsed_secs: u64) -> String {
    format!("Waiting... {}m {}s", elapsed_secs / 60, elapsed_secs % 60)
}
pub const LOCK_RELEASED: &str = "✓ Lock released!";
/// `Timeout after 1 hour. Lock still exists.`; the span follows
/// DEPLOY_LOCK_WAIT_TIMEOUT.
pub fn wait_timeout(timeout_secs: f64) -> [String; 2] {
    [
        format!("Timeout after {}. Lock still exists.", span_f(timeout_secs)),
        "Consider using --force if deployment crashed.".to_string(),
    ]
}

// --force.
pub fn force_warning(lock_dir: &Path) -> Vec<String> {
    vec![
        "⚠ FORCE UNLOCK - This is dangerous!".to_string(),
        String::new(),
        "This will:".to_string(),
        format!("  1. Remove lock directory: {}", lock_dir.display()),
        "  2. Update state file to unlocked".to_string(),
        String::new(),
        "Only do this if:".to_string(),
        "  - The deployment process crashed".to_string(),
        "  - You've verified no deployment is running".to_string(),
        "  - The lock is stale (>30 minutes old)".to_string(),
        String::new(),
    ]
}
pub const CONFIRM_PROMPT: &str = "Are you sure you want to force unlock? (type 'yes' to confirm): ";
pub const CANCELLED: &str = "Cancelled.";
pub const DIR_REMOVED: &str = "✓ Lock directory removed";
pub const DIR_ALREADY_REMOVED: &str = "Lock directory does not exist (already removed)";
pub const DIR_NOT_EMPTY: [&str; 3] = [
    "⚠ Could not remove lock directory (may not be empty)",
    "  Trying force remove...",
    "✓ Lock directory force removed",
];
pub const STATE_UPDATED: &str = "✓ State file updated to unlocked";
pub const STATE_MISSING: &str = "State file does not exist";
pub const FORCE_DONE: [&str; 4] = [
    "",
    "✓ Lock forcefully released",
    "",
    "Next deployment will proceed normally.",
];

// Ours, not legacy: said on stderr around the legacy force-unlock.
/// Before the question, when the holder runs.
pub fn holder_still_running(pid: i32, comm: &str) -> String {
    format!("⚠ Process {pid} is still running: {comm} (force unlock does not stop it)")
}
/// After `yes`, when the lock is no longer the one shown.
pub fn changed_hands(who: &str) -> String {
    format!(
        "ERROR: The lock changed hands since it was shown (now held by {who}); nothing was changed"
    )
}

// Ours, not legacy: the migration lock, on a line of its own after the status
// block (never inside it), and its removal by the force-unlock.
pub fn migration_lock(path: &Path, age_secs: Option<i64>, remove_with: &str) -> String {
    let age = age_secs
        .map(|a| format!(", {}m {}s old", a / 60, a % 60))
        .unwrap_or_default();
    format!(
        "⚠ Migration lock: {}{age}; deploy.sh's migrations fail \"Lock already held\" while it is there. If no deploy is migrating, remove it: {remove_with}",
        path.display()
    )
}
pub fn remove_migration_lock(path: &Path) -> String {
    format!("  3. Remove migration lock: {}", path.display())
}
pub const MIGRATION_REMOVED: &str = "✓ Migration lock removed";
pub const MIGRATION_GONE: &str = "Migration lock does not exist (already removed)";
pub const MIGRATION_CHANGED: &str =
    "⚠ Migration lock changed since it was shown (another migration took it): left alone";

// Ours, not legacy: the legacy printed empty fields for a corrupted state file.
/// What is wrong with a state file, for choosing recovery steps that work
/// (jq cannot read a file that is not JSON, nor set `.lock.locked` in a
/// `lock` that is not an object).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broken {
    NotJson,
    LockNotObject,
    NotObject,
}

/// The recovery steps for `path`, adapted to what is wrong; unlock.sh(1)
/// ("state file not JSON", installed with the binary) says them too.
pub fn state_recovery(path: &Path, broken: Broken) -> Vec<String> {
    let p = path.display();
    let mut lines = vec![
        "To recover (see \"state file not JSON\" in man unlock.sh):".to_string(),
        format!("  cp {p}{{,.backup}}"),
    ];
    match broken {
        Broken::NotJson => {
            lines.push(
                "  # repair the JSON at the position above, then reset the lock record:".into(),
            );
            lines.push(format!(
                "  jq '.lock.locked = false' {p} > {p}.tmp && mv {p}.tmp {p}"
            ));
        }
        Broken::LockNotObject => {
            lines.push("  # reset the lock record:".into());
            lines.push(format!(
                "  jq '.lock = {{\"locked\": false}}' {p} > {p}.tmp && mv {p}.tmp {p}"
            ));
        }
        Broken::NotObject => {
            lines.push(
                "  # restore it from a backup or version control, or start afresh (other keys are lost):"
                    .into(),
            );
            lines.push(format!(
                "  echo '{{\"lock\": {{\"locked\": false}}}}' > {p}"
            ));
        }
    }
    lines
}

// Ours: what is wrong with a hand-edited state record.
pub fn not_a_boolean(label: &str, v: &serde_json::Value) -> String {
    let v = deploy_lock::sanitize::text(&v.to_string()).into_owned();
    format!("⚠ {label} is {v}, not true or false: the record was edited by hand")
}
pub fn not_a_time(v: &str) -> String {
    format!("⚠ Locked at '{v}' is not a time: lock age unknown")
}
pub fn lock_path_not_a_directory(path: &Path, what: &str) -> String {
    format!(
        "⚠ {} is {what}, not a lock directory: it blocks every deploy; check it and remove it by hand",
        path.display()
    )
}
pub fn not_a_pid(v: &serde_json::Value) -> String {
    // JSON text leaves DEL and C1 raw: through the one sanitiser.
    let v = deploy_lock::sanitize::text(&v.to_string()).into_owned();
    format!("⚠ PID {v} is not a process id: not checked")
}

/// `30 minutes`, `1 hour`, `90 seconds`.
pub fn span(secs: u64) -> String {
    let unit = |n: u64, one: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {one}s")
        }
    };
    if secs != 0 && secs.is_multiple_of(3600) {
        unit(secs / 3600, "hour")
    } else if secs != 0 && secs.is_multiple_of(60) {
        unit(secs / 60, "minute")
    } else {
        unit(secs, "second")
    }
}

pub fn span_f(secs: f64) -> String {
    if secs.fract() == 0.0 {
        span(secs as u64)
    } else {
        format!("{secs} seconds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_the_legacy_defaults() {
        assert_eq!(span(1800), "30 minutes");
        assert_eq!(span(3600), "1 hour");
        assert_eq!(span(7200), "2 hours");
        assert_eq!(span(90), "90 seconds");
        assert_eq!(span(1), "1 second");
        assert_eq!(span(0), "0 seconds");
        assert_eq!(span_f(0.5), "0.5 seconds");
        assert_eq!(
            wait_timeout(3600.0)[0],
            "Timeout after 1 hour. Lock still exists."
        );
    }

    #[test]
    fn lock_age_is_minutes_and_seconds_without_hours() {
        assert_eq!(lock_age(72030), "  Lock age: 1200m 30s");
        assert_eq!(lock_age(195), "  Lock age: 3m 15s");
        assert_eq!(lock_age(-65), "  Lock age: -1m -5s");
    }
}
