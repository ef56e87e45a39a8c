"""Runs the mailwright image the way docker-mailserver is run (config folder + 3 volumes)."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import MAIL_PORTS, SERVER_NAME
from . import clients
from . import dockercli as d

READY_LINE = f"{SERVER_NAME} is up and running"

# The environment every test server gets (the heavy optional services are off).
BASE_ENV = {
    "OVERRIDE_HOSTNAME": SERVER_NAME,
    "SSL_TYPE": "manual",
    "SSL_CERT_PATH": "/tmp/docker-mailserver/ssl/cert.pem",
    "SSL_KEY_PATH": "/tmp/docker-mailserver/ssl/key.pem",
    "ENABLE_AMAVIS": "0",
    "ENABLE_OPENDKIM": "0",
    "ENABLE_OPENDMARC": "0",
    "ENABLE_POLICYD_SPF": "0",
    "ENABLE_UPDATE_CHECK": "0",
}


@dataclass
class Volumes:
    config: Path
    mail: Path
    state: Path
    logs: Path

    @classmethod
    def under(cls, root: Path, config: Path | None = None) -> "Volumes":
        v = cls(config=config or root / "config", mail=root / "mail", state=root / "mail-state",
                logs=root / "log-mail")
        for p in (v.config, v.mail, v.state, v.logs):
            p.mkdir(parents=True, exist_ok=True)
        return v


@dataclass
class MailContainer:
    image: str
    volumes: Volumes
    env: dict[str, str] = field(default_factory=dict)
    name: str = field(default_factory=lambda: d.unique_name("mail"))
    started_at: float = 0.0

    def run_args(self) -> list[str]:
        env = {**BASE_ENV, **self.env}
        args = ["run", "-d", "--name", self.name, "--network", "host",
                "--add-host", f"{SERVER_NAME}:127.0.0.1"]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        args += ["-v", f"{self.volumes.config}:/tmp/docker-mailserver",
                 "-v", f"{self.volumes.mail}:/var/mail"]
        # Exploration knob (not used by `make test`): run without the state volume.
        if not os.environ.get("MAILWRIGHT_TEST_NO_STATE_VOLUME"):
            args += ["-v", f"{self.volumes.state}:/var/mail-state"]
        args += ["-v", f"{self.volumes.logs}:/var/log/mail", self.image]
        return args

    # --- lifecycle --------------------------------------------------------------------
    def start(self, wait: bool = True, timeout: float = 120) -> "MailContainer":
        d.wait_ports_free(MAIL_PORTS)
        self.started_at = time.monotonic()
        d.docker(*self.run_args())
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 120, since_logs: str = "") -> float:
        """Wait for the ready line (a new one, beyond `since_logs`); seconds waited."""
        t0 = time.monotonic()
        while True:
            out = d.logs(self.name)
            if out.count(READY_LINE) > since_logs.count(READY_LINE):
                return time.monotonic() - t0
            if not d.is_running(self.name):
                raise AssertionError(f"container {self.name} stopped before `{READY_LINE}`:\n"
                                     + self.diagnostics())
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"no `{READY_LINE}` from {self.name} after {timeout}s:\n"
                                     + self.diagnostics())
            time.sleep(0.3)

    def wait_exit(self, timeout: float = 60) -> int:
        t0 = time.monotonic()
        while True:
            code = d.exit_code(self.name)
            if code is not None:
                return code
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"container {self.name} still running after {timeout}s:\n"
                                     + self.diagnostics())
            time.sleep(0.3)

    def restart(self, timeout: float = 120) -> None:
        before = d.logs(self.name)
        d.docker("restart", self.name, timeout=180)
        self.wait_ready(timeout, since_logs=before)

    def remove(self) -> None:
        d.rm(self.name)

    def recreate(self, env: dict[str, str] | None = None, timeout: float = 120) -> "MailContainer":
        """`docker rm -f` then `docker run` again on the same volumes (optionally new env)."""
        self.remove()
        if env is not None:
            self.env = env
        self.name = d.unique_name("mail")
        return self.start(timeout=timeout)

    # --- inspection -------------------------------------------------------------------
    def exec(self, *cmd: str, check: bool = True, timeout: float = 120, input=None):
        return d.exec_(self.name, *cmd, check=check, timeout=timeout, input=input)

    def logs(self) -> str:
        return d.logs(self.name)

    def mail_log(self) -> str:
        p = self.volumes.logs / "mail.log"
        try:
            return p.read_text(errors="replace")
        except OSError as e:
            return f"(no {p}: {e})"

    def diagnostics(self, tail: int = 80) -> str:
        logs = "\n".join(self.logs().splitlines()[-tail:])
        mail = "\n".join(self.mail_log().splitlines()[-tail:])
        return (f"--- docker run: {' '.join(self.run_args())}\n"
                f"--- docker logs {self.name} (last {tail} lines):\n{logs}\n"
                f"--- mail.log (last {tail} lines):\n{mail}\n")


@contextlib.contextmanager
def serving(image: str, root: Path, cfg, tls, env: dict[str, str], ports: list[int], cert=None):
    """A module's server: `cfg` (a MailConfig) written with `tls`'s certificate (or `cert`) in its ssl/, one
    container on it under `root` until the block ends, its `ports` answering when the block starts."""
    cfg.write()
    tls.write(cfg.path / "ssl", cert)
    box = MailContainer(image, Volumes.under(root, cfg.path), env=dict(env))
    try:
        box.start()
        clients.wait_for_ports(ports)
        yield box
    finally:
        box.remove()


COMMAND_LINES = """
import os
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        print(open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace"))
    except OSError:
        pass
"""


def command_lines(box) -> str:
    """The command line of every process in `box` (a container or a VPS target), one a line."""
    return box.exec("python3", "-c", COMMAND_LINES).stdout
