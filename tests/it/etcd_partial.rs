//! Issue 17: etcd under partial failure, through the real binary against a
//! real 3-member cluster. A hung member (SIGSTOP) or a dark path (a
//! forwarder that stops forwarding) must cost a holder nothing while two
//! members answer; a holder cut off from all of them stops its command
//! before anyone else can start one; a waiter is never held up by a hung
//! member.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::etcd_support::{self, Etcd, Forwarder};
use crate::harness::{Cmd, KillOnDrop, PATIENCE, World, finish, wait_until};

/// One machine: its own checkout and lock folder, its own endpoint list.
struct Machine {
    w: World,
    endpoints: String,
    prefix: String,
}

impl Machine {
    fn new(endpoints: &[&str], prefix: &str) -> Machine {
        Machine {
            w: World::new(),
            endpoints: endpoints.join(","),
            prefix: prefix.to_string(),
        }
    }

    fn dl(&self, args: &[&str]) -> Cmd {
        self.w
            .deploy_lock(args)
            .env("DEPLOY_LOCK_BACKEND", "etcd")
            .env("DEPLOY_LOCK_ETCD_ENDPOINTS", &self.endpoints)
            .env("DEPLOY_LOCK_ETCD_PREFIX", &self.prefix)
            .env("DEPLOY_LOCK_ETCD_TTL", "2")
            .env("DEPLOY_LOCK_LOST_GRACE", "5")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.w.tmp.path().join(name)
    }
}

fn endpoints(members: &[Etcd]) -> Vec<&str> {
    members.iter().map(|m| m.endpoint.as_str()).collect()
}

/// A command that marks `ready`, notes any SIGTERM in `term` (the wall
/// clock, to the microsecond, at once: perl's handler runs as its sleep is
/// interrupted), and ends 0 once `done` exists.
fn holder_script(dir: &Path) -> Vec<String> {
    let p = |n: &str| dir.join(n).display().to_string();
    vec![
        "perl".into(),
        "-MTime::HiRes=time,sleep".into(),
        "-e".into(),
        format!(
            "$SIG{{TERM}} = sub {{ open my $f, '>', '{term}'; printf $f \"%.6f\\n\", time; close $f; exit 0 }}; \
             open my $r, '>', '{ready}'; close $r; \
             sleep 0.01 until -e '{done}'; \
             printf \"%.6f\\n\", time; exit 0",
            term = p("term"),
            ready = p("ready"),
            done = p("done"),
        ),
    ]
}

/// A command that prints the wall clock when it starts.
fn stamp() -> Vec<String> {
    vec![
        "perl".into(),
        "-MTime::HiRes=time".into(),
        "-e".into(),
        "printf \"%.6f\\n\", time".into(),
    ]
}

fn run_cmd(m: &Machine, flags: &[&str], command: &[String]) -> Cmd {
    let mut args = vec!["run"];
    args.extend_from_slice(flags);
    args.extend(["staging", "--"]);
    let mut c = m.dl(&args);
    c.cmd.args(command);
    c
}

/// perl with Time::HiRes (Debian's `perl`, not only `perl-base`).
fn need_perl(test: &str) -> bool {
    let ok = std::process::Command::new("perl")
        .args(["-MTime::HiRes", "-e1"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        etcd_support::skip(
            test,
            "perl with Time::HiRes is needed (apt-get install perl)",
        );
    }
    ok
}

/// Holders at once, each on its own key prefix with its own endpoint list
/// (`lists`), while `fault` makes the first member of each list
/// unresponsive for 3 x TTL (6 s; then `heal`): every command runs to its end
/// untouched and exits 0.
fn holders_survive(test: &str, lists: &[Vec<&str>], fault: &dyn Fn(), heal: &dyn Fn()) {
    let machines: Vec<Machine> = lists
        .iter()
        .map(|l| Machine::new(l, &etcd_support::prefix(test)))
        .collect();
    let holders: Vec<KillOnDrop> = machines
        .iter()
        .map(|m| {
            // TTL 6 here, not the module's 2: twenty holders and three
            // members share two cores with the rest of the suite (six tests
            // at a time), and a shorter lease measured the machine's load
            // (a 2 s lease was lost in a CI run with no fault involved, a
            // 4 s one at load 12), not the failover this test is about.
            run_cmd(m, &[], &holder_script(m.w.tmp.path()))
                .env("DEPLOY_LOCK_ETCD_TTL", "6")
                .spawn_guarded()
        })
        .collect();
    for m in &machines {
        wait_until(PATIENCE, "the command's ready file", || {
            m.path("ready").exists()
        });
    }
    fault();
    // The fault's length is the scenario, not a barrier: 3 x the 6 s TTL.
    std::thread::sleep(Duration::from_secs(18));
    heal();
    for m in &machines {
        fs::write(m.path("done"), "").unwrap();
    }
    for (m, h) in machines.iter().zip(holders) {
        let out = finish(h);
        out.code(0).stderr("");
        assert!(!m.path("term").exists(), "the command was signalled");
    }
}

/// Ten holders whose first member is SIGSTOPped and ten whose path to
/// theirs goes dark (another member), both for 3 x TTL, at once: a quorum
/// answers through the other endpoints of each list all along.
#[test]
fn holders_keep_their_lock_while_their_first_member_is_stopped_or_its_path_dark() {
    let test = "holders_keep_their_lock_while_their_first_member_is_stopped_or_its_path_dark";
    if !need_perl(test) {
        return;
    }
    let Some(c) = etcd_support::cluster(test, 3) else {
        return;
    };
    let fwd = Forwarder::new(&c[1].endpoint);
    let stopped = vec![c[0].endpoint.as_str(), &c[1].endpoint, &c[2].endpoint];
    let dark = vec![fwd.endpoint.as_str(), &c[2].endpoint, &c[0].endpoint];
    let lists: Vec<Vec<&str>> = (0..20)
        .map(|i| {
            if i % 2 == 0 {
                stopped.clone()
            } else {
                dark.clone()
            }
        })
        .collect();
    holders_survive(
        test,
        &lists,
        &|| {
            c[0].pause();
            fwd.set_dark(true);
        },
        &|| {
            c[0].resume();
            fwd.set_dark(false);
        },
    );
}

/// `rounds` x `at_once` holders cut off from every member (each through
/// its own dark forwarders) with a healthy waiter each: the holder's
/// command is always TERMed before the waiter's starts. Returns the
/// margins (waiter's start less the TERM), in seconds.
fn cut_off_holders(test: &str, rounds: usize, at_once: usize) -> Vec<f64> {
    let Some(c) = etcd_support::cluster(test, 3) else {
        return Vec::new();
    };
    let mut margins = Vec::new();
    for _ in 0..rounds {
        let runs: Vec<_> = (0..at_once)
            .map(|_| {
                let prefix = etcd_support::prefix(test);
                let fwds: Vec<Forwarder> = c.iter().map(|m| Forwarder::new(&m.endpoint)).collect();
                let holder = Machine::new(
                    &fwds.iter().map(|f| f.endpoint.as_str()).collect::<Vec<_>>(),
                    &prefix,
                );
                let waiter = Machine::new(&endpoints(&c), &prefix);
                let h = run_cmd(&holder, &[], &holder_script(holder.w.tmp.path())).spawn_guarded();
                (fwds, holder, waiter, h)
            })
            .collect();
        let mut waiting = Vec::new();
        for (fwds, holder, waiter, h) in runs {
            wait_until(PATIENCE, "the holder's ready file", || {
                holder.path("ready").exists()
            });
            let wt = run_cmd(&waiter, &["--wait=30"], &stamp()).spawn_guarded();
            for f in &fwds {
                f.set_dark(true);
            }
            waiting.push((fwds, holder, waiter, h, wt));
        }
        for (_fwds, holder, _waiter, h, wt) in waiting {
            let w_out = finish(wt);
            w_out.code(0).stderr_after_waiting("");
            let started: f64 = w_out.stdout.trim().parse().unwrap();
            let h_out = finish(h);
            h_out.code(76).any_stderr();
            // The paths may go dark before the wrapper named its command in
            // the lock (it does so just after the start): then one warning.
            let stderr = match h_out.stderr.split_once('\n') {
                Some((first, rest))
                    if first.starts_with(
                        "WARNING: could not record the command's pid in the lock: ",
                    ) =>
                {
                    rest
                }
                _ => &h_out.stderr,
            };
            assert!(
                stderr.starts_with(
                    "ERROR: lost the staging lock while the command runs: no lease renewal \
                     acknowledged for "
                ),
                "{}",
                h_out.stderr
            );
            let term: f64 = fs::read_to_string(holder.path("term"))
                .expect("the holder's command was TERMed")
                .trim()
                .parse()
                .unwrap();
            assert!(
                term < started,
                "TERM at {term:.6}, the next command started at {started:.6}"
            );
            margins.push(started - term);
        }
    }
    margins
}

fn report(what: &str, margins: &[f64]) {
    if margins.is_empty() {
        return;
    }
    let min = margins.iter().cloned().fold(f64::INFINITY, f64::min);
    eprintln!(
        "{what}: {} runs, TERM before the next start by {:.0} ms at the least",
        margins.len(),
        min * 1000.0
    );
}

#[test]
fn a_holder_cut_off_from_every_member_is_stopped_before_the_next_command_starts() {
    let test = "a_holder_cut_off_from_every_member_is_stopped_before_the_next_command_starts";
    if !need_perl(test) {
        return;
    }
    report(test, &cut_off_holders(test, 1, 4));
}

/// The acceptance's full count (20 runs, 5 at a time); run by hand:
/// `cargo test --test it cut_off_20 -- --ignored --nocapture`.
#[test]
#[ignore]
fn cut_off_20_runs() {
    if !need_perl("cut_off_20_runs") {
        return;
    }
    report("cut_off_20_runs", &cut_off_holders("cut_off_20_runs", 4, 5));
}

#[test]
fn a_waiter_behind_a_stopped_first_member_is_in_within_a_second_of_the_release() {
    let test = "a_waiter_behind_a_stopped_first_member_is_in_within_a_second";
    if !need_perl(test) {
        return;
    }
    let Some(c) = etcd_support::cluster(test, 3) else {
        return;
    };
    let prefix = etcd_support::prefix(test);
    let holder = Machine::new(&[&c[1].endpoint, &c[2].endpoint], &prefix);
    let waiter = Machine::new(&endpoints(&c), &prefix);
    let h = run_cmd(&holder, &[], &holder_script(holder.w.tmp.path())).spawn_guarded();
    wait_until(PATIENCE, "the holder's ready file", || {
        holder.path("ready").exists()
    });
    // The holder's keeper watches its key: one watcher.
    wait_until(PATIENCE, "the holder's watch", || {
        c[1].watchers() + c[2].watchers() >= 1
    });
    c[0].pause();
    let wt = run_cmd(&waiter, &["--wait=30"], &stamp()).spawn_guarded();
    // Waiting once it watches the key on a member that answers.
    wait_until(PATIENCE, "the waiter's watch", || {
        c[1].watchers() + c[2].watchers() >= 2
    });
    fs::write(holder.path("done"), "").unwrap();
    let h_out = finish(h);
    h_out.code(0).stderr("");
    let ended: f64 = h_out.stdout.trim().parse().unwrap();
    let w_out = finish(wt);
    c[0].resume();
    w_out.code(0).stderr_after_waiting("");
    let started: f64 = w_out.stdout.trim().parse().unwrap();
    let gap = started - ended;
    eprintln!(
        "{test}: in {:.0} ms after the holder's command ended",
        gap * 1000.0
    );
    // The bound (a correctness limit, not a speed figure: the
    // release itself is a few ms after the command's end).
    assert!(gap < 1.0, "the waiter got in {gap:.3} s after the release");
}

/// A cluster whose simple tokens expire after 2 s of disuse, with auth on
/// (user root, password rootpw). None (SKIP) without etcd or etcdctl.
fn auth_cluster(test: &str) -> Option<Vec<Etcd>> {
    let c = etcd_support::cluster_with(test, 3, &["--auth-token=simple", "--auth-token-ttl=2"])?;
    etcd_support::etcdctl(
        test,
        &c[0],
        &["user", "add", "root:rootpw", "--interactive=false"],
    )?;
    etcd_support::etcdctl(test, &c[0], &["auth", "enable"])?;
    Some(c)
}

#[test]
fn an_expired_token_costs_one_fresh_login_not_the_call() {
    let test = "an_expired_token_costs_one_fresh_login_not_the_call";
    let Some(c) = auth_cluster(test) else {
        return;
    };
    let mut cfg =
        deploy_lock::etcd::ClientConfig::new(endpoints(&c).iter().map(|s| s.to_string()).collect());
    cfg.credentials = Some(deploy_lock::etcd::settings::Credentials {
        user: "root".into(),
        password: "rootpw".into(),
    });
    let client = deploy_lock::etcd::Client::connect(&cfg).unwrap();
    client.get(b"/it/token", Duration::from_secs(2)).unwrap();
    // Unused for longer than --auth-token-ttl: etcd forgets the token.
    std::thread::sleep(Duration::from_secs(3));
    client.get(b"/it/token", Duration::from_secs(2)).unwrap();
    // A member killed and started again knows no token at all.
    let mut c = c;
    let current = c
        .iter()
        .position(|m| m.endpoint == client.endpoint())
        .unwrap();
    c[current].kill();
    c[current].restart();
    wait_until(PATIENCE, "the member's return", || {
        client.get(b"/it/token", Duration::from_secs(2)).is_ok()
    });
}

#[test]
fn with_two_second_tokens_a_ten_second_run_releases_cleanly_and_a_waiter_gets_in() {
    let test = "with_two_second_tokens_a_ten_second_run_releases_cleanly";
    if !need_perl(test) {
        return;
    }
    let Some(c) = auth_cluster(test) else {
        return;
    };
    let prefix = etcd_support::prefix(test);
    let (a, b) = (
        Machine::new(&endpoints(&c), &prefix),
        Machine::new(&endpoints(&c), &prefix),
    );
    // A 6 s lease, not the 2 s of the other scenarios: renewed every 2 s,
    // each renewal may find the token expired (what this test is about),
    // and a machine at load 10-14 (two busy loops beside the suite) that
    // leaves etcd without an answer for 2 s does not cost the holder a
    // lease the test never meant to lose.
    let with_auth = |cmd: Cmd| {
        cmd.env("DEPLOY_LOCK_ETCD_USER", "root")
            .env("DEPLOY_LOCK_ETCD_PASSWORD", "rootpw")
            .env("DEPLOY_LOCK_ETCD_TTL", "6")
    };
    let h = with_auth(run_cmd(&a, &[], &holder_script(a.w.tmp.path()))).spawn_guarded();
    wait_until(PATIENCE, "the holder's ready file", || {
        a.path("ready").exists()
    });
    let wt = with_auth(run_cmd(&b, &["--wait=60"], &stamp())).spawn_guarded();
    // The run's length is the scenario: five token lifetimes.
    std::thread::sleep(Duration::from_secs(10));
    fs::write(a.path("done"), "").unwrap();
    let h_out = finish(h);
    h_out.code(0).stderr("");
    assert!(!a.path("term").exists(), "the command was signalled");
    let w_out = finish(wt);
    w_out.code(0).stderr_after_waiting("");
    let (ended, started): (f64, f64) = (
        h_out.stdout.trim().parse().unwrap(),
        w_out.stdout.trim().parse().unwrap(),
    );
    assert!(started > ended);
}

#[test]
fn out_of_range_settings_and_user_info_are_one_line_exit_2_and_nothing_runs() {
    let w = World::new();
    let ran = w.tmp.path().join("ran");
    let ep = "http://127.0.0.1:9";
    for (var, value, line) in [
        (
            "DEPLOY_LOCK_LOST_GRACE",
            "18446744073709551615",
            "ERROR: DEPLOY_LOCK_LOST_GRACE=\"18446744073709551615\": use whole seconds from 0 to \
             3600 between SIGTERM and SIGKILL after a lost lock, e.g. DEPLOY_LOCK_LOST_GRACE=30, \
             or 0 for never SIGKILL\n",
        ),
        (
            "DEPLOY_LOCK_LOST_GRACE",
            "3601",
            "ERROR: DEPLOY_LOCK_LOST_GRACE=\"3601\": use whole seconds from 0 to 3600 between \
             SIGTERM and SIGKILL after a lost lock, e.g. DEPLOY_LOCK_LOST_GRACE=30, or 0 for \
             never SIGKILL\n",
        ),
        (
            "DEPLOY_LOCK_ETCD_TTL",
            "99999999999999999999999",
            "ERROR: DEPLOY_LOCK_ETCD_TTL=\"99999999999999999999999\": use whole seconds from 1 \
             to 3600, e.g. DEPLOY_LOCK_ETCD_TTL=30 (a dead holder blocks others for up to this \
             long)\n",
        ),
        (
            "DEPLOY_LOCK_ETCD_ENDPOINTS",
            "http://deploy:hunter2@127.0.0.1:9",
            "ERROR: DEPLOY_LOCK_ETCD_ENDPOINTS=\"http://***@127.0.0.1:9\": an endpoint must not \
             carry a user or password; set DEPLOY_LOCK_ETCD_USER and DEPLOY_LOCK_ETCD_PASSWORD \
             instead\n",
        ),
    ] {
        let mut c = w
            .deploy_lock(&["run", "staging", "--", "touch"])
            .env("DEPLOY_LOCK_BACKEND", "etcd")
            .env("DEPLOY_LOCK_ETCD_ENDPOINTS", ep)
            .env(var, value);
        c.cmd.arg(&ran);
        let out = c.run();
        out.code(2).stdout("").stderr(line);
        assert!(!ran.exists(), "{var}={value}: nothing runs");
        assert!(!out.stderr.contains("hunter2"));
    }
}

#[test]
fn run_wait_ends_at_once_on_an_error_waiting_cannot_fix() {
    let test = "run_wait_ends_at_once_on_an_error_waiting_cannot_fix";
    let Some(e) = etcd_support::own(test) else {
        return;
    };
    let add_root = ["user", "add", "root:rootpw", "--interactive=false"];
    if etcd_support::etcdctl(test, &e, &add_root).is_none() {
        return;
    }
    etcd_support::etcdctl(test, &e, &["auth", "enable"]);
    let m = Machine::new(&[&e.endpoint], &etcd_support::prefix(test));
    let ran = m.path("ran");
    // No credentials: etcd answers, and refuses. An hour's wait would
    // retry that for the hour; it ends at once with the error's own code.
    let mut c = m.dl(&["run", "--wait=3600", "staging", "--", "touch"]);
    c.cmd.arg(&ran);
    let out = c.run();
    out.code(74).stdout("").stderr(&format!(
        "ERROR: etcd at {} denied access: etcdserver: user name is empty (set \
         DEPLOY_LOCK_ETCD_USER and DEPLOY_LOCK_ETCD_PASSWORD, or grant the user the lock's key \
         prefix)\n",
        e.endpoint
    ));
    assert!(!ran.exists());
}

#[test]
fn a_sigkilled_holders_own_machine_takes_its_leftover_once_the_lease_is_gone() {
    let test = "a_sigkilled_holders_own_machine_takes_its_leftover";
    let Some(e) = etcd_support::shared(test) else {
        return;
    };
    let m = Machine::new(&[&e.endpoint], &etcd_support::prefix(test));
    let pidfile = m.path("pid");
    let hold = "echo $$ > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"; while :; do sleep 0.05; done";
    let mut c = m.dl(&["run", "staging", "--", "sh", "-c", hold, "_"]);
    c.cmd.arg(&pidfile);
    let mut holder = c.spawn_guarded();
    wait_until(PATIENCE, "the command's pid file", || {
        fs::read_to_string(&pidfile).is_ok_and(|s| s.ends_with('\n'))
    });
    let pid: i32 = fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    crate::harness::send_signal(holder.pid(), nix::sys::signal::Signal::SIGKILL);
    let _ = holder.0.wait();
    wait_until(PATIENCE, "the command's end", || {
        matches!(crate::harness::proc_state(pid), None | Some('Z'))
    });
    // The leftover lock directory is there, and the lease not gone yet.
    assert!(m.w.lock_path("staging").is_dir());
    m.dl(&["status", "staging", "--quiet"])
        .run()
        .code(75)
        .stderr("");
    // Free once etcd expires the lease (TTL 2 s): status --quiet says so
    // first, and then a run here starts, taking the leftover over.
    wait_until(PATIENCE, "status --quiet to say free", || {
        let out = m.dl(&["status", "staging", "--quiet"]).run();
        out.any_code().stderr("");
        out.code == Some(0)
    });
    let out = m.dl(&["run", "staging", "--", "true"]).run();
    // The wrapper's pid: the record names the command only once the
    // wrapper wrote it (with the command still starting, it may not have).
    let named = [holder.pid(), pid].map(|p| {
        format!(
            "WARNING: took over the staging lock left by tester@{} (pid {p}, not running)\n",
            crate::harness::hostname()
        )
    });
    out.code(0).stdout("").stderr_one_of(&named);
    assert!(
        m.w.audit_log().lines().any(|l| l.contains("\"takeover\"")),
        "{}",
        m.w.audit_log()
    );
    assert!(!m.w.lock_path("staging").exists(), "released after the run");
}

/// Appends `start TIME TOKEN` to `$1` when it starts and `end TIME TOKEN`
/// when it ends, also when TERMed (perl's handler runs at once).
const INTERVAL: &str = "use Time::HiRes qw(time sleep); \
    sub stamp { open my $f, '>>', $ARGV[0]; printf $f \"%s %.6f %s\\n\", $_[0], time, $ENV{DEPLOY_LOCK_FENCING_TOKEN}; close $f } \
    $SIG{TERM} = sub { stamp('end'); exit 0 }; \
    stamp('start'); sleep 0.03; stamp('end')";

/// 2 machines x 2 loops contend for one lock for `secs` seconds while the
/// members of a 3-member cluster are, in turn, SIGKILLed and restarted,
/// SIGSTOPped and resumed: no two commands ever overlap (each ends, or is
/// TERMed, before the next starts) and fencing tokens strictly increase.
/// Returns (runs, runs that lost their lock, smallest gap in seconds).
fn chaos(test: &str, secs: u64) -> Option<(usize, usize, f64)> {
    if !need_perl(test) {
        return None;
    }
    let mut c = etcd_support::cluster(test, 3)?;
    let prefix = etcd_support::prefix(test);
    let eps = endpoints(&c);
    let machines = [
        Machine::new(&eps, &prefix),
        Machine::new(&[eps[2], eps[1], eps[0]], &prefix),
    ];
    let log = machines[0].path("intervals");
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    let (mut runs, mut lost) = (0, 0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let m = &machines[i % 2];
                let log = log.clone();
                s.spawn(move || {
                    let mut codes = Vec::new();
                    while std::time::Instant::now() < end {
                        let mut c = m
                            .dl(&["run", "--wait=60", "staging", "--", "perl", "-e", INTERVAL])
                            .env("DEPLOY_LOCK_LOST_GRACE", "30");
                        c.cmd.arg(&log);
                        let out = c.run();
                        out.any_code().any_stderr();
                        let mut stderr = out.stderr.clone();
                        if out.code == Some(124) {
                            // What the queue held as the wait gave up, for
                            // the diagnosis (a waiter once stayed 2nd in
                            // line, the lock free, for its whole minute).
                            let look = m.dl(&["status", "staging", "--json"]).run();
                            stderr.push_str(&format!("status --json then: {}", look.stdout));
                        }
                        codes.push((out.code, stderr));
                    }
                    codes
                })
            })
            .collect();
        // The chaos: one member at a time, each in turn, and every fourth
        // step two at once (no quorum: holders must stop in time).
        let mut step = 0;
        while std::time::Instant::now() < end {
            let i = step % 3;
            match step % 4 {
                0 | 2 => {
                    c[i].kill();
                    std::thread::sleep(Duration::from_millis(700));
                    c[i].restart();
                }
                1 => {
                    c[i].pause();
                    std::thread::sleep(Duration::from_millis(1500));
                    c[i].resume();
                }
                _ => {
                    let j = (i + 1) % 3;
                    c[i].pause();
                    c[j].pause();
                    std::thread::sleep(Duration::from_millis(3000));
                    c[i].resume();
                    c[j].resume();
                }
            }
            std::thread::sleep(Duration::from_millis(500));
            step += 1;
        }
        for w in workers {
            for (code, stderr) in w.join().unwrap() {
                runs += 1;
                match code {
                    Some(0) => {}
                    // Lost while the cluster had no quorum: stopped in time.
                    Some(76) => lost += 1,
                    other => panic!("run ended {other:?}: {stderr}"),
                }
            }
        }
    });
    // Each token's interval, in the order they started.
    let text = fs::read_to_string(&log).unwrap_or_default();
    let mut spans: std::collections::BTreeMap<i64, (f64, Option<f64>)> = Default::default();
    for l in text.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let (t, token): (f64, i64) = (f[1].parse().unwrap(), f[2].parse().unwrap());
        let e = spans.entry(token).or_insert((t, None));
        match f[0] {
            "start" => e.0 = t,
            _ => e.1 = Some(e.1.map_or(t, |x: f64| x.min(t))),
        }
    }
    // One token per run that started its command: every run that exited 0
    // did; a run that lost its lock (76) may have lost it before starting
    // (seen with two busy loops beside the suite), and then started none.
    assert!(
        spans.len() <= runs && spans.len() + lost >= runs,
        "{} tokens for {runs} runs ({lost} lost):\n{text}",
        spans.len()
    );
    let mut by_start: Vec<(f64, Option<f64>, i64)> =
        spans.iter().map(|(k, (s, e))| (*s, *e, *k)).collect();
    by_start.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut min_gap = f64::INFINITY;
    for w in by_start.windows(2) {
        let ((_, end_a, tok_a), (start_b, _, tok_b)) =
            ((w[0].0, w[0].1, w[0].2), (w[1].0, w[1].1, w[1].2));
        assert!(
            tok_a < tok_b,
            "fencing tokens {tok_a} then {tok_b}:\n{text}"
        );
        let end_a = end_a.unwrap_or_else(|| panic!("token {tok_a} never ended:\n{text}"));
        assert!(
            end_a < start_b,
            "tokens {tok_a} and {tok_b} overlapped:\n{text}"
        );
        min_gap = min_gap.min(start_b - end_a);
    }
    Some((runs, lost, min_gap))
}

#[test]
fn chaos_short() {
    if let Some((runs, lost, gap)) = chaos("chaos_short", 6) {
        eprintln!(
            "chaos_short: {runs} runs, {lost} lost their lock, 0 overlaps, smallest gap {:.1} ms",
            gap * 1000.0
        );
    }
}

/// The acceptance's 2 minutes; run by hand:
/// `cargo test --test it chaos_2_minutes -- --ignored --nocapture`.
#[test]
#[ignore]
fn chaos_2_minutes() {
    if let Some((runs, lost, gap)) = chaos("chaos_2_minutes", 120) {
        eprintln!(
            "chaos_2_minutes: {runs} runs, {lost} lost their lock, 0 overlaps, smallest gap {:.1} ms",
            gap * 1000.0
        );
    }
}

/// Puts `value` at `key` with no lease through the JSON gateway (etcdctl's
/// gRPC client refuses messages over 2 MiB).
fn put_by_hand(e: &Etcd, key: &str, value: &[u8]) {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let body = serde_json::json!({"key": b64(key.as_bytes()), "value": b64(value)});
    let resp = ureq::post(format!("{}/v3/kv/put", e.endpoint))
        .send(body.to_string())
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[test]
fn a_foreign_or_oversized_key_is_one_line_75_nothing_run_and_unlock_removes_it() {
    let test = "a_foreign_or_oversized_key_is_one_line";
    let Some(c) = etcd_support::cluster_with(test, 1, &["--max-request-bytes=10485760"]) else {
        return;
    };
    let e = &c[0];
    let m = Machine::new(&[&e.endpoint], &etcd_support::prefix(test));
    let key = format!("{}/v1/env/staging/lock", m.prefix);
    let ran = m.path("ran");
    let big = vec![b'x'; 5 << 20];
    // Reading the 5 MiB value is no timing scenario: a 10 s TTL gives each
    // attempt 2 s (the Machine's 2 s TTL gives 0.4 s, which a loaded
    // machine's read of 7 MB of JSON outlived: "the answer broke off").
    let dl = |args: &[&str]| {
        let mut c = m.dl(args);
        c.cmd.env("DEPLOY_LOCK_ETCD_TTL", "10");
        c
    };
    for (value, shown) in [
        (
            &b"hello\x01 \"garbage\""[..],
            "16 bytes that are not a deploy-lock record (\"hello\\x01 \\x22garbage\\x22\")",
        ),
        (
            &big[..],
            "5242880 bytes that are not a deploy-lock record \
             (\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"...)",
        ),
    ] {
        put_by_hand(e, &key, value);
        let mut c = dl(&["run", "staging", "--", "touch"]);
        c.cmd.arg(&ran);
        let out = c.run();
        out.code(75).stdout("").stderr(&format!(
            "ERROR: the staging lock key {key} holds {shown} without a lease; it never expires \
             and nothing takes it over: `deploy-lock unlock staging` removes it after showing \
             it\n"
        ));
        assert!(!ran.exists(), "nothing runs");
        dl(&["status", "staging", "--quiet"]).run().code(75);
        let out = dl(&["unlock", "staging", "--yes"]).run();
        out.code(0);
        assert!(
            out.stdout
                .contains(&format!("  Value: {shown} without a lease\n"))
                && out.stdout.contains(&format!(
                    "  1. Delete the lock key, which has no lease: etcd:{key}\n"
                ))
                && out.stdout.contains("✓ The lock key is deleted\n"),
            "{}",
            out.stdout
        );
        dl(&["status", "staging", "--quiet"]).run().code(0);
    }
}
