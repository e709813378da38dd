#!/usr/bin/env bash
# Mount an fsobj store, installing what is missing first.
#   ./mount.sh [--store DIR] [--foreground] [--private] [--log-level L] MOUNTPOINT
# Options go before or after the mount point; all but it go to `fsobj mount`.
# Without --store the embedded default store ($XDG_DATA_HOME/fsobj) is used.
# The set-up functions are shared with tests/run, which sources this file.
set -euo pipefail

FSOBJ_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Install Debian packages that are absent (as root; otherwise say what to run).
ensure_debs() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "fsobj needs: ${missing[*]}; run: sudo apt-get install ${missing[*]}" >&2
        return 1
    fi
    echo "installing ${missing[*]} ..." >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
}

# Create .venv and (re)install the package whenever pyproject.toml changed.
#   ensure_venv [EXTRA]: with the optional dependencies EXTRA too (tests/run: test).
# Mounting needs the runtime dependencies alone, so a first mount installs only those.
ensure_venv() {
    local venv="$FSOBJ_ROOT/.venv" extra=${1:-} stamp target=$FSOBJ_ROOT
    stamp=$(sha256sum "$FSOBJ_ROOT/pyproject.toml" | cut -d' ' -f1)
    [ -z "$extra" ] || target="$FSOBJ_ROOT[$extra]"
    if [ ! -x "$venv/bin/python" ]; then
        echo "creating $venv ..." >&2
        python3 -m venv "$venv"
    fi
    if [ "$(cat "$venv/.fsobj-installed${extra:+-$extra}" 2>/dev/null)" != "$stamp" ]; then
        echo "installing fsobj${extra:+ with its $extra tools} into $venv ..." >&2
        "$venv/bin/pip" install -q --disable-pip-version-check -e "$target" >&2
        echo "$stamp" > "$venv/.fsobj-installed${extra:+-$extra}"
        # With an extra, what mounting needs is installed too: a mount.sh run meanwhile
        # (tests/test_cli.py runs it) must not install the package again under running
        # tests, whose commands (mount.fuse.fsobj) would vanish for the while.
        echo "$stamp" > "$venv/.fsobj-installed"
    fi
}

# ensure_setup [--extra NAME] [DEBIAN PACKAGE ...]: what mounting needs, and more.
ensure_setup() {
    local extra=
    if [ "${1:-}" = "--extra" ]; then extra=$2; shift 2; fi
    ensure_debs fuse3 libfuse3-dev pkg-config "$@"
    ensure_venv "$extra"
    # The project's bytecode, written once: an editable install leaves it to the first
    # import, which PYTHONDONTWRITEBYTECODE (set on some machines) forbids, and then every
    # daemon and command compiles fsobj again (0.2 s of CPU each, measured).
    "$FSOBJ_ROOT/.venv/bin/python" -m compileall -q "$FSOBJ_ROOT/fsobj" >/dev/null
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    usage="usage: $0 [--store DIR] [--foreground] [--private] [--commit-interval S] [--cache-entries N] [--s3 [HOST:]PORT] [--log-level L] MOUNTPOINT"
    mountpoint=
    args=()
    while [ $# -gt 0 ]; do
        case $1 in
            -h|--help) echo "$usage" >&2; exit 2 ;;
            --store|--log-level|--commit-interval|--cache-entries|--s3|--abandon-uploads-after)
                [ $# -ge 2 ] || { echo "$1 needs a value; $usage" >&2; exit 2; }
                args+=("$1" "$2"); shift 2 ;;
            --*) args+=("$1"); shift ;;
            *)
                [ -z "$mountpoint" ] || { echo "one mount point only; $usage" >&2; exit 2; }
                mountpoint=$1; shift ;;
        esac
    done
    [ -n "$mountpoint" ] || { echo "$usage" >&2; exit 2; }
    ensure_setup
    mkdir -p "$mountpoint"
    exec "$FSOBJ_ROOT/.venv/bin/fsobj" mount "${args[@]}" "$mountpoint"
fi
