"""Make a list of `ConfigFile`s true on this machine, touching only what differs.

Each write is atomic (temp file in the same directory, fsync, rename), so a
daemon never reads half a file and a crash never leaves one behind.
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import tempfile
import time
from functools import lru_cache
from pathlib import Path

from ops.render import ConfigFile


@lru_cache(maxsize=None)
def _uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


@lru_cache(maxsize=None)
def _gid(name: str) -> int:
    return grp.getgrnam(name).gr_gid


def differs(f: ConfigFile) -> bool:
    path = Path(f.path)
    try:
        st = path.lstat()
    except FileNotFoundError:
        return f.content is not None
    if f.content is None:
        return True
    if (st.st_mode & 0o7777, st.st_uid, st.st_gid) != (f.mode, _uid(f.owner), _gid(f.group)):
        return True
    return path.read_bytes() != f.content.encode()


def _mkdirs(directory: Path, uid: int, gid: int) -> None:
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for d in reversed(missing):
        d.mkdir(mode=0o755)
        os.chown(d, uid, gid)


def write(f: ConfigFile) -> None:
    path = Path(f.path)
    if f.content is None:
        path.unlink(missing_ok=True)
        return
    uid, gid = _uid(f.owner), _gid(f.group)
    _mkdirs(path.parent, uid, gid)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(f.content.encode())
            out.flush()
            os.fchmod(out.fileno(), f.mode)
            os.fchown(out.fileno(), uid, gid)
            os.fsync(out.fileno())
        # Postfix will not read a table or main.cf modified in the current second (it
        # sleeps 300 ms at a time until it is older): dating the file two seconds back
        # saves up to 2 s at every container start.
        past = time.time() - 2
        os.utime(tmp, (past, past))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:
        for command in f.after:
            subprocess.run(command, shell=True, check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        # Without the file the next run sees a difference again and retries the command.
        path.unlink(missing_ok=True)
        raise RuntimeError(f"{f.path}: `{e.cmd}` failed: {(e.stderr or b'').decode().strip()}") from e


def apply(files: list[ConfigFile], check: bool = False) -> list[ConfigFile]:
    """Return the files that differed; with `check`, change nothing."""
    changed = [f for f in files if differs(f)]
    if not check:
        for f in changed:
            write(f)
    return changed
