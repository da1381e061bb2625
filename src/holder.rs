//! Who holds a lock and whether they still run: the holder read from the lock
//! directory's `owner.json` or the state file's record, and its liveness
//! checked through /proc (or unknowable, on another host).

use serde_json::Value;

use crate::environment::Environment;
use crate::liveness::{ProcessIdentity, Sightings, valid_pid};
use crate::state::StateDoc;
use crate::status::{Holder, HolderSource, Liveness, OwnerRecord};

/// The holder of a lock directory: its own `owner.json` if deploy-lock wrote
/// one, else the state record when it is locked (what the legacy deploy.sh
/// leaves). Which environment's lock a record is does not come from the
/// file's top-level `environment` (the legacy writes it only when it creates
/// the file): the caller decides that (`lock::record_environment`).
pub fn holder_from(
    owner: Option<&OwnerRecord>,
    state: Option<&StateDoc>,
    env: Environment,
) -> Option<Holder> {
    if let Some(o) = owner {
        let mut processes = vec![ProcessIdentity {
            pid: o.pid,
            start_ticks: o.pid_start_ticks,
            boot_id: o.boot_id.clone(),
        }];
        if o.holder_pid != o.pid {
            processes.push(ProcessIdentity {
                pid: o.holder_pid,
                start_ticks: o.holder_start_ticks,
                boot_id: o.boot_id.clone(),
            });
        }
        return Some(Holder {
            source: HolderSource::LockDir,
            lock_id: Some(o.lock_id.clone()),
            deployment_id: Some(o.deployment_id.clone()),
            locked_by: Some(o.locked_by.clone()),
            locked_at: Some(o.locked_at.clone()),
            pid: Some(o.pid),
            hostname: Some(o.hostname.clone()),
            reason: o.reason.clone(),
            freeze: o.freeze.clone(),
            processes,
        });
    }
    let doc = state?;
    let _ = env;
    if !doc.is_locked() {
        return None;
    }
    let text = |k: &str| doc.lock_str(k).map(str::to_string);
    let ticks = |k: &str| doc.lock_field(k).and_then(Value::as_u64);
    let boot = text("boot_id");
    let pid = doc.lock_field("pid").and_then(valid_pid);
    let mut processes: Vec<ProcessIdentity> = pid
        .map(|pid| ProcessIdentity {
            pid,
            start_ticks: ticks("pid_start_ticks"),
            boot_id: boot.clone(),
        })
        .into_iter()
        .collect();
    if let Some(hp) = doc.lock_field("holder_pid").and_then(valid_pid)
        && Some(hp) != pid
    {
        processes.push(ProcessIdentity {
            pid: hp,
            start_ticks: ticks("holder_start_ticks"),
            boot_id: boot.clone(),
        });
    }
    Some(Holder {
        source: HolderSource::StateFile,
        lock_id: text("lock_id"),
        deployment_id: text("deployment_id"),
        locked_by: text("locked_by"),
        locked_at: text("locked_at"),
        pid,
        hostname: text("hostname"),
        reason: None,
        freeze: None,
        processes,
    })
}

/// Alive if any of the holder's processes still runs here; unknowable on
/// another host or without a usable pid.
pub fn liveness_of(h: &Holder, this_host: &str) -> Liveness {
    liveness_in(h, this_host, &Sightings::new())
}

/// [`liveness_of`] as one look at the lock saw the processes.
pub fn liveness_in(h: &Holder, this_host: &str, look: &Sightings) -> Liveness {
    match &h.hostname {
        Some(host) if host != this_host => return Liveness::OtherHost,
        None => return Liveness::NoRecord,
        _ => {}
    }
    if h.processes.is_empty() {
        return Liveness::NoRecord;
    }
    let mut first_alive = None;
    for p in &h.processes {
        if let Some(info) = p.alive_in(look) {
            first_alive.get_or_insert(Liveness::Alive {
                pid: p.pid,
                comm: info.ps_comm(),
            });
        }
    }
    first_alive.unwrap_or(Liveness::Dead)
}
