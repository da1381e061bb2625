//! deploy-lock's engine: the mkdir lock, the checkout's state file, holder
//! liveness and the status model. Nothing in this library prints; the CLI
//! layers in `src/cli/` render what it returns.

pub mod accounts;
pub mod audit;
pub mod audit_log;
pub mod changes;
pub mod context;
pub mod environment;
pub mod etcd;
pub mod exit_wait;
pub mod freeze;
pub mod fsops;
pub mod holder;
pub mod hook;
pub mod ids;
pub mod legacy_block;
pub mod liveness;
pub mod lock;
pub mod lsld;
pub mod migration;
pub mod queue;
pub mod sanitize;
pub mod state;
pub mod status;
pub mod store;
pub mod supervise;
pub mod times;
pub mod trust;
pub mod tz;
pub mod view;
pub mod wait;

#[cfg(test)]
mod fuzz_tests;

pub use context::{Context, Settings};
pub use environment::Environment;
