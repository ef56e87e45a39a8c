"""postsrsd's generated secret, then postsrsd itself: the container's foreground command.

    python3 secret.py --secret /etc/postsrsd.secret --state-name etc-postsrsd.secret \
        --pidfile /run/postsrsd.pid -- /usr/share/postsrsd/postsrsd-systemd-launcher

With /var/mail-state mounted the secret lives there, under docker-mailserver's name
(`etc-postsrsd.secret`), and /etc/postsrsd.secret is a symbolic link to it: the same secret
after a restart and after the container is re-created on the same state volume (a secret
docker-mailserver persisted is used as it is). Without the volume it is a file in the
container. Made once, 24 random bytes in base64 as Debian's post-install makes it, mode 0600,
written atomically; never in the image (the build strips the post-install's). Its value is
never printed. An SRS_SECRET setting is a different file (the configure stage writes it and
/etc/default/postsrsd names it), so a generated secret is kept for the day it is unset.

Standard library only, and run as a script (no `ops` import): it runs before every start of
postsrsd, then execs the launcher so postsrsd keeps this process's pid.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path

STATE = Path("/var/mail-state")


def _write(path: Path, data: bytes | None = None) -> None:
    """`data` (default: a fresh secret) at `path`, a regular file, atomically, 0600 from the start."""
    data = data if data is not None else base64.b64encode(os.urandom(24)) + b"\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _usable(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0
    except OSError:
        return False


def ensure(secret: Path, state: Path = STATE, state_name: str = "etc-postsrsd.secret") -> Path:
    """Make sure `secret` holds a secret; return where it really is. Idempotent."""
    if state.is_dir():
        kept = state / state_name
        if not _usable(kept):
            # Adopt the secret this container already uses (the volume was mounted later), else a new one.
            _write(kept, secret.read_bytes() if _usable(secret) and not secret.is_symlink() else None)
        os.chmod(kept, 0o600)
        if not (secret.is_symlink() and os.readlink(secret) == str(kept)):
            link = secret.with_name(f".{secret.name}.{os.getpid()}.lnk")
            link.unlink(missing_ok=True)
            link.symlink_to(kept)
            os.replace(link, secret)
        return kept
    if secret.is_symlink() and not _usable(secret):
        secret.unlink()                             # points into a volume no longer mounted
    if not _usable(secret):
        _write(secret)
    os.chmod(secret, 0o600)
    return secret


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="postsrsd-secret")
    ap.add_argument("--secret", required=True)
    ap.add_argument("--state-name", default="etc-postsrsd.secret")
    ap.add_argument("--state", default=str(STATE))
    ap.add_argument("--pidfile")
    ap.add_argument("command", nargs="+")
    args = ap.parse_args(argv)
    try:
        ensure(Path(args.secret), Path(args.state), args.state_name)
    except OSError as e:
        print(f"postsrsd: cannot make its secret {args.secret}: {e.strerror or e}", file=sys.stderr)
        return 1
    if args.pidfile:
        Path(args.pidfile).write_text(f"{os.getpid()}\n")
    os.execv(args.command[0], args.command)
    return 127


if __name__ == "__main__":
    sys.exit(main())
