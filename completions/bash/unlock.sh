_unlock.sh() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="unlock.sh"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        unlock.sh)
            opts="-h --status --wait --force --project-root --remote --remote-dir --help development staging production"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --project-root)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --remote)
                    if declare -F _known_hosts_real >/dev/null; then _known_hosts_real -a -- "${cur}"; else COMPREPLY=($(compgen -A hostname -- "${cur}")); fi
                    return 0
                    ;;
                --remote-dir)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

# Added by deploy-lock's generator: environments (or subcommands) until one is
# typed, then the flags; never an environment twice; a command after `--`.
_deploy_lock_tidy() {
    local inner=$1 w env_given="" after_dashdash=""
    shift
    "$inner" "$@"
    local ret=$?
    for w in "${COMP_WORDS[@]:1:COMP_CWORD-1}"; do
        case $w in
            development|staging|production) env_given=1 ;;
            --) after_dashdash=1 ;;
        esac
    done
    if [[ -n $after_dashdash ]]; then
        if [[ ${COMP_WORDS[COMP_CWORD-1]} == -- ]]; then
            COMPREPLY=($(compgen -c -- "$2"))
        else
            COMPREPLY=()
        fi
        return 0
    fi
    local kept=()
    for w in "${COMPREPLY[@]}"; do
        if [[ -n $env_given ]]; then
            case $w in development|staging|production) continue ;; esac
        elif [[ $w == -* && $2 != -* ]]; then
            continue
        fi
        kept+=("$w")
    done
    COMPREPLY=("${kept[@]}")
    return $ret
}

_unlock.sh_tidy() {
    _deploy_lock_tidy _unlock.sh "$@"
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _unlock.sh_tidy -o nosort -o bashdefault -o default unlock.sh
else
    complete -F _unlock.sh_tidy -o bashdefault -o default unlock.sh
fi

# bash-completion loads this file on the first TAB after the command. When the
# command was typed with a path (./deploy/scripts/unlock.sh), bash retries that
# TAB only if the path itself now has a completion: give it one.
if [[ ${COMP_WORDS[0]-} == */unlock.sh ]]; then
    complete -F _unlock.sh_tidy -o bashdefault -o default -- "${COMP_WORDS[0]}"
fi
