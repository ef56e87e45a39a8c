#!/bin/sh
# Prepare a fresh Debian 12 machine (as root) for building and testing mailwright.
#
# Idempotent: installs only what is missing, starts the Docker engine only when
# `/usr/bin/docker info` does not answer. Safe to run on every `make test`.
#
# What it provides:
#   - docker.io (engine 20.10; Debian's /usr/bin/docker drives BuildKit)
#   - mmdebstrap (base rootfs for the images), diffoscope (reproducibility diffs)
#   - openssh-client (tests reach the VPS container over SSH), python3-venv
#   - a running dockerd without the default bridge and without iptables
#     (this machine kind has no bridge support: everything uses --network host)
set -eu

log() { printf 'host-setup: %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
    log "must run as root"
    exit 1
fi

PACKAGES="docker.io mmdebstrap diffoscope openssh-client python3-venv python3-pip ca-certificates iproute2 procps"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$'; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    log "installing:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
else
    log "packages present"
fi

DOCKER=/usr/bin/docker
if "$DOCKER" info >/dev/null 2>&1; then
    log "docker engine answers"
else
    log "starting dockerd --bridge=none --iptables=false"
    mkdir -p /var/log
    # setsid: the daemon must outlive this script and `make`'s process group.
    setsid dockerd --bridge=none --iptables=false >>/var/log/dockerd.log 2>&1 < /dev/null &
    i=0
    until "$DOCKER" info >/dev/null 2>&1; do
        i=$((i + 1))
        if [ "$i" -ge 120 ]; then
            log "dockerd did not answer within 60 s; last log lines:"
            tail -n 30 /var/log/dockerd.log >&2 || true
            exit 1
        fi
        sleep 0.5
    done
    log "docker engine answers"
fi
