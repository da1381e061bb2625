//! The checkout's `deploy/config/deploy-lock.env`: `KEY=VALUE` lines that
//! the team checks in so every operator uses the same lock store. Only the
//! lock's own variables are accepted, never the password.

use std::path::{Path, PathBuf};

use super::settings::{PASSWORD, SettingsError, VARIABLES};

/// The checkout file, relative to the project root.
pub const CHECKOUT_FILE: &str = "deploy/config/deploy-lock.env";

/// One `KEY=VALUE` of the checkout file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: &'static str,
    pub value: String,
    pub line: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckoutFile {
    pub path: PathBuf,
    pub entries: Vec<Entry>,
}

impl CheckoutFile {
    pub(crate) fn get(&self, key: &str) -> Option<&Entry> {
        // The last assignment wins, as in a shell.
        self.entries.iter().rev().find(|e| e.key == key)
    }

    /// The checkout root the file sits in (`ROOT/deploy/config/x.env`).
    pub(crate) fn root(&self) -> Option<&Path> {
        self.path.parent()?.parent()?.parent()
    }
}

/// Parses the checkout file: `KEY=VALUE` lines, `#` comments, blank lines,
/// an optional `export ` and matching quotes around the value. Only the
/// variables above are accepted (a typo would otherwise silently fall back
/// to the local lock), and never the password: the file is checked in.
pub fn parse_checkout_file(path: &Path, text: &str) -> Result<CheckoutFile, SettingsError> {
    let mut entries = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let bad = |reason: String| SettingsError::BadLine {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").map_or(l, str::trim_start);
        let Some((key, value)) = l.split_once('=') else {
            return Err(bad(format!(
                "expected KEY=VALUE or a # comment, found {l:?}"
            )));
        };
        let key = key.trim_end();
        // The lock store's variables, and the hook's (issue 22).
        let mut known_keys = VARIABLES.iter().chain(crate::hook::VARIABLES.iter());
        let Some(known) = known_keys.find(|v| **v == key) else {
            return Err(bad(format!(
                "{key:?} is not a setting this file can hold (one of {})",
                VARIABLES.join(", ")
            )));
        };
        if *known == PASSWORD {
            return Err(bad(format!(
                "{PASSWORD} does not belong in a checked-in file: set it in the environment \
                 of the operator or runner instead"
            )));
        }
        entries.push(Entry {
            key: known,
            value: unquote(value.trim()).map_err(bad)?,
            line,
        });
    }
    Ok(CheckoutFile {
        path: path.to_path_buf(),
        entries,
    })
}

fn unquote(v: &str) -> Result<String, String> {
    for q in ['"', '\''] {
        if let Some(rest) = v.strip_prefix(q) {
            return match rest.strip_suffix(q) {
                Some(inner) if !inner.contains(q) => Ok(inner.to_string()),
                _ => Err(format!("unbalanced {q} quote in {v:?}")),
            };
        }
    }
    if v.contains(['"', '\'', ' ', '\t', '$', '`', '\\']) {
        return Err(format!(
            "{v:?} needs quotes (spaces, quotes, $, ` and \\ are not interpreted here)"
        ));
    }
    Ok(v.to_string())
}

/// Reads `ROOT/deploy/config/deploy-lock.env`; None when there is none.
pub fn read_checkout_file(root: &Path) -> Result<Option<CheckoutFile>, SettingsError> {
    let path = root.join(CHECKOUT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_checkout_file(&path, &text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SettingsError::Io { path, source }),
    }
}
