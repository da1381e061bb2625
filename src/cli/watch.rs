//! `deploy-lock status --watch [ENV]`: a live view of every environment (or
//! one), redrawn on every change the store reports (inotify, an etcd watch)
//! until Ctrl-C. On a terminal the screen is redrawn in place, and once a
//! second so ages tick; elsewhere one block per change, ages aside.

use std::time::{Duration, Instant};

use deploy_lock::Environment;
use deploy_lock::status::Inspection;
use deploy_lock::store::LockStore;

use super::failure::Failure;
use super::messages;
use super::ops::Io;
use super::overview::{Row, table};

/// What the view shows: the list's table, then each environment's queue.
pub fn view(rows: &[Row]) -> String {
    let mut out = table(rows);
    for r in rows {
        if let Some(q) = messages::queue_line(&r.insp.waiters) {
            out.push_str(&format!("{}: {q}\n", r.insp.environment));
        }
    }
    out
}

/// What counts as a change: the view as shown, ages aside (they tick by
/// themselves).
fn what_changed(rows: &[Row]) -> String {
    let ageless: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            insp: Inspection {
                age_seconds: None,
                ..r.insp.clone()
            },
            backend: r.backend,
        })
        .collect();
    view(&ageless)
}

pub fn watch(
    store: &dyn LockStore,
    env: Option<Environment>,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let envs: Vec<Environment> = match env {
        Some(e) => vec![e],
        None => Environment::ALL.to_vec(),
    };
    // Watching before the first look: a change in between is not missed.
    let changes = store.changes();
    let mut shown: Option<String> = None;
    loop {
        let mut rows = Vec::new();
        for e in &envs {
            let (insp, _) = store.inspect_despite_records(*e)?;
            rows.push(Row {
                insp,
                backend: store.backend(),
            });
        }
        let key = what_changed(&rows);
        if io.out_tty {
            let t = deploy_lock::tz::system_time_zone().to_datetime(jiff::Timestamp::now());
            let now = format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second());
            write!(
                io.out,
                "\x1b[H\x1b[2Jdeploy-lock status --watch ({now}; Ctrl-C to stop)\n\n{}",
                view(&rows)
            )?;
        } else if shown.as_ref() != Some(&key) {
            writeln!(io.out, "{}", view(&rows))?;
        }
        io.out.flush()?;
        shown = Some(key);
        let tick = if io.out_tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(60)
        };
        changes
            .wait(Instant::now() + tick, None)
            .map_err(|source| Failure::Io {
                what: "cannot watch the locks".into(),
                source,
            })?;
    }
}
