#!/bin/sh
# The quick start: install the reconciler into .venv and apply the demo state.
# Arguments go to `reconcile apply`.
set -eu

cd "$(dirname "$0")/.."
. tests/venv.sh

ensure_venv
exec .venv/bin/reconcile apply examples/demo "$@"
