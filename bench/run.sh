#!/bin/bash
# deploy-lock's benchmark: every figure of docs/performance.md in one run,
# each measured side by side with its baseline on this machine.
#   bench/run.sh [PATH_TO_DEPLOY_LOCK]   (default: the installed deploy-lock on
#   PATH, else the binary ./install.sh builds, installed into a temporary
#   prefix: the ordinary dynamically linked release build)
#   BENCH_ETCD=0 skips the etcd figures (they need a local 3-member cluster).
# Times status against ls -ld call by call (python3), everything else with
# hyperfine when installed and a built-in timer otherwise. Touches only a
# temporary folder (DEPLOY_LOCK_DIR points there), never /tmp/togather-*.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/deploy-lock-bench.XXXXXX")"
holder=""
cleanup() {
    if [ -n "$holder" ]; then kill "$holder" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

bin="${1:-}"
if [ -z "$bin" ]; then
    if command -v deploy-lock >/dev/null; then
        bin="$(command -v deploy-lock)"
    else
        # What a user gets: install.sh's build (cargo keeps it for the next run).
        "$here/../install.sh" --prefix "$work/prefix" >&2
        bin="$work/prefix/bin/deploy-lock"
    fi
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
export DEPLOY_LOCK_DIR="$work/locks" HOME="$work/home" LC_ALL=C
mkdir -p "$DEPLOY_LOCK_DIR" "$HOME" "$work/checkout/deploy/scripts" "$work/checkout/deploy/config"
ln -s "$bin" "$work/checkout/deploy/scripts/unlock.sh"
cd "$work/checkout"
state="$work/checkout/deploy/config/deployment-state.json"
lock="$DEPLOY_LOCK_DIR/togather-deploy-staging.lock"

now_ns() { date +%s%N; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e6 }'; }
ms2() { awk -v ns="$1" 'BEGIN { printf "%.2f", ns / 1e6 }'; }
median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# Peak RSS in KiB of one run: GNU time when installed, else Python's rusage
# (the largest of the command's processes, as GNU time reports it).
peak_rss_once() {
    if [ -x /usr/bin/time ]; then
        /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1
    else
        python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$@"
    fi
}
# The median of 21 runs: one run's figure moves by ~400 KiB with where ASLR
# puts the binary, since the kernel maps file pages in 64 KiB windows
# around each page fault (fault-around) and the windows' edges move with it.
peak_rss() {
    local i
    for ((i = 0; i < 21; i++)); do peak_rss_once "$@"; done | median
}

# Median wall time in ns of a command, over N runs.
time_cmd() {
    local runs="$1"; shift
    if command -v hyperfine >/dev/null; then
        hyperfine -N --warmup 20 --runs "$runs" --export-json "$work/h.json" "$*" >/dev/null 2>&1
        jq '.results[0].median * 1e9 | floor' "$work/h.json"
    else
        local i t0 t1
        for ((i = 0; i < 20; i++)); do "$@" >/dev/null 2>&1; done
        for ((i = 0; i < runs; i++)); do
            t0=$(now_ns); "$@" >/dev/null 2>&1; t1=$(now_ns)
            echo $((t1 - t0))
        done | median
    fi
}

# Median wall time in ns of each of two commands run alternately N times:
#   alternate N CMD1... -- CMD2...   prints "NS1 NS2".
alternate() {
    python3 - "$@" <<'PY'
import os, statistics, sys, time
n = int(sys.argv[1])
rest = sys.argv[2:]
cut = rest.index("--")
cmds = [rest[:cut], rest[cut + 1:]]
null = os.open(os.devnull, os.O_WRONLY)
acts = [(os.POSIX_SPAWN_DUP2, null, 1), (os.POSIX_SPAWN_DUP2, null, 2)]
times = [[], []]
for i in range(n + 20):
    for k, cmd in enumerate(cmds):
        t0 = time.perf_counter_ns()
        pid = os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=acts)
        os.waitpid(pid, 0)
        if i >= 20:
            times[k].append(time.perf_counter_ns() - t0)
print(int(statistics.median(times[0])), int(statistics.median(times[1])))
PY
}

echo "deploy-lock benchmark: $("$bin" --version), $(nproc) cores, $(uname -r), $(date -u +%Y-%m-%d)"
linkage="dynamically linked"
case "$(ldd "$bin" 2>&1 || true)" in *"statically linked"* | *"not a dynamic executable"*) linkage="statically linked" ;; esac
echo "binary: $bin ($(stat -c %s "$bin") bytes, $linkage)"
echo "timer: status and ls -ld alternated by python3; others $(command -v hyperfine >/dev/null && hyperfine --version || echo 'built-in (date +%s%N)')"
echo

# 1. Status of a held lock with a live holder, against ls -ld and the bash+jq baseline.
sleep 600 & holder=$!
mkdir "$lock"; date +%s > "$lock/locked_at"
cat > "$state" <<JSON
{"environment": "staging", "lock": {"locked": true, "lock_id": "lock_bench", "deployment_id": "dep_bench",
 "locked_by": "bench@$(hostname)", "locked_at": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "pid": $holder, "hostname": "$(hostname)"}}
JSON
# The whole binary in the page cache, as after an install: what fault-around
# can map is then everything near a page touched (the figure's worst case).
cat "$bin" >/dev/null
# Status and ls -ld alternate call by call (python3's posix_spawn, no shell
# in between), so that a machine growing busier or quieter during the run
# moves both alike: timed one block after the other (hyperfine's way), the
# ratio moved by 0.3 with the load of the minutes before.
read -r t_status t_ls < <(alternate 500 ./deploy/scripts/unlock.sh staging -- ls -ld "$lock")
t_legacy=$(time_cmd 50 "$here/legacy-status.sh" staging "$state")
rss_kib=$(peak_rss ./deploy/scripts/unlock.sh staging)
rss_ls=$(peak_rss ls -ld "$lock")
rss_legacy=$(peak_rss "$here/legacy-status.sh" staging "$state")
kill "$holder"; wait "$holder" 2>/dev/null || true; holder=""
rm -rf "$lock"
printf '%-46s %10s  %s\n' "figure" "value" "baseline / target"
printf '%-46s %8s ms  ls -ld %s ms: %sx (target <= 1.2x, dynamically linked); bash+jq %s ms: %sx\n' \
    "status (held, live holder), median" "$(ms2 "$t_status")" "$(ms2 "$t_ls")" \
    "$(awk -v a="$t_status" -v b="$t_ls" 'BEGIN { printf "%.2f", a / b }')" \
    "$(ms "$t_legacy")" "$(awk -v a="$t_status" -v b="$t_legacy" 'BEGIN { printf "%.3f", a / b }')"
printf '%-46s %7s KiB  ls -ld %s KiB; bash+jq %s KiB (target <= 4096)\n' \
    "status peak RSS, median of 21" "$rss_kib" "$rss_ls" "$rss_legacy"

# 2. How soon a release is noticed, default settings (median of 15).
notice() { # the waiter command; prints the median ns from rmdir to the waiter's exit
    local i t_rm t_done out=()
    for ((i = 0; i < 15; i++)); do
        mkdir "$lock"; date +%s > "$lock/locked_at"
        rm -f "$work/ready"
        ( "$@" >/dev/null 2>&1; now_ns > "$work/done" ) &
        local w=$!
        # Let the waiter reach its wait (it prints nothing we can sync on in a pipe).
        sleep 0.15
        t_rm=$(now_ns); rm -rf "$lock"
        wait "$w"
        t_done=$(cat "$work/done")
        out+=($((t_done - t_rm)))
        rm -rf "$lock"
    done
    printf '%s\n' "${out[@]}" | median
}
echo '{"lock": {"locked": false}}' > "$state"
n1=$(notice ./deploy/scripts/unlock.sh staging --wait)
n2=$(notice "$bin" wait staging)
n3=$(notice "$bin" run --wait staging -- true)
legacy_poll_ms=2500
printf '%-46s %8s ms  legacy 5 s poll: %s ms on average (target <= 20)\n' "release noticed: unlock.sh --wait" "$(ms "$n1")" "$legacy_poll_ms"
printf '%-46s %8s ms  (target <= 20)\n' "release noticed: deploy-lock wait" "$(ms "$n2")"
printf '%-46s %8s ms  (target <= 20; includes taking the lock and running true)\n' "release noticed: run --wait" "$(ms "$n3")"

# 3. 100 contended hand-offs: 4 processes x 25 runs of `run --wait ENV -- true`.
log="$work/checkout/deploy/config/deployment-audit.log"
before=$(grep -c '"event":"acquire"' "$log" || true)
t0=$(now_ns)
for _ in 1 2 3 4; do
    ( for ((i = 0; i < 25; i++)); do "$bin" run --wait staging -- true; done ) &
done
wait
t1=$(now_ns)
handoffs=$(( $(grep -c '"event":"acquire"' "$log" || true) - before ))
printf '%-46s %8s ms  %s acquisitions logged (target <= 1000 ms)\n' "100 contended hand-offs (4 x 25 run --wait)" "$(ms $((t1 - t0)))" "$handoffs"

# 4. The etcd backend beside etcdctl, on a local 3-member cluster (skipped
# without etcd, or with BENCH_ETCD=0 for the local figures alone): both
# clients get the same three endpoints.
if [ "${BENCH_ETCD:-1}" = 0 ]; then
    echo "etcd figures skipped: BENCH_ETCD=0"
elif [ -x /usr/bin/etcd ] && [ -x /usr/bin/etcdctl ]; then
    read -r -a ports < <(python3 -c 'import socket
s = [socket.socket() for _ in range(6)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
    initial="m0=http://127.0.0.1:${ports[1]},m1=http://127.0.0.1:${ports[3]},m2=http://127.0.0.1:${ports[5]}"
    etcd_pids=()
    for i in 0 1 2; do
        c="http://127.0.0.1:${ports[$((2 * i))]}" p="http://127.0.0.1:${ports[$((2 * i + 1))]}"
        /usr/bin/etcd --name="m$i" --data-dir="$work/etcd$i" --listen-client-urls="$c" \
            --advertise-client-urls="$c" --listen-peer-urls="$p" \
            --initial-advertise-peer-urls="$p" --initial-cluster="$initial" \
            --heartbeat-interval=10 --election-timeout=100 --log-level=error >"$work/etcd$i.log" 2>&1 &
        etcd_pids+=($!)
    done
    ep="http://127.0.0.1:${ports[0]},http://127.0.0.1:${ports[2]},http://127.0.0.1:${ports[4]}"
    first="http://127.0.0.1:${ports[0]}"
    trap 'kill "${etcd_pids[@]}" 2>/dev/null || true; wait "${etcd_pids[@]}" 2>/dev/null || true; cleanup' EXIT
    # Ready once a linearizable read answers (a leader is elected).
    for _ in $(seq 200); do
        curl -sf -XPOST "$first/v3/kv/range" -d '{"key":"eA=="}' >/dev/null && break
        sleep 0.05
    done
    export ETCDCTL_API=3 DEPLOY_LOCK_BACKEND=etcd DEPLOY_LOCK_ETCD_ENDPOINTS="$ep" DEPLOY_LOCK_ETCD_PREFIX=/bench
    ctl() { /usr/bin/etcdctl --endpoints="$ep" "$@"; }
    key=/bench/v1/env/staging/lock
    echo
    echo "etcd $(curl -s "$first/version" | jq -r .etcdserver), loopback, 3 members"
    t_run=$(time_cmd 100 "$bin" run staging -- true)
    t_ctl=$(time_cmd 100 /usr/bin/etcdctl --endpoints="$ep" lock bench-ctl true)
    printf '%-46s %8s ms  etcdctl lock k true %s ms: %sx (goal <= 1.0x)\n' \
        "etcd: uncontended run ENV -- true, median" "$(ms "$t_run")" "$(ms "$t_ctl")" \
        "$(awk -v a="$t_run" -v b="$t_ctl" 'BEGIN { printf "%.2f", a / b }')"
    "$bin" run staging -- sleep 600 >/dev/null 2>&1 & holder=$!
    for _ in $(seq 100); do ctl get "$key" --print-value-only | grep -q lock_id && break; sleep 0.05; done
    t_st=$(time_cmd 100 "$bin" status staging)
    t_get=$(time_cmd 100 /usr/bin/etcdctl --endpoints="$ep" get "$key")
    printf '%-46s %8s ms  etcdctl get %s ms: %sx\n' "etcd: status (held), median" "$(ms "$t_st")" \
        "$(ms "$t_get")" "$(awk -v a="$t_st" -v b="$t_get" 'BEGIN { printf "%.2f", a / b }')"
    kill "$holder"; wait "$holder" 2>/dev/null || true; holder=""
    # Wake after release: the key under a lease, revoked through the gateway.
    wake() { # the waiter command; prints the median ns from the revoke to its exit
        local i t_rm t_done lease out=()
        for ((i = 0; i < 15; i++)); do
            lease=$(curl -s -XPOST "$first/v3/lease/grant" -d '{"TTL":30}' | jq -r .ID)
            curl -s -XPOST "$first/v3/kv/put" -d "{\"key\":\"$(printf %s "$1" | base64 -w0)\",\"value\":\"eA==\",\"lease\":\"$lease\"}" >/dev/null
            shift_args=("${@:2}")
            ( "${shift_args[@]}" >/dev/null 2>&1; now_ns > "$work/done" ) &
            local w=$!
            sleep 0.3
            t_rm=$(now_ns)
            curl -s -XPOST "$first/v3/lease/revoke" -d "{\"ID\":\"$lease\"}" >/dev/null
            wait "$w"
            t_done=$(cat "$work/done")
            out+=($((t_done - t_rm)))
        done
        printf '%s\n' "${out[@]}" | median
    }
    w_dl=$(wake "$key" "$bin" run --wait staging -- true)
    # etcdctl lock's own key: its election prefix, taken by a lease-held key of ours.
    w_ctl=$(wake "bench-wake/held" /usr/bin/etcdctl --endpoints="$ep" lock bench-wake true)
    printf '%-46s %8s ms  etcdctl lock %s ms (goal <= 50; includes curl revoke)\n' \
        "etcd: release noticed by run --wait" "$(ms "$w_dl")" "$(ms "$w_ctl")"
    handoffs() { # 8 processes x 20 runs of the command
        local t0 t1
        t0=$(now_ns)
        for _ in 1 2 3 4 5 6 7 8; do
            ( for ((i = 0; i < 20; i++)); do "$@" >/dev/null 2>&1; done ) &
        done
        wait
        t1=$(now_ns)
        echo $((t1 - t0))
    }
    h_dl=$(handoffs "$bin" run --wait staging -- true)
    h_ctl=$(handoffs /usr/bin/etcdctl --endpoints="$ep" lock bench-h true)
    printf '%-46s %8s ms  etcdctl lock %s ms: %sx\n' "etcd: 160 contended hand-offs (8 x 20)" \
        "$(ms "$h_dl")" "$(ms "$h_ctl")" "$(awk -v a="$h_dl" -v b="$h_ctl" 'BEGIN { printf "%.2f", a / b }')"
else
    echo "etcd figures skipped: /usr/bin/etcd and /usr/bin/etcdctl are needed (apt-get install etcd-server etcd-client)"
fi
