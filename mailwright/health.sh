#!/bin/sh
# HEALTHCHECK: healthy when each enabled daemon runs and its ports listen and sockets exist.
# A shell script: a Python health check every 30 s cost ~8 MB and a CPU spike each time.
# It names no daemon: it reads the table the configure stage writes from the descriptors
# (ops/daemons.py DAEMONS_FILE: name<TAB>pidfile<TAB>ports<TAB>sockets<TAB>argv).
. "$(dirname "$(readlink -f "$0")")/lib.sh"
DAEMONS_FILE=${MW_DAEMONS_FILE:-/etc/mailwright/daemons}     # ops.daemons.DAEMONS_FILE
TAB='	'

running() { pid=$(cat "$1" 2>/dev/null) && kill -0 $pid 2>/dev/null; }

[ -s "$DAEMONS_FILE" ] || { echo "$DAEMONS_FILE is missing or empty: not configured"; exit 1; }
while IFS=$TAB read -r name pidfile ports sockets argv; do
    [ -n "$name" ] || continue
    running "$pidfile" || { echo "$name is not running"; exit 1; }
    if [ "$ports" != - ]; then
        for port in $ports; do
            listening "$port" || { echo "nothing listens on port $port"; exit 1; }
        done
    fi
    if [ "$sockets" != - ]; then
        for socket in $sockets; do
            [ -S "$socket" ] || { echo "no socket $socket ($name)"; exit 1; }
        done
    fi
done <"$DAEMONS_FILE"
exit 0
