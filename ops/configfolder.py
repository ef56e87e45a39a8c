"""The config folder on the target (docker-mailserver's `/tmp/docker-mailserver`)."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import files

from ops.configdir import SECRET_DIRS, SECRET_FILES, is_secret
from ops.facts import LooseSecrets
from ops.settings import Settings

def seed_mode(relative: str, local_mode: int) -> int:
    """0600 for a secret; otherwise the local mode without write access for group and others."""
    return 0o600 if is_secret(relative) else local_mode & 0o755


@deploy("Config folder")
def seed(settings: Settings, source: str | None):
    """Create the folder, and copy in the operator's files that the target lacks.

    The target's folder is the source of truth once it exists: `setup` writes
    there, so a deploy never overwrites a file in it (a stale copy on the
    operator's machine would otherwise undo an `email add`).

    On a VPS (systemd) the folder is root's alone (0700): it holds the password
    hashes. In a container it may be a folder of the operator's, mounted in: its
    mode is theirs. Secret files are 0600 in both, also ones already there.
    """
    target = settings.MAILWRIGHT_CONFIG_DIR
    mode = "700" if settings.MAILWRIGHT_INIT == "systemd" else "755"
    files.directory(name="Config folder", path=target, mode=mode, user="root", group="root")
    for path in host.get_fact(LooseSecrets, root=target, names=SECRET_FILES, dirs=SECRET_DIRS):
        files.file(name=f"Make {Path(path).relative_to(target)} private", path=path, mode="600",
                   user="root", group="root")
    if not source:
        return
    root = Path(source)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        dest = f"{target}/{relative}"
        if host.get_fact(File, path=dest) is None:
            files.put(name=f"Seed {relative}", src=str(path), dest=dest,
                      mode=oct(seed_mode(relative, path.stat().st_mode & 0o777))[2:], user="root", group="root")
