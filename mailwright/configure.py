"""The configure stage on the target: `python3 -m mailwright.configure`.

Reads the settings (`--from-env`: the process environment, as the container's
init does; otherwise `/etc/dms-settings`, written by the pyinfra deploy), reads
the config folder, and makes every generated file true. Prints one
`changed <path>` line per file that differed. With `--check`, changes nothing
(the pyinfra fact behind `ops.operations.configure`). With `--reload`, reloads
the daemons whose files changed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from mailwright import apply, services
from ops import plan
from ops.settings import SettingsError, load, read_dms_settings

PARTS = {
    "postfix": ("/etc/postfix/",),
    "dovecot": ("/etc/dovecot/", "/var/mail/"),
}


def part_of(path: str) -> str:
    return next((name for name, prefixes in PARTS.items() if path.startswith(prefixes)), "system")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mailwright.configure")
    parser.add_argument("--from-env", action="store_true", help="settings from the environment (container start)")
    parser.add_argument("--check", action="store_true", help="only list what would change")
    parser.add_argument("--reload", action="store_true", help="reload the daemons whose files changed")
    parser.add_argument("--only", choices=("system", *PARTS), help="only this part of the configuration")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%Y-%m-%dT%H:%M:%S%z")
    try:
        settings = load(environ=os.environ) if args.from_env else read_dms_settings()
        if args.from_env and not args.check and settings.MAILWRIGHT_INIT == "container":
            from mailwright import prepare
            prepare.container(settings)
        files = plan.files(settings)
    except (SettingsError, OSError) as e:
        print(f"ERROR mailwright: {e}", file=sys.stderr)
        return 2
    if args.only:
        files = [f for f in files if part_of(f.path) == args.only]
    changed = apply.apply(files, check=args.check)
    for f in changed:
        print(f"changed {f.path}")
    if args.reload and not args.check:
        for daemon in sorted({d for f in changed for d in f.reloads}):
            services.reload(settings.MAILWRIGHT_INIT, daemon)
            print(f"reloaded {daemon}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
