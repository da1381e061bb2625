#!/bin/bash
# Baseline for bench/run.sh: a status check done the way the legacy bash+jq
# unlock.sh does it (ls, one jq per field, date, hostname, ps). Written here
# for the benchmark; it is not the legacy script.
set -u
env_name="$1"
lock_dir="${DEPLOY_LOCK_DIR:-/tmp}/togather-deploy-${env_name}.lock"
state="$2"
echo "Deployment Lock Status: $env_name"
echo "============================================"
if [ -d "$lock_dir" ]; then
    echo "Lock directory exists: $lock_dir"
    ls -ld "$lock_dir"
else
    echo "Lock directory: Not found (unlocked)"
fi
echo ""
if [ -f "$state" ]; then
    echo "State file info:"
    locked=$(jq -r '.lock.locked // false' "$state")
    locked_by=$(jq -r '.lock.locked_by // "N/A"' "$state")
    locked_at=$(jq -r '.lock.locked_at // "N/A"' "$state")
    deployment_id=$(jq -r '.lock.deployment_id // "N/A"' "$state")
    pid=$(jq -r '.lock.pid // "N/A"' "$state")
    host=$(jq -r '.lock.hostname // "N/A"' "$state")
    echo "  Locked: $locked"
    echo "  Locked by: $locked_by"
    echo "  Locked at: $locked_at"
    echo "  Deployment ID: $deployment_id"
    echo "  PID: $pid"
    echo "  Hostname: $host"
    if [ "$locked" = "true" ] && ts=$(date -d "$locked_at" +%s 2>/dev/null); then
        age=$(( $(date +%s) - ts ))
        echo "  Lock age: $((age / 60))m $((age % 60))s"
        [ "$age" -gt 1800 ] && echo "  ⚠ Lock is stale (>30 minutes)"
    fi
    if [ "$pid" != "N/A" ] && [ "$host" = "$(hostname)" ]; then
        if ps -p "$pid" >/dev/null 2>&1; then
            echo "  ✓ Process $pid is still running: $(ps -p "$pid" -o comm=)"
        else
            echo "  ⚠ Process $pid is not running (deployment may have crashed)"
        fi
    fi
else
    echo "State file not found: $state"
fi
echo ""
