"""Run the real `deploy.py` against pyinfra's `@fake` connector and record what it did.

No host, no docker: the fake connector answers every command with success and
empty output, except the ones scripted in `fake_responses` (substring -> reply).
With `--debug` it logs each simulated command and upload, which is what the
plan tests assert on, next to the operation names pyinfra prints.
"""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYINFRA = REPO / ".venv" / "bin" / "pyinfra"
HOST = "@fake/mail"
COMMAND = re.compile(r"\[fake\] simulating command on " + re.escape(HOST) + r": (.*)$")
UPLOAD = re.compile(r"\[fake\] simulating put_file on " + re.escape(HOST) + r": (.*)$")
OPERATION = re.compile(r"^--> Starting operation: (.*?)\s*$")


@dataclass
class Run:
    returncode: int
    output: str
    operations: list[str] = field(default_factory=list)     # "deploy | operation" names, in order
    commands: list[str] = field(default_factory=list)       # first line of each simulated command
    uploads: list[str] = field(default_factory=list)        # remote paths of simulated uploads

    def op(self, name: str) -> bool:
        """An operation whose name (after the deploy's `|`) is `name`."""
        return any(o.split(" | ", 1)[-1] == name for o in self.operations)

    def ran(self, fragment: str) -> bool:
        return any(fragment in c for c in self.commands)

    def commands_of(self, op_name: str) -> list[str]:
        """Commands between the start of `op_name` and the next operation."""
        out, inside = [], False
        for line in self.output.splitlines():
            m = OPERATION.search(line)
            if m:
                inside = m.group(1).split(" | ", 1)[-1] == op_name
                continue
            c = COMMAND.search(line)
            if inside and c:
                out.append(c.group(1))
        return out


def status_line(path: str, link_to: str | None = None) -> str:
    """What pyinfra's File/Link facts read from `stat` for an existing root-owned file or symlink."""
    if link_to:
        return f"user=root group=root mode=lrwxrwxrwx atime=0 mtime=0 ctime=0 size=10 '{path}' -> '{link_to}'"
    return f"user=root group=root mode=-rw-r--r-- atime=0 mtime=0 ctime=0 size=10 '{path}'"


def exists(path: str, link_to: str | None = None) -> dict[str, str]:
    """A fake_responses entry making `path` exist (as a file, or a symlink to `link_to`) on the fake target."""
    return {f"test -e {path} ": status_line(path, link_to)}


@pytest.fixture
def deploy(tmp_path):
    """deploy(data, environ=None) -> Run: `pyinfra -y inventory.py deploy.py` on one fake host."""
    def run(data: dict, environ: dict[str, str] | None = None, responses: dict | None = None) -> Run:
        host_data = {"fake_delay": 0, "fake_delay_jitter": 0, "fake_responses": responses or {}, **data}
        inventory = tmp_path / "inventory.py"
        inventory.write_text(f"hosts = [({HOST!r}, {host_data!r})]\n")
        # A clean environment: the operator's environment is a settings source (highest precedence).
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
               "PYINFRA_FAKE_DELAY": "0", "PYINFRA_FAKE_DELAY_JITTER": "0", **(environ or {})}
        p = subprocess.run([str(PYINFRA), "-y", "--debug", str(inventory), "deploy.py"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=120)
        output = p.stdout + p.stderr
        r = Run(p.returncode, output)
        for line in output.splitlines():
            if m := OPERATION.search(line):
                r.operations.append(m.group(1))
            elif m := COMMAND.search(line):
                r.commands.append(m.group(1))
            elif m := UPLOAD.search(line):
                r.uploads.append(m.group(1).strip())
        return r
    return run
