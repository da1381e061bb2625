//! Tab-completion proven in the real shells, from the checked-in
//! completions/ files (install.rs drives the installed copies):
//! - bash: the file is sourced and its completion function called the way
//!   bash calls it (COMP_WORDS, COMP_CWORD, COMP_LINE, COMP_POINT, then
//!   COMPREPLY is read), and TAB is typed at an interactive bash on a pty;
//! - zsh: TAB is typed at an interactive zsh with compinit on a pty and the
//!   line read back; full candidate lists come from zsh's own `_all_matches`;
//! - fish: `complete -C`.
//!
//! What should be offered is derived from the man pages (generated from the
//! same clap definitions), so a flag the man page documents and the
//! completion forgets, or the reverse, fails here.
//!
//! A shell that is not installed is a visible SKIP line on stderr locally,
//! and a failure when `CI` is set (.ci/run installs all of them).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;

pub const ENVS: [&str; 3] = ["development", "staging", "production"];

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `program` is on PATH. When it is not: under CI a failure, else a
/// SKIP line written straight to stderr (not captured by the test harness).
pub fn available(program: &str, test: &str) -> bool {
    let found = std::env::var_os("PATH").is_some_and(|p| {
        std::env::split_paths(&p).any(|d| {
            std::fs::metadata(d.join(program)).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
    });
    if !found {
        skip!("{test}: {program} is not installed (apt-get install {program})");
    }
    found
}

/// The flags an OPTIONS section of a generated man page documents.
pub fn man_flags(page: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("man").join(page)).unwrap();
    let mut flags = BTreeSet::new();
    let mut in_options = false;
    for line in text.lines() {
        if line.starts_with(".SH ") {
            in_options = line == ".SH OPTIONS";
            continue;
        }
        if !in_options || !line.starts_with("\\fB\\-") {
            continue;
        }
        for part in line.split("\\fB").skip(1) {
            let word = part.split("\\fR").next().unwrap().replace("\\-", "-");
            if word.starts_with('-') {
                flags.insert(word);
            }
        }
    }
    assert!(!flags.is_empty(), "{page} documents no flags?");
    flags
}

/// What may follow `deploy-lock`: its subcommands, as its man page lists
/// them (deploy-lock-SUB(1)), and the environments (the `ENV` shorthand for
/// `run ENV`, which has no page of its own).
pub fn subcommands() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("man/deploy-lock.1")).unwrap();
    let mut subs: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("deploy\\-lock\\-"))
        .filter_map(|l| l.strip_suffix("(1)"))
        .map(|s| s.replace("\\-", "-"))
        .collect();
    for must in ["status", "wait", "unlock", "run"] {
        assert!(
            subs.contains(must),
            "deploy-lock.1 lists no {must}: {subs:?}"
        );
    }
    for env in ENVS {
        assert!(!subs.contains(env), "a man page for {env}: {subs:?}");
        subs.insert(env.to_string());
    }
    // Issue 12: `list` is status's alias (documented on its page).
    subs.insert("list".to_string());
    subs
}

fn set(words: &[&str]) -> BTreeSet<String> {
    words.iter().map(|s| s.to_string()).collect()
}

/// What typing TAB after each line must offer (prefix-filtered).
fn cases() -> Vec<(String, BTreeSet<String>)> {
    let envs = set(&ENVS);
    let starting = |s: &BTreeSet<String>, p: &str| -> BTreeSet<String> {
        s.iter().filter(|w| w.starts_with(p)).cloned().collect()
    };
    let mut cases = vec![
        // The environment after unlock.sh, however the script is typed.
        ("unlock.sh ".to_string(), envs.clone()),
        ("unlock.sh st".into(), set(&["staging"])),
        ("./deploy/scripts/unlock.sh st".into(), set(&["staging"])),
        (
            "./deploy/scripts/unlock.sh pro".into(),
            set(&["production"]),
        ),
        // Then its flags, and never an environment twice.
        ("unlock.sh staging -".into(), man_flags("unlock.sh.1")),
        (
            "./deploy/scripts/unlock.sh production --".into(),
            starting(&man_flags("unlock.sh.1"), "--"),
        ),
        ("unlock.sh staging st".into(), BTreeSet::new()),
        // deploy-lock: the subcommands, then the environment, then the flags.
        ("deploy-lock ".into(), subcommands()),
        ("deploy-lock sta".into(), set(&["staging", "status"])),
        ("deploy-lock -".into(), man_flags("deploy-lock.1")),
        (
            "deploy-lock --lock-dir /tmp st".into(),
            set(&["staging", "status"]),
        ),
        ("deploy-lock run --wait ".into(), envs.clone()),
        ("deploy-lock status staging st".into(), BTreeSet::new()),
        // Issue 11: the shorthand `deploy-lock ENV` offers run's flags.
        (
            "deploy-lock staging -".into(),
            man_flags("deploy-lock-run.1"),
        ),
        (
            "deploy-lock production --dry-run --".into(),
            starting(&man_flags("deploy-lock-run.1"), "--"),
        ),
    ];
    for sub in ["status", "wait", "unlock", "run"] {
        cases.push((format!("deploy-lock {sub} "), envs.clone()));
        cases.push((format!("deploy-lock {sub} pro"), set(&["production"])));
        cases.push((
            format!("deploy-lock {sub} staging -"),
            man_flags(&format!("deploy-lock-{sub}.1")),
        ));
    }
    cases
}

/// A temp checkout, plus a bin folder on PATH holding `unlock.sh` and
/// `deploy-lock` (fish loads completions only for commands it can find).
pub struct ShellWorld {
    pub w: World,
    pub path: OsString,
}

impl ShellWorld {
    pub fn new() -> ShellWorld {
        let w = World::new();
        let bin = w.tmp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        for name in ["unlock.sh", "deploy-lock"] {
            std::os::unix::fs::symlink(BIN, bin.join(name)).unwrap();
        }
        let mut dirs = vec![bin];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        let path = std::env::join_paths(dirs).unwrap();
        ShellWorld { w, path }
    }

    pub fn file(&self, name: &str, body: &str) -> PathBuf {
        let p = self.w.tmp.path().join(name);
        std::fs::write(&p, body).unwrap();
        p
    }
}

/// bash, the way it completes: look the compspec up by the command word as
/// typed and then by its last path component, split the line into
/// COMP_WORDS, call the function with (command, current word, previous
/// word), print COMPREPLY. `compopt` only works inside real completion, so
/// it is recorded instead.
const BASH_DRIVER: &str = r#"
for f in "${COMPLETION_FILES[@]}"; do source "$f"; done
line=$1
COMP_LINE=$line
COMP_POINT=${#line}
COMP_TYPE=9
COMP_KEY=9
read -ra COMP_WORDS <<<"$line"
[[ $line == *' ' ]] && COMP_WORDS+=('')
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
spec=$(complete -p -- "${COMP_WORDS[0]}" 2>/dev/null || complete -p -- "${COMP_WORDS[0]##*/}")
spec=${spec#*-F }
func=${spec%% *}
compopt() { printf 'compopt %s\n' "$*" >&2; }
"$func" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
printf '%s\n' "${COMPREPLY[@]}"
"#;

pub fn bash_function_candidates(
    sw: &ShellWorld,
    files: &[PathBuf],
    line: &str,
) -> BTreeSet<String> {
    let driver = sw.file("bash-driver.sh", BASH_DRIVER);
    let sources: Vec<String> = files
        .iter()
        .map(|f| format!("{:?}", f.display().to_string()))
        .collect();
    let prelude = sw.file(
        "bash-prelude.sh",
        &format!(
            "COMPLETION_FILES=({})\nsource {:?}\n",
            sources.join(" "),
            driver.display().to_string()
        ),
    );
    let mut c = sw.w.cmd("bash").env("PATH", &sw.path);
    c.cmd
        .args(["--norc", "--noprofile"])
        .arg(&prelude)
        .arg(line);
    let out = c.run();
    assert_eq!(
        out.code,
        Some(0),
        "bash driver failed on {line:?}: {}",
        out.stderr
    );
    out.stdout
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// An interactive shell on a pty whose rc file binds Ctrl-G to "append the
/// edited line to a file and clear it": type, press keys, read the line.
pub struct LineShell {
    pty: Pty,
    out: PathBuf,
    lines: usize,
}

impl LineShell {
    /// zsh with compinit over `fpath_line`, Ctrl-T inserting all matches
    /// (zsh's `_all_matches` completer).
    pub fn zsh(sw: &ShellWorld, fpath_line: &str) -> LineShell {
        let zdot = sw.w.tmp.path().join("zdotdir");
        std::fs::create_dir_all(&zdot).unwrap();
        let out = sw.w.tmp.path().join("zsh-lines");
        std::fs::write(
            zdot.join(".zshrc"),
            format!(
                r#"PS1='zsh> '
bindkey -e
{fpath_line}
autoload -Uz compinit && compinit -u -D
zle -C all-matches complete-word _generic
zstyle ':completion:all-matches::::' completer _all_matches _complete
zstyle ':completion:all-matches:*' insert true
bindkey '^T' all-matches
dump-line() {{ print -r -- "$BUFFER" >> {out:?}; BUFFER=; }}
zle -N dump-line
bindkey '^G' dump-line
"#,
                out = out.display().to_string()
            ),
        )
        .unwrap();
        let mut c =
            sw.w.cmd("zsh")
                .env("ZDOTDIR", &zdot)
                .env("PATH", &sw.path)
                .env("TERM", "xterm")
                .env_remove("EDITOR")
                .env_remove("VISUAL");
        c.cmd.args(["-d", "-i"]);
        let pty = c.spawn_pty();
        LineShell::ready(pty, out, "zsh> ")
    }

    /// bash with `rc` (which sources completions) and Ctrl-G bound.
    pub fn bash(sw: &ShellWorld, rc: &str, env: &[(&str, &OsString)]) -> LineShell {
        let out = sw.w.tmp.path().join("bash-lines");
        let rcfile = sw.file(
            "bashrc",
            &format!(
                "PS1='bash> '\nset -o emacs\n{rc}\ndump_line() {{ printf '%s\\n' \"$READLINE_LINE\" >> {out:?}; READLINE_LINE=; READLINE_POINT=0; }}\nbind -x '\"\\C-g\": dump_line'\n",
                out = out.display().to_string()
            ),
        );
        let mut cmd =
            sw.w.cmd("bash")
                .env("PATH", &sw.path)
                .env("TERM", "xterm")
                .env("INPUTRC", "/dev/null")
                .env_remove("XDG_DATA_HOME")
                .env_remove("XDG_DATA_DIRS")
                .env_remove("BASH_COMPLETION_USER_DIR");
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        cmd.cmd
            .args(["--noprofile", "--rcfile"])
            .arg(&rcfile)
            .arg("-i");
        let pty = cmd.spawn_pty();
        LineShell::ready(pty, out, "bash> ")
    }

    fn ready(mut pty: Pty, out: PathBuf, prompt: &str) -> LineShell {
        pty.expect(prompt, Duration::from_secs(20));
        LineShell { pty, out, lines: 0 }
    }

    /// Types `text`, then `keys`, then Ctrl-G; returns the line as it was.
    pub fn line_after(&mut self, text: &str, keys: &str) -> String {
        self.pty.send(text.as_bytes());
        self.pty.send(keys.as_bytes());
        self.pty.send(b"\x07");
        self.lines += 1;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let got = std::fs::read_to_string(&self.out).unwrap_or_default();
            if got.lines().count() >= self.lines {
                return got.lines().nth(self.lines - 1).unwrap().to_string();
            }
            if Instant::now() > deadline {
                // Panics with what the terminal showed.
                self.pty
                    .expect("\u{0}no such text", Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The line after TAB.
    pub fn tab(&mut self, text: &str) -> String {
        self.line_after(text, "\t")
    }

    /// zsh only: every candidate for the word being typed, from
    /// `_all_matches` (which replaces the word with all of them).
    pub fn all_matches(&mut self, text: &str) -> BTreeSet<String> {
        let line = self.line_after(text, "\x14");
        if line.trim_end() == text.trim_end() {
            return BTreeSet::new();
        }
        let before = text.split_whitespace().count() - usize::from(!text.ends_with(' '));
        line.split_whitespace()
            .skip(before)
            .map(|w| w.trim_end_matches('=').to_string())
            .collect()
    }
}

impl Drop for LineShell {
    fn drop(&mut self) {
        let _ = self.pty.child.kill();
        let _ = self.pty.child.wait();
    }
}

/// fish's candidates (`complete -C`, first column) for each line.
pub fn fish_candidates(
    sw: &ShellWorld,
    setup: &str,
    lines: &[String],
    env: &[(&str, &OsString)],
) -> Vec<BTreeSet<String>> {
    let script =
        format!("{setup}\nfor line in $argv\n    echo '@@'\n    complete -C \"$line\"\nend\n");
    let mut cmd =
        sw.w.cmd("fish")
            .env("PATH", &sw.path)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_DATA_DIRS");
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    cmd.cmd.arg("-c").arg(&script).args(lines);
    let out = cmd.run();
    assert_eq!(out.code, Some(0), "fish failed: {}", out.stderr);
    let mut sets: Vec<BTreeSet<String>> = Vec::new();
    for l in out.stdout.lines() {
        if l == "@@" {
            sets.push(BTreeSet::new());
        } else {
            let word = l.split('\t').next().unwrap().to_string();
            sets.last_mut().expect("output starts with @@").insert(word);
        }
    }
    assert_eq!(sets.len(), lines.len(), "fish output:\n{}", out.stdout);
    sets
}

/// Compares every case, reporting all differences at once.
#[track_caller]
fn check_all(shell: &str, cases: &[(String, BTreeSet<String>)], got: &[BTreeSet<String>]) {
    let mut bad = String::new();
    for ((line, want), got) in cases.iter().zip(got) {
        if want != got {
            bad.push_str(&format!(
                "  {line:?}\n    want {want:?}\n    got  {got:?}\n"
            ));
        }
    }
    assert!(bad.is_empty(), "{shell} completes differently:\n{bad}");
}

fn repo_completion(rel: &str) -> PathBuf {
    repo().join("completions").join(rel)
}

#[test]
fn bash_completion_functions_offer_what_matters() {
    if !available("bash", "bash_completion_functions_offer_what_matters") {
        return;
    }
    let sw = ShellWorld::new();
    let files = [
        repo_completion("bash/unlock.sh"),
        repo_completion("bash/deploy-lock"),
    ];
    let cases = cases();
    let got: Vec<_> = cases
        .iter()
        .map(|(line, _)| bash_function_candidates(&sw, &files, line))
        .collect();
    check_all("bash", &cases, &got);
    // bash lists flags for an empty word once the environment is there
    // (zsh does the same; fish shows flags only for a word starting with -).
    assert_eq!(
        bash_function_candidates(&sw, &files, "unlock.sh staging "),
        man_flags("unlock.sh.1")
    );
    // After `run ENV --` comes a command.
    assert!(
        bash_function_candidates(&sw, &files, "deploy-lock run staging -- ech").contains("echo")
    );
}

/// The lines users type, completed by pressing TAB once.
pub const TAB_LINES: [(&str, &str); 8] = [
    (
        "./deploy/scripts/unlock.sh st",
        "./deploy/scripts/unlock.sh staging ",
    ),
    ("unlock.sh pro", "unlock.sh production "),
    ("unlock.sh staging --f", "unlock.sh staging --force "),
    (
        "./deploy/scripts/unlock.sh staging --w",
        "./deploy/scripts/unlock.sh staging --wait ",
    ),
    ("deploy-lock stat", "deploy-lock status "),
    ("deploy-lock status pro", "deploy-lock status production "),
    (
        "deploy-lock run --wait d",
        "deploy-lock run --wait development ",
    ),
    (
        "deploy-lock unlock staging --y",
        "deploy-lock unlock staging --yes ",
    ),
];

#[track_caller]
pub fn check_tab_lines(shell: &str, sh: &mut LineShell, lines: &[(&str, &str)]) {
    let mut bad = String::new();
    for (typed, want) in lines {
        let got = sh.tab(typed);
        if got != *want {
            bad.push_str(&format!(
                "  {typed:?}<TAB>\n    want {want:?}\n    got  {got:?}\n"
            ));
        }
    }
    assert!(bad.is_empty(), "{shell} TAB completes differently:\n{bad}");
}

#[test]
fn bash_tab_at_an_interactive_bash() {
    if !available("bash", "bash_tab_at_an_interactive_bash") {
        return;
    }
    let sw = ShellWorld::new();
    let rc = format!(
        "source {:?}\nsource {:?}",
        repo_completion("bash/unlock.sh").display().to_string(),
        repo_completion("bash/deploy-lock").display().to_string()
    );
    let mut sh = LineShell::bash(&sw, &rc, &[]);
    check_tab_lines("bash", &mut sh, &TAB_LINES);
}

#[test]
fn zsh_tab_at_an_interactive_zsh() {
    if !available("zsh", "zsh_tab_at_an_interactive_zsh") {
        return;
    }
    let sw = ShellWorld::new();
    let fpath = format!(
        "fpath=({:?} $fpath)",
        repo_completion("zsh").display().to_string()
    );
    let mut sh = LineShell::zsh(&sw, &fpath);
    check_tab_lines("zsh", &mut sh, &TAB_LINES);
    let cases = cases();
    let got: Vec<_> = cases.iter().map(|(line, _)| sh.all_matches(line)).collect();
    check_all("zsh", &cases, &got);
}

#[test]
fn fish_complete_c() {
    if !available("fish", "fish_complete_c") {
        return;
    }
    let sw = ShellWorld::new();
    let setup = format!(
        "set -p fish_complete_path {:?}",
        repo_completion("fish").display().to_string()
    );
    let cases = cases();
    let lines: Vec<String> = cases.iter().map(|(l, _)| l.clone()).collect();
    let got = fish_candidates(&sw, &setup, &lines, &[]);
    check_all("fish", &cases, &got);
    // The TAB lines: each has exactly the one completion.
    let typed: Vec<String> = TAB_LINES.iter().map(|(t, _)| t.to_string()).collect();
    let got = fish_candidates(&sw, &setup, &typed, &[]);
    for ((typed, want), got) in TAB_LINES.iter().zip(got) {
        let last = want.trim_end().rsplit(' ').next().unwrap();
        assert_eq!(got, set(&[last]), "fish on {typed:?}");
    }
}

/// `generate completions SHELL --for PERSONA` prints the checked-in file.
#[test]
fn generate_completions_prints_the_checked_in_files() {
    for (shell, persona, rel) in [
        ("bash", "unlock.sh", "bash/unlock.sh"),
        ("bash", "deploy-lock", "bash/deploy-lock"),
        ("zsh", "unlock.sh", "zsh/_unlock.sh"),
        ("zsh", "deploy-lock", "zsh/_deploy-lock"),
        ("fish", "unlock.sh", "fish/unlock.sh.fish"),
        ("fish", "deploy-lock", "fish/deploy-lock.fish"),
    ] {
        let out = Command::new(BIN)
            .args(["generate", "completions", shell, "--for", persona])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert!(
            out.stdout == std::fs::read(repo_completion(rel)).unwrap(),
            "completions/{rel} differs from `generate completions {shell} --for {persona}`"
        );
    }
}
