//! deploy-lock's integration tests: one crate, real binary, real processes.

mod harness;
mod legacy_status;
