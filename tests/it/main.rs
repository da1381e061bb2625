//! deploy-lock's integration tests: one crate, real binary, real processes.

mod completions;
mod docs;
mod etcd_access;
mod etcd_cli;
mod etcd_failures;
mod etcd_lock;
mod etcd_process;
mod etcd_support;
mod faults;
mod harness;
mod hostile;
mod install;
mod interop;
mod issue11;
mod legacy_force;
mod legacy_status;
mod legacy_wait;
mod modern;
mod remote;
mod run_basic;
mod run_concurrency;
mod run_signals;
mod soak;
mod sshd;
