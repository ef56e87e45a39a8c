"""One round of getmail (the foreground loop of ops/getmail/daemon.py runs it every GETMAIL_POLL
minutes): `python3 -m ops.getmail.run [--dump]`. Standard library only.

Each rc text of /etc/mailwright/getmail.json is written to a private temporary folder (0700,
removed after the round: the passwords stay in the 0600 JSON file alone) and run as
`getmail --getmaildir /var/lib/getmail --rcfile <file>`, one after the other. getmail keeps what
it already fetched in the getmaildir (its oldmail-* files, on the state volume): nothing is
fetched twice across restarts. Exit status: 0, or the last failing getmail's.

`--dump`: `setup debug getmail`: each rc file's id, then getmail's own `--dump` of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ops.getmail.daemon import RCS, STATE

GETMAIL = "/usr/bin/getmail"


def load(path: str = RCS) -> dict[str, str]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}


def main(args: list[str], rcs: dict[str, str] | None = None) -> int:
    dump = "--dump" in args
    rcs = load() if rcs is None else rcs
    if not rcs:
        print("getmail: no account (no usable getmail/<id>.cf in the config folder)",
              file=sys.stderr if not dump else sys.stdout, flush=True)
        return 0
    if not dump:
        Path(STATE).mkdir(mode=0o700, parents=True, exist_ok=True)
    status = 0
    with tempfile.TemporaryDirectory(prefix="getmail-") as tmp:      # 0700
        for rc_id, text in sorted(rcs.items()):
            rc = os.path.join(tmp, rc_id)
            with open(os.open(rc, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write(text)
            cmd = [GETMAIL, f"--getmaildir={tmp if dump else STATE}", f"--rcfile={rc}"]
            if dump:
                print(f"{rc_id}:", flush=True)
                cmd.append("--dump")
            code = subprocess.run(cmd, stdin=subprocess.DEVNULL).returncode
            if code != 0:
                print(f"getmail {rc_id}: exit status {code}", file=sys.stderr, flush=True)
                status = code
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
