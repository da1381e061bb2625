#compdef unlock.sh

autoload -U is-at-least

_unlock.sh() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'--project-root=[Checkout whose deploy/config/deployment-state.json to use (default\: two folders above the script)]:DIR:_files -/' \
'--remote=[Run it on USER@HOST over ssh, in the server'\''s checkout, passing its output and exit code through (DEPLOY_LOCK_SSH sets the ssh command)]:USER@HOST:_hosts' \
'--remote-dir=[The server'\''s checkout (default\: /opt/togather/src; ~/ means the server user'\''s home)]:DIR:' \
'--status[Show lock status (default; also the word \`status\`)]' \
'--wait[Wait for lock to be released naturally (also \`wait\`)\: progress every DEPLOY_LOCK_WAIT_INTERVAL seconds, exit 1 after DEPLOY_LOCK_WAIT_TIMEOUT]' \
'--force[Force unlock after typing '\''yes'\'' (also \`force\`)\: DANGEROUS - use only if deployment crashed]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
':environment -- development, staging or production:(development staging production)' \
&& ret=0
}

(( $+functions[_unlock.sh_commands] )) ||
_unlock.sh_commands() {
    local commands; commands=()
    _describe -t commands 'unlock.sh commands' commands "$@"
}

if [ "$funcstack[1]" = "_unlock.sh" ]; then
    _unlock.sh "$@"
else
    compdef _unlock.sh unlock.sh
fi
