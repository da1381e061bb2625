//! Issue 19 with real users: `dlk-attacker` and `dlk-victim`, created with
//! useradd (as root; CI runs as root), each case run as them through
//! setpriv, asserting what happened to the victim, not only exit codes.
//!
//! fs.protected_symlinks is left as the machine has it: it is machine-wide
//! and other tests run in parallel, and no case here depends on it. The
//! symlinks are planted in a world-writable folder without the sticky bit
//! (a checkout's 0777 deploy/config), where the sysctl never applies, so
//! each case is the worst case whatever its value.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::*;

const ATTACKER: &str = "dlk-attacker";
const VICTIM: &str = "dlk-victim";
const SETPRIV: &str = "/usr/bin/setpriv";

#[derive(Clone, Debug)]
struct User {
    name: &'static str,
    uid: u32,
    gid: u32,
}

/// Both users, created once per test process (and idempotently across
/// processes: an flock around useradd, and an existing user is reused).
/// None (after a visible SKIP) when that cannot be done here.
fn users() -> Option<(User, User)> {
    static MADE: OnceLock<Result<(User, User), String>> = OnceLock::new();
    let made = MADE.get_or_init(|| {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root to create users (useradd) and run as them".into());
        }
        if !Path::new(SETPRIV).exists() || which::which("useradd").is_err() {
            return Err("needs setpriv and useradd (util-linux, passwd)".into());
        }
        let lock = fs::File::create("/run/dlk-it-users.lock").map_err(|e| e.to_string())?;
        lock.lock().map_err(|e| e.to_string())?;
        let one = |name: &'static str| -> Result<User, String> {
            if nix::unistd::User::from_name(name).ok().flatten().is_none() {
                let out = std::process::Command::new("useradd")
                    .args(["--no-create-home", "--user-group", "--shell"])
                    .arg("/usr/sbin/nologin")
                    .arg(name)
                    .output()
                    .map_err(|e| e.to_string())?;
                // 9: it exists (made meanwhile by another process).
                if !out.status.success() && out.status.code() != Some(9) {
                    return Err(format!(
                        "useradd {name}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
            }
            let u = nix::unistd::User::from_name(name)
                .ok()
                .flatten()
                .ok_or(format!("{name} not found after useradd"))?;
            Ok(User {
                name,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            })
        };
        Ok((one(ATTACKER)?, one(VICTIM)?))
    });
    match made {
        Ok(u) => Some(u.clone()),
        Err(why) => {
            skip!("{why}");
            None
        }
    }
}

/// A world both users can reach: the temp folder 0755, a lock folder like
/// /tmp (root's, 1777), the checkout and a HOME per user owned by the victim
/// (the attacker gets their own HOME).
struct Shared {
    w: World,
    attacker: User,
    victim: User,
}

impl Shared {
    fn new() -> Option<Shared> {
        let (attacker, victim) = users()?;
        let w = World::new();
        fs::set_permissions(w.tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&w.locks, fs::Permissions::from_mode(0o1777)).unwrap();
        chown_tree(&w.root, &victim);
        chown_tree(&w.home, &victim);
        let s = Shared {
            w,
            attacker,
            victim,
        };
        let ah = s.home_of(&s.attacker);
        fs::create_dir_all(&ah).unwrap();
        chown_tree(&ah, &s.attacker);
        Some(s)
    }

    fn home_of(&self, u: &User) -> PathBuf {
        if u.name == VICTIM {
            self.w.home.clone()
        } else {
            self.w.tmp.path().join("home-attacker")
        }
    }

    /// `deploy-lock ARGS` as `u` (uid, gid and u's groups), with u's HOME
    /// and USER, from the checkout unless `.dir()` says otherwise.
    fn as_user(&self, u: &User, args: &[&str]) -> Cmd {
        let mut c = self
            .w
            .cmd(SETPRIV)
            .env("HOME", self.home_of(u))
            .env("USER", u.name);
        c.cmd
            .arg(format!("--reuid={}", u.name))
            .arg(format!("--regid={}", u.name))
            .arg("--init-groups")
            .arg("--")
            .arg(BIN)
            .args(args);
        c
    }

    /// Any program as `u`.
    fn program_as(&self, u: &User, program: &[&str]) -> Cmd {
        let mut c = self.w.cmd(SETPRIV);
        c.cmd
            .arg(format!("--reuid={}", u.name))
            .arg(format!("--regid={}", u.name))
            .arg("--init-groups")
            .arg("--")
            .args(program);
        c
    }
}

fn chown_tree(p: &Path, u: &User) {
    std::os::unix::fs::lchown(p, Some(u.uid), Some(u.gid)).unwrap();
    if fs::symlink_metadata(p).unwrap().is_dir() {
        for e in fs::read_dir(p).unwrap() {
            chown_tree(&e.unwrap().path(), u);
        }
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// No character a terminal acts on: what the sanitiser promises.
#[track_caller]
fn printable(text: &str) {
    let bad: Vec<char> = text
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || ('\u{202a}'..='\u{202e}').contains(c))
        .collect();
    assert!(bad.is_empty(), "{bad:?} reached the output:\n{text}");
}

/// The attacker's live process (a `sleep`), killed when the test ends.
fn live_process(s: &Shared, u: &User) -> KillOnDrop {
    s.program_as(u, &["sleep", "600"]).spawn_guarded()
}

/// An owner.json naming `pid` on this host, written now.
fn owner_json(locked_by: &str, pid: i32) -> String {
    serde_json::json!({
        "environment": "staging",
        "lock_id": "lock_planted",
        "deployment_id": "dep_planted",
        "locked_by": locked_by,
        "locked_at": iso(now()),
        "hostname": hostname(),
        "pid": pid,
        "holder_pid": pid,
    })
    .to_string()
}

/// Case 1: a checkout planted by another user (git's CVE-2022-24765
/// pattern) is never used: not found above the victim's folder in a
/// world-writable folder, refused by name when the victim is in it or names
/// it, and nothing in it is read (its deploy-lock.env) or run (its deploy.sh)
/// until the victim lists it in DEPLOY_LOCK_SAFE_ROOTS.
#[test]
fn a_checkout_planted_by_another_user_is_never_used() {
    let Some(s) = Shared::new() else { return };
    let t = s.w.tmp.path();
    let markers = t.join("markers");
    fs::create_dir(&markers).unwrap();
    fs::set_permissions(&markers, fs::Permissions::from_mode(0o1777)).unwrap();
    let marker = markers.join("planted-ran");
    let plant = |root: &Path| {
        fs::create_dir_all(root.join("deploy/scripts")).unwrap();
        fs::create_dir_all(root.join("deploy/config")).unwrap();
        let sh = root.join("deploy/scripts/deploy.sh");
        fs::write(&sh, format!("#!/bin/sh\nid -un > {}\n", marker.display())).unwrap();
        fs::set_permissions(&sh, fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::symlink(BIN, root.join("deploy/scripts/unlock.sh")).unwrap();
        // Read, it would choose where the password goes (and its garbage
        // line would be the error).
        fs::write(
            root.join("deploy/config/deploy-lock.env"),
            "DEPLOY_LOCK_BACKEND=etcd\nDEPLOY_LOCK_ETCD_ENDPOINTS=http://192.0.2.1:2379\nDEPLOY_LOCK_ETCD_USER=deploy\n",
        )
        .unwrap();
        chown_tree(root, &s.attacker);
    };
    let cwd_tmp = t.to_path_buf();

    // A shared folder like /tmp, with a planted deploy/ in it; the victim
    // works in their own folder below it.
    let shared = t.join("shared");
    fs::create_dir(&shared).unwrap();
    plant(&shared);
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
    std::os::unix::fs::chown(&shared, Some(0), Some(0)).unwrap();
    let mine = shared.join("victim-work");
    fs::create_dir(&mine).unwrap();
    chown_tree(&mine, &s.victim);
    let no_checkout = format!(
        "ERROR: no checkout found: neither {m} nor any folder above it has deploy/scripts or deploy/config (the deploy/ folder in {sh} was ignored: that folder is world-writable, so anyone could have put it there; list it in DEPLOY_LOCK_SAFE_ROOTS to trust it); run from inside the checkout, or pass --project-root DIR (or set DEPLOY_LOCK_PROJECT_ROOT)\n",
        m = mine.display(),
        sh = shared.display()
    );
    s.as_user(&s.victim, &["staging"])
        .dir(&mine)
        .run()
        .code(2)
        .stdout("")
        .stderr(&no_checkout);
    assert!(!marker.exists(), "the planted deploy.sh ran");

    // The attacker's own checkout: refused by name, whether the victim is
    // in it or names it, for run and status alike.
    let theirs = t.join("attackers-app");
    fs::create_dir(&theirs).unwrap();
    plant(&theirs);
    let refused = format!(
        "ERROR: refusing the checkout {r}: {r} is owned by {a} (uid {u}), not by you ({v}) or root, and its deploy.sh and settings would act as you; if you trust it, add it to DEPLOY_LOCK_SAFE_ROOTS (e.g. DEPLOY_LOCK_SAFE_ROOTS={r})\n",
        r = theirs.display(),
        a = ATTACKER,
        u = s.attacker.uid,
        v = VICTIM,
    );
    let root_arg = theirs.to_str().unwrap();
    for args in [
        vec!["staging"],
        vec!["status", "staging"],
        vec!["--project-root", root_arg, "staging"],
    ] {
        s.as_user(&s.victim, &args)
            .dir(&theirs)
            .env("DEPLOY_LOCK_ETCD_PASSWORD", "victims-secret")
            .run()
            .code(2)
            .stdout("")
            .stderr(&refused);
    }
    s.as_user(&s.victim, &["staging", "--project-root", root_arg])
        .dir(&cwd_tmp)
        .run()
        .code(2)
        .stdout("")
        .stderr(&refused);
    // The legacy persona, invoked from the attacker's deploy/scripts: the
    // same refusal, the legacy's exit 1.
    let mut c = s.w.cmd(SETPRIV).env("HOME", s.home_of(&s.victim));
    c.cmd
        .arg(format!("--reuid={VICTIM}"))
        .arg(format!("--regid={VICTIM}"))
        .args(["--init-groups", "--"])
        .arg(theirs.join("deploy/scripts/unlock.sh"))
        .arg("staging");
    c.dir(&mine).run().code(1).stdout("").stderr(&refused);
    assert!(!marker.exists(), "the planted deploy.sh ran");

    // Case 2 on the way: trusted by the victim, the checkout's plain-http
    // endpoint never gets the password: refused up front, naming https.
    s.as_user(&s.victim, &["staging"])
        .dir(&theirs)
        .env("DEPLOY_LOCK_SAFE_ROOTS", &theirs)
        .env("DEPLOY_LOCK_ETCD_PASSWORD", "victims-secret")
        .run()
        .code(2)
        .stdout("")
        .stderr(&format!(
            "ERROR: DEPLOY_LOCK_ETCD_ENDPOINTS=\"http://192.0.2.1:2379\" ({}:2): http://192.0.2.1:2379 is plain http to another host and DEPLOY_LOCK_ETCD_USER/DEPLOY_LOCK_ETCD_PASSWORD are set: the password would cross the network unencrypted; use https://, e.g. DEPLOY_LOCK_ETCD_ENDPOINTS=https://etcd1:2379 (plain http is allowed only to a loopback address)\n",
            theirs.join("deploy/config/deploy-lock.env").display()
        ));
    assert!(!marker.exists());

    // Listed (and without the etcd file), it is the victim's choice: it runs
    // (its config folder shared with the victim, as a team's would be).
    fs::remove_file(theirs.join("deploy/config/deploy-lock.env")).unwrap();
    fs::set_permissions(
        theirs.join("deploy/config"),
        fs::Permissions::from_mode(0o777),
    )
    .unwrap();
    let out = s
        .as_user(&s.victim, &["staging"])
        .dir(&theirs)
        .env(
            "DEPLOY_LOCK_SAFE_ROOTS",
            format!("/nonexistent:{}", theirs.display()),
        )
        .run();
    out.code(0).any_stderr();
    assert_eq!(fs::read_to_string(&marker).unwrap(), format!("{VICTIM}\n"));
}

/// Case 3 and 4: sidecars made by a user with umask 077 still get 0644 (set
/// on the descriptor), so the next user is not locked out; a sidecar another
/// user left unreadable is one line naming its owner, mode and fix.
#[test]
fn sidecars_keep_their_mode_whatever_the_umask() {
    let Some(s) = Shared::new() else { return };
    let mut c = s.w.cmd(SETPRIV);
    c.cmd
        .arg(format!("--reuid={ATTACKER}"))
        .arg(format!("--regid={ATTACKER}"))
        .arg("--init-groups")
        .args(["--", "/bin/sh", "-c", "umask 077; exec \"$0\" \"$@\"", BIN])
        .args(["run", "staging", "--project-root"])
        .arg(s.w.tmp.path().join("attackers"))
        .args(["--", "true"]);
    let theirs = s.w.tmp.path().join("attackers");
    fs::create_dir_all(theirs.join("deploy/config")).unwrap();
    chown_tree(&theirs, &s.attacker);
    c.env("HOME", s.home_of(&s.attacker))
        .run()
        .code(0)
        .stderr("");
    let run = s.w.locks.join(".togather-deploy-staging.run");
    let guard = s.w.locks.join("togather-deploy-staging.guard");
    for p in [&run, &guard] {
        assert_eq!(mode(p), 0o644, "{}", p.display());
        assert_eq!(fs::metadata(p).unwrap().uid(), s.attacker.uid);
    }
    // The victim deploys after them.
    s.as_user(&s.victim, &["run", "staging", "--", "true"])
        .run()
        .code(0)
        .stderr("");
    assert!(!s.w.lock_path("staging").exists());

    // A guard the attacker made unreadable: a clear line, nothing taken.
    fs::set_permissions(&guard, fs::Permissions::from_mode(0o600)).unwrap();
    s.as_user(&s.victim, &["run", "staging", "--", "true"])
        .run()
        .code(74)
        .stdout("")
        .stderr(&format!(
            "ERROR: {g} cannot be opened (Permission denied (os error 13)): it is a regular file owned by {ATTACKER} with mode 0600; ask {ATTACKER} (or root) to remove it while no deploy runs (sudo rm -rf {g}): deploy-lock re-creates it as a regular file with mode 0644\n",
            g = guard.display()
        ));
    assert!(!s.w.lock_path("staging").exists());
}

/// Case 5 and 8: control characters and a 64 KiB value in a record another
/// user planted reach no view raw: status, list, run's refusal, wait, and
/// the JSON (which keeps the value, escaped).
#[test]
fn planted_control_characters_reach_no_view_raw() {
    let Some(s) = Shared::new() else { return };
    let sleeper = live_process(&s, &s.attacker);
    let forged =
        "evil\x1b[2J\x07\u{9b}31m\nVerdict: free: no lock directory; a deploy may start\u{202e}";
    // The forged value in the attacker's owner.json; the 64 KiB one (more
    // than owner.json may hold) in a legacy state record, as a hand edit or
    // a shared, writable state file would have it.
    for (locked_by, in_state) in [(forged.to_string(), false), ("x".repeat(65_536), true)] {
        let lock = s.w.lock_path("staging");
        fs::create_dir(&lock).unwrap();
        if in_state {
            let record = serde_json::json!({
                "environment": "staging",
                "lock": {
                    "locked": true,
                    "locked_by": locked_by,
                    "locked_at": iso(now()),
                    "pid": sleeper.pid(),
                    "hostname": hostname(),
                }
            });
            s.w.write_state(&record.to_string());
        } else {
            fs::write(
                lock.join("owner.json"),
                owner_json(&locked_by, sleeper.pid()),
            )
            .unwrap();
        }
        fs::write(lock.join("locked_at"), format!("{}\n", now())).unwrap();
        chown_tree(&lock, &s.attacker);

        let status = s.as_user(&s.victim, &["status", "staging"]).run();
        status.code(0).stderr("");
        let list = s.as_user(&s.victim, &["list"]).run();
        list.code(0).stderr("");
        let refusal = s
            .as_user(&s.victim, &["run", "staging", "--", "true"])
            .run();
        refusal.code(75).stdout("").any_stderr();
        let wait = s
            .as_user(&s.victim, &["wait", "staging"])
            .env("DEPLOY_LOCK_WAIT_TIMEOUT", "0.2")
            .run();
        wait.code(124).any_stderr();
        for out in [&status, &list, &refusal, &wait] {
            printable(&out.stdout);
            printable(&out.stderr);
            assert!(
                !out.stdout
                    .lines()
                    .chain(out.stderr.lines())
                    .any(|l| l.starts_with("Verdict: free")),
                "a forged line:\n{}{}",
                out.stdout,
                out.stderr
            );
            for l in out.stdout.lines().chain(out.stderr.lines()) {
                assert!(l.chars().count() < 2048, "a line of {} characters", l.len());
            }
        }
        assert!(
            status
                .stdout
                .contains("is running; it is never taken over while alive"),
            "{}",
            status.stdout
        );
        assert!(
            refusal
                .stderr
                .starts_with("ERROR: the staging lock is held by ")
        );
        let json = s.as_user(&s.victim, &["status", "staging", "--json"]).run();
        json.code(0).stderr("");
        printable(&json.stdout);
        let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
        // The value as it was, within the JSON bound; beyond it, cut with `…`.
        let want: String = if locked_by.chars().count() <= 4096 {
            locked_by.clone()
        } else {
            locked_by.chars().take(4096).chain(['…']).collect()
        };
        assert_eq!(v["holder"]["locked_by"], want.as_str());
        for l in json.stdout.lines() {
            assert!(l.len() < 4200, "a JSON line of {} bytes", l.len());
        }
        fs::remove_dir_all(&lock).unwrap();
        let _ = fs::remove_file(s.w.state_path());
    }
}

/// Case 6: an owner.json counts only when the lock directory's owner wrote
/// it, and `kill` is never suggested for a process of another user than the
/// directory's owner: not for the victim's own process named by the
/// attacker's lock, nor through an owner.json the attacker dropped into the
/// victim's world-writable lock directory.
#[test]
fn a_forged_holder_never_gets_the_victims_process_killed() {
    let Some(s) = Shared::new() else { return };
    let victims = live_process(&s, &s.victim);
    let lock = s.w.lock_path("staging");

    // The attacker's lock, naming the victim's live process.
    fs::create_dir(&lock).unwrap();
    fs::write(
        lock.join("owner.json"),
        owner_json("victim@host", victims.pid()),
    )
    .unwrap();
    chown_tree(&lock, &s.attacker);
    let out = s
        .as_user(&s.victim, &["run", "staging", "--", "true"])
        .run();
    out.code(75).stdout("").any_stderr();
    assert!(
        out.stderr.contains(&format!(
            "(pid {}); a running holder's lock is never taken over.",
            victims.pid()
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("kill"), "{}", out.stderr);
    fs::remove_dir_all(&lock).unwrap();

    // The victim's lock directory (left 0777 by a umask 000), with an
    // owner.json the attacker wrote into it: not believed, both named.
    fs::create_dir(&lock).unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o777)).unwrap();
    chown_tree(&lock, &s.victim);
    s.program_as(
        &s.attacker,
        &[
            "/bin/sh",
            "-c",
            &format!(
                "printf '%s' '{}' > {}/owner.json",
                owner_json("victim@host", victims.pid()),
                lock.display()
            ),
        ],
    )
    .run()
    .code(0)
    .stderr("");
    assert_eq!(
        fs::metadata(lock.join("owner.json")).unwrap().uid(),
        s.attacker.uid
    );
    let out = s
        .as_user(&s.victim, &["run", "staging", "--", "true"])
        .run();
    out.code(75).stdout("").any_stderr();
    assert!(
        out.stderr.starts_with(
            "ERROR: the staging lock's holder is unknown (no record says who holds it"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.ends_with(&format!(
            "  note: {} belongs to {VICTIM}, but its owner.json was written by {ATTACKER}, so it is not believed\n",
            lock.display()
        )),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("kill"), "{}", out.stderr);
    assert!(lock.join("owner.json").exists());
    let status = s.as_user(&s.victim, &["status", "staging"]).run();
    status.code(0).stderr("");
    assert!(
        status.stdout.ends_with(&format!(
            "Verdict: unknown: its holder is unknown (no record says who holds it); taken over automatically once older than 30 minutes, never with --force; `deploy-lock unlock staging` removes it (the directory belongs to {VICTIM}; its owner.json, written by {ATTACKER}, is not believed)\n"
        )),
        "{}",
        status.stdout
    );
}

/// Case 7: --reset-state never follows a state file swapped for a symlink
/// (into the victim's private file), and never copies a state file someone
/// else owns: nothing is copied, the private file is untouched.
#[test]
fn reset_state_copies_no_file_through_a_symlink() {
    let Some(s) = Shared::new() else { return };
    let config = s.w.root.join("deploy/config");
    fs::set_permissions(&config, fs::Permissions::from_mode(0o777)).unwrap();
    let secret = s.w.home.join("secret");
    fs::write(&secret, "TOPSECRET not json\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    chown_tree(&secret, &s.victim);
    let state = s.w.state_path();
    s.program_as(
        &s.attacker,
        &[
            "ln",
            "-s",
            secret.to_str().unwrap(),
            state.to_str().unwrap(),
        ],
    )
    .run()
    .code(0)
    .stderr("");
    let out = s
        .as_user(&s.victim, &["unlock", "staging", "--reset-state", "--yes"])
        .run();
    out.code(74).any_stderr();
    assert!(
        out.stderr.ends_with(&format!(
            "{}: not reset: it is a symbolic link, which --reset-state never follows; check where it points (ls -la) and put the real file there\n",
            state.display()
        )),
        "{}",
        out.stderr
    );
    let copies: Vec<_> = fs::read_dir(&config)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("corrupt"))
        .collect();
    assert!(copies.is_empty(), "copied: {copies:?}");
    assert_eq!(fs::read_to_string(&secret).unwrap(), "TOPSECRET not json\n");
    assert_eq!(mode(&secret), 0o600);

    // A broken state file the attacker owns: refused by owner.
    fs::remove_file(&state).unwrap();
    fs::write(&state, "{ not json").unwrap();
    chown_tree(&state, &s.attacker);
    let out = s
        .as_user(&s.victim, &["unlock", "staging", "--reset-state", "--yes"])
        .run();
    out.code(74).any_stderr();
    assert!(
        out.stderr.ends_with(&format!(
            "{}: not reset: it is owned by {ATTACKER} (uid {}), not by you or root; ask its owner (or root) to run --reset-state\n",
            state.display(),
            s.attacker.uid
        )),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read_to_string(&state).unwrap(), "{ not json");
}

/// Case 9: a run file the attacker holds an flock on is reported as theirs,
/// not as "a deploy-lock run", and status --quiet agrees with run.
#[test]
fn a_squatted_run_file_is_named_and_quiet_agrees_with_run() {
    let Some(s) = Shared::new() else { return };
    let run_file = s.w.locks.join(".togather-deploy-staging.run");
    let _squatter = s
        .program_as(
            &s.attacker,
            &["flock", run_file.to_str().unwrap(), "sleep", "600"],
        )
        .spawn_guarded();
    wait_until(Duration::from_secs(10), "the attacker's flock", || {
        fs::metadata(&run_file).is_ok_and(|m| {
            let want = format!(":{} ", m.ino());
            fs::read_to_string("/proc/locks")
                .unwrap()
                .lines()
                .any(|l| l.contains("FLOCK") && l.replace(" 0 EOF", " ").contains(&want))
        })
    });
    s.as_user(&s.victim, &["status", "staging", "--quiet"])
        .run()
        .code(75)
        .stdout("")
        .stderr("");
    let out = s
        .as_user(&s.victim, &["run", "staging", "--", "true"])
        .run();
    out.code(75).stdout("").any_stderr();
    let first = out.stderr.lines().next().unwrap_or_default().to_string();
    assert!(
        first.starts_with(&format!(
            "ERROR: the staging lock cannot be taken: {} is locked by pid ",
            run_file.display()
        )) && first.ends_with(&format!(
            " of {ATTACKER}, which is not a deploy-lock run (the file belongs to {ATTACKER})."
        )) && out
            .stderr
            .contains(&format!("ask {ATTACKER} (or root) to stop pid ")),
        "{}",
        out.stderr
    );
    // wait does not call it released: nothing could start.
    let wait = s
        .as_user(&s.victim, &["wait", "staging"])
        .env("DEPLOY_LOCK_WAIT_TIMEOUT", "5")
        .run();
    wait.code(75).any_stderr();
    assert!(!wait.stdout.contains("released"), "{}", wait.stdout);
    assert!(
        wait.stderr.starts_with(&format!(
            "ERROR: the staging lock cannot be waited for: {} is locked by pid ",
            run_file.display()
        )) && wait
            .stderr
            .contains(&format!("ask {ATTACKER} (or root) to stop pid ")),
        "{}",
        wait.stderr
    );
    let status = s.as_user(&s.victim, &["status", "staging"]).run();
    status.code(0).stderr("");
    assert!(
        status.stdout.contains("which is not a deploy-lock run"),
        "{}",
        status.stdout
    );
    assert!(!s.w.lock_path("staging").exists());
}

/// Issue 19, unlock's identity check: the victim clears their own crashed
/// deploy-lock lock while, between unlock's look (under the guard) and its
/// removal, root's legacy deploy.sh takes it over the legacy way (rm -rf,
/// mkdir: no guard, and the new directory may reuse the old inode number).
/// The unlock is held still at that point by strace (SIGSTOP injected at
/// its announcement's rename, the one rename between the look and the
/// removal), a process state the test waits for, never a sleep. The new
/// holder's lock survives, the unlock says it changed hands (75) and logs
/// no force_unlock.
#[test]
fn unlock_leaves_a_lock_that_changed_hands_between_its_look_and_removal() {
    if !crate::completions::available(
        "strace",
        "unlock_leaves_a_lock_that_changed_hands_between_its_look_and_removal",
    ) {
        return;
    }
    let Some(s) = Shared::new() else { return };
    let lock = s.w.lock_path("staging");

    // The victim's crashed run: their directory, their owner.json, a dead pid.
    fs::create_dir(&lock).unwrap();
    fs::write(
        lock.join("owner.json"),
        owner_json(&format!("{VICTIM}@host"), reaped_pid()),
    )
    .unwrap();
    fs::write(lock.join("locked_at"), format!("{}\n", now() - 60)).unwrap();
    chown_tree(&lock, &s.victim);
    let old_ino = fs::metadata(&lock).unwrap().ino();

    let mut c = s.w.cmd("strace");
    c.cmd
        .args(["-f", "-qq", "-o", "/dev/null"])
        .args(["-e", "trace=rename,renameat,renameat2"])
        .args([
            "-e",
            "inject=rename,renameat,renameat2:signal=SIGSTOP:when=1",
        ])
        .arg(SETPRIV)
        .arg(format!("--reuid={VICTIM}"))
        .arg(format!("--regid={VICTIM}"))
        .arg("--init-groups")
        .arg("--")
        .arg(BIN)
        .args(["unlock", "staging", "--yes"]);
    let mut strace = c
        .env("HOME", s.home_of(&s.victim))
        .env("USER", VICTIM)
        .spawn_guarded();
    // strace's child is the unlock (setpriv execs it in place). Once its
    // announcement is there, it is held at that rename's return: strace
    // restarts it only into the injected stop, and only SIGCONT ends that.
    let children = format!("/proc/{0}/task/{0}/children", strace.pid());
    let mut unlock = 0;
    wait_until(PATIENCE, "the unlock's announcement", || {
        unlock = fs::read_to_string(&children)
            .ok()
            .and_then(|t| t.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        unlock > 0 && s.w.locks.join(".togather-deploy-staging.unlocked").exists()
    });
    wait_until(PATIENCE, "the unlock stopped", || {
        matches!(proc_state(unlock), Some('t' | 'T'))
    });
    assert!(
        lock.join("owner.json").exists(),
        "stopped after its removal"
    );

    // Root's legacy deploy.sh takes the lock meanwhile.
    let theirs = format!("{}\n", now());
    fs::remove_dir_all(&lock).unwrap();
    fs::create_dir(&lock).unwrap();
    fs::write(lock.join("locked_at"), &theirs).unwrap();
    let new_ino = fs::metadata(&lock).unwrap().ino();
    eprintln!(
        "lock directory inode: {old_ino} before, {new_ino} after ({})",
        if old_ino == new_ino {
            "reused"
        } else {
            "not reused"
        }
    );

    // A SIGCONT that lands while strace still holds it in its syscall stop
    // discards the pending SIGSTOP instead: either way it goes on. Sent until
    // it has ended, so the one that counts is never missed.
    wait_until(PATIENCE, "the unlock's end", || {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(unlock),
            nix::sys::signal::Signal::SIGCONT,
        );
        matches!(proc_state(unlock), None | Some('Z'))
    });
    let out = finish(&mut strace);
    out.code(75).any_stderr();
    assert!(
        out.stderr
            .contains("ERROR: the staging lock changed hands since it was shown"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("removed"), "{}", out.stdout);
    // Root's lock is untouched.
    assert_eq!(fs::read_to_string(lock.join("locked_at")).unwrap(), theirs);
    assert_eq!(fs::metadata(&lock).unwrap().uid(), 0);
    assert!(
        !s.w.audit_log().contains("\"force_unlock\""),
        "{}",
        s.w.audit_log()
    );
}
