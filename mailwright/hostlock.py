"""The host lock: one user of the host's mail ports at a time on this machine.

Test sessions (tests/harness) and the bench (bench/) run mail servers with
`--network host`, so two of them at once would fight over port 25. Both take
this flock first; a second one started meanwhile waits here. Operator-side
only, standard library only (the bench must not import the test harness).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

LOCK_PATH = "/run/lock/mailwright-tests.lock" if os.path.isdir("/run/lock") else "/tmp/mailwright-tests.lock"


class HostLockTimeout(RuntimeError):
    """The lock was still held by someone else when the wait ran out."""


@contextlib.contextmanager
def host_lock(wait: float = 3600, on_wait=None, error=None, path: str | None = None):
    """Hold the host lock for the `with` block, waiting up to `wait` seconds.

    `on_wait` is told once (a message) that we wait; `error` is the exception
    class raised when the wait runs out (HostLockTimeout by default). The
    holder's PID is written into the file for whoever wonders who holds it.
    """
    path = path or LOCK_PATH
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise (error or HostLockTimeout)(f"{path} is still held by another test or bench "
                                                     f"session after {wait:.0f} s")
                if on_wait:
                    on_wait(f"waiting for {path} (a test session is using the mail ports)")
                    on_wait = None
                time.sleep(1)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
