"""A "VPS": a Debian 12 container running systemd and sshd, reached over SSH by pyinfra.

Also the pyinfra runner (SSH inventory and the docker connector) and the parser
for pyinfra's results table (to check that a second run changes nothing).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import FORBIDDEN_PORT, SERVER_NAME
from . import dockercli as d

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
PYINFRA = str(VENV_BIN / "pyinfra") if (VENV_BIN / "pyinfra").exists() else "pyinfra"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable

FALLBACK_BASE = "mw-explore-base"       # a local mmdebstrap bookworm rootfs (apt + python3)
VPS_IMAGE = "mailwright-test-vps:latest"
SYSTEMD_RUN_FLAGS = [
    "--cap-add", "SYS_ADMIN",
    "--security-opt", "seccomp=unconfined",
    "--security-opt", "apparmor=unconfined",
    "--cgroupns=host",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "-e", "container=docker",
    "--stop-signal", "SIGRTMIN+3",
]

VPS_DOCKERFILE = textwrap.dedent("""\
    FROM {base}
    ENV DEBIAN_FRONTEND=noninteractive
    RUN apt-get update \\
     && apt-get install -y --no-install-recommends systemd systemd-sysv dbus openssh-server python3 \\
            ca-certificates iproute2 procps \\
     && apt-get clean && rm -rf /var/lib/apt/lists/*
    # Host keys are made at boot (none baked in); the port and the authorized key
    # are bind-mounted per test session.
    RUN rm -f /etc/ssh/ssh_host_* \\
     && mkdir -p /etc/systemd/system/ssh.service.d /root/.ssh \\
     && printf '[Service]\\nExecStartPre=\\nExecStartPre=/usr/bin/ssh-keygen -A\\nExecStartPre=/usr/sbin/sshd -t\\n' \\
            > /etc/systemd/system/ssh.service.d/mwtest-keygen.conf \\
     && chmod 700 /root/.ssh \\
     && systemctl enable ssh \\
     && systemctl mask getty@tty1.service serial-getty@ttyS0.service console-getty.service \\
            systemd-logind.service getty.target systemd-udevd.service systemd-modules-load.service \\
            sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount \\
     && systemctl set-default multi-user.target
    STOPSIGNAL SIGRTMIN+3
    CMD ["/sbin/init"]
""")


# --- base image -----------------------------------------------------------------------
def base_image() -> str:
    """The team's Debian 12 base image (build/rootfs.py), else the local fallback.

    Override with MAILWRIGHT_TEST_BASE=<image>.
    """
    env = os.environ.get("MAILWRIGHT_TEST_BASE")
    if env:
        return env
    rootfs = REPO / "build" / "rootfs.py"
    if rootfs.exists():
        r = subprocess.run([PYTHON, str(rootfs)], cwd=REPO, capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"build/rootfs.py failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
        ref = _image_ref_from_output(r.stdout)
        if ref and d.image_exists(ref):
            return ref
        raise RuntimeError(f"could not find the image build/rootfs.py made in its output:\n{r.stdout[-2000:]}")
    if d.image_exists(FALLBACK_BASE):
        return FALLBACK_BASE
    raise RuntimeError(f"no base image: build/rootfs.py is missing and there is no local `{FALLBACK_BASE}`")


def _image_ref_from_output(out: str) -> str | None:
    """build/rootfs.py prints `{"tag": ..., "id": ...}`; else the last word naming an image."""
    import json
    for line in reversed(out.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and (obj.get("tag") or obj.get("id")):
            return obj.get("tag") or obj.get("id")
    for line in reversed(out.strip().splitlines()):
        for word in reversed(line.split()):
            if re.match(r"^(sha256:[0-9a-f]{64}|[a-z0-9][a-z0-9._/-]*:[A-Za-z0-9._-]+)$", word):
                return word
    return None


def build_vps_image(workdir: Path, base: str) -> str:
    ctx = workdir / "vps-build"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(VPS_DOCKERFILE.format(base=base))
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    d.docker("build", "--network", "host", "-t", VPS_IMAGE, str(ctx), timeout=1800, env=env)
    return VPS_IMAGE


# --- the VPS container ----------------------------------------------------------------
def free_ssh_port() -> int:
    busy = d.listening_ports()
    for port in (2222, 2223, 2224, 2225, 2322, 2422):
        if port != FORBIDDEN_PORT and port not in busy:
            return port
    raise RuntimeError(f"no free SSH port among 2222-2225/2322/2422: {sorted(busy)}")


@dataclass
class Vps:
    image: str
    workdir: Path
    name: str = field(default_factory=lambda: d.unique_name("vps"))
    ssh_port: int = 0
    key: Path = Path()
    extra_volumes: list[str] = field(default_factory=list)
    # "host" (the default): the host's network, sshd on 127.0.0.1:<ssh_port>. Any other value is
    # a Docker network (tests/harness/vpsnet.py): the VPS has its own address there (`ip`, given
    # or assigned), sshd listens on port 22 of it, `hostname` names it, `extra_args` (e.g.
    # --cap-add NET_ADMIN, a resolv.conf bind mount) go to `docker run`.
    network: str = "host"
    ip: str = ""
    hostname: str = SERVER_NAME
    extra_args: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        """Where SSH (and the mail ports) are reached from the host."""
        return "127.0.0.1" if self.network == "host" else self.ip

    def start(self, timeout: float = 90) -> "Vps":
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.key = self.workdir / "id_ed25519"
        if not self.key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "mwtest", "-f", str(self.key)],
                           check=True)
        on_host = self.network == "host"
        self.ssh_port = self.ssh_port or (free_ssh_port() if on_host else 22)
        listen = "127.0.0.1" if on_host else "0.0.0.0"
        sshd_conf = self.workdir / "sshd-mwtest.conf"
        sshd_conf.write_text(f"Port {self.ssh_port}\nListenAddress {listen}\nPermitRootLogin prohibit-password\n"
                             "PasswordAuthentication no\nUseDNS no\n")
        auth = self.workdir / "authorized_keys"
        auth.write_text(self.key.with_suffix(".pub").read_text())
        auth.chmod(0o600)
        if on_host:
            net = ["--network", "host", "--add-host", f"{SERVER_NAME}:127.0.0.1", "--hostname", SERVER_NAME]
        else:
            net = ["--network", self.network, *(["--ip", self.ip] if self.ip else []), "--hostname", self.hostname]
        args = ["run", "-d", "--name", self.name, *net, *self.extra_args,
                *SYSTEMD_RUN_FLAGS,
                "-v", f"{sshd_conf}:/etc/ssh/sshd_config.d/mwtest.conf:ro",
                "-v", f"{auth}:/root/.ssh/authorized_keys:ro"]
        for v in self.extra_volumes:
            args += ["-v", v]
        d.docker(*args, self.image, "/sbin/init")
        if not on_host and not self.ip:
            self.ip = d.docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
                               self.name).stdout.strip()
        self.wait_ssh(timeout)
        return self

    def ssh_argv(self, *cmd: str) -> list[str]:
        return ["ssh", "-i", str(self.key), "-p", str(self.ssh_port),
                "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=5", f"root@{self.address}", *cmd]

    def ssh(self, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(self.ssh_argv(*cmd), capture_output=True, text=True, timeout=timeout)

    def wait_ssh(self, timeout: float = 90) -> float:
        t0 = time.monotonic()
        last = ""
        while time.monotonic() - t0 < timeout:
            if not d.is_running(self.name):
                raise AssertionError(f"VPS container {self.name} exited:\n{d.logs(self.name)[-3000:]}")
            try:
                r = self.ssh("true", timeout=15)
                if r.returncode == 0:
                    return time.monotonic() - t0
                last = r.stderr
            except subprocess.TimeoutExpired:
                last = "ssh timed out"
            time.sleep(0.5)
        state = d.exec_(self.name, "systemctl", "status", "ssh", "--no-pager", check=False).stdout
        raise AssertionError(f"no SSH login to {self.name} on port {self.ssh_port} after {timeout}s: {last}\n{state}")

    def reboot(self, timeout: float = 120) -> None:
        d.docker("restart", self.name, timeout=180)
        self.wait_ssh(timeout)

    def exec(self, *cmd: str, check: bool = True, timeout: float = 120, input=None):
        return d.exec_(self.name, *cmd, check=check, timeout=timeout, input=input)

    def remove(self) -> None:
        d.rm(self.name)

    def host_data(self) -> dict:
        return {
            "ssh_port": self.ssh_port,
            "ssh_user": "root",
            "ssh_key": str(self.key),
            "ssh_known_hosts_file": "/dev/null",
            "ssh_strict_host_key_checking": "no",
        }


# --- pyinfra --------------------------------------------------------------------------
def write_inventory(path: Path, host: str, data: dict) -> Path:
    # Atomic: concurrent `setup.sh --inventory` readers (the 20-adds test) must never
    # see a half-written file, which would send them to port 22.
    text = "# written by tests/harness/vps.py\n" f"hosts = [({host!r}, {data!r})]\n"
    if not path.exists() or path.read_text() != text:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


@dataclass
class PyinfraRun:
    argv: list[str]
    returncode: int
    output: str
    seconds: float

    def __str__(self) -> str:
        return f"$ {shlex.join(self.argv)}  (exit {self.returncode}, {self.seconds:.1f}s)\n{self.output}"

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def results(self) -> "Results":
        return parse_results(self.output)


ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass
class Results:
    rows: list[tuple[str, str, str, str, str]]   # operation, hosts, success(changed), error, no change
    total: tuple[str, str, str, str] | None

    @property
    def changed(self) -> list[str]:
        return [r[0] for r in self.rows if r[2] not in ("-", "0")]

    @property
    def errors(self) -> list[str]:
        return [r[0] for r in self.rows if r[3] not in ("-", "0")]


def parse_results(output: str) -> Results:
    """Parse pyinfra 3's final table: `Operation  Hosts  Success  Error  No Change`.

    In that table "Success" counts hosts where the operation *changed* something.
    """
    rows: list[tuple[str, str, str, str, str]] = []
    total = None
    in_table = False
    for raw in output.splitlines():
        line = ANSI.sub("", raw).rstrip()
        # strip a logging prefix such as "    " or "--> "
        body = line.strip()
        if re.match(r"^Operation\s+Hosts\s+Success\s+Error\s+No Change$", body):
            in_table = True
            rows = []
            continue
        if not in_table or not body:
            continue
        parts = body.split()
        if len(parts) < 5:
            continue
        name, cols = " ".join(parts[:-4]), parts[-4:]
        if not all(re.match(r"^(-|\d+)$", c) for c in cols):
            continue
        if name == "Grand total":
            total = tuple(cols)  # type: ignore[assignment]
            in_table = False
            continue
        rows.append((name, *cols))  # type: ignore[arg-type]
    return Results(rows=rows, total=total)


def run_pyinfra(inventory: str, *extra: str, timeout: float = 1800, cwd: Path = REPO) -> PyinfraRun:
    """`.venv/bin/pyinfra -y <inventory> deploy.py [extra...]` from the repo root."""
    argv = [PYINFRA, "-y", inventory, "deploy.py", *extra]
    # A minimal environment: the deploy also reads docker-mailserver variables from
    # the operator's environment, and the test runner's must not leak into it.
    env = {"PYINFRA_YES": "1", "NO_COLOR": "1", "TERM": "dumb", "LANG": "C.UTF-8",
           "HOME": os.environ.get("HOME", "/root"),
           "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}"}
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out = -1, f"TIMEOUT after {timeout}s\n{e.stdout or ''}{e.stderr or ''}"
    return PyinfraRun(argv, rc, out, time.monotonic() - t0)
