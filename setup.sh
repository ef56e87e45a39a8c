#!/bin/sh
# The operator's `setup`, docker-mailserver's ./setup.sh:
#   ./setup.sh [-c CONTAINER] [-i IMAGE] [-p CONFIG_PATH] [--ssh TARGET] COMMAND...
# The work is done by mailwright/hostsetup.py (pure standard library), so this
# runs with the system python3 on an operator's machine without the venv.
set -eu
SELF=$(readlink -f -- "$0" 2>/dev/null || echo "$0")     # through a symlink on PATH
DIR=$(CDPATH= cd -- "$(dirname -- "$SELF")" && pwd)
PY=python3
[ -x "$DIR/.venv/bin/python" ] && PY="$DIR/.venv/bin/python"
# Relative paths (the default config folder, -p, inventory.py) are taken from
# this script's directory, as docker-mailserver's setup.sh does.
MAILWRIGHT_SETUP_DIR="${MAILWRIGHT_SETUP_DIR:-$DIR}" PYTHONPATH="$DIR${PYTHONPATH:+:$PYTHONPATH}" \
    exec "$PY" -m mailwright.hostsetup "$@"
