//! install.sh for real, into temp prefixes and temp checkouts only: what it
//! prints, the exact tree it leaves, idempotence, uninstall, the project
//! shim and its legacy script, refusals, and the installed completions and
//! man pages found where bash-completion, zsh, fish and man look.
//!
//! Every install but one passes `--binary` (the binary cargo built for this
//! test run) so the suite stays fast; `default_build_path_*` runs
//! install.sh's real release build, only under CI=true (a release build
//! takes minutes on a loaded machine), at low priority, into the repo's
//! target folder, and runs the installed binary beside the tested one.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::completions::{
    LineShell, ShellWorld, TAB_LINES, available, check_tab_lines, fish_candidates, repo,
};
use crate::harness::*;

#[track_caller]
fn install_sh(w: &World, args: &[&str]) -> Out {
    install_cmd(w, args).run()
}

/// `install.sh ARGS` from the temp folder (not the repo), with the test
/// environment and none of the variables that would change its advice.
fn install_cmd(w: &World, args: &[&str]) -> Cmd {
    let mut c = w
        .cmd(repo().join("install.sh"))
        .dir(w.tmp.path())
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_DATA_DIRS")
        .env_remove("MANPATH");
    c.cmd.args(args);
    c
}

fn names_in(dir: &str, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo().join(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| keep(n))
        .collect();
    v.sort();
    v
}

/// (installed path, repo file it copies), in install.sh's order.
fn doc_files(p: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut v = Vec::new();
    for n in names_in("man", |n| n.ends_with(".1")) {
        v.push((
            p.join("share/man/man1").join(&n),
            repo().join("man").join(&n),
        ));
    }
    for n in ["deploy-lock", "unlock.sh"] {
        v.push((
            p.join("share/bash-completion/completions").join(n),
            repo().join("completions/bash").join(n),
        ));
    }
    for n in ["_deploy-lock", "_unlock.sh"] {
        v.push((
            p.join("share/zsh/site-functions").join(n),
            repo().join("completions/zsh").join(n),
        ));
    }
    for n in names_in("completions/fish", |n| n.ends_with(".fish")) {
        v.push((
            p.join("share/fish/vendor_completions.d").join(&n),
            repo().join("completions/fish").join(&n),
        ));
    }
    v
}

fn listing(p: &Path) -> String {
    let mut s = format!(
        "installed {0}/bin/deploy-lock\ninstalled {0}/bin/unlock.sh -> deploy-lock\n",
        p.display()
    );
    for (to, _) in doc_files(p) {
        s.push_str(&format!("installed {}\n", to.display()));
    }
    s
}

fn recorded_line(p: &Path) -> String {
    format!(
        "recorded in {0}/share/deploy-lock/installed (./install.sh --prefix {0} --uninstall removes it all)\n",
        p.display()
    )
}

/// The advice for a prefix that no tool searches by default, with its bin
/// not on PATH.
fn advice_elsewhere(p: &Path) -> String {
    let p = p.display();
    format!(
        r#"
To use it:
  PATH  add {p}/bin to PATH, e.g. in ~/.profile:
          export PATH="{p}/bin:$PATH"
  man   man deploy-lock; man unlock.sh, once {p}/bin is on PATH
          (before that: man -l {p}/share/man/man1/unlock.sh.1)
  bash  add to ~/.bashrc:
          for f in {p}/share/bash-completion/completions/*; do . "$f"; done
  zsh   add to ~/.zshrc, before compinit:
          fpath=({p}/share/zsh/site-functions $fpath)
  fish  add to ~/.config/fish/config.fish:
          set -p fish_complete_path {p}/share/fish/vendor_completions.d
"#
    )
}

/// The advice for ~/.local with ~/.local/bin on PATH.
fn advice_home_local(p: &Path) -> String {
    let p = p.display();
    format!(
        r#"
To use it:
  PATH  {p}/bin is on your PATH
  man   man deploy-lock; man unlock.sh
  bash  completions load on demand (with the bash-completion package)
  zsh   add to ~/.zshrc, before compinit:
          fpath=({p}/share/zsh/site-functions $fpath)
  fish  completions load on demand (for commands on PATH)
"#
    )
}

/// Everything under `root`: path -> what it is ("dir", "file MODE", "link -> T").
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !root.exists() {
        return out;
    }
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                out.insert(
                    rel,
                    format!("link -> {}", std::fs::read_link(&p).unwrap().display()),
                );
            } else if m.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else {
                out.insert(rel, format!("file {:o}", m.permissions().mode() & 0o7777));
            }
        }
    }
    out
}

fn expected_tree(p: &Path) -> BTreeMap<String, String> {
    let mut t = BTreeMap::new();
    for d in [
        "bin",
        "share",
        "share/man",
        "share/man/man1",
        "share/bash-completion",
        "share/bash-completion/completions",
        "share/zsh",
        "share/zsh/site-functions",
        "share/fish",
        "share/fish/vendor_completions.d",
        "share/deploy-lock",
    ] {
        t.insert(d.to_string(), "dir".to_string());
    }
    t.insert("bin/deploy-lock".into(), "file 755".into());
    t.insert("bin/unlock.sh".into(), "link -> deploy-lock".into());
    t.insert("share/deploy-lock/installed".into(), "file 644".into());
    for (to, _) in doc_files(p) {
        t.insert(
            to.strip_prefix(p).unwrap().display().to_string(),
            "file 644".into(),
        );
    }
    t
}

/// The record install.sh writes into an existing prefix whose tree was `before`:
/// folders it creates (outermost first) and files, in install order.
fn expected_record(p: &Path, before: &BTreeMap<String, String>) -> String {
    let pre = p.display();
    let mut exists: std::collections::BTreeSet<String> = before
        .iter()
        .filter(|(_, k)| *k == "dir")
        .map(|(d, _)| d.clone())
        .collect();
    let mut record = String::new();
    let mut make = |record: &mut String, dir: &Path| {
        let rel = dir.strip_prefix(p).unwrap();
        let mut acc = PathBuf::new();
        for c in rel.components() {
            acc.push(c);
            let a = acc.display().to_string();
            if exists.insert(a.clone()) {
                record.push_str(&format!("dir\t{pre}/{a}\n"));
            }
        }
    };
    make(&mut record, &p.join("share/deploy-lock"));
    make(&mut record, &p.join("bin"));
    record.push_str(&format!(
        "file\t{pre}/bin/deploy-lock\nfile\t{pre}/bin/unlock.sh\n"
    ));
    for (to, _) in doc_files(p) {
        make(&mut record, to.parent().unwrap());
        record.push_str(&format!("file\t{}\n", to.display()));
    }
    record
}

#[track_caller]
fn assert_installed_copies(p: &Path, binary: &Path) {
    assert!(
        std::fs::read(p.join("bin/deploy-lock")).unwrap() == std::fs::read(binary).unwrap(),
        "bin/deploy-lock is not a copy of {}",
        binary.display()
    );
    for (to, from) in doc_files(p) {
        assert!(
            std::fs::read(&to).unwrap() == std::fs::read(&from).unwrap(),
            "{} is not a copy of {}",
            to.display(),
            from.display()
        );
    }
}

#[test]
fn help_and_usage_errors() {
    let w = World::new();
    install_sh(&w, &["--help"]).code(0).stdout(
        r#"Usage: ./install.sh [--prefix DIR] [--project CHECKOUT] [--binary FILE]
       ./install.sh [--prefix DIR] --uninstall
       ./install.sh --deb DIR [--binary FILE]

Builds deploy-lock with `cargo build --release --locked` and installs
  PREFIX/bin/deploy-lock
  PREFIX/bin/unlock.sh                      (a link to deploy-lock)
  PREFIX/share/man/man1/*.1                 (man deploy-lock, man unlock.sh)
  PREFIX/share/bash-completion/completions/{deploy-lock,unlock.sh}
  PREFIX/share/zsh/site-functions/{_deploy-lock,_unlock.sh}
  PREFIX/share/fish/vendor_completions.d/{deploy-lock,unlock.sh}.fish
recording them in PREFIX/share/deploy-lock/installed. Running it again
updates them in place.

Options:
  --prefix DIR        install under DIR (default: $HOME/.local, or /usr/local
                      as root)
  --project CHECKOUT  also make CHECKOUT/deploy/scripts/unlock.sh a small
                      bash shim that runs deploy-lock from PATH as unlock.sh,
                      or, where deploy-lock is not on PATH, the legacy script,
                      kept beside it as unlock.sh.legacy (CHECKOUT must have a
                      deploy/ folder). Commit both files: nothing in them
                      points into this machine or anyone's home
  --binary FILE       install FILE, an already built deploy-lock, instead of
                      building (no cargo needed)
  --deb DIR           instead of installing, build the Debian package
                      DIR/deploy-lock_VERSION_ARCH.deb with dpkg-deb
                      (/usr/bin/deploy-lock and unlock.sh, man pages,
                      completions); install it with dpkg -i (or apt install
                      ./FILE.deb) on every operator's machine and deploy host
  --uninstall         remove everything recorded in PREFIX, including every
                      --project shim made with this PREFIX (each legacy
                      unlock.sh is put back), and the folders the install
                      created if they are empty
  -h, --help          show this help
"#,
    );
    install_sh(&w, &["--frobnicate"])
        .code(2)
        .stdout("")
        .stderr("install.sh: unknown option '--frobnicate' (see ./install.sh --help)\n");
    install_sh(&w, &["--prefix"])
        .code(2)
        .stdout("")
        .stderr("install.sh: --prefix needs a value (see ./install.sh --help)\n");
}

#[test]
fn install_again_and_uninstall_exactly() {
    let w = World::new();
    let p = w.tmp.path().join("prefix");
    // Someone else's files in the prefix stay, and so do the folders that
    // existed before.
    for (f, body) in [
        ("bin/other-tool", "#!/bin/sh\n"),
        ("share/man/man1/other.1", ".TH OTHER 1\n"),
    ] {
        std::fs::create_dir_all(p.join(f).parent().unwrap()).unwrap();
        std::fs::write(p.join(f), body).unwrap();
        std::fs::set_permissions(p.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let before = tree(&p);
    let want = format!(
        "{}{}{}",
        listing(&p),
        recorded_line(&p),
        advice_elsewhere(&p)
    );

    install_sh(&w, &["--prefix", p.to_str().unwrap(), "--binary", BIN])
        .code(0)
        .stdout(&want)
        .stderr("");
    let mut want_tree = expected_tree(&p);
    want_tree.extend(before.clone());
    assert_eq!(tree(&p), want_tree);
    assert_installed_copies(&p, Path::new(BIN));
    let record = expected_record(&p, &before);
    let record_path = p.join("share/deploy-lock/installed");
    assert_eq!(std::fs::read_to_string(&record_path).unwrap(), record);

    // Again: the same files, the same words, the same record.
    install_sh(&w, &["--prefix", p.to_str().unwrap(), "--binary", BIN])
        .code(0)
        .stdout(&want)
        .stderr("");
    assert_eq!(tree(&p), want_tree);
    assert_eq!(std::fs::read_to_string(&record_path).unwrap(), record);

    // Uninstall: every file it put there, then the folders it made, deepest
    // first; nothing else.
    let mut want = String::new();
    for l in record.lines().filter_map(|l| l.strip_prefix("file\t")) {
        want.push_str(&format!("removed {l}\n"));
    }
    want.push_str(&format!("removed {}\n", record_path.display()));
    for l in record.lines().rev().filter_map(|l| l.strip_prefix("dir\t")) {
        want.push_str(&format!("removed {l}/\n"));
    }
    install_sh(&w, &["--prefix", p.to_str().unwrap(), "--uninstall"])
        .code(0)
        .stdout(&want)
        .stderr("");
    assert_eq!(tree(&p), before);
    install_sh(&w, &["--prefix", p.to_str().unwrap(), "--uninstall"])
        .code(0)
        .stdout(&format!(
            "nothing to uninstall: {} does not exist\n",
            record_path.display()
        ))
        .stderr("");
    assert_eq!(tree(&p), before);

    // Into a prefix that does not exist yet: uninstall removes the prefix too.
    let fresh = w.tmp.path().join("fresh/prefix");
    install_sh(&w, &["--prefix", fresh.to_str().unwrap(), "--binary", BIN]).code(0);
    assert_eq!(tree(&fresh), expected_tree(&fresh));
    let out = install_sh(&w, &["--prefix", fresh.to_str().unwrap(), "--uninstall"]);
    out.code(0);
    assert!(
        out.stdout.ends_with(&format!(
            "removed {0}/share/\nremoved {0}/\nremoved {1}/\n",
            fresh.display(),
            fresh.parent().unwrap().display()
        )),
        "{}",
        out.stdout
    );
    assert!(!w.tmp.path().join("fresh").exists());
}

fn unlocked_state_output() -> String {
    "Deployment Lock Status: staging\n============================================\nLock directory: Not found (unlocked)\n\nState file info:\n  Locked: false\n  Locked by: alice@checkout\n  Locked at: N/A\n  Deployment ID: N/A\n  PID: N/A\n  Hostname: N/A\n\n".to_string()
}

#[test]
fn installed_unlock_sh_works_from_anywhere_inside_a_checkout() {
    let w = World::new();
    let p = w.tmp.path().join("p");
    install_sh(&w, &["--prefix", p.to_str().unwrap(), "--binary", BIN]).code(0);
    let nested = w.root.join("services/api/src");
    std::fs::create_dir_all(&nested).unwrap();
    let no_state = format!(
        "Deployment Lock Status: staging\n============================================\nLock directory: Not found (unlocked)\n\nState file not found: {}\n\n",
        w.state_path().display()
    );
    for dir in [w.root.clone(), w.root.join("deploy/config"), nested.clone()] {
        w.cmd(p.join("bin/unlock.sh"))
            .dir(&dir)
            .run_args(&["staging"])
            .code(0)
            .stdout(&no_state);
    }
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false, \"locked_by\": \"alice@checkout\"}}\n");
    w.cmd(p.join("bin/unlock.sh"))
        .dir(&nested)
        .run_args(&["staging"])
        .code(0)
        .stdout(&unlocked_state_output());
    // The deploy-lock persona under its own name, from the same place.
    let out = w
        .cmd(p.join("bin/deploy-lock"))
        .dir(&nested)
        .run_args(&["status", "staging", "--json"]);
    out.code(0);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["state_file"], w.state_path().display().to_string());
}

trait RunArgs {
    fn run_args(self, args: &[&str]) -> Out;
}
impl RunArgs for Cmd {
    #[track_caller]
    fn run_args(mut self, args: &[&str]) -> Out {
        self.cmd.args(args);
        self.run()
    }
}

/// A legacy script that shows its `$0` (the shim keeps it) and arguments.
const LEGACY: &str = "#!/bin/bash\necho \"legacy $0 $*\"\n";

/// `git ARGS` in `dir`, quiet, with a fixed identity; its stdout.
#[track_caller]
fn git(w: &World, dir: &Path, args: &[&str]) -> String {
    let mut c = w
        .cmd("git")
        .dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1");
    c.cmd.args(args);
    let out = c.run();
    out.code(0);
    out.any_stderr();
    out.stdout.clone()
}

/// The checkout's `./deploy/scripts/unlock.sh ARGS` as typed from its root,
/// with PATH exactly `path`: (exit code, stdout, stderr).
fn typed(w: &World, root: &Path, path: &str, args: &[&str]) -> (i32, String, String) {
    let mut c = w
        .cmd("./deploy/scripts/unlock.sh")
        .dir(root)
        .env("PATH", path);
    c.cmd.args(args);
    let out = c.grouped().output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The full path of PROGRAM on PATH.
fn which_on_path(program: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not on PATH"))
}

/// The project shim in a real git checkout: a file the team commits (no
/// link, nothing pointing into a home), deploy-lock under the typed name
/// where it is on PATH (byte for byte what the old link printed), the
/// legacy script elsewhere, in the committer's checkout and in a clone;
/// uninstall restores the original.
#[test]
fn project_shim_is_committed_and_runs_deploy_lock_or_the_legacy_script() {
    if !available("git", "project_shim") {
        return;
    }
    let w = World::new();
    let p = w.tmp.path().join("p");
    let shim = w.root.join("deploy/scripts/unlock.sh");
    std::fs::remove_file(&shim).unwrap();
    std::fs::write(&shim, LEGACY).unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o750)).unwrap();
    w.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false, \"locked_by\": \"alice@checkout\"}}\n");
    git(&w, &w.root, &["init", "-q", "-b", "main"]);
    // The lock's state (and audit log) stay out of git, as in a team's repo.
    std::fs::write(w.root.join(".gitignore"), "/deploy/config/\n").unwrap();
    git(
        &w,
        &w.root,
        &["add", ".gitignore", "deploy/scripts/unlock.sh"],
    );
    git(&w, &w.root, &["commit", "-qm", "legacy"]);

    let root = w.root.display().to_string();
    let (pre, sh) = (p.display().to_string(), shim.display().to_string());
    let project_lines = format!("installed {sh} (the shim: commit it and {sh}.legacy)\n");
    let kept = format!("kept the legacy script as {sh}.legacy\n");
    let args = ["--prefix", &pre, "--binary", BIN, "--project", &root];
    install_sh(&w, &args)
        .code(0)
        .stdout(&format!(
            "{}{kept}{project_lines}{}{}",
            listing(&p),
            recorded_line(&p),
            advice_elsewhere(&p)
        ))
        .stderr("");
    let legacy = w.root.join("deploy/scripts/unlock.sh.legacy");
    assert_eq!(std::fs::read_to_string(&legacy).unwrap(), LEGACY);
    assert_eq!(
        std::fs::metadata(&legacy).unwrap().permissions().mode() & 0o777,
        0o750
    );
    // A small bash file, naming nothing of this machine.
    let text = std::fs::read_to_string(&shim).unwrap();
    assert!(text.starts_with("#!/usr/bin/env bash\n"), "{text}");
    assert!(text.lines().count() <= 20, "{text}");
    for here in [
        pre.as_str(),
        &w.home.display().to_string(),
        "/home",
        "/root",
    ] {
        assert!(!text.contains(here), "the shim names {here}:\n{text}");
    }
    // git sees a modified file and a new one, never a type change.
    assert_eq!(
        git(&w, &w.root, &["status", "--porcelain"]),
        " M deploy/scripts/unlock.sh\n?? deploy/scripts/unlock.sh.legacy\n"
    );
    git(&w, &w.root, &["add", "deploy/scripts"]);
    git(&w, &w.root, &["commit", "-qm", "deploy-lock shim"]);
    let files = git(&w, &w.root, &["ls-files", "-s", "deploy/scripts"]);
    let modes: Vec<(&str, &str)> = files
        .lines()
        .map(|l| (l.split(' ').next().unwrap(), l.rsplit('\t').next().unwrap()))
        .collect();
    assert_eq!(
        modes,
        vec![
            ("100755", "deploy/scripts/unlock.sh"),
            ("100755", "deploy/scripts/unlock.sh.legacy")
        ]
    );

    // A teammate's clone: the committed files alone.
    let clone = w.tmp.path().join("clone");
    git(
        &w,
        w.tmp.path(),
        &["clone", "-q", &root, clone.to_str().unwrap()],
    );
    std::fs::create_dir_all(clone.join("deploy/config")).unwrap();
    std::fs::copy(
        w.state_path(),
        clone.join("deploy/config/deployment-state.json"),
    )
    .unwrap();

    // PATH without any deploy-lock: only what the shim and the legacy
    // script use (a .deb test may install /usr/bin/deploy-lock meanwhile).
    let tools = w.tmp.path().join("tools");
    std::fs::create_dir(&tools).unwrap();
    for t in ["bash", "dirname"] {
        let found = which_on_path(t);
        std::os::unix::fs::symlink(&found, tools.join(t)).unwrap();
    }
    let without = tools.display().to_string();
    let without = without.as_str();
    let with = format!("{pre}/bin:{without}");
    let cases: [&[&str]; 5] = [
        &["staging"],
        &["staging", "--status"],
        &[],
        &["--help"],
        &["nowhere"],
    ];
    // Without deploy-lock on PATH: the legacy script, named as typed.
    for dir in [&w.root, &clone] {
        assert_eq!(
            typed(&w, dir, without, &["staging", "--wait"]),
            (
                0,
                "legacy ./deploy/scripts/unlock.sh staging --wait\n".to_string(),
                String::new()
            )
        );
    }
    // With it: deploy-lock as unlock.sh, byte for byte what a link to the
    // binary (the old install) prints, usage texts naming the typed path.
    let mut shim_says = Vec::new();
    for dir in [&w.root, &clone] {
        for a in cases {
            shim_says.push(typed(&w, dir, &with, a));
        }
    }
    assert_eq!(shim_says[0].1, unlocked_state_output());
    // From anywhere, even inside another checkout: the shim's own checkout.
    let other = World::new();
    other.write_state("{\"environment\": \"staging\", \"lock\": {\"locked\": false, \"locked_by\": \"bob@elsewhere\"}}\n");
    for dir in [Path::new("/"), other.root.as_path(), w.tmp.path()] {
        w.cmd(&shim)
            .dir(dir)
            .env("PATH", &with)
            .run_args(&["staging"])
            .code(0)
            .stdout(&unlocked_state_output());
    }
    assert!(
        shim_says[3]
            .1
            .contains("./deploy/scripts/unlock.sh staging"),
        "{:?}",
        shim_says[3]
    );
    for dir in [&w.root, &clone] {
        let f = dir.join("deploy/scripts/unlock.sh");
        std::fs::rename(&f, dir.join("shim.kept")).unwrap();
        std::os::unix::fs::symlink(BIN, &f).unwrap();
    }
    let mut link_says = Vec::new();
    for dir in [&w.root, &clone] {
        for a in cases {
            link_says.push(typed(&w, dir, without, a));
        }
    }
    assert_eq!(shim_says, link_says);
    for dir in [&w.root, &clone] {
        let f = dir.join("deploy/scripts/unlock.sh");
        std::fs::remove_file(&f).unwrap();
        std::fs::rename(dir.join("shim.kept"), &f).unwrap();
    }

    // Not on PATH but in the runner's own ~/.local/bin (a new user's PATH
    // before their next login): that deploy-lock.
    let local_bin = w.home.join(".local/bin");
    std::fs::create_dir_all(&local_bin).unwrap();
    std::os::unix::fs::symlink(BIN, local_bin.join("deploy-lock")).unwrap();
    assert_eq!(typed(&w, &clone, without, &["staging"]), shim_says[0]);
    std::fs::remove_dir_all(w.home.join(".local")).unwrap();

    // Again: nothing to keep this time, the legacy script untouched.
    install_sh(&w, &args)
        .code(0)
        .stdout(&format!(
            "{}{project_lines}{}{}",
            listing(&p),
            recorded_line(&p),
            advice_elsewhere(&p)
        ))
        .stderr("");
    assert_eq!(std::fs::read_to_string(&legacy).unwrap(), LEGACY);
    assert_eq!(git(&w, &w.root, &["status", "--porcelain"]), "");

    let out = install_sh(&w, &["--prefix", &pre, "--project", &root, "--uninstall"]);
    out.code(0).stderr("");
    assert!(
        out.stdout.starts_with(&format!(
            "restored {sh} (the legacy script)\nremoved {pre}/bin/deploy-lock\n"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with(&format!("removed {pre}/\n")),
        "{}",
        out.stdout
    );
    assert!(!p.exists());
    assert!(!legacy.exists());
    assert_eq!(std::fs::read_to_string(&shim).unwrap(), LEGACY);
    assert_eq!(
        std::fs::symlink_metadata(&shim)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o750
    );
    // The checkout is as it was before the shim: its first commit.
    assert_eq!(git(&w, &w.root, &["diff", "HEAD~1", "--stat"]), "");
    assert_eq!(
        typed(&w, &w.root, &with, &["staging"]),
        (
            0,
            "legacy ./deploy/scripts/unlock.sh staging\n".to_string(),
            String::new()
        )
    );
}

#[test]
fn refusals_change_nothing() {
    let w = World::new();
    let p = w.tmp.path().join("p");
    let pre = p.display().to_string();
    let no_deploy = w.tmp.path().join("not-a-checkout");
    std::fs::create_dir(&no_deploy).unwrap();
    let before = tree(w.tmp.path());

    install_sh(&w, &["--prefix", &pre, "--binary", BIN, "--project", no_deploy.to_str().unwrap()])
        .code(1)
        .stdout("")
        .stderr(&format!(
            "install.sh: {} has no deploy/ folder; --project takes a checkout of the project that deploys with deploy/scripts\n",
            no_deploy.display()
        ));
    install_sh(
        &w,
        &["--prefix", &pre, "--binary", "/nonexistent/deploy-lock"],
    )
    .code(1)
    .stdout("")
    .stderr("install.sh: --binary /nonexistent/deploy-lock is not an executable file\n");
    let not_ours = w.script("not-deploy-lock", "#!/bin/sh\necho something 1.0\n");
    install_sh(
        &w,
        &["--prefix", &pre, "--binary", not_ours.to_str().unwrap()],
    )
    .code(1)
    .stdout("")
    .stderr(&format!(
        "install.sh: {} does not answer --version as deploy-lock does\n",
        not_ours.display()
    ));
    std::fs::remove_file(&not_ours).unwrap();
    assert_eq!(tree(w.tmp.path()), before);

    // A legacy unlock.sh already in PREFIX/bin is not overwritten.
    std::fs::create_dir_all(p.join("bin")).unwrap();
    std::fs::write(p.join("bin/unlock.sh"), LEGACY).unwrap();
    let before = tree(w.tmp.path());
    install_sh(&w, &["--prefix", &pre, "--binary", BIN])
        .code(1)
        .stdout("")
        .stderr(&format!(
            "install.sh: {pre}/bin/unlock.sh exists and is not the link to deploy-lock (a legacy unlock.sh?); move it away first\n"
        ));
    assert_eq!(tree(w.tmp.path()), before);
    std::fs::remove_dir_all(&p).unwrap();

    // A project whose legacy script was already set aside, and replaced.
    let shim = w.root.join("deploy/scripts/unlock.sh");
    std::fs::write(w.root.join("deploy/scripts/unlock.sh.legacy"), LEGACY).unwrap();
    let before = tree(w.tmp.path());
    install_sh(
        &w,
        &[
            "--prefix",
            &pre,
            "--binary",
            BIN,
            "--project",
            w.root.to_str().unwrap(),
        ],
    )
    .code(1)
    .stdout("")
    .stderr(&format!(
        "install.sh: both {0} and {0}.legacy exist; move one of them away first\n",
        shim.display()
    ));
    assert_eq!(tree(w.tmp.path()), before);
}

/// ~/.local (HOME being a temp folder) is where bash-completion and fish
/// look without being told and, with ~/.local/bin on PATH, where man looks:
/// the installed files work there with no setup but zsh's one line.
#[test]
fn installed_completions_and_man_pages_are_found_where_each_tool_looks() {
    let mut sw = ShellWorld::new();
    let home = sw.w.home.clone();
    let p = home.join(".local");
    let system_path = std::env::var_os("PATH").unwrap_or_default();
    let path: OsString = std::env::join_paths(
        std::iter::once(p.join("bin")).chain(std::env::split_paths(&system_path)),
    )
    .unwrap();
    sw.path = path.clone();
    let out = install_cmd(&sw.w, &["--prefix", p.to_str().unwrap(), "--binary", BIN])
        .env("PATH", &path)
        .run();
    out.code(0).stdout(&format!(
        "{}{}{}",
        listing(&p),
        recorded_line(&p),
        advice_home_local(&p)
    ));

    // man: found through PATH, and renders the flags.
    if available("man", "installed man pages") {
        let mut c = sw.w.cmd("man").env("PATH", &path).env_remove("MANPATH");
        c.cmd.args(["-w", "unlock.sh", "deploy-lock"]);
        c.run().code(0).stdout(&format!(
            "{0}/share/man/man1/unlock.sh.1\n{0}/share/man/man1/deploy-lock.1\n",
            p.display()
        ));
        let mut c =
            sw.w.cmd("man")
                .env("MANWIDTH", "100")
                .env("MANPAGER", "cat")
                .env("PAGER", "cat");
        c.cmd.arg("-l").arg(p.join("share/man/man1/unlock.sh.1"));
        let page = c.run();
        page.code(0);
        for needle in [
            "--force",
            "--wait",
            "--status",
            "--project-root",
            "development",
            "staging",
            "production",
            "LOCK RULES",
            "stale",
            "ENVIRONMENT",
            "DEPLOY_LOCK_DIR",
            "FILES",
            "deployment-state.json",
            "EXIT STATUS",
            "EXAMPLES",
            "./deploy/scripts/unlock.sh staging --wait",
        ] {
            assert!(
                page.stdout.contains(needle),
                "man -l unlock.sh.1 lacks {needle:?}:\n{}",
                page.stdout
            );
        }
    }

    // bash: bash-completion's loader finds the files on first TAB, also for
    // the script typed with its path.
    let loader = Path::new("/usr/share/bash-completion/bash_completion");
    if available("bash", "installed bash completions") {
        if loader.exists() {
            let rc = format!("source {:?}", loader.display().to_string());
            let mut sh = LineShell::bash(&sw, &rc, &[]);
            check_tab_lines(
                "bash (bash-completion loading ~/.local)",
                &mut sh,
                &TAB_LINES,
            );
        } else {
            skip!("installed bash completions: bash-completion is not installed");
        }
    }

    // zsh: with the one line install.sh printed.
    if available("zsh", "installed zsh completions") {
        let line = out
            .stdout
            .lines()
            .find(|l| l.trim_start().starts_with("fpath=("))
            .unwrap()
            .trim();
        let mut sh = LineShell::zsh(&sw, line);
        check_tab_lines(
            "zsh (installed, with the printed fpath line)",
            &mut sh,
            &TAB_LINES,
        );
    }

    // fish: its default search path includes ~/.local/share/fish/vendor_completions.d.
    if available("fish", "installed fish completions") {
        let typed: Vec<String> = TAB_LINES.iter().map(|(t, _)| t.to_string()).collect();
        let got = fish_candidates(&sw, "", &typed, &[]);
        for ((typed, want), got) in TAB_LINES.iter().zip(got) {
            let last = want.trim_end().rsplit(' ').next().unwrap();
            assert_eq!(
                got.into_iter().collect::<Vec<_>>(),
                vec![last.to_string()],
                "fish on {typed:?}"
            );
        }
    }
}

/// As a user (id -u not 0), the default prefix is $HOME/.local. `id` is
/// replaced by a stub on PATH, checked first, so that a root test run can
/// never install into /usr/local.
#[test]
fn default_prefix_for_a_user_is_home_local() {
    let w = World::new();
    let stub = w.tmp.path().join("stub-bin");
    std::fs::create_dir(&stub).unwrap();
    let id = stub.join("id");
    std::fs::write(&id, "#!/bin/sh\necho 1000\n").unwrap();
    std::fs::set_permissions(&id, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = std::env::join_paths(std::iter::once(stub.clone()).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let mut guard = w.cmd("bash").env("PATH", &path);
    guard.cmd.args(["-c", "id -u"]);
    guard.run().code(0).stdout("1000\n");

    let p = w.home.join(".local");
    install_cmd(&w, &["--binary", BIN])
        .env("PATH", &path)
        .run()
        .code(0);
    assert_eq!(tree(&p), expected_tree(&p));
    install_cmd(&w, &["--uninstall"])
        .env("PATH", &path)
        .run()
        .code(0);
    assert_eq!(tree(&w.home), BTreeMap::new());
}

/// The one real build: install.sh with no --binary (`cargo build --release
/// --locked`), run only under CI=true: outside CI it would add minutes to
/// every engineer's suite, and every other test installs the binary cargo
/// built for the suite. At low priority so that it does not disturb the
/// tests running beside it.
#[test]
fn default_build_path_builds_with_cargo_and_installs_the_release_binary() {
    if std::env::var_os("CI").is_none_or(|v| v.is_empty()) {
        skip!("the real release build runs only under CI=true");
        return;
    }
    if !available("cargo", "default_build_path") {
        return;
    }
    let w = World::new();
    let p = w.tmp.path().join("p");
    // The real HOME: cargo and rustup find their toolchains and the
    // registry cache through it (the prefix is given, so it changes nothing).
    let mut c = w
        .cmd("nice")
        .env("HOME", std::env::var_os("HOME").unwrap_or_default())
        .dir(w.tmp.path())
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_DATA_DIRS");
    c.cmd
        .args(["-n", "19"])
        .arg(repo().join("install.sh"))
        .arg("--prefix")
        .arg(&p);
    let out = c.run();
    // cargo's own progress lines.
    out.any_stderr();
    out.code(0).stdout(&format!(
        "{}{}{}",
        listing(&p),
        recorded_line(&p),
        advice_elsewhere(&p)
    ));
    assert!(
        out.stderr.contains("`release` profile"),
        "cargo did not build release:\n{}",
        out.stderr
    );
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { repo().join(t) })
        .unwrap_or_else(|| repo().join("target"));
    let installed = p.join("bin/deploy-lock");
    // The ordinary build: dynamically linked, names from the system's NSS.
    assert_installed_copies(&p, &target.join("release/deploy-lock"));
    assert!(
        has_interpreter(&installed),
        "{} is statically linked; install.sh builds the ordinary dynamic binary",
        installed.display()
    );
    let mut v = w.cmd(&installed);
    v.cmd.arg("--version");
    let v = v.run();
    v.code(0);
    assert!(v.stdout.starts_with("deploy-lock "), "{}", v.stdout);

    // The installed build does the job as the tested one does: unlock.sh's
    // whole status block, the ls -ld line with its owner names included.
    // Two runs can straddle a clock second (the lock age), hence a retry.
    let locked_at = now() - 60;
    w.legacy_lock("staging", locked_at);
    w.legacy_state("staging", locked_at, &dead_pid().to_string(), &hostname());
    let same = (0..3).any(|_| {
        let mut ours = w.cmd(p.join("bin/unlock.sh"));
        ours.cmd.arg("staging");
        let ours = ours.run();
        ours.code(0);
        let tested = w.unlock_sh(&["staging"]).run();
        tested.code(0);
        ours.stdout == tested.stdout
    });
    assert!(
        same,
        "the installed unlock.sh prints another status block than the tested binary"
    );
}

/// Whether an ELF executable names a program interpreter (PT_INTERP), that
/// is, whether it is dynamically linked.
fn has_interpreter(exe: &Path) -> bool {
    let b = std::fs::read(exe).unwrap();
    assert_eq!(&b[..4], b"\x7fELF", "{} is not an ELF file", exe.display());
    assert_eq!(b[4], 2, "not a 64-bit ELF file");
    let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(b[0x20..0x28].try_into().unwrap()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let o = phoff + i * size;
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap()) == 3
    })
}

#[test]
fn install_sh_is_shellcheck_clean() {
    if !available("shellcheck", "install_sh_is_shellcheck_clean") {
        return;
    }
    let w = World::new();
    let mut c = w.cmd("shellcheck");
    c.cmd.arg(repo().join("install.sh"));
    c.run().code(0).stdout("").stderr("");
}

/// `dpkg ARGS` (or another program) with the test environment: the Out.
#[track_caller]
fn run(w: &World, program: &str, args: &[&str]) -> Out {
    let mut c = w.cmd(program).env_remove("MANPATH");
    c.cmd.args(args);
    c.run()
}

/// Whether `dpkg -s deploy-lock` finds the package installed.
fn package_installed(w: &World) -> bool {
    let out = run(w, "dpkg", &["-s", "deploy-lock"]);
    out.any_code().any_stderr();
    out.code == Some(0) && out.stdout.contains("Status: install ok installed")
}

/// Removes the installed package when the test ends, even by a failed
/// assertion, so that the machine is left as it was.
struct Installed(bool);

impl Drop for Installed {
    fn drop(&mut self) {
        if self.0 {
            let _ = std::process::Command::new("dpkg")
                .args(["-r", "deploy-lock"])
                .output();
        }
    }
}

/// `./install.sh --deb DIR`: the Debian package of the tested binary,
/// lintian-clean; installed with dpkg -i into the real system (as root, one
/// test at a time across processes, never over an existing deploy-lock),
/// then `deploy-lock --version`, `man -w`, a real bash TAB, and `dpkg -r`
/// leaving none of the package's files.
#[test]
fn deb_package_builds_installs_works_and_removes_cleanly() {
    for tool in ["dpkg-deb", "dpkg", "lintian", "man", "bash"] {
        if !available(tool, "deb_package") {
            return;
        }
    }
    let w = World::new();
    let dir = w.tmp.path().join("debs");
    std::fs::create_dir(&dir).unwrap();
    let version = run(&w, BIN, &["--version"]);
    version.code(0);
    let version = version.stdout.trim_end().to_string();
    let number = version.strip_prefix("deploy-lock ").unwrap();
    let arch = run(&w, "dpkg", &["--print-architecture"]);
    arch.code(0);
    let deb = dir.join(format!("deploy-lock_{number}_{}.deb", arch.stdout.trim()));
    let d = deb.display();
    install_sh(&w, &["--deb", dir.to_str().unwrap(), "--binary", BIN])
        .code(0)
        .stderr("")
        .stdout(&format!(
            "built {d}\ninstall it with: sudo apt install {d} (or sudo dpkg -i {d})\n"
        ));
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "more than the .deb in {}",
        dir.display()
    );

    // What it holds: the binary, its unlock.sh link, gzipped man pages,
    // completions where Debian's shells look, and the doc files.
    let listing = run(&w, "dpkg-deb", &["-c", deb.to_str().unwrap()]);
    listing.code(0);
    let mut got: Vec<String> = listing
        .stdout
        .lines()
        .filter(|l| !l.starts_with('d'))
        .map(|l| {
            let (owner, rest) = (l.split_whitespace().nth(1).unwrap(), l);
            assert_eq!(owner, "root/root", "{l}");
            let path = rest.split(" ./").nth(1).unwrap();
            format!("/{path}")
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = vec![
        "/usr/bin/deploy-lock".into(),
        "/usr/bin/unlock.sh -> deploy-lock".into(),
        "/usr/share/doc/deploy-lock/changelog.gz".into(),
        "/usr/share/doc/deploy-lock/copyright".into(),
    ];
    for n in names_in("man", |n| n.ends_with(".1")) {
        want.push(format!("/usr/share/man/man1/{n}.gz"));
    }
    for n in ["deploy-lock", "unlock.sh"] {
        want.push(format!("/usr/share/bash-completion/completions/{n}"));
    }
    for n in ["_deploy-lock", "_unlock.sh"] {
        want.push(format!("/usr/share/zsh/vendor-completions/{n}"));
    }
    for n in names_in("completions/fish", |n| n.ends_with(".fish")) {
        want.push(format!("/usr/share/fish/vendor_completions.d/{n}"));
    }
    want.sort();
    assert_eq!(got, want);

    // lintian: no errors (warnings and notes are shown, not fatal). It runs
    // beside the install checks below (4 s of CPU on its own).
    let deb_path = deb.to_str().unwrap().to_string();
    std::thread::scope(|s| {
        let lint = s.spawn(|| run(&w, "lintian", &[&deb_path]));
        let lint_clean = |lint: std::thread::ScopedJoinHandle<'_, Out>| {
            let lint = lint.join().unwrap();
            lint.any_code().any_stderr();
            assert!(
                lint.code == Some(0) && !lint.stdout.lines().any(|l| l.starts_with("E: ")),
                "lintian reports errors:\n{}",
                lint.stdout
            );
        };
        if !nix::unistd::geteuid().is_root() {
            lint_clean(lint);
            skip!(
                "deb_package: dpkg -i into the system needs root (the package was built and checked)"
            );
            return;
        }
        install_use_and_remove(&w, &deb, &version);
        lint_clean(lint);
    });
}

/// The .deb test's system part: dpkg -i, the installed binary, man page and
/// bash completion at work, then dpkg -r leaving nothing.
fn install_use_and_remove(w: &World, deb: &Path, version: &str) {
    let _alone = system_install_lock(true);
    if package_installed(w) || Path::new("/usr/bin/deploy-lock").exists() {
        skip!("deb_package: deploy-lock is already installed in /usr/bin here; not replacing it");
        return;
    }
    let mut installed = Installed(true);
    let out = run(w, "dpkg", &["-i", deb.to_str().unwrap()]);
    out.any_stderr();
    out.code(0);

    let path = "/usr/bin:/bin";
    let mut v = w.cmd("deploy-lock").env("PATH", path);
    v.cmd.arg("--version");
    v.run().code(0).stdout(&format!("{version}\n"));
    assert_eq!(
        std::fs::read_link("/usr/bin/unlock.sh").unwrap(),
        Path::new("deploy-lock")
    );
    let mut m = w.cmd("man").env("PATH", path).env_remove("MANPATH");
    m.cmd.args(["-w", "deploy-lock", "unlock.sh"]);
    m.run()
        .code(0)
        .stdout("/usr/share/man/man1/deploy-lock.1.gz\n/usr/share/man/man1/unlock.sh.1.gz\n");
    let loader = Path::new("/usr/share/bash-completion/bash_completion");
    if loader.exists() {
        let mut sw = crate::completions::ShellWorld::new();
        sw.path = path.into();
        let rc = format!("source {:?}", loader.display().to_string());
        let mut sh = LineShell::bash(&sw, &rc, &[]);
        check_tab_lines(
            "bash (bash-completion loading /usr/share)",
            &mut sh,
            &[
                ("deploy-lock stat", "deploy-lock status "),
                ("unlock.sh pro", "unlock.sh production "),
            ],
        );
    } else {
        skip!("deb_package: bash-completion is not installed");
    }

    let files = run(w, "dpkg", &["-L", "deploy-lock"]);
    files.code(0);
    let out = run(w, "dpkg", &["-r", "deploy-lock"]);
    out.any_stderr();
    out.code(0);
    installed.0 = false;
    // Every path the package had is gone, but folders others still use
    // (not empty, or another package's).
    let left: Vec<&str> = files
        .stdout
        .lines()
        .filter(|p| match std::fs::symlink_metadata(p) {
            Err(_) => false,
            Ok(m) if m.is_dir() => {
                std::fs::read_dir(p).unwrap().next().is_none() && {
                    let owner = run(w, "dpkg", &["-S", p]);
                    owner.any_code().any_stderr();
                    owner.code != Some(0)
                }
            }
            Ok(_) => true,
        })
        .collect();
    assert!(left.is_empty(), "dpkg -r left {left:?}");
    assert!(!Path::new("/usr/share/doc/deploy-lock").exists());
    assert!(!package_installed(w));
}
