"""OpenDKIM: signs mail submitted on 465/587 and mail made locally, verifies inbound mail.
A Postfix milter: /run/opendkim/opendkim.sock in the container, 127.0.0.1:8891 on a VPS
(docker-mailserver's `inet:localhost:8891`; SOCKET below says why the container differs)."""

from __future__ import annotations

import re

from ops.daemon import Daemon, Reload

# Paths and port, here rather than in config.py: the descriptor stays standard-library
# only (the image build reads every descriptor); config.py imports them from here.
PORT = 8891
CONF = "/etc/opendkim.conf"           # Debian's path: its opendkim.service runs `/usr/sbin/opendkim` with it
DIR = "/etc/opendkim"
RUNDIR = "/run/opendkim"
PIDFILE = f"{RUNDIR}/opendkim.pid"
# In the container Postfix (not chrooted) talks to it over a unix socket: over TCP on loopback the
# milter protocol's small writes (macros, then the command) met Nagle and delayed ACKs, about 40 ms
# per stage: 26 messages/s at 4 connections with OpenDKIM and OpenDMARC, 110/s over sockets.
# A VPS keeps 127.0.0.1:8891 (Debian's units and folder modes).
SOCKET = f"{RUNDIR}/opendkim.sock"
ALIVE = f"{RUNDIR}/alive"            # the FIFO whose EOF tells the waiting shell OpenDKIM is gone (FOREGROUND)


def in_container(s) -> bool:
    return s.MAILWRIGHT_INIT != "systemd"
# The config folder's tables: `setup config dkim` rewrites KeyTable and SigningTable whenever it
# adds a key, so watching them is enough to see a new or rotated key (keys are never replaced in place).
READS = ("opendkim/KeyTable", "opendkim/SigningTable", "opendkim/TrustedHosts")
# A DKIM selector: the rule `setup config dkim` checks its argument with and config.py checks KeyTable lines with.
SELECTOR = re.compile(r"^[a-z0-9]([a-z0-9_-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9_-]*[a-z0-9])?)*$", re.IGNORECASE)


def _files(s, cfg, tls):
    from ops import network
    from ops.opendkim import config
    return config.files(s, cfg, tls, network.mynetworks(s))


def _postfix(s, cfg):
    from ops.opendkim import config
    return config.postfix(s, cfg)


# Debian's opendkim.service runs it forking, as root (it drops to `UserID` itself) after
# tmpfiles made /run/opendkim; the container has no tmpfiles: the shell makes the folder (0755:
# Postfix reaches the socket in it) and removes a stale socket and pid file.
# It runs forking here too (no -f), and the shell stays as the supervisor's process for it:
# OpenDKIM is linked with BIND_NOW against 18 libraries (libldap, GnuTLS, libunbound, Lua,
# libmemcached, ...); the dynamic linker's relocations and the libraries' constructors touch their
# symbol tables and code at start, once. The process that did it exits after the fork, and a
# forked child maps none of those file pages until it touches them again: the serving process
# idled at 7.5 MB RSS instead of 11.1 MB (PSS: the file pages only it had mapped). The shell waits
# for the pid OpenDKIM writes (PidFile, the pid the reload signals; digits only), then for that process to end:
# OpenDKIM inherits fd 9, the write end of a FIFO (ALIVE, removed once both ends are open), and
# keeps it (daemonising moves only 0-2 to /dev/null); the shell's `read` on the other end returns at
# EOF, when the daemon is gone (zombie or not). No helper process (an idle `tail --pid` was 0.15 MB
# PSS), no polling. The supervisor's TERM is passed on (a trap interrupts the `read`; the shell
# reads on until EOF, so it stays until OpenDKIM is gone); OpenDKIM ending ends the shell, and the
# supervisor restarts it. Orphaned, OpenDKIM's daemon is reaped by PID 1 (the supervisor's `wait`).
# GNUTLS_NO_IMPLICIT_INIT: OpenDKIM is linked with libldap, hence GnuTLS, whose load-time
# initialisation (p11-kit modules, nettle, gmp...) costs about 0.7 MB of the idle process for
# nothing: mailwright's tables are files, and libldap initialises GnuTLS itself when it needs it.
# MALLOC_ARENA_MAX=1: one malloc arena for its threads (one per milter connection) instead of one
# per thread; after 400 messages over 4 connections its anonymous memory stayed at 3.5 MB instead
# of 4.9 MB (the work per message is an RSA signature or verification, not allocation).
PID_WAIT = 200          # x 0.05 s for the daemon's pid file before the shell gives up (exit 1: restarted)
FOREGROUND = (
    "/bin/sh", "-c",
    # The trap first: a stop that comes while OpenDKIM starts still reaches it.
    "stop=; intr=; pid=; trap 'stop=1; intr=1; [ -z \"$pid\" ] || kill -TERM $pid 2>/dev/null' TERM INT; "
    f"install -d -o opendkim -g opendkim -m 0755 {RUNDIR} && rm -f {SOCKET} {PIDFILE} {ALIVE} && "
    # Opened read-write: opening a FIFO does not wait for the other end.
    f"mkfifo -m 0600 {ALIVE} && exec 8<>{ALIVE} && "
    f"GNUTLS_NO_IMPLICIT_INIT=1 MALLOC_ARENA_MAX=1 /usr/sbin/opendkim -x {CONF} 9>&8 8>&- || exit 1; "
    # The shell keeps only a read end: OpenDKIM's fd 9 is the last writer.
    f"exec 7<{ALIVE} 8>&-; rm -f {ALIVE}; "
    f"i=0; while [ -z \"$pid\" ]; do "
    f"[ $i -lt {PID_WAIT} ] || {{ echo 'opendkim wrote no pid to {PIDFILE}' >&2; exit 1; }}; "
    # Read into $p: $pid (which the trap signals) only ever holds digits.
    f"sleep 0.05; i=$((i + 1)); {{ read -r p < {PIDFILE}; }} 2>/dev/null || p=; "
    "case $p in ''|*[!0-9]*) ;; *) pid=$p ;; esac; done; "
    "[ -z \"$stop\" ] || kill -TERM $pid; "
    # Until EOF: a `read` that a trapped signal interrupted (intr set) reads again.
    "until intr=; read -r x <&7; [ $? -ne 0 ] && [ -z \"$intr\" ]; do :; done",
)

DAEMON = Daemon(
    name="opendkim",
    packages=("opendkim",),
    enabled=lambda s: s.ENABLE_OPENDKIM,
    foreground=FOREGROUND,
    unit="opendkim.service",
    pidfile=PIDFILE,
    # SIGUSR1: OpenDKIM re-reads its configuration file and re-opens every table (KeyTable,
    # SigningTable, TrustedHosts) it names; new keys sign without a restart. Debian's unit has
    # `ExecReload=/bin/kill -USR1 $MAINPID`.
    reload=Reload("signal", signal="USR1"),
    ports=lambda s: (PORT,) if s.ENABLE_OPENDKIM and not in_container(s) else (),
    sockets=(SOCKET,),             # the container's listener (the health check looks for it)
    reads=READS,
    files=_files,
    postfix=_postfix,
    logs_to_syslog=True,           # `Syslog yes` is its only log: the container's sink (ops/syslog) writes it to mail.log
    order=40,      # before Postfix (90), which hands it every message
)
