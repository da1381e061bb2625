# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_deploy_lock_global_optspecs
    string join \n lock-dir= project-root= stale-secs= wait-interval= wait-timeout= backend= etcd-endpoints= etcd-prefix= etcd-ttl= h/help V/version
end

function __fish_deploy_lock_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_deploy_lock_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_deploy_lock_using_subcommand
    set -l cmd (__fish_deploy_lock_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -l wait-interval -d 'Seconds between progress lines while waiting; decimals allowed' -r
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -l wait-timeout -d 'Give up waiting after this many seconds' -r
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -l etcd-ttl -d 'etcd lease TTL: a dead holder blocks others this long at most [default: 30]' -r
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -s V -l version -d 'Print version'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "status" -d 'Show the lock status (the unlock.sh status block, or JSON); without ENV, one line per environment'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "list" -d 'Show the lock status (the unlock.sh status block, or JSON); without ENV, one line per environment'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "wait" -d 'Wait until the lock is released (exit 124 on timeout)'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "unlock" -d 'Force-unlock: remove the lock whoever holds it (asks for \'yes\')'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "check" -d 'Exit 0 only while the fencing token N still holds the lock (etcd; before an irreversible step)'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "run" -d 'Run deploy/scripts/deploy.sh ENV (or COMMAND) under the lock; `deploy-lock ENV ...` is short for it'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "freeze" -d 'Freeze ENV: hold its lock with no command, so no deploy starts, until `unfreeze` or --until'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "unfreeze" -d 'Lift a freeze: remove the lock `freeze` holds (only a freeze; audited)'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "log" -d 'Show the audit trail: who took, released, took over or force-unlocked which lock, when'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "development" -d 'Run deploy/scripts/deploy.sh development [DEPLOY_SH_ARGS...] under the lock (deploy-lock run development)'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "staging" -d 'Run deploy/scripts/deploy.sh staging [DEPLOY_SH_ARGS...] under the lock (deploy-lock run staging)'
complete -c deploy-lock -n "__fish_deploy_lock_needs_command" -f -a "production" -d 'Run deploy/scripts/deploy.sh production [DEPLOY_SH_ARGS...] under the lock (deploy-lock run production)'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -l remote -d 'Run it on USER@HOST over ssh (DEPLOY_LOCK_SSH sets the ssh command)' -r -f -a "(__fish_print_hostnames)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -l remote-dir -d 'The server\'s checkout' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -l json -d 'Print one JSON object instead of the status block'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -s q -l quiet -d 'Print nothing; exit 0 if `deploy-lock run ENV` would start now without --force, else 75'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -s w -l watch -d 'Keep watching: every environment (or ENV) with its holder, age and waiters, redrawn on every change until Ctrl-C; off a terminal, one block per change'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -l remote -d 'Run it on USER@HOST over ssh (DEPLOY_LOCK_SSH sets the ssh command)' -r -f -a "(__fish_print_hostnames)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -l remote-dir -d 'The server\'s checkout' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -l json -d 'Print one JSON object instead of the status block'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -s q -l quiet -d 'Print nothing; exit 0 if `deploy-lock run ENV` would start now without --force, else 75'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -s w -l watch -d 'Keep watching: every environment (or ENV) with its holder, age and waiters, redrawn on every change until Ctrl-C; off a terminal, one block per change'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand list" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand wait" -l remote -d 'Run it on USER@HOST over ssh (DEPLOY_LOCK_SSH sets the ssh command)' -r -f -a "(__fish_print_hostnames)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand wait" -l remote-dir -d 'The server\'s checkout' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand wait" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand wait" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand wait" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand wait" -l wait-interval -d 'Seconds between progress lines while waiting; decimals allowed' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand wait" -l wait-timeout -d 'Give up waiting after this many seconds' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand wait" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand wait" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand wait" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand wait" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -l id -d 'Remove the lock only if it is still this one (the Lock ID `status` shows)' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -l remote -d 'Run it on USER@HOST over ssh (DEPLOY_LOCK_SSH sets the ssh command)' -r -f -a "(__fish_print_hostnames)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -l remote-dir -d 'The server\'s checkout' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -s y -l yes -d 'Do not ask for confirmation'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -l reset-state -d 'Recover from a state file that is not valid JSON: back it up beside itself (the time in its name), write a fresh one with the lock released, and remove the lock directory'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unlock" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand check" -l token -d 'The token the command got as DEPLOY_LOCK_FENCING_TOKEN' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand check" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand check" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand check" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand check" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand check" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand check" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand check" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l wait -d 'Wait for the lock instead of exiting 75, at most SECS (default: --wait-timeout), in line: waiters are served in arrival order'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l conflict-exit-code -d 'Exit N (1-255) instead of 75, 124 or 76 when the lock is refused, --wait gives up, or the lock is lost, so the command\'s own exit codes stay apart (like flock -E)' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l reason -d 'Why this run holds the lock, shown to whoever looks (status, refusals, waiting, log) [default: deploy.sh\'s arguments]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l remote -d 'Run it on USER@HOST over ssh (DEPLOY_LOCK_SSH sets the ssh command)' -r -f -a "(__fish_print_hostnames)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l remote-dir -d 'The server\'s checkout' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l wait-interval -d 'Seconds between progress lines while waiting; decimals allowed' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l wait-timeout -d 'Give up waiting after this many seconds' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l etcd-ttl -d 'etcd lease TTL: a dead holder blocks others this long at most [default: 30]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -l force -d 'Take over a dead holder\'s lock before it is stale (never a live holder\'s); also passed to deploy.sh'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand run" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l reason -d 'Why (shown to everyone who is refused); required' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l until -d 'Lift it by itself then: an RFC 3339 time (2026-02-03T18:00:00Z), HH:MM today (local time), or a duration (2h, 90m, "1h 30m", 1d)' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l wait -d 'Wait for the lock if it is held, at most SECS (default: --wait-timeout)' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l holder -d 'The detached holder\'s own flag (the freeze\'s end, or `never`)' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l wait-interval -d 'Seconds between progress lines while waiting; decimals allowed' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l wait-timeout -d 'Give up waiting after this many seconds' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -l etcd-ttl -d 'etcd lease TTL: a dead holder blocks others this long at most [default: 30]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand freeze" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unfreeze" -l id -d 'Lift it only if it is still this freeze (the Lock ID `status` shows)' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unfreeze" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unfreeze" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unfreeze" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unfreeze" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unfreeze" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unfreeze" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand unfreeze" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand log" -s n -l lines -d 'Only the last N lines' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand log" -l since -d 'Only events since DURATION ago (90s, 30m, 2h, 1d, "1h 30m") or a UTC time (2026-02-03T20:00:00Z)' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand log" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand log" -l json -d 'One JSON object per line, as recorded, plus `line` and `held_seconds`'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand log" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l wait -d 'Wait for the lock instead of exiting 75, at most SECS (default: --wait-timeout), in line: waiters are served in arrival order'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l conflict-exit-code -d 'Exit N (1-255) instead of 75, 124 or 76 when the lock is refused, --wait gives up, or the lock is lost, so the command\'s own exit codes stay apart (like flock -E)' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l reason -d 'Why this run holds the lock, shown to whoever looks (status, refusals, waiting, log) [default: deploy.sh\'s arguments]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l remote -d 'Run it on USER@HOST over ssh (DEPLOY_LOCK_SSH sets the ssh command)' -r -f -a "(__fish_print_hostnames)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l remote-dir -d 'The server\'s checkout' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l wait-interval -d 'Seconds between progress lines while waiting; decimals allowed' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l wait-timeout -d 'Give up waiting after this many seconds' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l etcd-ttl -d 'etcd lease TTL: a dead holder blocks others this long at most [default: 30]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -l force -d 'Take over a dead holder\'s lock before it is stale (never a live holder\'s); also passed to deploy.sh'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand development" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l wait -d 'Wait for the lock instead of exiting 75, at most SECS (default: --wait-timeout), in line: waiters are served in arrival order'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l conflict-exit-code -d 'Exit N (1-255) instead of 75, 124 or 76 when the lock is refused, --wait gives up, or the lock is lost, so the command\'s own exit codes stay apart (like flock -E)' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l reason -d 'Why this run holds the lock, shown to whoever looks (status, refusals, waiting, log) [default: deploy.sh\'s arguments]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l remote -d 'Run it on USER@HOST over ssh (DEPLOY_LOCK_SSH sets the ssh command)' -r -f -a "(__fish_print_hostnames)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l remote-dir -d 'The server\'s checkout' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l wait-interval -d 'Seconds between progress lines while waiting; decimals allowed' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l wait-timeout -d 'Give up waiting after this many seconds' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l etcd-ttl -d 'etcd lease TTL: a dead holder blocks others this long at most [default: 30]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -l force -d 'Take over a dead holder\'s lock before it is stale (never a live holder\'s); also passed to deploy.sh'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand staging" -s h -l help -d 'Print help'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l wait -d 'Wait for the lock instead of exiting 75, at most SECS (default: --wait-timeout), in line: waiters are served in arrival order'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l conflict-exit-code -d 'Exit N (1-255) instead of 75, 124 or 76 when the lock is refused, --wait gives up, or the lock is lost, so the command\'s own exit codes stay apart (like flock -E)' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l reason -d 'Why this run holds the lock, shown to whoever looks (status, refusals, waiting, log) [default: deploy.sh\'s arguments]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l remote -d 'Run it on USER@HOST over ssh (DEPLOY_LOCK_SSH sets the ssh command)' -r -f -a "(__fish_print_hostnames)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l remote-dir -d 'The server\'s checkout' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l lock-dir -d 'Folder holding togather-deploy-ENV.lock' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l project-root -d 'Checkout whose deploy/config/deployment-state.json records the lock [default: nearest folder above the working directory with deploy/scripts or deploy/config]' -r -f -a "(__fish_complete_directories)"
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l stale-secs -d 'A lock older than this is stale' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l wait-interval -d 'Seconds between progress lines while waiting; decimals allowed' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l wait-timeout -d 'Give up waiting after this many seconds' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l backend -d 'Where locks live: this host\'s lock folder, or etcd shared by every machine [default: deploy/config/deploy-lock.env\'s, else local]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l etcd-endpoints -d 'etcd client URLs, comma-separated, tried in order' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l etcd-prefix -d 'etcd key prefix; the lock is PREFIX/v1/env/ENV/lock [default: /togather/deploy-lock]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l etcd-ttl -d 'etcd lease TTL: a dead holder blocks others this long at most [default: 30]' -r
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -l force -d 'Take over a dead holder\'s lock before it is stale (never a live holder\'s); also passed to deploy.sh'
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand production" -s h -l help -d 'Print help'
# Added by deploy-lock's generator: the environment argument.
complete -c deploy-lock -n "__fish_deploy_lock_using_subcommand status wait unlock check run freeze unfreeze log; and not __fish_seen_subcommand_from development staging production" -f -a "development staging production" -d 'Environment'
