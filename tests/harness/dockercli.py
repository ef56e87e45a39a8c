"""Docker helpers: every container the tests create is named `mwtest-*`.

Debian's /usr/bin/docker (20.10) is used on purpose: /usr/local/bin/docker is a
newer client without buildx, and error messages from the CLI can be pasted
into a shell as they are.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
import uuid

from mailwright.hostlock import LOCK_PATH  # noqa: F401  (re-exported: tests and scripts name it here)
from mailwright.hostlock import host_lock as _host_lock

DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else (shutil.which("docker") or "docker")
PREFIX = "mwtest-"


class DockerError(RuntimeError):
    pass


def docker(*args: str, check: bool = True, timeout: float = 300, input: bytes | str | None = None,
           env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `docker ARGS`; text output; raise DockerError with stdout+stderr when check fails."""
    argv = [DOCKER, *args]
    text_input = input if isinstance(input, str) or input is None else None
    try:
        proc = subprocess.run(
            argv, capture_output=True, timeout=timeout,
            input=input if isinstance(input, bytes) else (text_input.encode() if text_input is not None else None),
            env=env,
        )
    except subprocess.TimeoutExpired as e:
        raise DockerError(f"timed out after {timeout}s: {shlex.join(argv)}") from e
    out = subprocess.CompletedProcess(argv, proc.returncode,
                                      proc.stdout.decode(errors="replace"),
                                      proc.stderr.decode(errors="replace"))
    if check and out.returncode != 0:
        raise DockerError(f"`{shlex.join(argv)}` exited {out.returncode}\n"
                          f"stdout:\n{out.stdout[-4000:]}\nstderr:\n{out.stderr[-4000:]}")
    return out


def available() -> tuple[bool, str]:
    """Whether the engine answers; the reason when it does not."""
    if not os.path.exists(DOCKER) and not shutil.which(DOCKER):
        return False, f"no docker client at {DOCKER} (run `make host`)"
    try:
        r = docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=20)
    except DockerError as e:
        return False, str(e)
    if r.returncode != 0:
        return False, f"docker engine does not answer (run `make host`): {r.stderr.strip()[:300]}"
    return True, r.stdout.strip()


def unique_name(kind: str) -> str:
    return f"{PREFIX}{kind}-{uuid.uuid4().hex[:8]}"


def image_exists(ref: str) -> bool:
    return docker("image", "inspect", ref, check=False, timeout=30).returncode == 0


def container_exists(name: str) -> bool:
    return docker("container", "inspect", name, check=False, timeout=30).returncode == 0


def is_running(name: str) -> bool:
    r = docker("container", "inspect", "-f", "{{.State.Running}}", name, check=False, timeout=30)
    return r.returncode == 0 and r.stdout.strip() == "true"


def exit_code(name: str) -> int | None:
    r = docker("container", "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", name,
               check=False, timeout=30)
    if r.returncode != 0:
        return None
    running, code = r.stdout.split()
    return None if running == "true" else int(code)


def logs(name: str, tail: int | None = None) -> str:
    args = ["logs"] + (["--tail", str(tail)] if tail else []) + [name]
    r = docker(*args, check=False, timeout=60)
    return r.stdout + r.stderr


def exec_(name: str, *cmd: str, check: bool = True, timeout: float = 120,
          input: bytes | str | None = None) -> subprocess.CompletedProcess:
    flags = ["-i"] if input is not None else []
    return docker("exec", *flags, name, *cmd, check=check, timeout=timeout, input=input)


def rm(name: str) -> None:
    docker("rm", "-f", "-v", name, check=False, timeout=120)


def sweep() -> list[str]:
    """Remove leftover `mwtest-*` containers (from a crashed earlier session)."""
    r = docker("ps", "-aq", "--filter", f"name=^/{PREFIX}", check=False, timeout=60)
    ids = r.stdout.split()
    if ids:
        docker("rm", "-f", "-v", *ids, check=False, timeout=180)
    return ids


def host_lock(wait: float = 3600, on_wait=None, error=None):
    """One test session at a time on this machine: mail servers bind the host's ports.

    A second `make test` started meanwhile waits here instead of fighting over
    port 25 (and instead of sweeping away the first session's containers). The
    lock itself lives in mailwright.hostlock, which the bench takes too;
    here a wait that runs out raises DockerError unless `error` says otherwise.
    """
    return _host_lock(wait, on_wait=on_wait, error=error or DockerError)


def listening_ports() -> dict[int, str]:
    """TCP ports listening on this host (the tests' containers share its network)."""
    r = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True)
    ports: dict[int, str] = {}
    for line in r.stdout.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local = parts[3]
        try:
            port = int(local.rsplit(":", 1)[1])
        except (IndexError, ValueError):
            continue
        ports[port] = line
    return ports


def wait_ports_free(ports, timeout: float = 60) -> None:
    """Fail clearly when something else already serves the mail ports."""
    deadline = time.monotonic() + timeout
    while True:
        busy = {p: l for p, l in listening_ports().items() if p in ports}
        if not busy:
            return
        if time.monotonic() > deadline:
            raise DockerError("mail ports already in use on this host (another mail server is "
                              "running; containers bound to host ports must run one at a time):\n"
                              + "\n".join(busy.values()))
        time.sleep(0.5)
