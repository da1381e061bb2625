#!/usr/bin/env bash
# Builds deploy-lock from this checkout and installs it: the binary, unlock.sh
# (a link to it), man pages and shell completions. Run ./install.sh --help.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ./install.sh [--prefix DIR] [--project CHECKOUT] [--uninstall]

  --prefix DIR        install under DIR (default: $HOME/.local, or /usr/local as root)
  --project CHECKOUT  also install CHECKOUT/deploy/scripts/unlock.sh as a link to
                      deploy-lock, keeping the legacy script as unlock.sh.legacy
  --uninstall         remove what an install with the same options put there
                      (and restore the legacy unlock.sh)
USAGE
}

if [ "$(id -u)" = 0 ]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
project=""
uninstall=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="${2:?--prefix needs a DIR}"; shift ;;
        --prefix=*) prefix="${1#--prefix=}" ;;
        --project) project="${2:?--project needs a CHECKOUT}"; shift ;;
        --project=*) project="${1#--project=}" ;;
        --uninstall) uninstall=1 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option '$1' (see ./install.sh --help)" >&2; exit 2 ;;
    esac
    shift
done

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$prefix/bin"
man1="$prefix/share/man/man1"
bash_c="$prefix/share/bash-completion/completions"
zsh_c="$prefix/share/zsh/site-functions"
fish_c="$prefix/share/fish/vendor_completions.d"

installed_files() {
    echo "$bin/deploy-lock"
    echo "$bin/unlock.sh"
    for f in "$src"/man/*.1; do [ -e "$f" ] && echo "$man1/$(basename "$f")"; done
    for f in "$src"/completions/bash/*; do [ -e "$f" ] && echo "$bash_c/$(basename "$f")"; done
    for f in "$src"/completions/zsh/*; do [ -e "$f" ] && echo "$zsh_c/$(basename "$f")"; done
    for f in "$src"/completions/fish/*; do [ -e "$f" ] && echo "$fish_c/$(basename "$f")"; done
}

if [ -n "$project" ]; then
    if [ ! -d "$project/deploy" ]; then
        echo "install.sh: $project has no deploy/ folder; --project takes a checkout of the deploying project" >&2
        exit 1
    fi
    shim="$project/deploy/scripts/unlock.sh"
fi

if [ "$uninstall" = 1 ]; then
    while IFS= read -r f; do
        if [ -e "$f" ] || [ -L "$f" ]; then rm -f "$f"; echo "removed $f"; fi
    done < <(installed_files)
    if [ -n "$project" ]; then
        if [ -L "$shim" ]; then rm -f "$shim"; echo "removed $shim"; fi
        if [ -e "$shim.legacy" ]; then mv "$shim.legacy" "$shim"; echo "restored $shim"; fi
    fi
    exit 0
fi

(cd "$src" && cargo build --release --locked)
install -d "$bin"
install -m 0755 "$src/target/release/deploy-lock" "$bin/deploy-lock"
ln -sfn deploy-lock "$bin/unlock.sh"
echo "installed $bin/deploy-lock and $bin/unlock.sh"
copy_all() {
    local from="$1" to="$2" f
    for f in "$from"/*; do
        [ -e "$f" ] || continue
        install -d "$to"
        install -m 0644 "$f" "$to/$(basename "$f")"
        echo "installed $to/$(basename "$f")"
    done
}
copy_all "$src/man" "$man1"
copy_all "$src/completions/bash" "$bash_c"
copy_all "$src/completions/zsh" "$zsh_c"
copy_all "$src/completions/fish" "$fish_c"

if [ -n "$project" ]; then
    install -d "$project/deploy/scripts"
    if [ -e "$shim" ] && [ ! -L "$shim" ] && [ ! -e "$shim.legacy" ]; then
        mv "$shim" "$shim.legacy"
        echo "kept the legacy script as $shim.legacy"
    fi
    ln -sfn "$bin/deploy-lock" "$shim"
    echo "installed $shim -> $bin/deploy-lock"
fi

echo
echo "zsh users: add this line to ~/.zshrc before compinit for completions:"
echo "  fpath=($zsh_c \$fpath)"
