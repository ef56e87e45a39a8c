#!/bin/sh
# One RUN step of build/Dockerfile: the deploy's install stage, run by a
# throwaway pyinfra and held to build/packages.lock. The venv, the wheels and
# apt's lists never outlive this step, so no layer carries them.
set -eu

B=/tmp/mwbuild
VENV=/tmp/mwbuild/venv
LOCK=/opt/mailwright/build/packages.lock
export DEBIAN_FRONTEND=noninteractive

apt-get update -qq
if [ -f "$LOCK" ]; then
    # A version the mirror dropped would be skipped by apt's pin silently:
    # fail here, naming it, before anything is installed.
    python3 "$B/lockcheck.py" avail --lock "$LOCK"
    python3 "$B/lockcheck.py" pin --lock "$LOCK"
    lock_data="--data mailwright_package_lock=$LOCK"
else
    lock_data=""
fi

# Debian's python3 without python3-venv/pip: a venv without pip, populated by
# the hashed pip wheel itself.
python3 -m venv --without-pip "$VENV"
"$VENV/bin/python" "$(ls "$B"/wheels/pip-*.whl)/pip" install --quiet --no-cache-dir \
    --no-index --find-links "$B/wheels" --require-hashes --no-deps -r "$B/requirements.lock"

cd /opt/mailwright
# shellcheck disable=SC2086
"$VENV/bin/pyinfra" -y @local deploy.py --data mailwright_stage=install $lock_data

# The runtime compiled once, here, so a container's first configure run (its cold start)
# compiles nothing: Python modules as hash-checked pycs (PEP 552: no mtime inside, and a
# changed source is still noticed), templates into the configure stage's cache
# (mailwright/configure.py TEMPLATE_CACHE). Both are deterministic for the same sources.
find /opt/mailwright -name __pycache__ -prune -exec rm -rf {} +
/usr/bin/python3 -m compileall -q -f --invalidation-mode checked-hash /opt/mailwright/ops /opt/mailwright/mailwright
(cd /opt/mailwright && /usr/bin/python3 -c 'from mailwright import configure; from ops import render
render.cache_templates(configure.TEMPLATE_CACHE); render.precompile()')

if [ -f "$LOCK" ]; then
    python3 "$B/lockcheck.py" verify --exact --lock "$LOCK"
    python3 "$B/lockcheck.py" unpin
fi
apt-get clean
rm -rf /var/lib/apt/lists/* "$B"
