#!/bin/sh
# HEALTHCHECK: healthy when each enabled daemon runs and its main port listens.
# A shell script: a Python health check every 30 s cost ~8 MB and a CPU spike each time.
. "$(dirname "$(readlink -f "$0")")/lib.sh"
. /etc/dms-settings

running() { pid=$(cat "$1" 2>/dev/null) && kill -0 $pid 2>/dev/null; }

running /var/spool/postfix/pid/master.pid || { echo "postfix is not running"; exit 1; }
listening 25 || { echo "nothing listens on port 25"; exit 1; }
if [ "$SMTP_ONLY" != 1 ]; then
    running /run/dovecot/master.pid || { echo "dovecot is not running"; exit 1; }
    if [ "$ENABLE_IMAP" = 1 ]; then
        listening 143 || { echo "nothing listens on port 143"; exit 1; }
    fi
fi
exit 0
