//! What can go wrong talking to etcd. Each variant names the endpoint, so the
//! CLI can print one line (`Display`) and pick the I/O exit code.

use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EtcdError {
    /// No answer: refused, timed out, name not found, TLS handshake failed.
    Unreachable { endpoint: String, detail: String },
    /// Something answers HTTP 404 on etcd's paths: not an etcd client URL, or
    /// its JSON gateway is disabled (`--enable-grpc-gateway=false`).
    GatewayDisabled { endpoint: String, path: String },
    /// `/version` says older than 3.4, whose gateway paths differ.
    TooOld { endpoint: String, version: String },
    /// etcd refused the user or password.
    AuthRefused { endpoint: String, detail: String },
    /// Auth is enabled on etcd and no credentials were given, or the user may
    /// not touch the lock's keys.
    PermissionDenied { endpoint: String, detail: String },
    /// The CA file cannot be read or holds no certificate.
    CaFile { path: PathBuf, detail: String },
    /// etcd answered with an error of its own (gRPC code and message).
    Server {
        endpoint: String,
        code: i64,
        message: String,
    },
    /// An answer that is not what the gateway documents.
    Protocol { endpoint: String, detail: String },
    /// An answer larger than the client reads (a lock key holding a value
    /// of tens of MiB: not a deploy-lock record).
    Oversized { endpoint: String, limit: u64 },
    /// Every endpoint failed; one error per endpoint, in order.
    AllEndpoints(Vec<EtcdError>),
    /// This machine could not do its part (a pipe, a thread).
    Local { detail: String },
}

impl EtcdError {
    /// The endpoint the error is about (the first one for `AllEndpoints`).
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            EtcdError::Unreachable { endpoint, .. }
            | EtcdError::GatewayDisabled { endpoint, .. }
            | EtcdError::TooOld { endpoint, .. }
            | EtcdError::AuthRefused { endpoint, .. }
            | EtcdError::PermissionDenied { endpoint, .. }
            | EtcdError::Server { endpoint, .. }
            | EtcdError::Protocol { endpoint, .. }
            | EtcdError::Oversized { endpoint, .. } => Some(endpoint),
            EtcdError::CaFile { .. } | EtcdError::Local { .. } => None,
            EtcdError::AllEndpoints(v) => v.first().and_then(EtcdError::endpoint),
        }
    }

    /// Whether waiting can fix it: no answer, no leader, a timeout inside
    /// etcd. Not: a refused login or permission, a CA file, a 404 gateway,
    /// an old etcd, an answer that is not etcd's, a local failure.
    pub fn retryable(&self) -> bool {
        match self {
            EtcdError::Unreachable { .. } => true,
            // 14 Unavailable (no leader, leader changed), 4 DeadlineExceeded
            // (request timed out), 10 Aborted.
            EtcdError::Server { code, .. } => matches!(code, 4 | 10 | 14),
            EtcdError::AllEndpoints(v) => v.iter().any(EtcdError::retryable),
            EtcdError::GatewayDisabled { .. }
            | EtcdError::TooOld { .. }
            | EtcdError::AuthRefused { .. }
            | EtcdError::PermissionDenied { .. }
            | EtcdError::CaFile { .. }
            | EtcdError::Protocol { .. }
            | EtcdError::Oversized { .. }
            | EtcdError::Local { .. } => false,
        }
    }

    /// Worth trying the next endpoint (or again later): the server may be
    /// fine elsewhere.
    pub(crate) fn is_transport(&self) -> bool {
        matches!(
            self,
            EtcdError::Unreachable { .. } | EtcdError::GatewayDisabled { .. }
        ) || matches!(self, EtcdError::Server { code, .. } if *code == 14)
    }
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EtcdError::Unreachable { endpoint, detail } => {
                write!(f, "etcd at {endpoint} is unreachable: {detail}")
            }
            EtcdError::GatewayDisabled { endpoint, path } => write!(
                f,
                "{endpoint} answers 404 on {path}: not an etcd client URL, or its JSON gateway \
                 is disabled (start etcd with --enable-grpc-gateway)"
            ),
            EtcdError::TooOld { endpoint, version } => write!(
                f,
                "etcd at {endpoint} is version {version}; deploy-lock needs etcd 3.4 or newer"
            ),
            EtcdError::AuthRefused { endpoint, detail } => write!(
                f,
                "etcd at {endpoint} refused the login: {detail} (check DEPLOY_LOCK_ETCD_USER \
                 and DEPLOY_LOCK_ETCD_PASSWORD)"
            ),
            EtcdError::PermissionDenied { endpoint, detail } => write!(
                f,
                "etcd at {endpoint} denied access: {detail} (set DEPLOY_LOCK_ETCD_USER and \
                 DEPLOY_LOCK_ETCD_PASSWORD, or grant the user the lock's key prefix)"
            ),
            EtcdError::CaFile { path, detail } => {
                write!(f, "DEPLOY_LOCK_ETCD_CACERT={}: {detail}", path.display())
            }
            EtcdError::Server {
                endpoint,
                code,
                message,
            } => write!(f, "etcd at {endpoint}: {message} (code {code})"),
            EtcdError::Protocol { endpoint, detail } => {
                write!(f, "etcd at {endpoint} gave an unexpected answer: {detail}")
            }
            EtcdError::Local { detail } => f.write_str(detail),
            EtcdError::Oversized { endpoint, limit } => write!(
                f,
                "etcd at {endpoint} answered more than {} MiB: the lock key holds a value far \
                 larger than any deploy-lock record; look at it with etcdctl get KEY \
                 --print-value-only | head -c 100, and remove it with etcdctl del KEY",
                limit >> 20
            ),
            EtcdError::AllEndpoints(errors) => {
                for (i, e) in errors.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    e.fmt(f)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for EtcdError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_waiting_can_fix_is_retryable() {
        let ep = || "http://e:1".to_string();
        let unreachable = EtcdError::Unreachable {
            endpoint: ep(),
            detail: "no answer within 0.4 s".into(),
        };
        let denied = EtcdError::PermissionDenied {
            endpoint: ep(),
            detail: "etcdserver: permission denied".into(),
        };
        let server = |code| EtcdError::Server {
            endpoint: ep(),
            code,
            message: "x".into(),
        };
        assert!(unreachable.retryable());
        assert!(server(14).retryable());
        assert!(!server(3).retryable());
        assert!(!denied.retryable());
        assert!(
            !EtcdError::AuthRefused {
                endpoint: ep(),
                detail: "etcdserver: authentication failed".into()
            }
            .retryable()
        );
        assert!(EtcdError::AllEndpoints(vec![denied.clone(), unreachable]).retryable());
        assert!(!EtcdError::AllEndpoints(vec![denied.clone(), denied]).retryable());
    }
}
