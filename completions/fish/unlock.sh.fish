complete -c unlock.sh -l project-root -d 'Checkout whose deploy/config/deployment-state.json to use (default: two folders above the script)' -r -f -a "(__fish_complete_directories)"
complete -c unlock.sh -l remote -d 'Run it on USER@HOST over ssh, in the server\'s checkout, passing its output and exit code through (DEPLOY_LOCK_SSH sets the ssh command)' -r -f -a "(__fish_print_hostnames)"
complete -c unlock.sh -l remote-dir -d 'The server\'s checkout (default: /opt/togather/src; ~/ means the server user\'s home)' -r -f
complete -c unlock.sh -l status -d 'Show lock status (default; also the word `status`)'
complete -c unlock.sh -l wait -d 'Wait for lock to be released naturally (also `wait`): progress every DEPLOY_LOCK_WAIT_INTERVAL seconds, exit 1 after DEPLOY_LOCK_WAIT_TIMEOUT'
complete -c unlock.sh -l force -d 'Force unlock after typing \'yes\' (also `force`): DANGEROUS - use only if deployment crashed'
complete -c unlock.sh -s h -l help -d 'Print help (see more with \'--help\')'
# Added by deploy-lock's generator: the environment argument.
complete -c unlock.sh -f
complete -c unlock.sh -n "not __fish_seen_subcommand_from development staging production" -f -a "development staging production" -d 'Environment'
