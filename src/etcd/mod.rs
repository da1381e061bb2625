//! The etcd lock store (issue 13): one lock per environment shared by every
//! machine that deploys it, held through a lease that a keeper renews.
//!
//! `settings` decides whether etcd is used and how to reach it, `client`
//! speaks etcd's JSON gateway, `lock` is the lock model and `keeper` keeps a
//! held lock's lease alive and reports its loss. Nothing here prints.

pub mod client;
pub mod error;
pub mod keeper;
pub mod lock;
pub mod settings;

pub use client::{Client, ClientConfig};
pub use error::EtcdError;
pub use keeper::{LossCause, LossSignal};
pub use lock::{
    Acquire, Change, EtcdInspection, EtcdLock, EtcdStore, FencingToken, ForceUnlock, Held,
    HolderInfo, HolderRecord, LeaseId, Release, WaitOutcome, WaitProgress,
};
pub use settings::{Backend, BackendKind, EtcdSettings, OnLost};
