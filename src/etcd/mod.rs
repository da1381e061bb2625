//! The etcd lock store (issue 13): one lock per environment shared by every
//! machine that deploys it, held through a lease that a keeper renews.
//!
//! Modules: `audit_copy` is the audit trail's copy shared by every machine;
//! `settings` (with `checkout_file`) decides whether etcd is used
//! and how to reach it; `client` (with `wire`) speaks etcd's JSON gateway;
//! `lock` is the store, `record` its values and outcomes, `held` a held lock,
//! `keeper` keeps its lease alive and reports its loss, `on_lost` is what a
//! run does then, and `watcher` waits for a release beside a signalfd.
//! Nothing here prints.
//!
//! Caveats first (etcd issues #11456, #11490, #10811, #9395):
//! - A lease lock excludes holders only as long as each holder learns of its
//!   loss before acting again. A holder that is paused (SIGSTOP, a suspended
//!   VM) past its TTL has lost the lock without running a single instruction;
//!   the keeper reports that the moment it runs again (it judges the time
//!   since the last acknowledged renewal on the boot clock, which counts a
//!   laptop's suspend, before trusting anything, and looks every 250 ms), but a
//!   command that was mid-step when the pause began finishes that step.
//!   Only the fencing token closes that gap: a system that remembers the
//!   highest token it has seen can refuse a stale holder's writes, and
//!   `EtcdStore::check(token)` lets a script ask just before an
//!   irreversible step.
//! - Renewal is judged conservatively: the lease is taken to end one TTL after
//!   the last renewal was *sent* (the local lease deadline), and the command
//!   is stopped a stop margin before that (`keeper::stop_margin`), so it is
//!   stopped before etcd can give the lock to anyone else. Leader changes can
//!   extend a lease (#9395), never shorten it.
//! - Partial failure: every request gives one endpoint at most
//!   `client::attempt_budget` before asking the next, from the last one that
//!   answered, so a hung member or a dark path costs no lock.
//! - The client honours `HTTP(S)_PROXY`/`NO_PROXY` like etcdctl does; an etcd
//!   on a private network belongs in `NO_PROXY`.

pub mod audit_copy;
pub mod checkout_file;
pub mod client;
pub mod error;
pub mod held;
pub mod keeper;
pub mod lock;
pub mod on_lost;
pub mod queue;
pub mod record;
pub mod settings;
pub mod watcher;
pub mod wire;

pub use client::{Client, ClientConfig};
pub use error::EtcdError;
pub use held::EtcdLock;
pub use keeper::{LossCause, LossSignal};
pub use lock::{EtcdStore, OP_BUDGET};
pub use on_lost::{LossResponse, Step};
pub use record::{
    Acquire, Change, EtcdInspection, EtcdRecord, FencingToken, ForceUnlock, Held, LeaseId, Release,
    WaitOutcome, WaitProgress, this_process,
};
pub use settings::{Backend, BackendKind, EtcdSettings, OnLost};
pub use watcher::{EtcdWatcher, Woke};
