"""The configure stage on the target: `python3 -m mailwright.configure`.

Reads the settings (`--from-env`: the process environment, as the container's
init does; otherwise `/etc/dms-settings`, written by the pyinfra deploy), reads
the config folder, and makes every generated file true. Prints one
`changed <path>` line per file that differed. With `--check`, changes nothing
(the pyinfra fact behind `ops.operations.configure`). With `--reload`, reloads
the daemons whose files changed.

A file that cannot be made true is reported on one `ERROR` line naming it (and
the failing command) and the run ends with status 1, but the other files are
still written and their daemons reloaded. A reload that fails stays pending in
PENDING and is retried by the next `--reload` run (the supervisor runs one at
its next poll while the file exists). The file lives under /run: a reboot
starts every daemon afresh on the current files, so nothing is pending then.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from mailwright import apply, atomic, services
from ops import daemons, plan
from ops.settings import SettingsError, load, read_dms_settings

PENDING = Path(daemons.PENDING_RELOADS)
# Compiled templates (ops.render.cache_templates), on the target only: the image's runtime
# lives in /opt/mailwright; a checkout (tests, an operator's machine) compiles as before.
TARGET_RUNTIME = Path("/opt/mailwright")
TEMPLATE_CACHE = "/var/cache/mailwright/jinja"


def parts() -> tuple[str, ...]:
    """What `--only` accepts: each daemon's files (by their tag, `ConfigFile.daemon`), or mailwright's own."""
    return ("system", *(d.name for d in daemons.all_daemons()))


def read_pending(path: Path | None = None) -> set[str]:
    path = path or PENDING
    try:
        return {line.strip() for line in path.read_text().splitlines()} & {d.name for d in daemons.all_daemons()}
    except FileNotFoundError:
        return set()


def write_pending(daemons: set[str], path: Path | None = None) -> None:
    path = path or PENDING
    if not daemons:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    atomic.replace(path, "".join(d + "\n" for d in sorted(daemons)).encode(), 0o600)


def reload(init: str, daemons: set[str], only: str | None = None, pending: Path | None = None) -> list[str]:
    """Reload `daemons` and those still pending from an earlier run; return one error line per failure.

    The set is recorded before the first reload, so a run killed half-way leaves it pending too.
    """
    pending = pending or PENDING
    earlier = read_pending(pending)
    todo = daemons | {d for d in earlier if only is None or d == only}
    if not todo:
        return []
    write_pending(earlier | todo, pending)
    errors, failed = [], set()
    for daemon in sorted(todo):
        try:
            services.reload(init, daemon)
        except subprocess.CalledProcessError as e:
            failed.add(daemon)
            detail = "; ".join(line.strip() for line in (e.stderr or "").splitlines() if line.strip())
            errors.append(f"reloading {daemon}: `{' '.join(e.cmd)}` failed (exit status {e.returncode})"
                          + (f": {detail[:500]}" if detail else "") + "; retried at the next run")
            continue
        except OSError as e:
            failed.add(daemon)
            errors.append(f"reloading {daemon}: {e.strerror or e}; retried at the next run")
            continue
        print(f"reloaded {daemon}")
    write_pending((earlier - todo) | failed, pending)
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailwright.configure")
    parser.add_argument("--from-env", action="store_true", help="settings from the environment (container start)")
    parser.add_argument("--check", action="store_true", help="only list what would change")
    parser.add_argument("--reload", action="store_true", help="reload the daemons whose files changed")
    parser.add_argument("--only", choices=parts(), help="only this daemon's files (or `system`: mailwright's own)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z")
    if Path(__file__).resolve().is_relative_to(TARGET_RUNTIME):
        from ops import render
        render.cache_templates(TEMPLATE_CACHE)
    try:
        settings = load(environ=os.environ) if args.from_env else read_dms_settings()
        if args.from_env and not args.check and settings.MAILWRIGHT_INIT == "container":
            from mailwright import prepare
            prepare.container(settings)
        files = plan.files(settings)
        if args.from_env and not args.check:
            from ops import accounts
            for line in accounts.unreachable(settings):      # the server starts anyway: lookups retry
                print(f"WARNING mailwright: {line}", file=sys.stderr)
    except (SettingsError, OSError) as e:
        print(f"ERROR mailwright: {e}", file=sys.stderr)
        return 2
    if args.only:
        files = [f for f in files if f.daemon == args.only]
    outcome = apply.converge(files, check=args.check)
    for f in outcome.written:
        print(f"changed {f.path}")
    errors = [reason for _, reason in outcome.failed]
    if args.check:
        for f, _ in outcome.failed:
            print(f"changed {f.path}")
        for daemon in sorted(read_pending()):
            if args.only is None or daemon == args.only:     # what a `--reload` run of this part retries
                print(f"pending reload {daemon}")
    elif args.reload:
        try:
            errors += reload(settings.MAILWRIGHT_INIT, outcome.reloads, args.only)
        except OSError as e:                  # the pending file itself
            errors.append(f"{PENDING}: {e.strerror or e}")
    for line in errors:
        print(f"ERROR mailwright: {line}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
