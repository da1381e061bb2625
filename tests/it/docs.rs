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
