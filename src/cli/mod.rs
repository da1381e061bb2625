//! The command-line layers: which persona answers (decided by the invoked
//! name), the legacy `unlock.sh` and the modern `deploy-lock`, and the shared
//! rendering they use. All printing lives under here.

pub mod completions;
pub mod deploy;
pub mod docs;
pub mod exit;
pub mod legacy;
pub mod log;
pub mod modern;
pub mod ops;
pub mod remote;
pub mod render;
pub mod run;
pub mod style;
pub mod texts;

use std::ffi::OsStr;
use std::path::Path;

/// Which command-line interface answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persona {
    /// The legacy `deploy/scripts/unlock.sh`, byte for byte.
    Unlock,
    /// `deploy-lock`, the modern interface.
    DeployLock,
}

/// The persona is the invoked file's full name (`file_name`, not the stem:
/// the legacy name is literally `unlock.sh`).
pub fn persona(argv0: &OsStr) -> Persona {
    match Path::new(argv0).file_name() {
        Some(name) if name == "unlock.sh" => Persona::Unlock,
        _ => Persona::DeployLock,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_on_the_invoked_name() {
        for (argv0, want) in [
            ("unlock.sh", Persona::Unlock),
            ("./deploy/scripts/unlock.sh", Persona::Unlock),
            ("/opt/x/deploy/scripts/unlock.sh", Persona::Unlock),
            ("deploy-lock", Persona::DeployLock),
            ("/usr/local/bin/deploy-lock", Persona::DeployLock),
            ("unlock", Persona::DeployLock),
            ("unlock.sh.legacy", Persona::DeployLock),
            ("", Persona::DeployLock),
        ] {
            assert_eq!(persona(OsStr::new(argv0)), want, "{argv0}");
        }
    }
}
