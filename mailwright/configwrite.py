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
old file or the new one, never a truncated one. Files holding password hashes
or credentials (`SECRET_FILES`, DKIM `*.private` keys) are 0600 after every
write, whatever mode they had.

Symbolic links: this runs as root on a folder an unprivileged user may own, so
nothing inside the config folder is followed. The lock file is opened with
O_NOFOLLOW, files are read with O_NOFOLLOW, a write refuses a symbolic link at
its destination (and rename(2) would replace one rather than write through it),
and `locked()` refuses to start an edit while one of the config files or
`opendkim/` is a symbolic link, so a refused command writes nothing. All of
these raise `UnsafePath`, naming the file. The config folder itself may be a
symbolic link: whoever places the folder is trusted, like its content (a docker
bind mount is not a symbolic link anyway).

The DB helpers below follow docker-mailserver's editing rules: a key matches
case-insensitively at the start of a line followed by its delimiter; comments
and blank lines are kept; CRLF is converted and a final newline added when a
file is rewritten.

Pure standard library (and `ops.configdir`, the reader, whose line splitter
and no-follow file reading it shares): runs in the container and on the VPS
without pip.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import socket
import stat
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator

from mailwright import atomic
from ops.configdir import SECRET_FILES, WATCHED, SymlinkRefused, read_file, split_lines
from ops.settings import LOCK_NAME

# What `locked()` refuses to edit around when it is a symbolic link: every file
# the reader takes in, and the DKIM folder.
GUARDED = (*WATCHED, "opendkim")


class LockTimeout(TimeoutError):
    pass


class UnsafePath(Exception):
    """A symbolic link where mailwright reads or writes: nothing was written."""


def is_secret(path: str | Path) -> bool:
    """By name (the writer sees absolute paths): ops.configdir's secret files, and DKIM keys."""
    name = Path(path).name
    return name in SECRET_FILES or name.endswith(".private")


def _symlink_error(path: Path) -> UnsafePath:
    return UnsafePath(f"'{path}' is a symbolic link; mailwright does not follow symbolic links "
                      "inside the config folder: replace it by the file or folder itself")


def refuse_symlinks(paths: Iterable[str | Path]) -> None:
    """Raise `UnsafePath` naming the first of `paths` that is a symbolic link."""
    for p in paths:
        if os.path.islink(p):
            raise _symlink_error(Path(p))


def _holder(path: Path) -> str:
    try:
        data = read_file(path)
    except (OSError, SymlinkRefused):
        return "unknown"
    return (data or b"")[:200].decode(errors="replace").strip() or "unknown"


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
        try:
            # O_NOFOLLOW: a symbolic link here would have us truncate its target.
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise _symlink_error(path) from None
            raise
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
                current = os.lstat(path)
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
        # Checked under the lock, before any write: a refused command changes nothing.
        refuse_symlinks(root / name for name in GUARDED)
        # Who holds it, for the "waiting" message of the next caller.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{socket.gethostname()} pid {os.getpid()} ({Path(sys.argv[0]).name})\n".encode(), 0)
        yield path
    finally:
        os.close(fd)


def _split(data: bytes) -> list[str]:
    # The reader's splitter (ops.configdir): "\n" only, CRLF tolerated; form feeds
    # and U+2028 are not line ends.
    return split_lines(data.decode("utf-8", errors="surrogateescape"))


def _read(path: Path) -> bytes | None:
    """The file's bytes, None when absent; `UnsafePath` for a symbolic link."""
    try:
        return read_file(path)
    except SymlinkRefused:
        raise _symlink_error(path) from None


def read_lines(path: str | Path) -> list[str]:
    """The file's lines without terminators (CRLF tolerated); [] when absent."""
    return _split(_read(Path(path)) or b"")


def _new_file_owner(directory: Path) -> tuple[int, int]:
    # A new file belongs to whoever owns the folder: the CLI runs as root inside
    # the container but the operator edits the bind-mounted folder as a user.
    st = directory.stat()
    return st.st_uid, st.st_gid


def write_atomic(path: str | Path, data: bytes, mode: int | None = None) -> None:
    """Replace `path` with `data` through a temporary file and rename(2).

    Mode and owner are those of the file being replaced; a new file gets
    `mode` (default 0644) and the owner of its directory. A secret file
    (`is_secret`) is 0600 whatever mode it had or was asked for. A symbolic
    link at `path` is refused (`UnsafePath`): its target's mode and owner are
    never copied, and nothing is written through it.
    """
    path = Path(path)
    directory = path.parent
    directory.mkdir(parents=True, exist_ok=True)
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            raise _symlink_error(path)
        new_mode, uid, gid = st.st_mode & 0o7777, st.st_uid, st.st_gid
    except FileNotFoundError:
        new_mode = 0o644 if mode is None else mode
        uid, gid = _new_file_owner(directory)
    if is_secret(path):
        new_mode = 0o600
    mine = os.geteuid() == 0 or uid == os.geteuid()
    atomic.replace(path, data, new_mode, (uid, gid) if mine else None, owner_best_effort=True,
                   sync_dir=True, suffix=".tmp")


def _secret_mode(path: Path) -> None:
    """0600 for a secret file left unchanged (chmod keeps the mtime the poller watches)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_mode & 0o7777 != 0o600:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def rewrite(path: str | Path, transform: Callable[[list[str]], list[str]], mode: int | None = None) -> bool:
    """Apply `transform` to the file's lines and write the result atomically.

    `transform` gets the lines without terminators (CRLF already converted) and
    returns the new lines; it may raise to abort, leaving the file untouched.
    The file is created when absent. Returns whether the bytes on disk changed.
    """
    path = Path(path)
    before = _read(path)
    new = transform(_split(before or b""))
    data = "".join(line + "\n" for line in new).encode("utf-8", errors="surrogateescape")
    if data == before:
        if before is not None and is_secret(path):
            _secret_mode(path)
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
    # A key line without values (malformed, but it exists) gets its first one after a space.
    out[i] = out[i].rstrip() + ("," if values_of(out[i], " ") else " ") + value
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
