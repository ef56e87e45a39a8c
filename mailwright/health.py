"""HEALTHCHECK: healthy when every enabled daemon is running and its main port answers."""

import socket
import sys

from mailwright.init import read_settings
from mailwright.services import running


def main() -> int:
    settings = read_settings()
    checks = [("postfix", 25)]
    if settings.get("SMTP_ONLY") != "1":
        checks.append(("dovecot", 143 if settings.get("ENABLE_IMAP") == "1" else None))
    for daemon, port in checks:
        if not running(daemon):
            print(f"{daemon} is not running")
            return 1
        if port:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=3).close()
            except OSError as e:
                print(f"port {port} ({daemon}): {e}")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
