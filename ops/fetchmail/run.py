"""Fetchmail's foreground runner (the container's supervisor and the systemd unit start it, as the
fetchmail user): `python3 -m ops.fetchmail.run PARALLEL`. Standard library only.

- PARALLEL 0: exec one fetchmail on /etc/fetchmailrc, in daemon mode in the foreground.
- PARALLEL 1: docker-mailserver's FETCHMAIL_PARALLEL: the rc file is split per server entry
  (`poll`/`skip`), the global lines before the first entry copied into each part
  (`fetchmail-N.rc`, private files in /run/fetchmail); one fetchmail per part, each with its
  own UIDL cache (`fetchmail-N.fetchids`: two fetchmails sharing one would overwrite each other's),
  each started with the union of all the caches (`merge_idfiles`).
  The runner waits; when one of them ends it stops the others and exits with its status (the
  supervisor restarts the whole set). SIGTERM/SIGINT are passed on.

Every fetchmail keeps its UIDL cache in /var/lib/fetchmail (the state volume): nothing already
fetched with `keep` is fetched again after a restart. It logs to stderr (the container has no
syslog socket; `--nosyslog` wins over a `set syslog` line).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

from ops.fetchmail.daemon import RC, RUN_DIR, STATE

FETCHMAIL = "/usr/bin/fetchmail"
ENTRY = re.compile(r"^\s*(poll|skip|server)\b", re.IGNORECASE)


def split(text: str) -> tuple[str, list[str]]:
    """(the global lines, one text per server entry) of a fetchmailrc; comments and blank lines
    are dropped, as docker-mailserver's split does. An entry runs from its `poll` (or `skip`)
    line to the next one."""
    head: list[str] = []
    entries: list[list[str]] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if ENTRY.match(line):
            entries.append([line])
        elif entries:
            entries[-1].append(line)
        else:
            head.append(line)
    globals_ = "".join(line + "\n" for line in head)
    return globals_, [globals_ + "".join(line + "\n" for line in e) for e in entries]


def merge_idfiles(state: Path, targets: list[Path]) -> None:
    """Start every fetchmail with all the UIDs any of them saw: the union of the UIDL caches
    (`.fetchids`, `fetchmail-N.fetchids`) goes into each of `targets`. Switching
    FETCHMAIL_PARALLEL, or reordering the poll entries, then fetches nothing twice. fetchmail
    keeps the lines of its own servers and drops the others (and UIDs gone from the server)."""
    lines: dict[str, None] = {}
    for cache in [state / ".fetchids", *sorted(state.glob("fetchmail-*.fetchids"))]:
        try:
            text = cache.read_text(errors="replace")
        except FileNotFoundError:
            continue
        lines.update((line, None) for line in text.splitlines() if line.strip())
    if not lines:
        return
    union = "".join(line + "\n" for line in lines)
    for target in targets:
        try:
            if target.read_text(errors="replace") == union:
                continue
        except FileNotFoundError:
            pass
        _write_private(target, union)


def argv(rc: str, idfile: str, pidfile: str) -> list[str]:
    return [FETCHMAIL, "--nodetach", "--nosyslog", "-f", rc, "--idfile", idfile, "--pidfile", pidfile]


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _idle(why: str) -> int:
    """Nothing to fetch: stay up (a daemon that exits would be restarted in a loop) until stopped."""
    print(f"fetchmail: {why}; nothing to fetch", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        signal.pause()


def main(args: list[str]) -> int:
    parallel = bool(args) and args[0] == "1"
    run = Path(RUN_DIR)
    for stale in list(run.glob("*.pid")) + list(run.glob("fetchmail-*.rc")):
        stale.unlink(missing_ok=True)       # ours alone: a restarted container keeps /run
    try:
        text = Path(RC).read_text(errors="replace")
    except FileNotFoundError:
        return _idle(f"{RC} does not exist")
    _globals, entries = split(text)
    if not entries:
        return _idle("fetchmail.cf has no poll entry")
    state = Path(STATE)
    if not parallel:
        merge_idfiles(state, [state / ".fetchids"])
        cmd = argv(RC, f"{STATE}/.fetchids", f"{RUN_DIR}/fetchmail.pid")
        os.execv(cmd[0], cmd)

    merge_idfiles(state, [state / f"fetchmail-{n}.fetchids" for n in range(1, len(entries) + 1)])
    children: dict[int, int] = {}
    stopping = []
    for n, entry in enumerate(entries, 1):
        rc = run / f"fetchmail-{n}.rc"
        _write_private(rc, entry)
        cmd = argv(str(rc), f"{STATE}/fetchmail-{n}.fetchids", f"{RUN_DIR}/fetchmail-{n}.pid")
        children[os.spawnv(os.P_NOWAIT, cmd[0], cmd)] = n

    def stop(signum=None, _frame=None):
        if signum is not None:
            stopping.append(signum)
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    first = True
    while children:
        try:
            pid, raw = os.wait()
        except ChildProcessError:
            break
        n = children.pop(pid, None)
        if n is None:
            continue
        code = os.waitstatus_to_exitcode(raw)
        print(f"fetchmail-{n} ended (status {code})", file=sys.stderr, flush=True)
        if first and not stopping:
            status = code if code > 0 else 1
            stop()
        first = False
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
