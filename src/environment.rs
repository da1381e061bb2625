//! The three deployment environments. Only these values ever become part of a
//! path, so nothing typed on a command line is interpolated into a file name.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    pub const ALL: [Environment; 3] = [
        Environment::Development,
        Environment::Staging,
        Environment::Production,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }

    /// Exact, case-sensitive, as the legacy script compared them.
    pub fn parse(s: &str) -> Option<Environment> {
        Environment::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// `togather-deploy-{env}.lock`, the legacy lock directory's name.
    pub fn lock_dir_name(self) -> String {
        format!("togather-deploy-{}.lock", self.as_str())
    }

    /// Sidecar that serialises judge-remove-recreate of this environment's lock.
    pub fn guard_file_name(self) -> String {
        format!("togather-deploy-{}.guard", self.as_str())
    }

    /// Hidden sidecar whose flock the supervising deploy-lock holds for a
    /// whole run (see `lock::runlock`); never named in messages.
    pub fn run_file_name(self) -> String {
        format!(".togather-deploy-{}.run", self.as_str())
    }

    /// Hidden sidecar where a deploy-lock unlock announces whose lock it
    /// removed, so that holder does not restore it.
    pub fn announce_file_name(self) -> String {
        format!(".togather-deploy-{}.unlocked", self.as_str())
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_is_exact_and_case_sensitive() {
        assert_eq!(Environment::parse("staging"), Some(Environment::Staging));
        assert_eq!(Environment::parse("Staging"), None);
        assert_eq!(Environment::parse("staging "), None);
        assert_eq!(Environment::parse("../staging"), None);
        assert_eq!(Environment::parse(""), None);
    }
}
