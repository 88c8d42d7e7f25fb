# Shared by tests/run.sh and examples/demo.sh; source it from the project root.
#
#   apt_install REASON PACKAGE...   install Debian packages, saying why
#   ensure_venv [EXTRAS]            make .venv and pip install -e ".[EXTRAS]"

say() {
    printf '%s\n' "$*" >&2
}

apt_install() {
    reason=$1
    shift
    say "Installing $* with apt-get: $reason"
    if [ "$(id -u)" -eq 0 ]; then
        as_root=""
    elif command -v sudo >/dev/null 2>&1; then
        as_root="sudo"
    else
        say "Error: not root and no sudo; install $* by hand, then run this again."
        exit 1
    fi
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get -qq update >/dev/null
    $as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get -qq install -y --no-install-recommends "$@" >/dev/null
}

ensure_venv() {
    extras=${1:-}
    if [ ! -x .venv/bin/pip ]; then
        rm -rf .venv
        if ! python3 -m venv .venv >/dev/null 2>&1; then
            rm -rf .venv
            apt_install "python3 -m venv does not work without it" python3-venv
            python3 -m venv .venv
        fi
        say "Created .venv at $(pwd)/.venv"
    fi
    if [ -n "$extras" ]; then
        .venv/bin/pip install -q -e ".[$extras]"
    else
        .venv/bin/pip install -q -e .
    fi
}
