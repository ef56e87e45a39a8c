"""The base every daemon needs: packages source, the vmail user, folders, and the runtime.

The runtime is mailwright's own code (`ops/`, `mailwright/`, `files/`) in
/opt/mailwright: the configure stage, the init/watcher and `setup` run from it
on the target.
"""

from __future__ import annotations

import io
import shlex
import tarfile
from pathlib import Path

from pyinfra import host
from pyinfra.api import FactBase, deploy, operation
from pyinfra.facts.deb import DebPackages
from pyinfra.operations import apt, files, server

from ops import daemons
from ops.facts import RUNTIME

PROJECT = Path(__file__).resolve().parent.parent
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
SNAKEOIL = ("/etc/ssl/private/ssl-cert-snakeoil.key", "/etc/ssl/certs/ssl-cert-snakeoil.pem")
RUNTIME_PACKAGES = ["python3", "python3-jinja2", "iproute2", "ca-certificates", "openssl"]


def packages(names: list[str], lock: dict[str, str]) -> list[str]:
    """Pin every package (and, with a lock, every dependency) to its locked version."""
    if not lock:
        return names
    missing = [n for n in names if n not in lock]
    if missing:
        raise ValueError(f"package lock has no entry for {', '.join(missing)}: refresh the lock")
    return [f"{n}={v}" for n, v in sorted(lock.items())]


def read_lock(path: str | None) -> dict[str, str]:
    if not path or not Path(path).is_file():
        return {}
    lock = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, version = line.partition("=")
            lock[name] = version
    return lock


def runtime_tarball() -> bytes:
    """The runtime as a reproducible tar: same code, same bytes, so no re-upload."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for top in ("ops", "mailwright", "files"):
            for path in sorted((PROJECT / top).rglob("*")):
                if "__pycache__" in path.parts or not path.is_file():
                    continue
                info = tar.gettarinfo(str(path), arcname=str(path.relative_to(PROJECT)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "root", "root"
                info.mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
                with path.open("rb") as f:
                    tar.addfile(info, f)
    return buf.getvalue()


class RepairNeeded(FactBase):
    """What `mailwright.prepare` would repair (Postfix queue layout, mail store owners);
    "unknown" before the runtime or Postfix is there, so the repair runs after them."""

    def command(self, what: str) -> str:
        return (f"cd {RUNTIME} 2>/dev/null && python3 -m mailwright.prepare --check {what} 2>/dev/null "
                "|| echo unknown")

    def process(self, output: list[str]) -> list[str]:
        return [line for line in output if line]


@operation()
def repair(what: str):
    """The start-up repairs of the container, on a host (the image build, a VPS): the Postfix queue's
    directories (`queue`), and the mail store's owners (`mail`, `host` for both). Change-free when
    nothing is wrong; what it changed goes to the journal."""
    if host.get_fact(RepairNeeded, what=what):
        yield f"cd {RUNTIME} && python3 -m mailwright.prepare --syslog {what}"


def missing_packages(wanted: list[str], installed: dict[str, list[str]]) -> list[str]:
    """The `name` or `name=version` entries of `wanted` that are not installed as asked."""
    out = []
    for spec in wanted:
        name, _, version = spec.partition("=")
        have = installed.get(name) or []
        if not have or (version and version not in have):
            out.append(spec)
    return out


@operation()
def update_index(packages: list[str], cache_time: int = 3600):
    """`apt-get update` (pyinfra's apt.update, with its cache time) when one of `packages` is missing.

    Only an install reads the package index: a host that already has every package the deploy
    asks for needs no index, so a re-run, or a host that has no mirror to reach (packages
    installed beforehand), is not stopped by an update it does not need. A host missing a package
    still runs the update, and whatever fails there fails the deploy as before.
    """
    if not missing_packages(packages, host.get_fact(DebPackages) or {}):
        host.noop("every package is installed: no package index needed")
        return
    yield from apt.update._inner(cache_time=cache_time)


@deploy("mailwright base: install")
def install(lock: dict[str, str], daemon_packages: list[str] = ()):
    """`daemon_packages`: what the daemons' installs that follow will ask apt for (the index is
    updated when any of these or the runtime's packages is missing)."""
    runtime_packages = packages(RUNTIME_PACKAGES, lock)
    update_index(name="Package index (when a package is missing)", packages=[*runtime_packages, *daemon_packages],
                 _env=APT_ENV)
    apt.packages(
        name="Runtime of mailwright's configure stage and init",
        packages=runtime_packages,
        no_recommends=True, _env=APT_ENV,
    )
    server.group(name="vmail group 'docker' (docker-mailserver's name)", group="docker", gid=5000)
    server.user(name="vmail user 'docker'", user="docker", uid=5000, group="docker", home="/var/mail",
                shell="/usr/sbin/nologin", create_home=False)
    # 2755: chmod keeps the setgid bit Debian's base-files sets on /var/mail; stating it keeps re-runs change-free.
    files.directory(name="Mail store", path="/var/mail", user="docker", group="docker", mode="2755")
    files.directory(name="Mail log folder", path="/var/log/mail", mode="755")


@deploy("mailwright runtime")
def runtime():
    # The image build runs from /opt/mailwright itself: nothing to upload there.
    if not (Path(RUNTIME).resolve() == PROJECT and host.connector_cls.__name__ == "LocalConnector"):
        upload = files.put(name="Upload the runtime", src=io.BytesIO(runtime_tarball()),
                           dest=f"{RUNTIME}.tar", mode="644")
        # Unpacked beside, then swapped in: a running init never sees half a runtime.
        server.shell(name="Unpack the runtime", commands=[
            f"rm -rf {RUNTIME}.new {RUNTIME}.old && mkdir {RUNTIME}.new && tar -xf {RUNTIME}.tar -C {RUNTIME}.new",
            f"if [ -d {RUNTIME} ]; then mv {RUNTIME} {RUNTIME}.old; fi && mv {RUNTIME}.new {RUNTIME} && rm -rf {RUNTIME}.old",
        ], _if=upload.did_change)
    files.put(name="`setup` command", src=str(PROJECT / "files/usr/local/bin/setup"),
              dest="/usr/local/bin/setup", mode="755")


@deploy("Remove generated secrets (image build)")
def strip_secrets():
    """Keys made by post-install scripts must not ship in an image (everyone would share them)."""
    # The system's pair (Debian's ssl-cert); SSL_TYPE=snakeoil makes a new one at first start.
    for path in SNAKEOIL:
        files.file(name=f"No {path}", path=path, present=False)
    # Each daemon's, from its descriptor (files, or symlinks to the pair above; `dir/**`: what is below dir).
    for path in daemons.secrets():
        if path.endswith("/**"):
            server.shell(name=f"No {path}", commands=[f"find {shlex.quote(path[:-3])} -mindepth 1 -delete 2>/dev/null || true"])
        else:
            server.shell(name=f"No {path}", commands=[f"rm -f {shlex.quote(path)}"])
