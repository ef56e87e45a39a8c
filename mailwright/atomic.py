"""The one atomic file writer: temporary file in the same directory, fsync, rename(2).

A reader sees the old file or the new one, never half of one, and a crash
leaves no truncated file behind (a failed write removes its temporary file).
rename(2) replaces a symbolic link at the destination (the link itself, never
its target), so a link planted there cannot redirect the write.

The callers differ only in policy, passed as parameters:
- `mailwright.apply` (generated files): a fixed mode and owner, dated two
  seconds back for Postfix (`mtime`);
- `mailwright.configwrite` (the config folder): the mode and owner of the file
  it replaces, chown only where permitted (`owner_best_effort`), and the
  directory fsynced so the rename itself survives a crash (`sync_dir`);
- `mailwright.logrotate` and the configure stage's pending reloads: a fixed mode.

Pure standard library: runs in the container and on the VPS without pip.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def replace(path: str | Path, data: bytes, mode: int, owner: tuple[int, int] | None = None, *,
            owner_best_effort: bool = False, mtime: float | None = None, sync_dir: bool = False,
            suffix: str = "") -> None:
    """Replace `path` by `data` with `mode`, atomically; its directory must exist.

    `owner` (uid, gid) is set on the new file (None: the writer's); with
    `owner_best_effort`, a chown the writer may not make is skipped. `mtime`
    dates the file (atime and mtime) before it is renamed in. `suffix` ends the
    temporary file's name (`.<name>.<random><suffix>`).
    """
    replace_with(path, lambda out: out.write(data), mode, owner, owner_best_effort=owner_best_effort,
                 mtime=mtime, sync_dir=sync_dir, suffix=suffix)


def replace_with(path: str | Path, write: Callable[[BinaryIO], object], mode: int,
                 owner: tuple[int, int] | None = None, *, owner_best_effort: bool = False,
                 mtime: float | None = None, sync_dir: bool = False, suffix: str = "") -> None:
    """`replace`, the content written by `write(file)`: for content streamed from another
    file (the mail log's rotation copies a log that may be large)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out:
            write(out)
            out.flush()
            os.fchmod(out.fileno(), mode)
            if owner is not None:
                with contextlib.suppress(*((PermissionError,) if owner_best_effort else ())):
                    os.fchown(out.fileno(), *owner)
            os.fsync(out.fileno())
        if mtime is not None:
            os.utime(tmp, (mtime, mtime))
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
