#!/bin/bash
# Demo deploy for deploy-lock: prints its steps and sleeps, touching nothing
# but its own lock and log. Its flags and its lock protocol are those of the
# legacy deploy.sh (mkdir lock + locked_at unless --force, a stale lock
# removed, released by an EXIT trap), so `deploy-lock staging` shows the real
# flow. Run directly with deploy-lock on PATH, it hands itself to deploy-lock,
# which takes the lock for it (and takes over a dead holder's stale lock
# safely). DEMO_STEP_SECS sets the pause per step (default 1);
# DEPLOY_LOCK_DIR moves the lock out of /tmp.
set -euo pipefail

usage() {
    cat <<USAGE
Usage: $0 ENVIRONMENT [--force] [--remote USER@HOST] [--dry-run]
          [--skip-migrations] [--version COMMIT] [--branch BRANCH] [--env-diff] [--help]

Demo deployment: prints each step, changes nothing.
USAGE
}

all_args=("$@")
env_name=""
force=0 dry_run=0 skip_migrations=0 env_diff=0
remote="" version="HEAD" branch="main"
while [ $# -gt 0 ]; do
    case "$1" in
        --help|-h) usage; exit 0 ;;
        --force) force=1 ;;
        --dry-run) dry_run=1 ;;
        --skip-migrations) skip_migrations=1 ;;
        --env-diff) env_diff=1 ;;
        --remote) remote="${2:?--remote needs USER@HOST}"; shift ;;
        --version) version="${2:?--version needs a COMMIT}"; shift ;;
        --branch) branch="${2:?--branch needs a BRANCH}"; shift ;;
        -*) echo "ERROR: unknown option '$1'" >&2; usage >&2; exit 2 ;;
        *)
            if [ -n "$env_name" ]; then echo "ERROR: unexpected argument '$1'" >&2; exit 2; fi
            env_name="$1" ;;
    esac
    shift
done
case "$env_name" in
    development|staging|production) ;;
    "") usage >&2; exit 1 ;;
    *) echo "ERROR: Invalid environment '$env_name'" >&2; exit 1 ;;
esac

if [ -n "$remote" ]; then
    echo "==> Remote deploy of $env_name on $remote (demo: would run ./deploy/scripts/deploy.sh $env_name in /opt/togather/src there)"
    exit 0
fi

lock_dir="${DEPLOY_LOCK_DIR:-/tmp}/togather-deploy-${env_name}.lock"
if [ -n "${DEPLOY_LOCK_HELD:-}" ]; then
    echo "==> Running under deploy-lock's $env_name lock ($DEPLOY_LOCK_HELD)"
elif [ "$force" = 1 ]; then
    echo "WARNING: --force given: skipping the deployment lock"
elif command -v deploy-lock >/dev/null; then
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    rest=() dropped=0
    for a in "${all_args[@]}"; do
        if [ "$dropped" = 0 ] && [ "$a" = "$env_name" ]; then dropped=1; continue; fi
        rest+=("$a")
    done
    exec deploy-lock --project-root "$root" "$env_name" "${rest[@]}"
else
    if ! mkdir "$lock_dir" 2>/dev/null; then
        # The legacy rule: stale once locked_at is over 30 minutes old.
        locked_at="$(cat "$lock_dir/locked_at" 2>/dev/null || echo 0)"
        if [ "$locked_at" -gt 1000000000 ] 2>/dev/null && [ $(( $(date +%s) - locked_at )) -gt 1800 ]; then
            echo "WARNING: removing stale lock $lock_dir"
            rm -rf "$lock_dir"
            mkdir "$lock_dir"
        else
            echo "ERROR: Deployment lock held: $lock_dir (see ./deploy/scripts/unlock.sh $env_name)" >&2
            exit 1
        fi
    fi
    date +%s > "$lock_dir/locked_at"
    trap 'rm -rf "$lock_dir"' EXIT
fi

step_secs="${DEMO_STEP_SECS:-1}"
log_dir="${HOME:-/tmp}/.togather/logs/deployments"
mkdir -p "$log_dir"
log="$log_dir/${env_name}_$(date +%Y%m%d_%H%M%S).log"

step() {
    if [ "$dry_run" = 1 ]; then
        echo "  (dry run) would: $1"
    else
        echo "  -> $1"
        sleep "$step_secs"
    fi
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $1" >> "$log"
}

echo "==> Deploying $env_name: branch $branch, version $version (pid $$)"
if [ "$env_diff" = 1 ]; then
    echo "  env diff: (demo) no differences"
fi
step "fetch $branch@$version"
step "build release"
if [ "$skip_migrations" = 1 ]; then
    echo "  -> migrations skipped (--skip-migrations)"
else
    step "run database migrations"
fi
step "switch traffic to the new release"
echo "==> Deployed $env_name (log: $log)"
