#!/bin/sh
# Install what the test suite needs on a fresh Debian machine, then run it.
# Arguments go to pytest: tests/run.sh -q, tests/run.sh tests/test_x.py -k name
set -eu

cd "$(dirname "$0")/.."
. tests/venv.sh

# The end-to-end tests start real sshd servers and use the real ssh client.
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null 2>&1; then
    apt_install "the tests run real sshd nodes and the ssh client" \
        openssh-server openssh-client
fi

ensure_venv test
exec .venv/bin/python -m pytest "$@"
