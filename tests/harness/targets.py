"""One interface over the three ways mailwright runs, so one test module covers all three.

  image   the mailwright image, run as docker-mailserver is run
  vps     a systemd+sshd container configured over SSH by `pyinfra <inventory> deploy.py`
  docker  a plain Debian 12 container configured by `pyinfra @docker/<name> deploy.py`

All of them serve on the host's ports (--network host), one at a time.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from . import SERVER_NAME
from . import clients
from . import dockercli as d
from .mailserver import BASE_ENV, MailContainer, Volumes
from .scenario import Scenario
from .tlsutil import TestTLS
from .vps import PyinfraRun, Vps, run_pyinfra, write_inventory

SERVICE_PORTS = (25, 465, 587, 143, 993)
CONFIG_DIR_IN_TARGET = "/tmp/docker-mailserver"
# Where the product puts the config folder when MAILWRIGHT_CONFIG_DIR is unset: docker-mailserver's
# path in a container, a lasting one under systemd (a VPS empties /tmp at boot).
DEFAULT_CONFIG_DIRS = {"container": CONFIG_DIR_IN_TARGET, "systemd": "/etc/mailwright/config"}


class Target:
    kind = "?"
    config_dir = CONFIG_DIR_IN_TARGET
    scenario: Scenario
    tls: TestTLS
    settings: dict[str, str]

    # what every target implements
    def exec(self, *cmd: str, check: bool = True, timeout: float = 120, input=None):
        raise NotImplementedError

    def report_text(self) -> str:
        """Everything the product said about its configuration (logs, deploy output)."""
        raise NotImplementedError

    def diagnostics(self) -> str:
        raise NotImplementedError

    def restart(self) -> None:
        raise NotImplementedError

    def recreate(self) -> None:
        raise NotImplementedError

    def reconfigure(self, **settings: str) -> None:
        raise NotImplementedError

    def teardown(self) -> None:
        raise NotImplementedError

    # shared helpers
    def mail_log(self) -> str:
        r = self.exec("sh", "-c", "tail -n 200 /var/log/mail/mail.log 2>&1 || tail -n 200 /var/log/mail.log 2>&1",
                      check=False)
        return r.stdout + r.stderr

    def replace_file(self, path: str, data: bytes, mode: str = "0644") -> None:
        """Replace a file inside the target atomically (what certbot or an operator does)."""
        tmp = f"{path}.mwtest-new"
        self.exec("sh", "-c", f"cat > {shlex.quote(tmp)} && chmod {mode} {shlex.quote(tmp)} "
                              f"&& mv -f {shlex.quote(tmp)} {shlex.quote(path)}", input=data)

    def wait_serving(self, timeout: float = 90) -> None:
        try:
            clients.wait_for_ports(SERVICE_PORTS, timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics()}") from None

    def __repr__(self) -> str:
        return f"<{self.kind} target>"


# --- (a) the image --------------------------------------------------------------------
@dataclass(repr=False)
class ImageTarget(Target):
    image: str
    volumes: Volumes
    scenario: Scenario
    tls: TestTLS
    settings: dict[str, str] = field(default_factory=dict)
    container: MailContainer | None = None
    kind = "image"

    def start(self) -> "ImageTarget":
        self.container = MailContainer(self.image, self.volumes, env=dict(self.settings))
        self.container.start()
        self.wait_serving()
        return self

    def exec(self, *cmd, check=True, timeout=120, input=None):
        return self.container.exec(*cmd, check=check, timeout=timeout, input=input)

    def report_text(self) -> str:
        return self.container.logs() + "\n" + self.container.mail_log()

    def diagnostics(self) -> str:
        return self.container.diagnostics()

    def restart(self) -> None:
        self.container.restart()
        self.wait_serving()

    def recreate(self) -> None:
        self.container.recreate()
        self.wait_serving()

    def reconfigure(self, **settings: str) -> None:
        self.settings.update(settings)
        self.container.recreate(env=dict(self.settings))
        self.wait_serving()

    def teardown(self) -> None:
        if self.container:
            self.container.remove()


# --- pyinfra-driven targets -----------------------------------------------------------
@dataclass(repr=False)
class _PyinfraTarget(Target):
    scenario: Scenario
    tls: TestTLS
    workdir: Path
    settings: dict[str, str] = field(default_factory=dict)
    runs: list[PyinfraRun] = field(default_factory=list)

    init = "?"

    def data(self) -> dict[str, str]:
        """Host data: docker-mailserver's environment plus mailwright's own keys."""
        data = {**BASE_ENV, "MAILWRIGHT_INIT": self.init,
                "mailwright_config_source": str(self.scenario.config.path), **self.settings}
        cfg = data.get("MAILWRIGHT_CONFIG_DIR") or DEFAULT_CONFIG_DIRS[self.init]
        data["SSL_CERT_PATH"] = f"{cfg}/ssl/cert.pem"
        data["SSL_KEY_PATH"] = f"{cfg}/ssl/key.pem"
        return data

    @property
    def config_dir(self) -> str:
        return self.data().get("MAILWRIGHT_CONFIG_DIR") or DEFAULT_CONFIG_DIRS[self.init]

    def deploy(self, check: bool = True) -> PyinfraRun:
        run = self._run_pyinfra()
        self.runs.append(run)
        if check and not run.ok:
            raise AssertionError(f"{self.kind}: pyinfra deploy failed\n{run}\n{self.diagnostics()}")
        return run

    def _run_pyinfra(self) -> PyinfraRun:
        raise NotImplementedError

    def report_text(self) -> str:
        return "\n".join(r.output for r in self.runs) + "\n" + self.mail_log()

    def diagnostics(self, tail: int = 60) -> str:
        last = self.runs[-1] if self.runs else None
        run_text = ""
        if last:
            out = "\n".join(last.output.splitlines()[-tail:])
            run_text = f"--- last pyinfra run: {shlex.join(last.argv)} (exit {last.returncode})\n{out}\n"
        try:
            mail = "\n".join(self.mail_log().splitlines()[-tail:])
        except Exception as e:  # the container may be gone
            mail = f"(unavailable: {e})"
        return f"{run_text}--- mail.log (last {tail} lines):\n{mail}\n"

    def reconfigure(self, **settings: str) -> None:
        self.settings.update(settings)
        self.deploy()
        self.wait_serving()


@dataclass(repr=False)
class VpsTarget(_PyinfraTarget):
    vps: Vps | None = None
    kind = "vps"
    init = "systemd"

    def start(self) -> "VpsTarget":
        from . import MAIL_PORTS
        d.wait_ports_free(MAIL_PORTS)
        self.deploy()
        self.wait_serving()
        return self

    def inventory(self) -> Path:
        data = {**self.vps.host_data(), **self.data()}
        return write_inventory(self.workdir / "inventory.py", "127.0.0.1", data)

    def _run_pyinfra(self) -> PyinfraRun:
        return run_pyinfra(str(self.inventory()))

    def exec(self, *cmd, check=True, timeout=120, input=None):
        return self.vps.exec(*cmd, check=check, timeout=timeout, input=input)

    def diagnostics(self, tail: int = 60) -> str:
        j = self.exec("journalctl", "--no-pager", "-n", str(tail), "-u", "postfix*", "-u", "dovecot*",
                      "-u", "mailwright*", check=False)
        failed = self.exec("systemctl", "--failed", "--no-pager", check=False)
        return (super().diagnostics(tail) + f"--- journalctl (postfix/dovecot/mailwright):\n{j.stdout}{j.stderr}\n"
                f"--- systemctl --failed:\n{failed.stdout}\n")

    def report_text(self) -> str:
        journal = self.exec("journalctl", "--no-pager", "-o", "cat", check=False)
        return super().report_text() + "\n" + journal.stdout

    def restart(self) -> None:
        """A VPS restart is a reboot: systemd must bring the mail server back by itself."""
        self.vps.reboot()
        self.wait_serving()

    def recreate(self) -> None:
        """Nothing to recreate on a VPS: the closest operation is running the deploy again."""
        self.deploy()
        self.wait_serving()

    def teardown(self) -> None:
        if self.vps:
            self.vps.remove()


@dataclass(repr=False)
class DockerConnectorTarget(_PyinfraTarget):
    base_image: str = ""
    volumes: Volumes | None = None
    name: str = ""
    kind = "docker"
    init = "container"

    def start(self) -> "DockerConnectorTarget":
        self._run_container()
        self.deploy()
        self.wait_serving()
        return self

    def _run_container(self) -> None:
        from . import MAIL_PORTS
        d.wait_ports_free(MAIL_PORTS)
        self.name = d.unique_name("dockerconn")
        v = self.volumes
        d.docker("run", "-d", "--name", self.name, "--network", "host",
                 "--add-host", f"{SERVER_NAME}:127.0.0.1", "--hostname", SERVER_NAME,
                 "-v", f"{v.mail}:/var/mail", "-v", f"{v.state}:/var/mail-state", "-v", f"{v.logs}:/var/log/mail",
                 self.base_image, "sleep", "infinity")

    def _run_pyinfra(self) -> PyinfraRun:
        extra: list[str] = []
        for k, val in self.data().items():
            extra += ["--data", f"{k}={val}"]
        return run_pyinfra(f"@docker/{self.name}", *extra)

    def exec(self, *cmd, check=True, timeout=120, input=None):
        return d.exec_(self.name, *cmd, check=check, timeout=timeout, input=input)

    def restart(self) -> None:
        """`docker restart` (the detached init dies with it), then the deploy brings it back."""
        d.docker("restart", "-t", "20", self.name, timeout=180)
        self.deploy()
        self.wait_serving()

    def recreate(self) -> None:
        """`docker rm -f`, a fresh Debian container on the same volumes, deploy again."""
        d.rm(self.name)
        self._run_container()
        self.deploy()
        self.wait_serving()

    def report_text(self) -> str:
        init_log = self.exec("sh", "-c", "cat /var/log/mail/init.log 2>/dev/null", check=False)
        return super().report_text() + "\n" + init_log.stdout

    def teardown(self) -> None:
        if self.name:
            d.rm(self.name)

