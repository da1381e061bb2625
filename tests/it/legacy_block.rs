//! The bash stand-in for the legacy unlock.sh (tests/fixtures/legacy-unlock.sh)
//! against the binary: in every documented state both print the same status
//! block (the fixture's colour escapes aside), and the library's reading of
//! that block gives the verdict `deploy-lock status --json` gives.

use deploy_lock::legacy_block;

use crate::harness::*;
use crate::legacy_status::fake_deploy;

/// Removes the colour escapes the legacy printed even into pipes.
pub fn plain(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('\u{1b}') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let end = tail
            .find(|c: char| c.is_ascii_alphabetic())
            .expect("an escape ends with a letter");
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The fixture's block, which must equal the binary's (run before and after
/// it, for the clock seconds that may tick between), and its verdict.
#[track_caller]
fn same_block_and_verdict(w: &World) {
    let fixture = w.install_fixture("legacy-unlock.sh", "deploy/scripts/legacy-unlock.sh");
    let before = w.unlock_sh(&["staging"]).run();
    let mut bash = w.cmd(&fixture);
    bash.cmd.arg("staging");
    let bash = bash.run();
    let after = w.unlock_sh(&["staging"]).run();
    bash.code(0);
    let got = plain(&bash.stdout);
    // Its `Lock age` lies between theirs, however long the bash fixture
    // took on a loaded machine.
    assert!(
        crate::remote::ages_between(&got, &before.stdout, &after.stdout),
        "the fixture's block differs from the binary's:\n--- fixture\n{got}\n--- binary\n{}",
        before.stdout
    );
    let block = legacy_block::parse(&bash.stdout).expect("a status block");
    let json = w.deploy_lock(&["status", "staging", "--json"]).run();
    json.code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(block.verdict().as_str(), v["verdict"], "{got}");
}

#[test]
fn free_without_a_state_file() {
    same_block_and_verdict(&World::new());
}

#[test]
fn unlocked_state() {
    let w = World::new();
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false}}\n");
    same_block_and_verdict(&w);
}

#[test]
fn held_by_a_live_process() {
    let w = World::new();
    let mut deploy = fake_deploy(&w);
    let t = now() - 195;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, &deploy.id().to_string(), &hostname());
    same_block_and_verdict(&w);
    deploy.kill().unwrap();
    deploy.wait().unwrap();
}

#[test]
fn stale_and_dead() {
    let w = World::new();
    let t = now() - 72030;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, &dead_pid().to_string(), &hostname());
    same_block_and_verdict(&w);
}

#[test]
fn held_from_another_host() {
    let w = World::new();
    let t = now() - 60;
    w.legacy_lock("staging", t);
    w.legacy_state("staging", t, "4242", "elsewhere.example");
    same_block_and_verdict(&w);
}

#[test]
fn orphaned_directory() {
    let w = World::new();
    w.legacy_lock("staging", now() - 60);
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false}}\n");
    same_block_and_verdict(&w);
}
