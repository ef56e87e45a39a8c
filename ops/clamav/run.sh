#!/bin/sh
# ClamAV for mailwright (ops/clamav/daemon.py):
#   run.sh clamd       clamd in the foreground: the container's supervisor runs this, and so does
#                      mailwright's clamav-daemon.service on a VPS. TERM stops it.
#   run.sh freshclam   one signature update: the scheduled `freshclam` job.
#
# clamd exits at once when its database folder holds no signature file, and the supervisor
# would start it again and again. So, while there is none, this waits (re-checking every
# MW_CLAMD_RECHECK seconds) and says once, in mail.log and on its own output, what to do;
# meanwhile Amavis finds no scanner and defers the mail (4xx). Once clamd runs, it is started
# again whenever it exits: at once after a clean exit (a restart-style reload TERMs clamd's pid),
# after a pause when it failed (e.g. a signature file it cannot load).
set -u

# The MW_CLAMAV_* overrides exist for tests/unit/test_clamav_templates.py only.
CLAMD_CONF=/etc/clamav/clamd.conf          # ops/clamav/daemon.py CLAMD_CONF
DB=${MW_CLAMAV_DB:-/var/lib/clamav}        # STATE
RUNDIR=${MW_CLAMAV_RUNDIR:-/run/clamav}    # holds SOCKET and PIDFILE
LOGDIR=${MW_CLAMAV_LOGDIR:-/var/log/mail}
MAILLOG=$LOGDIR/mail.log
CLAMD=${MW_CLAMAV_CLAMD:-/usr/sbin/clamd}
FRESHCLAM=${MW_CLAMAV_FRESHCLAM:-/usr/bin/freshclam}
USER_=${MW_CLAMAV_USER:-clamav}
RECHECK=${MW_CLAMD_RECHECK:-5}
RETRY_FRESHCLAM=${MW_CLAMAV_RETRY_FRESHCLAM:-1800}   # while there are no signatures at all

# One line on stderr (the supervisor's log, the journal) and in mail.log, as Postfix writes it.
say() {
    echo "clamav: $1" >&2
    if [ -d "$LOGDIR" ]; then
        echo "$(LC_ALL=C date '+%b %e %H:%M:%S') $(uname -n) clamav[$$]: $1" >>"$MAILLOG"
    fi
}

# Whether the folder holds a file clamd loads signatures from (clamd's own list of extensions).
has_signatures() {
    for f in "$DB"/*; do
        case $f in
            *.cvd|*.cld|*.cud|*.hdb|*.hsb|*.hdu|*.hsu|*.mdb|*.msb|*.mdu|*.msu|*.ndb|*.ndu|*.ldb|*.ldu|\
            *.sdb|*.zmd|*.rmd|*.idb|*.cdb|*.cbc|*.gdb|*.pdb|*.wdb|*.yar|*.yara|*.imp)
                [ -f "$f" ] && [ -s "$f" ] && return 0 ;;
        esac
    done
    return 1
}

# Folders and owners clamd and freshclam (both dropping root for clamav) need; the state volume
# may come from an older container with other ids.
prepare() {
    install -d -o "$USER_" -g "$USER_" -m 755 "$RUNDIR"
    mkdir -p "$DB"
    chown -R "$USER_:$USER_" "$DB/"
    if [ -d "$LOGDIR" ]; then
        for f in "$LOGDIR/clamav.log" "$LOGDIR/freshclam.log"; do
            [ -L "$f" ] && rm -f "$f"       # written as clamav: never through a link
            [ -e "$f" ] || : >"$f"
            chown "$USER_" "$f" && chmod 640 "$f"
        done
    fi
}

child=
stopping=
stop() {
    stopping=1
    [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}

# Sleep $1 seconds; a TERM ends it early.
pause() {
    sleep "$1" &
    child=$!
    wait "$child" 2>/dev/null
    kill "$child" 2>/dev/null
    child=
}

run_clamd() {
    trap stop TERM INT
    prepare
    told=
    while [ -z "$stopping" ]; do
        if ! has_signatures; then
            [ -n "$told" ] || say "no virus signatures in $DB: clamd waits and mail is deferred (4xx) until there are some; run freshclam, or put signature files (.cvd, .cld, .hdb, .ndb, ...) in $DB (the state volume's lib-clamav): clamd starts within $RECHECK s"
            told=1
            # Not 6 hours until the scheduled job: try freshclam now, and again every RETRY_FRESHCLAM
            # seconds while nothing is there (each failure is one line in mail.log).
            read -r up _ </proc/uptime
            up=${up%.*}
            if [ -z "${tried:-}" ] || [ $((up - tried)) -ge "$RETRY_FRESHCLAM" ]; then
                tried=$up
                (run_freshclam) >/dev/null 2>&1 &
            fi
            pause "$RECHECK"
            continue
        fi
        [ -n "$told" ] && say "virus signatures found in $DB: starting clamd"
        told=
        # Its log is clamav.log; in the foreground clamd also copies it to stdout: not again there.
        "$CLAMD" --foreground=true --config-file="$CLAMD_CONF" </dev/null >/dev/null &
        child=$!
        # A trapped TERM ends `wait` early: wait again until clamd has really exited.
        rc=0
        while kill -0 "$child" 2>/dev/null; do
            wait "$child"
            rc=$?
        done
        child=
        [ -n "$stopping" ] && break
        if [ "$rc" -ne 0 ]; then
            say "clamd exited with status $rc (see $LOGDIR/clamav.log): mail is deferred (4xx); starting it again in 30 s"
            pause 30
        fi
    done
    exit 0
}

run_freshclam() {
    prepare
    # Debian's /etc/clamav/freshclam.conf (its download servers); the rest as mailwright keeps it.
    # Its account of each attempt goes to freshclam.log only; the line below sums up a failure.
    "$FRESHCLAM" --datadir="$DB" --user="$USER_" --log="$LOGDIR/freshclam.log" \
        --daemon-notify="$CLAMD_CONF" --foreground >/dev/null 2>&1
    rc=$?
    if [ "$rc" -ne 0 ]; then
        say "freshclam could not update the virus signatures (status $rc, see $LOGDIR/freshclam.log): the signatures in $DB are kept"
    fi
    exit "$rc"
}

case ${1:-} in
    clamd) run_clamd ;;
    freshclam) run_freshclam ;;
    *) echo "usage: $0 clamd|freshclam" >&2; exit 2 ;;
esac
