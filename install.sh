#!/usr/bin/env bash
# Builds deploy-lock from this checkout and installs it: the binary, unlock.sh
# (a link to it), man pages and shell completions; optionally the unlock.sh
# shim of a project checkout. Records what it installed, so that --uninstall
# removes exactly that. Run ./install.sh --help.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: ./install.sh [--prefix DIR] [--project CHECKOUT] [--binary FILE]
       ./install.sh [--prefix DIR] --uninstall
       ./install.sh --deb DIR [--binary FILE]

Builds deploy-lock with `cargo build --release --locked` and installs
  PREFIX/bin/deploy-lock
  PREFIX/bin/unlock.sh                      (a link to deploy-lock)
  PREFIX/share/man/man1/*.1                 (man deploy-lock, man unlock.sh)
  PREFIX/share/bash-completion/completions/{deploy-lock,unlock.sh}
  PREFIX/share/zsh/site-functions/{_deploy-lock,_unlock.sh}
  PREFIX/share/fish/vendor_completions.d/{deploy-lock,unlock.sh}.fish
recording them in PREFIX/share/deploy-lock/installed. Running it again
updates them in place.

Options:
  --prefix DIR        install under DIR (default: $HOME/.local, or /usr/local
                      as root)
  --project CHECKOUT  also make CHECKOUT/deploy/scripts/unlock.sh a small
                      bash shim that runs deploy-lock from PATH as unlock.sh,
                      or, where deploy-lock is not on PATH, the legacy script,
                      kept beside it as unlock.sh.legacy (CHECKOUT must have a
                      deploy/ folder). Commit both files: nothing in them
                      points into this machine or anyone's home
  --binary FILE       install FILE, an already built deploy-lock, instead of
                      building (no cargo needed)
  --deb DIR           instead of installing, build the Debian package
                      DIR/deploy-lock_VERSION_ARCH.deb with dpkg-deb
                      (/usr/bin/deploy-lock and unlock.sh, man pages,
                      completions); install it with dpkg -i (or apt install
                      ./FILE.deb) on every operator's machine and deploy host
  --uninstall         remove everything recorded in PREFIX, including every
                      --project shim made with this PREFIX (each legacy
                      unlock.sh is put back), and the folders the install
                      created if they are empty
  -h, --help          show this help
USAGE
}

die() {
    echo "install.sh: $*" >&2
    exit 1
}

absolute() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "$PWD/$1" ;;
    esac
}

if [ "$(id -u)" = 0 ]; then prefix=/usr/local; else prefix="$HOME/.local"; fi
project=""
deb=""
binary=""
uninstall=0
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix | --project | --binary | --deb)
            if [ $# -lt 2 ] || [ -z "$2" ]; then
                echo "install.sh: $1 needs a value (see ./install.sh --help)" >&2
                exit 2
            fi
            case "$1" in
                --prefix) prefix="$2" ;;
                --project) project="$2" ;;
                --binary) binary="$2" ;;
                --deb) deb="$2" ;;
            esac
            shift
            ;;
        --prefix=*) prefix="${1#--prefix=}" ;;
        --project=*) project="${1#--project=}" ;;
        --binary=*) binary="${1#--binary=}" ;;
        --deb=*) deb="${1#--deb=}" ;;
        --uninstall) uninstall=1 ;;
        -h | --help) usage; exit 0 ;;
        *) echo "install.sh: unknown option '$1' (see ./install.sh --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -n "$prefix" ] || { echo "install.sh: --prefix needs a value (see ./install.sh --help)" >&2; exit 2; }
if [ -n "$deb" ] && { [ -n "$project" ] || [ "$uninstall" = 1 ]; }; then
    echo "install.sh: --deb builds a package and installs nothing; it takes no --project or --uninstall (see ./install.sh --help)" >&2
    exit 2
fi

src="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
prefix="$(absolute "${prefix%/}")"
bin="$prefix/bin"
man1="$prefix/share/man/man1"
bash_c="$prefix/share/bash-completion/completions"
zsh_c="$prefix/share/zsh/site-functions"
fish_c="$prefix/share/fish/vendor_completions.d"
record_dir="$prefix/share/deploy-lock"
record="$record_dir/installed"

# The project shim: deploy-lock as unlock.sh where it is installed, the
# legacy script elsewhere. `exec -a "$0"` keeps the name as typed (the
# persona is chosen by it and the usage text names it); the legacy script is
# sourced for the same reason (its $0 and usage stay the shim's).
shim_text() {
    cat <<'SHIM'
#!/usr/bin/env bash
# deploy-lock's unlock.sh shim (install.sh --project wrote it; commit it and
# unlock.sh.legacy). Runs deploy-lock from PATH (or the runner's own
# ~/.local/bin) under this script's name, else the legacy script beside it.
if command -v deploy-lock >/dev/null 2>&1; then
    exec -a "$0" deploy-lock "$@"
elif [ -x "${HOME:-/nonexistent}/.local/bin/deploy-lock" ]; then
    exec -a "$0" "$HOME/.local/bin/deploy-lock" "$@"
elif [ ! -f "$(dirname "${BASH_SOURCE[0]}")/unlock.sh.legacy" ]; then
    echo "$0: deploy-lock is not installed (not on PATH, not in ~/.local/bin) and there is no unlock.sh.legacy beside this script" >&2
    exit 127
fi
# shellcheck source=/dev/null
. "$(dirname "${BASH_SOURCE[0]}")/unlock.sh.legacy"
SHIM
}
# Whether FILE is install.sh's shim: this version's text, or the symlink to
# a PREFIX/bin/deploy-lock that earlier versions made.
is_shim() {
    if [ -L "$1" ]; then
        [ "$(readlink "$1")" = "$bin/deploy-lock" ]
    else
        [ -f "$1" ] && [ "$(cat "$1")" = "$(shim_text)" ]
    fi
}

# The record: one "KIND<TAB>PATH" line per thing installed, KIND being file,
# dir (a folder the install created) or shim (a project's unlock.sh shim).
recorded() {
    [ -f "$record" ] || return 0
    awk -F '\t' -v k="$1" '$1 == k { print $2 }' "$record"
}

if [ "$uninstall" = 1 ]; then
    if [ ! -f "$record" ]; then
        echo "nothing to uninstall: $record does not exist"
        exit 0
    fi
    if [ -n "$project" ]; then
        project="$(absolute "${project%/}")"
        if [ -d "$project" ]; then project="$(cd "$project" && pwd)"; fi
        shim="$project/deploy/scripts/unlock.sh"
        recorded shim | grep -qxF -- "$shim" ||
            echo "install.sh: $shim is not recorded in $record; nothing to restore there" >&2
    fi
    while IFS= read -r shim; do
        if is_shim "$shim"; then
            rm -f "$shim"
            if [ -e "$shim.legacy" ] || [ -L "$shim.legacy" ]; then
                mv "$shim.legacy" "$shim"
                echo "restored $shim (the legacy script)"
            else
                echo "removed $shim"
            fi
        elif [ -e "$shim.legacy" ] || [ -L "$shim.legacy" ]; then
            echo "install.sh: left $shim and $shim.legacy alone: $shim is no longer install.sh's shim" >&2
        fi
    done < <(recorded shim)
    while IFS= read -r f; do
        if [ -e "$f" ] || [ -L "$f" ]; then
            rm -f "$f"
            echo "removed $f"
        fi
    done < <(recorded file)
    dirs="$(recorded dir)"
    rm -f "$record"
    echo "removed $record"
    # Created folders, deepest first; only those now empty.
    while IFS= read -r d; do
        [ -n "$d" ] || continue
        if rmdir "$d" 2>/dev/null; then
            echo "removed $d/"
        elif [ -d "$d" ]; then
            echo "kept $d/ (not empty)"
        fi
    done < <(printf '%s\n' "$dirs" | awk '{ l[NR] = $0 } END { for (i = NR; i > 0; i--) print l[i] }')
    exit 0
fi

# Check everything before changing anything.
if [ -n "$project" ]; then
    project="$(absolute "${project%/}")"
    # `--project .` names the checkout itself, not PATH/.
    if [ -d "$project" ]; then project="$(cd "$project" && pwd)"; fi
    [ -d "$project/deploy" ] ||
        die "$project has no deploy/ folder; --project takes a checkout of the project that deploys with deploy/scripts"
    shim="$project/deploy/scripts/unlock.sh"
    if { [ -e "$shim" ] || [ -L "$shim" ]; } && ! is_shim "$shim" &&
        { [ -e "$shim.legacy" ] || [ -L "$shim.legacy" ]; }; then
        die "both $shim and $shim.legacy exist; move one of them away first"
    fi
fi
if [ -n "$deb" ]; then
    deb="$(absolute "${deb%/}")"
    [ -d "$deb" ] || die "--deb $deb is not a folder"
    command -v dpkg-deb >/dev/null || die "dpkg-deb not found: --deb needs Debian's dpkg (apt-get install dpkg)"
elif { [ -e "$bin/unlock.sh" ] || [ -L "$bin/unlock.sh" ]; } && [ "$(readlink "$bin/unlock.sh" || true)" != deploy-lock ]; then
    die "$bin/unlock.sh exists and is not the link to deploy-lock (a legacy unlock.sh?); move it away first"
fi
for f in "$src"/man/*.1 "$src"/completions/bash/deploy-lock "$src"/completions/bash/unlock.sh \
    "$src"/completions/zsh/_deploy-lock "$src"/completions/zsh/_unlock.sh "$src"/completions/fish/*.fish; do
    [ -f "$f" ] || die "$f is missing: this is not a complete deploy-lock checkout"
done

if [ -n "$binary" ]; then
    binary="$(absolute "$binary")"
    { [ -f "$binary" ] && [ -x "$binary" ]; } || die "--binary $binary is not an executable file"
else
    command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs), or pass --binary FILE"
    target="${CARGO_TARGET_DIR:-target}"
    case "$target" in /*) ;; *) target="$src/$target" ;; esac
    # The ordinary, dynamically linked build: user and group names come from
    # the system's NSS (LDAP, SSSD, systemd) like every other tool's.
    (cd "$src" && cargo build --release --locked)
    binary="$target/release/deploy-lock"
fi
version="$("$binary" --version 2>/dev/null || true)"
case "$version" in
    "deploy-lock "*) ;;
    *) die "$binary does not answer --version as deploy-lock does" ;;
esac

# The Debian package: the same files under /usr, laid out as Debian's
# policy and lintian expect, built by dpkg-deb as root:root.
build_deb() {
    local version="${1#deploy-lock }" arch stage doc depends f out when
    arch="$(dpkg --print-architecture)"
    stage="$(mktemp -d "${TMPDIR:-/tmp}/deploy-lock-deb.XXXXXX")"
    # shellcheck disable=SC2064 # expand now: the folder of this call
    trap "rm -rf '$stage'" EXIT
    doc="$stage/pkg/usr/share/doc/deploy-lock"
    mkdir -p "$stage/pkg/DEBIAN" "$stage/pkg/usr/bin" "$stage/pkg/usr/share/man/man1" "$doc" \
        "$stage/pkg/usr/share/bash-completion/completions" "$stage/pkg/usr/share/zsh/vendor-completions" \
        "$stage/pkg/usr/share/fish/vendor_completions.d"
    install -m 0755 "$binary" "$stage/pkg/usr/bin/deploy-lock"
    # As dh_strip does (the release build is stripped already; a --binary
    # debug build is not, and lintian refuses that).
    if command -v strip >/dev/null; then
        strip --strip-unneeded --remove-section=.comment --remove-section=.note "$stage/pkg/usr/bin/deploy-lock"
    fi
    ln -s deploy-lock "$stage/pkg/usr/bin/unlock.sh"
    for f in "$src"/man/*.1; do
        local page
        page="$(basename "$f")"
        gzip -9n <"$src/man/$page" >"$stage/pkg/usr/share/man/man1/$page.gz"
    done
    for f in deploy-lock unlock.sh; do
        install -m 0644 "$src/completions/bash/$f" "$stage/pkg/usr/share/bash-completion/completions/$f"
    done
    for f in _deploy-lock _unlock.sh; do
        install -m 0644 "$src/completions/zsh/$f" "$stage/pkg/usr/share/zsh/vendor-completions/$f"
    done
    for f in "$src"/completions/fish/*.fish; do
        install -m 0644 "$f" "$stage/pkg/usr/share/fish/vendor_completions.d/$(basename "$f")"
    done
    # A native package: its changelog is changelog.gz, dated by the commit
    # (or SOURCE_DATE_EPOCH), so that the same source builds the same file.
    when="${SOURCE_DATE_EPOCH:-$(git -C "$src" log -1 --format=%ct 2>/dev/null || date +%s)}"
    {
        echo "deploy-lock ($version) unstable; urgency=medium"
        echo
        echo "  * Built by install.sh --deb from the deploy-lock source tree."
        echo
        echo " -- deploy-lock maintainers <deploy-lock@example.org>  $(LC_ALL=C date -u -R -d "@$when")"
    } | gzip -9n >"$doc/changelog.gz"
    cat >"$doc/copyright" <<'COPYRIGHT'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: deploy-lock

Files: *
Copyright: 2026 the deploy-lock authors
License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the "Software"), to deal
 in the Software without restriction, including without limitation the rights
 to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
 copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
 OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
 THE SOFTWARE.
COPYRIGHT
    # The shared libraries it needs, as Debian's own tool words them.
    depends="libc6"
    if command -v dpkg-shlibdeps >/dev/null; then
        mkdir -p "$stage/src/debian"
        printf 'Source: deploy-lock\n\nPackage: deploy-lock\nArchitecture: any\n' >"$stage/src/debian/control"
        depends="$(cd "$stage/src" && dpkg-shlibdeps -O "$stage/pkg/usr/bin/deploy-lock" 2>/dev/null |
            sed -n 's/^shlibs:Depends=//p')"
        [ -n "$depends" ] || depends="libc6"
    fi
    cat >"$stage/pkg/DEBIAN/control" <<CONTROL
Package: deploy-lock
Version: $version
Architecture: $arch
Maintainer: deploy-lock maintainers <deploy-lock@example.org>
Installed-Size: $(du -sk --exclude=DEBIAN "$stage/pkg" | cut -f1)
Depends: $depends
Section: admin
Priority: optional
Description: safe deployment locks for bash deploy scripts
 deploy-lock runs a deploy under a lock shared by everyone deploying from a
 checkout, so that two people never deploy to one environment at once. It is
 also a drop-in for the legacy deploy/scripts/unlock.sh, byte for byte.
CONTROL
    (cd "$stage/pkg" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$stage/pkg/DEBIAN/md5sums"
    chmod 0644 "$stage/pkg/DEBIAN/control" "$stage/pkg/DEBIAN/md5sums"
    out="$deb/deploy-lock_${version}_${arch}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$stage/pkg" "$out.tmp" >/dev/null
    mv -f "$out.tmp" "$out"
    echo "built $out"
    echo "install it with: sudo apt install $out (or sudo dpkg -i $out)"
}
if [ -n "$deb" ]; then
    build_deb "$version"
    exit 0
fi

new_entries=()
# mkdir -p that remembers the folders it created, outermost first.
make_dir() {
    local d="$1" missing=()
    while [ ! -d "$d" ]; do
        missing=("$d" "${missing[@]}")
        d="$(dirname "$d")"
    done
    for d in "${missing[@]}"; do
        mkdir "$d"
        new_entries+=("dir	$d")
    done
}
put() { # put MODE FROM TO
    make_dir "$(dirname "$3")"
    # (--binary may name the installed file itself: nothing to copy then)
    [ "$2" -ef "$3" ] || install -m "$1" "$2" "$3"
    new_entries+=("file	$3")
    echo "installed $3"
}

make_dir "$record_dir"
put 0755 "$binary" "$bin/deploy-lock"
ln -sfn deploy-lock "$bin/unlock.sh"
new_entries+=("file	$bin/unlock.sh")
echo "installed $bin/unlock.sh -> deploy-lock"
for f in "$src"/man/*.1; do put 0644 "$f" "$man1/$(basename "$f")"; done
for f in deploy-lock unlock.sh; do put 0644 "$src/completions/bash/$f" "$bash_c/$f"; done
for f in _deploy-lock _unlock.sh; do put 0644 "$src/completions/zsh/$f" "$zsh_c/$f"; done
for f in "$src"/completions/fish/*.fish; do put 0644 "$f" "$fish_c/$(basename "$f")"; done

if [ -n "$project" ]; then
    make_dir "$project/deploy/scripts"
    if { [ -e "$shim" ] || [ -L "$shim" ]; } && ! is_shim "$shim"; then
        mv "$shim" "$shim.legacy"
        echo "kept the legacy script as $shim.legacy"
    fi
    # Written beside it and renamed over it: a shell running the old one
    # keeps reading what it had.
    shim_text >"$shim.tmp"
    chmod 0755 "$shim.tmp"
    mv -f "$shim.tmp" "$shim"
    new_entries+=("shim	$shim")
    if [ -e "$shim.legacy" ] || [ -L "$shim.legacy" ]; then
        echo "installed $shim (the shim: commit it and $shim.legacy)"
    else
        # No legacy script to fall back to: the shim then needs deploy-lock
        # on PATH or in ~/.local/bin, and says so when it is missing.
        echo "installed $shim (the shim: commit it; there was no legacy unlock.sh to keep)"
    fi
fi

# Merge into the record: what an earlier install recorded stays, once.
{
    [ -f "$record" ] && cat "$record"
    printf '%s\n' "${new_entries[@]}"
} | awk '!seen[$0]++' >"$record.tmp"
mv "$record.tmp" "$record"
echo "recorded in $record (./install.sh --prefix $prefix --uninstall removes it all)"

# Where each tool looks, so that the advice below is only what is needed.
in_list() { # in_list ITEM COLON:LIST
    case ":$2:" in *":$1:"*) return 0 ;; *) return 1 ;; esac
}
share="$prefix/share"
data_home="${XDG_DATA_HOME:-$HOME/.local/share}"
echo
echo "To use it:"
if in_list "$bin" "$PATH"; then
    echo "  PATH  $bin is on your PATH"
    echo "  man   man deploy-lock; man unlock.sh"
else
    echo "  PATH  add $bin to PATH, e.g. in ~/.profile:"
    echo "          export PATH=\"$bin:\$PATH\""
    echo "  man   man deploy-lock; man unlock.sh, once $bin is on PATH"
    echo "          (before that: man -l $man1/unlock.sh.1)"
fi
if [ "$share" = "$data_home" ] || in_list "$share" "${XDG_DATA_DIRS:-/usr/local/share:/usr/share}"; then
    echo "  bash  completions load on demand (with the bash-completion package)"
else
    echo "  bash  add to ~/.bashrc:"
    echo "          for f in $bash_c/*; do . \"\$f\"; done"
fi
echo "  zsh   add to ~/.zshrc, before compinit:"
echo "          fpath=($zsh_c \$fpath)"
if [ "$share" = "$data_home" ] || { [ -n "${XDG_DATA_DIRS:-}" ] && in_list "$share" "$XDG_DATA_DIRS"; }; then
    echo "  fish  completions load on demand (for commands on PATH)"
else
    echo "  fish  add to ~/.config/fish/config.fish:"
    echo "          set -p fish_complete_path $fish_c"
fi
