"""Atomic, serialised edits of the config folder (`/tmp/docker-mailserver`).

Everything that writes into the config folder (the `setup` CLI) and everything
that applies it (the change poller) takes `locked(config_dir)` first, so a
reader never sees half an edit and two writers never lose each other's line.

The lock is `flock(2)` on `<config_dir>/check-for-changes.sh.lock`,
docker-mailserver's lock name. The kernel drops a flock when its holder dies,
so a killed process cannot leave a stale lock behind, and a lock file left by
docker-mailserver (which only tests for its existence) is simply reused. The
file stays in place after release: unlinking it would change the folder's
mtime on every command, which the change poller fingerprints. Should someone
remove or replace it anyway, a waiter notices that the inode it locked is no
longer the file's and locks again.

Writes go to a temporary file in the same directory, with the mode and owner
of the file they replace, are fsynced and renamed over it: a crash leaves the
old file or the new one, never a truncated one.

The DB helpers below follow docker-mailserver's editing rules: a key matches
case-insensitively at the start of a line followed by its delimiter; comments
and blank lines are kept; CRLF is converted and a final newline added when a
file is rewritten.

Pure standard library: runs in the container and on the VPS without pip.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

LOCK_NAME = "check-for-changes.sh.lock"


class LockTimeout(TimeoutError):
    pass


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


@contextlib.contextmanager
def locked(config_dir: str | Path, timeout: float | None = 300.0,
           notify: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold the config folder's lock for the duration of the block.

    `notify` is told once (with a sentence naming the holder) when the lock is
    busy, so an interactive user knows why the command pauses.
    """
    root = Path(config_dir)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_NAME
    deadline = None if timeout is None else time.monotonic() + timeout
    told = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as e:
                    if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                        raise
                if notify and not told:
                    notify(f"The config folder is locked by {_holder(path)}; waiting")
                    told = True
                if deadline is not None and time.monotonic() > deadline:
                    raise LockTimeout(f"'{path}' is still locked by {_holder(path)} after {timeout:.0f}s")
                time.sleep(0.02)
            # The file may have been removed or replaced after we opened it: then
            # the lock we hold guards nothing and we start over.
            try:
                current = os.stat(path)
            except FileNotFoundError:
                current = None
            mine = os.fstat(fd)
            if current is None or (current.st_dev, current.st_ino) != (mine.st_dev, mine.st_ino):
                os.close(fd)
                fd = -1
                continue
        except BaseException:
            if fd >= 0:
                os.close(fd)
            raise
        break

    try:
        # Who holds it, for the "waiting" message of the next caller.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()} ({Path(sys.argv[0]).name})\n".encode(), 0)
        yield path
    finally:
        os.close(fd)


def _split(data: bytes) -> list[str]:
    text = data.decode("utf-8", errors="surrogateescape").replace("\r\n", "\n")
    # split("\n"), not splitlines(): form feeds and U+2028 are not line ends here.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def read_lines(path: str | Path) -> list[str]:
    """The file's lines without terminators (CRLF tolerated); [] when absent."""
    try:
        return _split(Path(path).read_bytes())
    except FileNotFoundError:
        return []


def _new_file_owner(directory: Path) -> tuple[int, int]:
    # A new file belongs to whoever owns the folder: the CLI runs as root inside
    # the container but the operator edits the bind-mounted folder as a user.
    st = directory.stat()
    return st.st_uid, st.st_gid


def write_atomic(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` through a temporary file and rename(2).

    Mode and owner are those of the file being replaced; a new file gets
    `mode` (default 0644) and the owner of its directory.
    """
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    try:
        st = path.stat()
        new_mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    except FileNotFoundError:
        new_mode = 0o644 if mode is None else mode
        uid, gid = _new_file_owner(directory)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), new_mode)
            if os.geteuid() == 0 or uid == os.geteuid():
                with contextlib.suppress(PermissionError):
                    os.fchown(f.fileno(), uid, gid)
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def rewrite(path: str | Path, transform: Callable[[list[str]], list[str]], mode: int | None = None) -> bool:
    """Apply `transform` to the file's lines and write the result atomically.

    `transform` gets the lines without terminators (CRLF already converted) and
    returns the new lines; it may raise to abort, leaving the file untouched.
    The file is created when absent. Returns whether the bytes on disk changed.
    """
    path = Path(path)
    try:
        before = path.read_bytes()
    except FileNotFoundError:
        before = None
    new = transform(_split(before or b""))
    data = "".join(line + "\n" for line in new).encode("utf-8", errors="surrogateescape")
    if data == before:
        return False
    write_atomic(path, data, mode)
    return True


# --- docker-mailserver's DB rules ------------------------------------------------------------

def _is_data(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith("#")


def _key_pattern(key: str, delimiter: str) -> re.Pattern:
    """`key` then `delimiter` ('|', ':' or whitespace ' ') at the start of a line."""
    end = r"(?:[ \t]+|$)" if delimiter == " " else re.escape(delimiter)
    return re.compile(r"^[ \t]*" + re.escape(key) + end, re.IGNORECASE)


def find(lines: list[str], key: str, delimiter: str) -> int | None:
    """Index of the first data line whose key is `key`, or None."""
    pattern = _key_pattern(key, delimiter)
    return next((i for i, line in enumerate(lines) if _is_data(line) and pattern.match(line)), None)


def has_key(lines: list[str], key: str, delimiter: str) -> bool:
    return find(lines, key, delimiter) is not None


def values_of(line: str, delimiter: str) -> list[str]:
    """The list value of a whitespace-keyed line (`alias t1,t2` or `alias t1, t2`)."""
    parts = line.strip().split(None, 1) if delimiter == " " else line.strip().split(delimiter, 1)
    if len(parts) < 2:
        return []
    return [v for v in re.split(r"[,\s]+", parts[1]) if v]


def replace_entry(lines: list[str], key: str, delimiter: str, entry: str) -> list[str]:
    """Replace every line keyed `key` by `entry` (once), or append it."""
    pattern = _key_pattern(key, delimiter)
    out, done = [], False
    for line in lines:
        if _is_data(line) and pattern.match(line):
            if not done:
                out.append(entry)
                done = True
            continue
        out.append(line)
    if not done:
        out.append(entry)
    return out


def remove_entry(lines: list[str], key: str, delimiter: str) -> list[str]:
    pattern = _key_pattern(key, delimiter)
    return [line for line in lines if not (_is_data(line) and pattern.match(line))]


def append_value(lines: list[str], key: str, value: str) -> list[str]:
    """`postfix-virtual.cf`: add `value` to the list of `key`, or a new line `key value`."""
    i = find(lines, key, " ")
    if i is None:
        return [*lines, f"{key} {value}"]
    out = list(lines)
    out[i] = out[i].rstrip() + "," + value
    return out


def remove_value(lines: list[str], key: str | None, value: str) -> list[str]:
    """`postfix-virtual.cf`: drop `value` from `key`'s list (from every list when
    `key` is None); a line left without values is removed."""
    pattern = _key_pattern(key, " ") if key is not None else None
    out = []
    for line in lines:
        if not _is_data(line) or (pattern and not pattern.match(line)):
            out.append(line)
            continue
        name = line.strip().split(None, 1)[0]
        values = values_of(line, " ")
        kept = [v for v in values if v.lower() != value.lower()]
        if len(kept) == len(values):
            out.append(line)
        elif kept:
            out.append(f"{name} {','.join(kept)}")
    return out
