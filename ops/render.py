"""Rendering: templates under `files/` (mirroring their target paths) into `ConfigFile`s.

A `ConfigFile` is the whole desired state of one file. The same list is applied
by pyinfra on a VPS and by the container's init, so both produce identical
files. Pure standard library + jinja2.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import jinja2

# The templates: inside the package once installed (setup.py ships files/ as ops/_files/),
# else files/ at the top of the checkout (also the image's /opt/mailwright/files).
_PACKAGED = Path(__file__).resolve().parent / "_files"
FILES = _PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parent.parent / "files"

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(FILES)),
    undefined=jinja2.StrictUndefined,   # a typo in a template fails the render, not the daemon
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


@dataclass(frozen=True)
class ConfigFile:
    path: str
    content: str | None            # None: the file must not exist (feature switched off)
    mode: int = 0o644
    owner: str = "root"
    group: str = "root"
    # Daemons to reload when this file changes. None: its own daemon (`daemon`); `()`: none
    # (e.g. a table the daemon re-reads by itself). `ops.plan` resolves None, so every file it
    # returns carries a tuple here.
    reloads: tuple[str, ...] | None = None
    after: tuple[str, ...] = ()     # commands to run after it changed (e.g. compile a sieve script)
    # Who owns it: the daemon whose descriptor's `files()` made it (set by `ops.plan` when it
    # collects them), or "system" (mailwright's own files). Nothing guesses it from the path.
    daemon: str = "system"


def cache_templates(folder: str | Path) -> None:
    """Keep compiled templates in `folder` (jinja2's bytecode cache, keyed by each template's
    source checksum): compiling them is most of a no-op configure run. Only the target's
    configure stage asks for it; a folder it cannot create leaves compiling as it was."""
    try:
        Path(folder).mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return
    _env.bytecode_cache = jinja2.FileSystemBytecodeCache(str(folder))


def precompile() -> int:
    """Compile every template into the cache set by `cache_templates` (the image build does
    this once, so a container's first configure run compiles nothing); how many."""
    names = _env.list_templates(extensions=["j2"])
    for name in names:
        _env.get_template(name)
    return len(names)


def template(target: str, **context) -> str:
    """Render `files/<target>.j2`."""
    return _env.get_template(target.lstrip("/") + ".j2").render(**context)


def rendered(target: str, context: dict, **attrs) -> ConfigFile:
    return ConfigFile(target, template(target, **context), **attrs)


def systemd_argv(argv) -> str:
    """An ExecStart= line's words: shell-quoted (systemd reads the same quotes), `$` doubled
    (systemd would expand `$NAME` itself) and `%` doubled (its specifiers)."""
    return shlex.join(argv).replace("$", "$$").replace("%", "%%")


def foreground_unit(s, target: str, foreground, on: bool) -> ConfigFile:
    """mailwright's own systemd unit for a daemon whose Debian package ships none (or one that
    does not fit): its template at `target` runs the descriptor's `foreground` under systemd, on
    a VPS with the daemon on; absent in the container or when off."""
    if on and s.MAILWRIGHT_INIT == "systemd":
        return rendered(target, dict(argv=systemd_argv(foreground)), reloads=(),
                        after=("systemctl daemon-reload",))
    return ConfigFile(target, None, after=("systemctl daemon-reload",))
