"""Make a list of `ConfigFile`s true on this machine, touching only what differs.

Each write is atomic (`mailwright.atomic`: temp file in the same directory, fsync, rename), so a
daemon never reads half a file and a crash never leaves one behind.

One file that cannot be made true (its `after` command fails, its directory is
read-only, the disk is full) does not stop the others: `converge` goes on and
reports it, and the daemons of the files that were written still get reloaded
(a file written but never reloaded would no longer differ at the next run, so
its daemon would never load it).
"""

from __future__ import annotations

import grp
import os
import pwd
import subprocess
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from mailwright import atomic
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
    # Postfix will not read a table or main.cf modified in the current second (it
    # sleeps 300 ms at a time until it is older): dating the file two seconds back
    # saves up to 2 s at every container start.
    atomic.replace(path, f.content.encode(), f.mode, (uid, gid), mtime=time.time() - 2)
    for command in f.after:
        result = subprocess.run(command, shell=True, capture_output=True)
        if result.returncode != 0:
            # Without the file the next run sees a difference again and retries the command.
            path.unlink(missing_ok=True)
            raise CommandFailed(f.path, command, result.returncode, result.stderr)


class CommandFailed(Exception):
    """A file's `after` command failed: one line naming the file and the command."""

    def __init__(self, path: str, command: str, status: int, stderr: bytes = b""):
        detail = "; ".join(line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip())
        super().__init__(f"{path}: `{command}` failed (exit status {status})" + (f": {detail[:500]}" if detail else ""))


def _reason(f: ConfigFile, e: Exception) -> str:
    if isinstance(e, CommandFailed):
        return str(e)
    if isinstance(e, KeyError):
        return f"{f.path}: no such user or group {e.args[0]!r}"
    if isinstance(e, OSError):
        return f"{f.path}: cannot write: {e.strerror or e}"
    return f"{f.path}: {e}"


@dataclass
class Outcome:
    changed: list[ConfigFile] = field(default_factory=list)           # differed (with `check`: would change)
    failed: list[tuple[ConfigFile, str]] = field(default_factory=list)  # not made true, and why (one line)

    @property
    def written(self) -> list[ConfigFile]:
        bad = {id(f) for f, _ in self.failed}
        return [f for f in self.changed if id(f) not in bad]

    @property
    def reloads(self) -> set[str]:
        """The daemons to reload: those of the files actually written."""
        return {d for f in self.written for d in f.reloads or ()}


def converge(files: list[ConfigFile], check: bool = False) -> Outcome:
    """Make every file true that can be; a failing file is reported, not fatal to the others."""
    out = Outcome()
    for f in files:
        try:
            if not differs(f):
                continue
            out.changed.append(f)
            if not check:
                write(f)
        except (OSError, KeyError, CommandFailed) as e:
            if not out.changed or out.changed[-1] is not f:
                out.changed.append(f)
            out.failed.append((f, _reason(f, e)))
    return out


class ApplyError(Exception):
    def __init__(self, outcome: Outcome):
        self.outcome = outcome
        super().__init__("; ".join(reason for _, reason in outcome.failed))


def apply(files: list[ConfigFile], check: bool = False) -> list[ConfigFile]:
    """Return the files that differed; with `check`, change nothing. Raises `ApplyError` if one failed."""
    out = converge(files, check)
    if out.failed:
        raise ApplyError(out)
    return out.changed
