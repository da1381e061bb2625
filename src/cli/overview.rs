//! `deploy-lock status` without an environment (`deploy-lock list`): one
//! look at every environment, as a table, JSON, or only an exit status.

use deploy_lock::Environment;
use deploy_lock::lock::LockError;
use deploy_lock::status::Inspection;
use deploy_lock::store::LockStore;
use serde_json::{Value, json};

use super::failure::Failure;
use super::ops::Io;
use super::render;

/// One environment's row: the inspection and the store it came from.
pub struct Row {
    pub insp: Inspection,
    pub backend: &'static str,
}

pub fn status_all(
    store: &dyn LockStore,
    json: bool,
    quiet: bool,
    io: &mut Io<'_>,
) -> Result<(), Failure> {
    let mut rows = Vec::new();
    let mut state_err: Option<LockError> = None;
    for env in Environment::ALL {
        let (insp, err) = store.inspect_despite_records(env)?;
        // One state file serves every environment: one error is enough.
        state_err = state_err.or(err);
        rows.push(Row {
            insp,
            backend: store.backend(),
        });
    }
    let state_failure = |error| Failure::State {
        env: None,
        error,
        live_lock: false,
    };
    if quiet {
        if let Some(e) = state_err {
            return Err(state_failure(e));
        }
        return if rows.iter().all(|r| deploy_lock::lock::would_take(&r.insp)) {
            Ok(())
        } else {
            Err(Failure::NotFree)
        };
    }
    if json {
        let text = state_err.as_ref().map(super::messages::lock_error);
        let v = overview_json(&rows, text);
        writeln!(
            io.out,
            "{}",
            deploy_lock::sanitize::json(serde_json::to_string_pretty(&v).expect("serialisable"))
        )?;
    } else {
        io.out.write_all(table(&rows).as_bytes())?;
    }
    io.out.flush()?;
    match state_err {
        Some(e) => Err(state_failure(e)),
        None => Ok(()),
    }
}

/// `{"schema": 1, "environments": [...]}`: each element the environment's
/// `status ENV --json` object plus `backend`.
pub fn overview_json(rows: &[Row], state_error: Option<String>) -> Value {
    let envs: Vec<Value> = rows
        .iter()
        .map(|r| {
            let mut v = render::status_json_with(&r.insp, state_error.clone());
            if let Value::Object(m) = &mut v {
                m.insert("backend".into(), Value::String(r.backend.into()));
            }
            v
        })
        .collect();
    json!({ "schema": render::JSON_SCHEMA, "environments": envs })
}

/// ENVIRONMENT, VERDICT, HOLDER, AGE, WAITING (the queue's length),
/// BACKEND; columns as wide as their widest cell, `-` for nothing.
pub fn table(rows: &[Row]) -> String {
    let mut cells: Vec<[String; 6]> = vec![[
        "ENVIRONMENT".into(),
        "VERDICT".into(),
        "HOLDER".into(),
        "AGE".into(),
        "WAITING".into(),
        "BACKEND".into(),
    ]];
    for r in rows {
        let i = &r.insp;
        let run = i.run_holder.as_ref().filter(|r| r.lock_id.is_some());
        let holder = match (&i.holder, i.locked(), run) {
            // Force-unlocked while its command runs: no lock directory, but
            // no other run starts until it ends (the status block says so).
            (_, false, Some(run)) => {
                format!("deploy-lock run, pid {} (lock removed)", run.shown_pid())
            }
            (_, false, None) => "-".to_string(),
            (Some(h), true, _) => super::messages::describe_holder(h),
            (None, true, _) => "unknown".to_string(),
        };
        let age = match (i.locked(), i.age_seconds) {
            (true, Some(a)) => super::messages::age(a),
            _ => "-".to_string(),
        };
        cells.push([
            i.environment.to_string(),
            i.verdict.as_str().to_string(),
            holder,
            age,
            match i.waiters.len() {
                0 => "-".to_string(),
                n => n.to_string(),
            },
            r.backend.to_string(),
        ]);
    }
    let width = |c: usize| {
        cells
            .iter()
            .map(|r| r[c].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..5).map(width).collect();
    let mut out = String::new();
    for r in &cells {
        for (c, w) in widths.iter().enumerate() {
            // Padded by hand: a `{:<w$}` width over 65535 panics (a 64 KiB
            // holder string did, before values were cut to a bounded length).
            out.push_str(&r[c]);
            let pad = w.saturating_sub(r[c].chars().count()) + 2;
            out.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(&r[5]);
        out.push('\n');
    }
    out
}
