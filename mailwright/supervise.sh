#!/bin/sh
# mailwright's supervisor: PID 1 of the container once `mailwright.init` has
# configured it (the init execs this script), or the change watcher on a VPS.
#
# Why a shell script: this process idles for the container's whole life, and
# dash costs ~0.5 MB where a Python interpreter costs ~9 MB (a third of the
# idle-memory budget). Everything with logic in it stays in Python and runs
# as a short-lived child: the configure stage (`mailwright.configure`).
#
# Environment (set by mailwright.init):
#   MW_MODE        pid1 | adopt (start and supervise the daemons) | watch (systemd owns them)
#   MW_DAEMONS     e.g. "dovecot postfix"
#   MW_POLL        seconds between polls (DMS_CONFIG_POLL)
#   MW_CONFIG_DIR  the config folder (its lock file is shared with `setup`)
#   MW_FQDN        for the "is up and running" line
#   MW_PORTS       ports that must listen before that line, e.g. "25 143"
set -u

RUNTIME=$(dirname "$(dirname "$(readlink -f "$0")")")
. "$RUNTIME/mailwright/lib.sh"
LOCK="$MW_CONFIG_DIR/check-for-changes.sh.lock"
WATCH_LIST=/etc/mailwright/watch
PENDING=/run/mailwright/pending-reloads     # mailwright.configure: reloads to retry
stopping=
reconfigure=

log() { echo "$(date +%Y-%m-%dT%H:%M:%S%z) $1 mailwright-init: $2"; }

start() {
    case $1 in
        # Postfix's master directly: `postfix start-fg` spends ~2 s in postfix-script's checks.
        postfix) /usr/lib/postfix/sbin/master -d </dev/null & ;;
        dovecot) /usr/sbin/dovecot -F </dev/null & ;;
    esac
    eval "pid_$1=$!"
    eval "started_$1=$(date +%s)"
}

alive() { eval "kill -0 \"\$pid_$1\"" 2>/dev/null; }

stop_all() {
    for d in $MW_DAEMONS; do eval "kill -TERM \"\$pid_$d\"" 2>/dev/null; done
    [ -n "${tail_pid:-}" ] && kill -TERM "$tail_pid" 2>/dev/null
    i=0
    while [ $i -lt 200 ]; do
        up=
        for d in $MW_DAEMONS; do alive "$d" && up=1; done
        [ -z "$up" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    for d in $MW_DAEMONS; do eval "kill -KILL \"\$pid_$d\"" 2>/dev/null; done
}

configure() {
    # Under `setup`'s lock: configure never reads half an edit, and the fingerprint
    # taken before it runs makes an edit made meanwhile show up at the next poll.
    locked=
    if [ -L "$LOCK" ]; then
        # As root, `>>` would create or append to the link's target; `setup` refuses it too.
        log ERROR "$LOCK is a symbolic link: not applying changes until it is removed"
        return
    fi
    if [ -w "$LOCK" ] || [ -w "$MW_CONFIG_DIR" ]; then     # a read-only folder has no writer to wait for
        exec 9>>"$LOCK"
        flock 9
        locked=1
    fi
    seen=$(fingerprint "$WATCH_LIST" "$MW_CONFIG_DIR")
    (cd "$RUNTIME" && PYTHONPATH="$RUNTIME" python3 -m mailwright.configure --reload) 2>&1 |
        while IFS= read -r line; do
            case $line in
                "ERROR mailwright: "*) log ERROR "${line#ERROR mailwright: }" ;;
                *) log INFO "$line" ;;
            esac
        done
    [ -n "$locked" ] && exec 9>&-
}

trap 'stopping=1' TERM INT
trap 'reconfigure=1' HUP

if [ "$MW_MODE" != watch ]; then
    for d in $MW_DAEMONS; do start "$d"; done
    tail -F -n 0 /var/log/mail/mail.log 2>/dev/null &
    tail_pid=$!
    i=0
    for port in $MW_PORTS; do
        while ! listening "$port"; do
            sleep 0.01
            i=$((i + 1))
            if [ $i -gt 6000 ] || [ -n "$stopping" ]; then
                log ERROR "port $port did not open within 60 s; shutting down"
                stop_all
                exit 1
            fi
        done
    done
    log INFO "$MW_FQDN is up and running"
fi

seen=$(fingerprint "$WATCH_LIST" "$MW_CONFIG_DIR")
failures=0
while [ -z "$stopping" ]; do
    sleep "$MW_POLL" &
    wait $! 2>/dev/null || kill "$!" 2>/dev/null     # a trapped signal ends the wait early
    [ -n "$stopping" ] && break
    if [ "$MW_MODE" != watch ]; then
        for d in $MW_DAEMONS; do
            alive "$d" && continue
            eval "since=\$started_$d"
            if [ $(($(date +%s) - since)) -lt 10 ]; then failures=$((failures + 1)); else failures=1; fi
            if [ $failures -gt 3 ]; then
                log ERROR "$d keeps exiting; shutting down"
                stop_all
                exit 1
            fi
            log WARN "$d exited; restarting it"
            start "$d"
        done
    fi
    # A reload that failed stays pending: retried at every poll until it succeeds.
    if [ "$(fingerprint "$WATCH_LIST" "$MW_CONFIG_DIR")" != "$seen" ] || [ -n "$reconfigure" ] || [ -e "$PENDING" ]; then
        reconfigure=
        configure
    fi
done
log INFO "stopping"
stop_all
exit 0
