"""The set of daemons: every `ops/<name>/daemon.py` that defines `DAEMON`.

Found by looking, not by a list: adding a daemon is adding its folder. Sorted
by start order, then name, so every table derived from it is stable.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from functools import lru_cache

import ops
from ops.daemon import Daemon


@lru_cache(maxsize=None)
def all_daemons() -> tuple[Daemon, ...]:
    found = []
    for module in pkgutil.iter_modules(ops.__path__):
        if not module.ispkg:
            continue
        try:
            spec = importlib.util.find_spec(f"ops.{module.name}.daemon")
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            continue
        daemon = importlib.import_module(f"ops.{module.name}.daemon").DAEMON
        if daemon.name != module.name:
            raise ValueError(f"ops/{module.name}/daemon.py names its daemon {daemon.name!r}; "
                             f"it must be the folder's name")
        found.append(daemon)
    return tuple(sorted(found, key=lambda d: (d.order, d.name)))


def by_name(name: str) -> Daemon:
    for d in all_daemons():
        if d.name == name:
            return d
    raise KeyError(f"no daemon named {name!r} (known: {', '.join(d.name for d in all_daemons())})")


def enabled(settings) -> tuple[Daemon, ...]:
    return tuple(d for d in all_daemons() if d.enabled(settings))
