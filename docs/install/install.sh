#!/bin/sh
# `make install` / `make uninstall` (as root): f2b-bgp in a virtualenv, its user, directories,
# systemd units, reference config, fail2ban and ExaBGP files. Idempotent; an install over an
# older one keeps the config, the store and every route (a running daemon is restarted and
# reconciles, ExaBGP is left alone).
#
#   sh docs/install/install.sh install|uninstall
#
# Settings (environment, given by the Makefile):
#   DESTDIR    stage into this root: files only, no user, no chown, no systemctl (packaging, tests)
#   PREFIX     /usr/local: the f2b-bgp link in PREFIX/bin; units, sysusers.d and tmpfiles.d under
#              PREFIX/lib (systemd reads /usr/local/lib and /usr/lib)
#   VENV       /opt/f2b-bgp: the virtualenv
#   PYTHON     python3: the interpreter the virtualenv is made from
#   VENV_OPTS  extra `python3 -m venv` options, e.g. --system-site-packages
# pip reads its own PIP_* variables (PIP_NO_INDEX=1 PIP_FIND_LINKS=DIR for an offline install).
#
# The manifest VENV/installed-files lists every file installed here with its sha256; uninstall
# removes those still unchanged and keeps the config (/etc/f2b-bgp), the state
# (/var/lib/f2b-bgp), the user and any file an operator changed.
set -eu

DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr/local}
VENV=${VENV:-/opt/f2b-bgp}
PYTHON=${PYTHON:-python3}
VENV_OPTS=${VENV_OPTS:-}
SRC=$(cd "$(dirname "$0")/../.." && pwd)
LIB=$PREFIX/lib
MANIFEST=$VENV/installed-files
CONFIG=/etc/f2b-bgp/config.toml
NAME=f2b-bgp

say() { printf 'f2b-bgp %s: %s\n' "$ACTION" "$*"; }
die() { say "error: $*" >&2; exit 1; }
root() { printf '%s%s' "$DESTDIR" "$1"; }

# Install SRC as DEST (a target path) with MODE, and list it in the new manifest.
put() {
    install -D -m "$1" "$2" "$(root "$3")"
    record "$3"
}

record() { printf '%s  %s\n' "$(sha256sum < "$(root "$1")" | cut -d' ' -f1)" "$1" >> "$NEW_MANIFEST"; }

# The manifest line of PATH in MANIFEST-FILE (empty if none).
entry() { awk -v p="$1" '$2 == p' "$2" | head -1; }

# Only where none exists: the operator's copy wins (an earlier install's entry is carried over).
put_new() {
    if [ -e "$(root "$3")" ]; then
        say "kept $3"
        entry "$3" "$OLD_MANIFEST" >> "$NEW_MANIFEST"
    else
        put "$@"
    fi
}

venv() {
    py=$(root "$VENV")/bin/python
    base='import os, sys; print(os.path.realpath(sys._base_executable))'
    # a virtualenv that no longer runs, or that another interpreter made, is made again
    if [ "$("$py" -c "$base" 2>/dev/null)" != "$("$PYTHON" -c "$base")" ]; then
        "$PYTHON" -m venv --help >/dev/null 2>&1 || die "$PYTHON has no venv module (apt-get install python3-venv)"
        # shellcheck disable=SC2086  # VENV_OPTS is a list of options
        "$PYTHON" -m venv --clear $VENV_OPTS "$(root "$VENV")"
    fi
    "$py" -m pip install --quiet --disable-pip-version-check --upgrade "$SRC" \
        || die "pip could not install f2b-bgp into $VENV (network? PIP_NO_INDEX/PIP_FIND_LINKS for offline)"
    if [ -n "$DESTDIR" ]; then  # a virtualenv names its own path in its scripts: make it the target's
        grep -rlF "$DESTDIR$VENV" "$(root "$VENV")/bin" "$(root "$VENV")/pyvenv.cfg" 2>/dev/null \
            | xargs -r sed -i "s|$DESTDIR$VENV|$VENV|g"
    fi
    install -d "$(root "$PREFIX/bin")"
    ln -sfn "$VENV/bin/f2b-bgp" "$(root "$PREFIX/bin/f2b-bgp")"
    printf 'link  %s\n' "$PREFIX/bin/f2b-bgp" >> "$NEW_MANIFEST"
}

units() {
    tmp=$(mktemp -d)
    for unit in f2b-bgp.service f2b-bgp-exabgp.service; do
        sed -e "s|/usr/local/bin/f2b-bgp|$VENV/bin/f2b-bgp|g" -e "s|/usr/local/bin/exabgp|$VENV/bin/exabgp|g" \
            "$SRC/docs/install/$unit" > "$tmp/$unit"
        put 0644 "$tmp/$unit" "$LIB/systemd/system/$unit"
    done
    rm -r "$tmp"
    put 0644 "$SRC/docs/install/sysusers.f2b-bgp.conf" "$LIB/sysusers.d/f2b-bgp.conf"
    put 0644 "$SRC/docs/install/tmpfiles.f2b-bgp.conf" "$LIB/tmpfiles.d/f2b-bgp.conf"
    put 0644 "$SRC/docs/install/rt_protos.f2b-bgp.conf" /etc/iproute2/rt_protos.d/f2b-bgp.conf
}

fail2ban() {
    for file in "$SRC"/fail2ban/action.d/* "$SRC"/fail2ban/filter.d/*; do
        put 0644 "$file" "/etc/fail2ban/${file#"$SRC"/fail2ban/}"
    done
    for file in "$SRC"/fail2ban/jail.d/*; do
        jail "$file" "/etc/fail2ban/jail.d/${file##*/}"
    done
}

# A jail.d file enables a jail, and fail2ban refuses to start at all when an enabled jail has no
# log file. So: only where none exists, and not when it turns a passing config test into a failing one.
jail() {
    if [ -e "$(root "$2")" ] || [ ! -f "$(root /etc/fail2ban/jail.conf)" ] || ! command -v fail2ban-client >/dev/null; then
        put_new 0644 "$1" "$2"
        return
    fi
    before=$(fail2ban-client -c "$(root /etc/fail2ban)" -t >/dev/null 2>&1 && echo pass || echo fail)
    install -m 0644 "$1" "$(root "$2")"
    if [ "$before" = pass ] && ! out=$(fail2ban-client -c "$(root /etc/fail2ban)" -t 2>&1); then
        rm "$(root "$2")"
        say "not installed $2: fail2ban's config test fails with it ($(printf '%s\n' "$out" | grep -m1 ERROR | sed 's/.*ERROR *//'))"
        return
    fi
    record "$2"
}

# The reference config, only where none exists; never in the manifest: uninstall keeps it.
config() {
    if [ -e "$(root "$CONFIG")" ]; then
        say "kept $CONFIG"
    else
        install -D -m 0640 "$SRC/f2b_bgp/config.example.toml" "$(root "$CONFIG")"
        say "installed $CONFIG (the reference config: put your own prefixes and peers in it)"
    fi
}

# Rendered from the installed config on every install; a file that is not ours is left alone.
exabgp() {
    tmp=$(mktemp -d)
    if ! out=$("$(root "$VENV")/bin/python" -m f2b_bgp --config "$(root "$CONFIG")" peering exabgp --output-dir "$tmp" 2>&1); then
        say "not rendered /etc/exabgp, kept what is there: $(printf '%s\n' "$out" | head -1)"
        for file in exabgp.conf exabgp.env; do
            entry "/etc/exabgp/$file" "$OLD_MANIFEST" >> "$NEW_MANIFEST"
        done
    else
        for file in exabgp.conf exabgp.env; do
            target=/etc/exabgp/$file
            if [ -e "$(root "$target")" ] && ! head -1 "$(root "$target")" | grep -q '^# f2b-bgp peering:'; then
                say "kept $target (not written by f2b-bgp)"
            else
                put 0644 "$tmp/$file" "$target"
            fi
        done
    fi
    rm -r "$tmp"
}

# The user, group and directories: systemd's own tools read our snippets; else useradd and install -d.
system() {
    if command -v systemd-sysusers >/dev/null; then
        systemd-sysusers "$LIB/sysusers.d/f2b-bgp.conf"
    elif ! getent passwd "$NAME" >/dev/null; then
        useradd --system --user-group --home-dir /var/lib/f2b-bgp --no-create-home --shell /usr/sbin/nologin "$NAME"
    fi
    if command -v systemd-tmpfiles >/dev/null; then
        systemd-tmpfiles --create "$LIB/tmpfiles.d/f2b-bgp.conf"
    else
        install -d -m 0750 -o "$NAME" -g "$NAME" /var/lib/f2b-bgp
        install -d -m 0755 -o "$NAME" -g "$NAME" /run/f2b-bgp
        chown root:"$NAME" "$CONFIG" && chmod 0640 "$CONFIG"
    fi
    # e.g. an interpreter under /root (pyenv): installed, but the daemon could not start
    runuser -u "$NAME" -- "$VENV/bin/f2b-bgp" --version >/dev/null 2>&1 \
        || die "user $NAME cannot run $VENV/bin/f2b-bgp; make the virtualenv from a system interpreter: make install PYTHON=/usr/bin/python3"
}

restart() {
    if [ ! -d /run/systemd/system ]; then
        say "no systemd running: start the daemon yourself ($VENV/bin/f2b-bgp serve as user $NAME, docs/operations.md)"
        return
    fi
    systemctl daemon-reload
    if systemctl is-active --quiet f2b-bgp.service; then
        systemctl restart f2b-bgp.service
        say "restarted f2b-bgp.service (routes stay; it reconciles with the store)"
    else
        say "next: edit $CONFIG, then systemctl enable --now f2b-bgp.service"
    fi
    if systemctl is-active --quiet f2b-bgp-exabgp.service; then
        say "f2b-bgp-exabgp.service not restarted: that drops the BGP sessions; restart it when convenient"
    fi
}

install_all() {
    [ -n "$DESTDIR" ] || [ "$(id -u)" = 0 ] || die "run as root (or set DESTDIR)"
    NEW_MANIFEST=$(mktemp)
    OLD_MANIFEST=$(mktemp)  # a copy: the virtualenv that holds the manifest may be made again
    trap 'rm -f "$NEW_MANIFEST" "$OLD_MANIFEST"' EXIT
    [ ! -f "$(root "$MANIFEST")" ] || cp "$(root "$MANIFEST")" "$OLD_MANIFEST"
    venv
    units
    config
    fail2ban
    exabgp
    # files an older version installed and this one does not
    awk '{print $2}' "$NEW_MANIFEST" | sort > "$NEW_MANIFEST.paths"
    awk '{print $2}' "$OLD_MANIFEST" | sort | comm -23 - "$NEW_MANIFEST.paths" | while read -r path; do
        remove_if_unchanged "$path" "$OLD_MANIFEST"
    done
    rm "$NEW_MANIFEST.paths"
    install -m 0644 "$NEW_MANIFEST" "$(root "$MANIFEST")"
    if [ -z "$DESTDIR" ]; then
        system
        restart
    fi
    say "done: $(wc -l < "$NEW_MANIFEST") files listed in $MANIFEST"
}

remove_if_unchanged() {
    line=$(entry "$1" "$2")
    sum=${line%%  *}
    target=$(root "$1")
    if [ "$sum" = link ]; then
        [ -L "$target" ] && rm "$target"
    elif [ ! -e "$target" ]; then
        :
    elif [ "$(sha256sum < "$target" | cut -d' ' -f1)" = "$sum" ]; then
        rm "$target"
    else
        say "kept $1 (changed since it was installed)"
        return
    fi
    say "removed $1"
}

uninstall_all() {
    [ -n "$DESTDIR" ] || [ "$(id -u)" = 0 ] || die "run as root (or set DESTDIR)"
    manifest=$(root "$MANIFEST")
    [ -f "$manifest" ] || die "nothing to uninstall: no $MANIFEST"
    if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
        systemctl disable --now f2b-bgp-exabgp.service f2b-bgp.service 2>/dev/null || true
        say "stopped the units; routes in place stay until removed by hand ('f2b-bgp flush' before uninstalling)"
    fi
    awk '{print $2}' "$manifest" | while read -r path; do
        remove_if_unchanged "$path" "$manifest"
    done
    rm -rf "$(root "$VENV")"
    for dir in /etc/exabgp /etc/iproute2/rt_protos.d "$LIB/sysusers.d" "$LIB/tmpfiles.d"; do
        rmdir "$(root "$dir")" 2>/dev/null || true
    done
    [ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && systemctl daemon-reload
    say "done; kept $CONFIG, /var/lib/f2b-bgp and the user $NAME"
}

ACTION=${1:-}
case $ACTION in
    install) install_all ;;
    uninstall) uninstall_all ;;
    *) echo "usage: $0 install|uninstall" >&2; exit 2 ;;
esac
