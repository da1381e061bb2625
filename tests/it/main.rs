//! deploy-lock's integration tests: one crate, real binary, real processes.

mod docs;
mod harness;
mod legacy_force;
mod legacy_status;
mod legacy_wait;
mod modern;
mod run_basic;
mod run_concurrency;
mod run_signals;
