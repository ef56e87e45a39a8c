#!/bin/sh
# mailwright's supervisor: PID 1 of the container once `mailwright.init` has
# configured it (the init execs this script), or the change watcher on a VPS.
#
# Why a shell script: this process idles for the container's whole life, and
# dash costs ~0.5 MB where a Python interpreter costs ~9 MB (a third of the
# idle-memory budget). Everything with logic in it stays in Python and runs
# as a short-lived child: the configure stage (`mailwright.configure`).
#
# It names no daemon: what it runs comes from two tables the configure stage
# writes from the daemons' descriptors (ops/<name>/daemon.py; see ops/daemons.py):
#   $MW_DAEMONS_FILE  name<TAB>pidfile<TAB>ports<TAB>sockets<TAB>argv (shell-quoted words), start order
#   $MW_JOBS_FILE     name<TAB>seconds between runs<TAB>argv
# Both are re-read at every poll (builtins only, no fork): when the set changes (a
# redeploy in adopt mode), new daemons are started and removed ones stopped.
#
# Environment (set by mailwright.init, from Python constants):
#   MW_MODE        pid1 | adopt (start and supervise the daemons, run the jobs) | watch (systemd owns them)
#   MW_POLL        seconds between polls (DMS_CONFIG_POLL)
#   MW_CONFIG_DIR  the config folder
#   MW_LOCK        its lock file, shared with `setup`
#   MW_WATCH_LIST  the files whose change triggers the configure stage, one path a line
#   MW_PENDING     reloads to retry (mailwright.configure)
#   MW_DAEMONS_FILE, MW_JOBS_FILE   the tables above
#   MW_FQDN        for the "is up and running" line
set -u

RUNTIME=$(dirname "$(dirname "$(readlink -f "$0")")")
. "$RUNTIME/mailwright/lib.sh"
TAB='	'
stopping=
reconfigure=
daemons=            # keys of the daemons supervised now, in start order
daemons_seen=       # the daemons table's text they come from
daemons_loaded=
jobs=               # keys of the scheduled jobs
jobs_seen=

log() { echo "$(date +%Y-%m-%dT%H:%M:%S%z) $1 mailwright-init: $2"; }

# The whole of file $1 in $text (builtins only: this runs every poll).
slurp() {
    text=
    [ -r "$1" ] || return 0
    while IFS= read -r _line || [ -n "$_line" ]; do text="$text$_line
"; done <"$1"
}

# A shell variable name for a daemon or job name (letters, digits, '-').
keyof() { key=$(printf %s "$1" | tr -c 'A-Za-z0-9_' _); }

# Seconds since boot, from /proc/uptime (no fork).
uptime_now() { read -r _up _idle </proc/uptime; now=${_up%.*}; }

start() {
    _key=$1
    eval "_argv=\$argv_$_key"
    eval "set -- $_argv"
    "$@" </dev/null &
    eval "pid_$_key=$!"
    eval "started_$_key=$(date +%s)"
}

alive() { eval "kill -0 \"\${pid_$1:-}\"" 2>/dev/null; }

# Stop the daemons whose keys are $*, waiting up to 20 s before killing them.
stop() {
    for d in "$@"; do eval "kill -TERM \"\${pid_$d:-}\"" 2>/dev/null; done
    i=0
    while [ $i -lt 200 ]; do
        up=
        for d in "$@"; do alive "$d" && up=1; done
        [ -z "$up" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    for d in "$@"; do eval "kill -KILL \"\${pid_$d:-}\"" 2>/dev/null; done
}

stop_all() {
    # Reverse start order: Postfix (last up) goes first.
    _rev=
    for d in $daemons; do _rev="$d $_rev"; done
    # shellcheck disable=SC2086
    stop $_rev
    [ -n "${tail_pid:-}" ] && kill -TERM "$tail_pid" 2>/dev/null
}

# Read the daemons table; start daemons new to it, stop those gone from it (not at the first load:
# the start-up below starts them all and waits for their ports).
sync_daemons() {
    slurp "$MW_DAEMONS_FILE"
    [ -n "$daemons_loaded" ] && [ "$text" = "$daemons_seen" ] && return 0
    first=
    [ -z "$daemons_loaded" ] && first=1
    daemons_loaded=1
    daemons_seen=$text
    wanted=
    ports=
    while IFS=$TAB read -r _name _pidfile _ports _sockets _argv; do
        [ -n "$_name" ] || continue
        keyof "$_name"
        wanted="$wanted $key"
        eval "name_$key=\$_name; argv_$key=\$_argv"
        [ "$_ports" = - ] || ports="$ports $_ports"
    done <"$MW_DAEMONS_FILE"
    gone=
    for d in $daemons; do
        case " $wanted " in *" $d "*) ;; *) gone="$gone $d" ;; esac
    done
    if [ -n "$gone" ]; then
        for d in $gone; do eval "log INFO \"stopping \$name_$d: no longer enabled\""; done
        # shellcheck disable=SC2086
        stop $gone
    fi
    old=$daemons
    daemons=$wanted
    [ -n "$first" ] && return 0
    for d in $daemons; do
        case " $old " in *" $d "*) ;; *) eval "log INFO \"starting \$name_$d: now enabled\""; start "$d" ;; esac
    done
}

# Read the jobs table: a job keeps its schedule across re-reads; a new one first runs one interval from now.
sync_jobs() {
    slurp "$MW_JOBS_FILE"
    [ "$text" = "$jobs_seen" ] && return 0
    jobs_seen=$text
    uptime_now
    wanted=
    while IFS=$TAB read -r _name _every _argv; do
        [ -n "$_name" ] || continue
        keyof "$_name"
        wanted="$wanted $key"
        eval "jname_$key=\$_name; jevery_$key=\$_every; jargv_$key=\$_argv"
        eval "[ -n \"\${jnext_$key:-}\" ] || jnext_$key=$((now + _every))"
    done <"$MW_JOBS_FILE"
    for j in $jobs; do
        case " $wanted " in *" $j "*) ;; *) eval "jnext_$j=" ;; esac
    done
    jobs=$wanted
}

# Start each job that is due, in the background; never a second run of a job still running.
run_jobs() {
    [ -n "$jobs" ] || return 0
    uptime_now
    for j in $jobs; do
        eval "_next=\$jnext_$j; _every=\$jevery_$j; _jname=\$jname_$j; _jpid=\${jpid_$j:-}"
        [ "$now" -ge "$_next" ] || continue
        eval "jnext_$j=$((now + _every))"
        if [ -n "$_jpid" ] && kill -0 "$_jpid" 2>/dev/null; then
            log WARN "job $_jname: the previous run still runs; this run skipped"
            continue
        fi
        eval "_argv=\$jargv_$j"
        (
            eval "set -- $_argv"
            cd "$RUNTIME" && PYTHONPATH="$RUNTIME" "$@" </dev/null
            rc=$?
            if [ $rc -eq 0 ]; then log INFO "job $_jname done"; else log ERROR "job $_jname failed (exit status $rc)"; fi
        ) &
        eval "jpid_$j=$!"
    done
}

configure() {
    # Under `setup`'s lock: configure never reads half an edit, and the fingerprint
    # taken before it runs makes an edit made meanwhile show up at the next poll.
    locked=
    if [ -L "$MW_LOCK" ]; then
        # As root, `>>` would create or append to the link's target; `setup` refuses it too.
        log ERROR "$MW_LOCK is a symbolic link: not applying changes until it is removed"
        return
    fi
    if [ -w "$MW_LOCK" ] || [ -w "$MW_CONFIG_DIR" ]; then     # a read-only folder has no writer to wait for
        exec 9>>"$MW_LOCK"
        flock 9
        locked=1
    fi
    seen=$(fingerprint "$MW_WATCH_LIST" "$MW_CONFIG_DIR")
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
    sync_daemons
    sync_jobs
    for d in $daemons; do start "$d"; done
    tail -F -n 0 /var/log/mail/mail.log 2>/dev/null &
    tail_pid=$!
    i=0
    for port in $ports; do
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

seen=$(fingerprint "$MW_WATCH_LIST" "$MW_CONFIG_DIR")
failures=0
while [ -z "$stopping" ]; do
    sleep "$MW_POLL" &
    wait $! 2>/dev/null || kill "$!" 2>/dev/null     # a trapped signal ends the wait early
    [ -n "$stopping" ] && break
    if [ "$MW_MODE" != watch ]; then
        sync_daemons
        for d in $daemons; do
            alive "$d" && continue
            eval "since=\$started_$d; _name=\$name_$d"
            if [ $(($(date +%s) - since)) -lt 10 ]; then failures=$((failures + 1)); else failures=1; fi
            if [ $failures -gt 3 ]; then
                log ERROR "$_name keeps exiting; shutting down"
                stop_all
                exit 1
            fi
            log WARN "$_name exited; restarting it"
            start "$d"
        done
        sync_jobs
        run_jobs
    fi
    # A reload that failed stays pending: retried at every poll until it succeeds.
    if [ "$(fingerprint "$MW_WATCH_LIST" "$MW_CONFIG_DIR")" != "$seen" ] || [ -n "$reconfigure" ] || [ -e "$MW_PENDING" ]; then
        reconfigure=
        configure
    fi
done
log INFO "stopping"
stop_all
exit 0
