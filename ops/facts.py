"""pyinfra facts about mailwright on a target."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

RUNTIME = "/opt/mailwright"


class ConfigDrift(FactBase):
    """Generated files that differ from what the settings and config folder ask for.

    Runs the configure stage in check mode on the target; "unknown" when the
    runtime is not there yet (a first deploy, before the upload). A reload that
    failed in an earlier run ("pending reload <daemon>") is drift too: the
    operation's `--reload` run retries it.
    """

    def command(self, only: str | None = None) -> str:
        part = f" --only {only}" if only else ""
        return (f"cd {RUNTIME} 2>/dev/null && [ -f /etc/dms-settings ] "
                f"&& python3 -m mailwright.configure --check{part} 2>/dev/null || echo unknown")

    def process(self, output: list[str]) -> list[str]:
        # Only "changed <path>" lines are drift; "unknown" makes the operation run and
        # show the configure stage's own error.
        return [line for line in output if line.startswith(("changed ", "pending reload ")) or line == "unknown"]


class InitRunning(FactBase):
    """Whether mailwright's container init runs on the target (container mode)."""

    def command(self) -> str:
        # After start-up the init is the shell supervisor (mailwright/supervise.sh).
        # /proc, not pgrep: a minimal Debian has no procps. The brackets keep grep from matching itself.
        return "grep -qs '[m]ailwright/supervise.sh' /proc/[0-9]*/cmdline && echo yes || echo no"

    def process(self, output: list[str]) -> bool:
        return output == ["yes"]


class LooseSecrets(FactBase):
    """Secret files of the config folder (by name, or anywhere below `dirs`) that others than root may read."""

    @staticmethod
    def default() -> list[str]:
        return []

    def command(self, root: str, names: tuple[str, ...], dirs: tuple[str, ...]) -> str:
        q = shlex.quote
        match = [f"-path {q(f'{root}/{n}')}" for n in names] + [f"-path {q(f'{root}/{d}/*')}" for d in dirs]
        return f"find {q(root)} -type f \\( {' -o '.join(match)} \\) -perm /077 -print 2>/dev/null || true"

    def process(self, output: list[str]) -> list[str]:
        return [line for line in output if line]
