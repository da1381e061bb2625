//! Names that try to become paths or shell text, from the command line or
//! the state file: refused before anything is created.

use super::*;
use crate::harness::*;

/// Item 3: only development, staging and production ever reach a path.
/// Everything else (traversal, absolute paths, shell text, near misses) is
/// refused before anything is created, by both personas.
#[test]
fn only_the_three_environment_names_reach_a_path() {
    let w = World::new();
    let names = [
        "../../etc/x",
        "staging/../../x",
        "/tmp/x",
        "Staging",
        "staging ",
        " staging",
        "staging\n",
        "stag",
        "$(touch pwned)",
        "`touch pwned`",
        "staging;touch pwned",
        "staging && touch pwned",
        "*",
        ".",
        "..",
    ];
    let before = tree(w.tmp.path());
    let marker = w.tmp.path().join("ran");
    let mut refused = 0;
    for name in names {
        let esc = name.to_string();
        w.unlock_sh(&[name]).run().code(1).stdout(&format!(
            "ERROR: Invalid environment '{esc}'\nMust be one of: development, staging, production\n"
        ));
        for args in [
            vec!["status", name],
            vec!["wait", name],
            vec!["unlock", name, "--yes"],
            vec!["run", name, "--", "touch", marker.to_str().unwrap()],
            vec![name],
        ] {
            let out = w.deploy_lock(&args).run();
            out.any_code().any_stderr();
            assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
            assert_eq!(out.stdout, "", "{args:?}");
            assert!(
                out.stderr.contains(&esc.trim_end().to_string())
                    || out.stderr.contains("invalid value"),
                "{args:?}: {}",
                out.stderr
            );
            refused += 1;
        }
        refused += 1;
    }
    assert_eq!(tree(w.tmp.path()), before, "a bad name created something");
    assert!(!marker.exists());
    eprintln!("environment names: {refused}/{refused} bad names refused, nothing created");
}

/// Item 3: the command and its arguments reach execve as a vector, never a
/// shell: metacharacters arrive literally and run nothing, for `run` and for
/// the `ENV` shorthand's deploy.sh arguments alike.
#[test]
fn command_line_words_are_never_interpolated_into_a_shell() {
    let w = World::new();
    let hostile = [
        "$(touch pwned1)",
        "`touch pwned2`",
        ";touch pwned3",
        "&& touch pwned4",
        "| touch pwned5",
        "*",
        "$HOME",
        "'\"",
        "a\nb",
    ];
    let mut args = vec!["run", "staging", "--", "printf", "%s|"];
    args.extend(hostile);
    w.deploy_lock(&args)
        .run()
        .code(0)
        .stderr("")
        .stdout(&format!("{}|", hostile.join("|")));
    w.script(
        "deploy/scripts/deploy.sh",
        "#!/bin/sh\nfor a in \"$@\"; do printf '%s|' \"$a\"; done\n",
    );
    // As option values they reach deploy.sh as they are...
    let mut args = vec!["staging"];
    for h in hostile {
        args.extend(["--branch", h]);
    }
    w.deploy_lock(&args).run().code(0).stdout(&format!(
        "staging|--force|{}|",
        hostile.map(|h| format!("--branch|{h}")).join("|")
    ));
    // ...and as bare words deploy.sh would take them as its environment:
    // refused (issue 18), each quoted, a newline escaped.
    let mut args = vec!["staging"];
    args.extend(hostile);
    w.deploy_lock(&args).run().code(2).stdout("").stderr(
        "ERROR: deploy.sh would get \"$(touch pwned1)\", \"`touch pwned2`\", \";touch pwned3\", \"&& touch pwned4\", \"| touch pwned5\", \"*\", \"$HOME\", \"'\\\"\", \"a\\nb\" as its environment (it takes its last word that is not an option), but the lock is staging's; give exactly one environment: deploy-lock run staging [DEPLOY_SH_ARGS...]\n",
    );
    assert!(tree(w.tmp.path()).iter().all(|p| !p.contains("pwned")));
    assert!(tree(&w.root).iter().all(|p| p != "*"));
}

/// Item 3: names inside the state file never become paths either: an
/// `environment` that is not one of the three is just another environment's
/// record, not a lock folder to look at or a name to build a path from.
#[test]
fn state_file_names_never_reach_a_path() {
    let w = World::new();
    for env in [
        "../../../tmp/evil",
        "$(touch pwned)",
        "staging/../production",
    ] {
        let original = format!(
            r#"{{"environment": "{env}", "lock": {{"locked": true, "pid": 1, "hostname": "{}", "locked_at": "2026-01-01T00:00:00Z"}}, "keep": [1]}}"#,
            hostname()
        );
        w.write_state(&original);
        let before = tree(w.tmp.path());
        w.unlock_sh(&["staging"]).run().code(0);
        w.deploy_lock(&["status", "staging", "--json"])
            .run()
            .code(0);
        assert_eq!(tree(w.tmp.path()), before, "{env}");
        w.deploy_lock(&["run", "staging", "--", "true"])
            .run()
            .code(0)
            .stderr("");
        assert_eq!(w.state_json()["keep"], serde_json::json!([1]));
        assert!(
            tree(w.tmp.path())
                .iter()
                .all(|p| !p.contains("pwned") && !p.contains("evil"))
        );
    }
}
