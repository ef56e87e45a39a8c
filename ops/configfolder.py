"""The config folder on the target (docker-mailserver's `/tmp/docker-mailserver`)."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import files

from ops.settings import Settings


@deploy("Config folder")
def seed(settings: Settings, source: str | None):
    """Create the folder, and copy in the operator's files that the target lacks.

    The target's folder is the source of truth once it exists: `setup` writes
    there, so a deploy never overwrites a file in it (a stale copy on the
    operator's machine would otherwise undo an `email add`).
    """
    target = settings.MAILWRIGHT_CONFIG_DIR
    files.directory(name="Config folder", path=target, mode="755")
    if not source:
        return
    root = Path(source)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        dest = f"{target}/{path.relative_to(root)}"
        if host.get_fact(File, path=dest) is None:
            files.put(name=f"Seed {path.relative_to(root)}", src=str(path), dest=dest,
                      mode=oct(path.stat().st_mode & 0o777)[2:], user="root", group="root")
