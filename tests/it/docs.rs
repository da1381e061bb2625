//! The checked-in man pages and completions are exactly what the binary
//! generates: regenerate into a temp dir and compare file by file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::BIN;

fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn checked_in_docs_match_the_generator() {
    let tmp = tempfile::tempdir().unwrap();
    let st = Command::new(BIN)
        .args(["generate", "all"])
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(st.success());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for sub in ["man", "completions"] {
        let want = files_under(&tmp.path().join(sub));
        let have = files_under(&repo.join(sub));
        let names = |m: &BTreeMap<PathBuf, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&have),
            names(&want),
            "{sub}/ differs in its file list: run `cargo run -- generate all .` and commit"
        );
        for (name, bytes) in &want {
            assert!(
                have[name] == *bytes,
                "{sub}/{} is out of date: run `cargo run -- generate all .` and commit",
                name.display()
            );
        }
    }
    // Generating twice gives the same bytes (nothing dated or random).
    let again = tempfile::tempdir().unwrap();
    Command::new(BIN)
        .args(["generate", "all"])
        .arg(again.path())
        .status()
        .unwrap();
    assert_eq!(files_under(tmp.path()), files_under(again.path()));
}

#[test]
fn unlock_man_page_documents_the_legacy_flags() {
    let page =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("man/unlock.sh.1"))
            .unwrap();
    for needle in [
        "\\fB\\-\\-force\\fR",
        "\\fB\\-\\-wait\\fR",
        "\\fB\\-\\-status\\fR",
        ".SH EXIT STATUS",
        ".SH FILES",
        ".SH ENVIRONMENT",
        "DEPLOY_LOCK_DIR",
        "NO_COLOR",
        "locked_at",
        "locks.log",
        ".SH EXAMPLES",
    ] {
        assert!(page.contains(needle), "unlock.sh.1 lacks {needle}");
    }
}

/// The codes of a man page's EXIT STATUS section (its `.TP` terms).
fn exit_status_terms(page: &str) -> Vec<String> {
    let section = page
        .split(".SH EXIT STATUS\n")
        .nth(1)
        .expect("an EXIT STATUS section")
        .split("\n.SH ")
        .next()
        .unwrap();
    section
        .split(".TP\n")
        .skip(1)
        .map(|item| {
            let term = item.lines().next().unwrap();
            term.trim_start_matches("\\fB")
                .trim_end_matches("\\fR")
                .to_string()
        })
        .collect()
}

/// Issue 20: every exit code in README's table is in the man pages' EXIT
/// STATUS, per persona, and no page lists a code the table lacks (the
/// table itself is the code's: a unit test in src/cli/failure.rs).
#[test]
fn man_exit_status_lists_every_code_of_the_readme_table() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let rows: Vec<Vec<String>> = readme
        .split("## Exit status")
        .nth(1)
        .unwrap()
        .lines()
        .skip_while(|l| !l.starts_with("| code"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_string())
                .collect()
        })
        .collect();
    assert!(rows.len() >= 10, "README's exit table: {rows:?}");
    for (page, column) in [("deploy-lock.1", 1), ("unlock.sh.1", 2)] {
        let text = std::fs::read_to_string(repo.join("man").join(page)).unwrap();
        let want: Vec<String> = rows
            .iter()
            .filter(|r| !r[column].is_empty())
            .map(|r| r[0].clone())
            .collect();
        assert_eq!(exit_status_terms(&text), want, "{page}'s EXIT STATUS");
    }
}
