//! The audit trail: one JSON line per lock event appended to
//! `~/.togather/logs/deployments/locks.log`, beside the deploy logs.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::context::Context;
use crate::environment::Environment;
use crate::status::Holder;
use crate::times::utc_seconds;

pub fn log_path(ctx: &Context) -> Option<PathBuf> {
    ctx.home.as_deref().map(log_path_in)
}

/// The audit log of the user whose home is `home` (`deploy-lock log` reads it).
pub fn log_path_in(home: &std::path::Path) -> PathBuf {
    home.join(".togather/logs/deployments/locks.log")
}

/// Appends one line. The caller turns an error into a warning: an audit
/// failure never undoes or blocks the lock operation itself.
pub fn record(
    ctx: &Context,
    event: &str,
    env: Environment,
    holder: Option<&Holder>,
    extra: Value,
) -> io::Result<PathBuf> {
    let path =
        log_path(ctx).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "HOME is not set"))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut line = json!({
        "time": utc_seconds(ctx.now()),
        "event": event,
        "environment": env.as_str(),
        "user": ctx.user(),
        "host": ctx.host,
        "pid": std::process::id(),
        "holder": holder,
    });
    if let (Value::Object(l), Value::Object(e)) = (&mut line, extra) {
        l.extend(e);
    }
    let mut text = serde_json::to_string(&line).expect("serialisable");
    text.push('\n');
    // O_APPEND and a single write keep concurrent lines whole.
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(text.as_bytes())?;
    Ok(path)
}
