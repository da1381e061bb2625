//! Reading a legacy `unlock.sh` status block back into a model, for a server
//! whose checkout has only the bash script. The block's format is the contract
//! deploy-lock keeps byte for byte, so the verdict can be derived from it.

use crate::fsops::PathKind;
use crate::status::{Liveness, Verdict, verdict};

/// What one legacy status block says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegacyBlock {
    pub environment: Option<String>,
    /// `Lock directory exists: PATH`; None for `Not found (unlocked)`.
    pub lock_dir: Option<String>,
    /// The `ls -ld` line under it.
    pub ls_line: Option<String>,
    /// `State file info:` and its lines; None when the state file is missing.
    pub state: Option<LegacyState>,
    /// `State file not found: PATH`.
    pub state_file_missing: Option<String>,
}

/// The indented lines under `State file info:`; `N/A` reads as None.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LegacyState {
    pub locked: bool,
    pub locked_by: Option<String>,
    pub locked_at: Option<String>,
    pub deployment_id: Option<String>,
    pub pid: Option<i64>,
    pub hostname: Option<String>,
    /// `Lock age: Mm Ss`, in seconds.
    pub age_seconds: Option<i64>,
    /// `⚠ Lock is stale (>30 minutes)`.
    pub stale: bool,
    pub process: Option<ProcessLine>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProcessLine {
    Running { pid: i64, comm: String },
    NotRunning { pid: i64 },
}

/// Why a text is not a status block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// No `Deployment Lock Status:` header: not the legacy script's output.
    NoHeader,
    /// Neither `Lock directory exists:` nor `Lock directory: Not found`.
    NoLockLine,
}

/// Parses the block at the start of `text` (colour escapes, which the legacy
/// script printed even into pipes, are ignored; so is whatever follows).
pub fn parse(text: &str) -> Result<LegacyBlock, ParseError> {
    let clean = strip_ansi(text);
    let mut lines = clean.lines().map(|l| l.trim_end_matches('\r'));
    let env = lines
        .by_ref()
        .find_map(|l| l.strip_prefix("Deployment Lock Status: "))
        .ok_or(ParseError::NoHeader)?;
    let mut block = LegacyBlock {
        environment: Some(env.to_string()),
        ..LegacyBlock::default()
    };
    let mut saw_lock_line = false;
    let mut in_state = false;
    let mut expect_ls = false;
    for line in lines {
        if expect_ls {
            expect_ls = false;
            if !line.is_empty() {
                block.ls_line = Some(line.to_string());
                continue;
            }
        }
        if let Some(dir) = line.strip_prefix("Lock directory exists: ") {
            block.lock_dir = Some(dir.to_string());
            saw_lock_line = true;
            expect_ls = true;
        } else if line.starts_with("Lock directory: Not found") {
            saw_lock_line = true;
        } else if line == "State file info:" {
            in_state = true;
            block.state = Some(LegacyState::default());
        } else if let Some(p) = line.strip_prefix("State file not found: ") {
            block.state_file_missing = Some(p.to_string());
        } else if in_state && let Some(field) = line.strip_prefix("  ") {
            state_line(block.state.as_mut().expect("set on the header"), field);
        } else if in_state {
            // The block ends at the first line that is not indented.
            in_state = false;
            if line.starts_with("Waiting") || line.starts_with('⚠') {
                break;
            }
        }
    }
    if !saw_lock_line {
        return Err(ParseError::NoLockLine);
    }
    Ok(block)
}

fn state_line(st: &mut LegacyState, field: &str) {
    let value = |v: &str| (v != "N/A" && !v.is_empty()).then(|| v.to_string());
    if let Some(v) = field.strip_prefix("Locked: ") {
        st.locked = v == "true";
    } else if let Some(v) = field.strip_prefix("Locked by: ") {
        st.locked_by = value(v);
    } else if let Some(v) = field.strip_prefix("Locked at: ") {
        st.locked_at = value(v);
    } else if let Some(v) = field.strip_prefix("Deployment ID: ") {
        st.deployment_id = value(v);
    } else if let Some(v) = field.strip_prefix("PID: ") {
        st.pid = v.parse().ok();
    } else if let Some(v) = field.strip_prefix("Hostname: ") {
        st.hostname = value(v);
    } else if let Some(v) = field.strip_prefix("Lock age: ") {
        st.age_seconds = parse_age(v);
    } else if field.starts_with("⚠ Lock is stale") {
        st.stale = true;
    } else if let Some(rest) = field.strip_prefix("✓ Process ") {
        if let Some((pid, comm)) = rest.split_once(" is still running: ")
            && let Ok(pid) = pid.parse()
        {
            st.process = Some(ProcessLine::Running {
                pid,
                comm: comm.to_string(),
            });
        }
    } else if let Some(rest) = field.strip_prefix("⚠ Process ")
        && let Some((pid, _)) = rest.split_once(" is not running")
        && let Ok(pid) = pid.parse()
    {
        st.process = Some(ProcessLine::NotRunning { pid });
    }
}

/// `12m 5s`: whole minutes (no hours) and seconds.
fn parse_age(v: &str) -> Option<i64> {
    let (m, s) = v.split_once("m ")?;
    let s = s.strip_suffix('s')?;
    let m: i64 = m.parse().ok()?;
    let s: i64 = s.parse().ok()?;
    m.checked_mul(60)?.checked_add(s)
}

/// Removes CSI sequences (`ESC [ ... letter`).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

impl LegacyBlock {
    /// What the lock path is, from the `ls -ld` line's type letter.
    pub fn path_kind(&self) -> PathKind {
        match (
            &self.lock_dir,
            self.ls_line.as_deref().and_then(|l| l.chars().next()),
        ) {
            (None, _) => PathKind::Missing,
            (Some(_), Some('l')) => PathKind::Symlink,
            (Some(_), Some('d') | None) => PathKind::Directory,
            (Some(_), Some(_)) => PathKind::Other,
        }
    }

    /// Liveness as the block's process line says. No line: the holder is on
    /// another host (the legacy checks only its own), or nothing was recorded.
    pub fn liveness(&self) -> Liveness {
        let st = self.state.as_ref().filter(|s| s.locked);
        match st.and_then(|s| s.process.as_ref()) {
            Some(ProcessLine::Running { pid, comm }) => Liveness::Alive {
                pid: *pid as i32,
                comm: comm.clone(),
            },
            Some(ProcessLine::NotRunning { .. }) => Liveness::Dead,
            None if st.is_some_and(|s| s.pid.is_some() && s.hostname.is_some()) => {
                Liveness::OtherHost
            }
            None => Liveness::NoRecord,
        }
    }

    /// The verdict deploy-lock would give, by the same rule.
    pub fn verdict(&self) -> Verdict {
        let st = self.state.as_ref().filter(|s| s.locked);
        let has_holder = st.is_some_and(|s| s.locked_by.is_some() || s.pid.is_some());
        let stale = st.is_some_and(|s| s.stale);
        verdict(&self.path_kind(), &self.liveness(), has_holder, stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELD: &str = "Deployment Lock Status: staging
============================================
Lock directory exists: /tmp/togather-deploy-staging.lock
drwxrwxr-x 2 deploy deploy 4096 Feb  3 20:25 /tmp/togather-deploy-staging.lock

State file info:
  Locked: true
  Locked by: deploy@localhost
  Locked at: 2026-02-03T20:25:46Z
  Deployment ID: dep_1890d66a41888860_47448a50c1f61cc6be49eaf4
  PID: 12345
  Hostname: localhost
  Lock age: 3m 15s
  ✓ Process 12345 is still running: deploy.sh

";

    #[test]
    fn the_documented_example_reads_as_held() {
        let b = parse(HELD).unwrap();
        assert_eq!(b.environment.as_deref(), Some("staging"));
        assert_eq!(
            b.lock_dir.as_deref(),
            Some("/tmp/togather-deploy-staging.lock")
        );
        assert!(b.ls_line.as_deref().unwrap().starts_with("drwxrwxr-x 2"));
        let st = b.state.as_ref().unwrap();
        assert!(st.locked);
        assert_eq!(st.locked_by.as_deref(), Some("deploy@localhost"));
        assert_eq!(st.pid, Some(12345));
        assert_eq!(st.age_seconds, Some(195));
        assert_eq!(
            st.process,
            Some(ProcessLine::Running {
                pid: 12345,
                comm: "deploy.sh".into()
            })
        );
        assert_eq!(b.verdict(), Verdict::Held);
    }

    #[test]
    fn colour_escapes_are_ignored() {
        let coloured = HELD
            .replace("Deployment Lock", "\u{1b}[0;34mDeployment Lock")
            .replace("  ✓ Process", "\u{1b}[0;32m  ✓ Process")
            .replace("deploy.sh\n", "deploy.sh\u{1b}[0m\n");
        assert_eq!(parse(&coloured).unwrap(), parse(HELD).unwrap());
    }

    #[test]
    fn each_state_gets_its_verdict() {
        let free = "Deployment Lock Status: staging\n====\nLock directory: Not found (unlocked)\n\nState file not found: /x/deploy/config/deployment-state.json\n\n";
        let b = parse(free).unwrap();
        assert_eq!(b.verdict(), Verdict::Free);
        assert_eq!(
            b.state_file_missing.as_deref(),
            Some("/x/deploy/config/deployment-state.json")
        );
        let stale_dead = HELD
            .replace(
                "  Lock age: 3m 15s\n",
                "  Lock age: 1200m 30s\n  ⚠ Lock is stale (>30 minutes)\n",
            )
            .replace(
                "  ✓ Process 12345 is still running: deploy.sh",
                "  ⚠ Process 12345 is not running (deployment may have crashed)",
            );
        let b = parse(&stale_dead).unwrap();
        assert_eq!(b.state.as_ref().unwrap().age_seconds, Some(72030));
        assert_eq!(b.verdict(), Verdict::Stale);
        let dead = HELD.replace(
            "  ✓ Process 12345 is still running: deploy.sh",
            "  ⚠ Process 12345 is not running (deployment may have crashed)",
        );
        assert_eq!(parse(&dead).unwrap().verdict(), Verdict::Orphaned);
        let other_host = HELD.replace("  ✓ Process 12345 is still running: deploy.sh\n", "");
        assert_eq!(parse(&other_host).unwrap().liveness(), Liveness::OtherHost);
        assert_eq!(parse(&other_host).unwrap().verdict(), Verdict::Held);
        let orphan = "Deployment Lock Status: staging\n====\nLock directory exists: /tmp/x.lock\ndrwx------ 2 a a 4096 Feb  3 20:25 /tmp/x.lock\n\nState file info:\n  Locked: false\n  Locked by: N/A\n  Locked at: N/A\n  Deployment ID: N/A\n  PID: N/A\n  Hostname: N/A\n\n";
        let b = parse(orphan).unwrap();
        assert_eq!(b.state.as_ref().unwrap().locked_by, None);
        // No record says who holds it: unknown (issue 10), as status --json.
        assert_eq!(b.verdict(), Verdict::Unknown);
        let symlink = orphan.replace("drwx------", "lrwxrwxrwx");
        assert_eq!(parse(&symlink).unwrap().verdict(), Verdict::Obstructed);
    }

    #[test]
    fn other_text_is_refused() {
        assert_eq!(
            parse("bash: unlock.sh: not found\n"),
            Err(ParseError::NoHeader)
        );
        assert_eq!(
            parse("Deployment Lock Status: staging\n"),
            Err(ParseError::NoLockLine)
        );
    }
}
