"""Deterministic root filesystem trees and Docker image archives.

Everything that makes two builds of the same inputs differ is decided here:
entry order, timestamps, owner names, pax noise, files that record *when* or
*where* a build ran (logs, caches, backups) and secrets generated at install
time (which must be created at first start instead, never shipped).

Used by rootfs.py (base filesystem from mmdebstrap) and image.py (flattening
the BuildKit result). Standard library only: it runs with whatever python the
operator has.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field

from lockcheck import paragraphs   # one dpkg status parser: it also runs alone inside the build

# Secrets the daemons' packages generate, from their descriptors (ops/<name>/daemon.py `secrets`);
# the descriptors are standard library only, like this module.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ops.daemons import secrets as _secrets  # noqa: E402

DAEMON_SECRETS = tuple(path.lstrip("/") for path in _secrets())

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Paths are relative, without a leading "./" or "/". "*" stays within one path
# segment, "**" crosses them. "dir/**" removes what is below a directory but
# keeps the directory itself: packages own those directories (with their
# modes) even when empty.
DROP_PATTERNS = (
    # record when or where the build ran
    "var/cache/apt/**",
    "var/lib/apt/lists/**",
    "var/cache/debconf/*-old",
    "var/lib/dpkg/*-old",
    "etc/*-",  # passwd-, shadow-, ... backups written by adduser/useradd
    "var/cache/ldconfig/aux-cache",
    "var/lib/apt/periodic/*-stamp",
    "var/cache/man/**",
    "var/lib/dbus/machine-id",
    "etc/machine-id",
    # the build host's: docker bind-mounts the container's own at run time
    "etc/hostname",
    "etc/resolv.conf",
    "etc/hosts",
    "tmp/**",
    "var/tmp/**",
    "dev/**",
    # Berkeley DB files carry uninitialised bytes, so they differ every build;
    # postalias/postmap would recreate them, but mailwright's main.cf only
    # uses texthash: maps
    "etc/aliases.db",
    "etc/postfix/*.db",
    # sasl2-bin's post-install makes an empty sasldb (same story); saslauthd, the only
    # Cyrus SASL user here, never reads it
    "etc/sasldb2",
    # generated at install time; mailwright.init creates them at first start
    # (each daemon's own come from its descriptor: see DAEMON_SECRETS below)
    "etc/ssl/private/ssl-cert-snakeoil.key",
    "etc/ssl/certs/ssl-cert-snakeoil.pem",
    "etc/ssh/ssh_host_*",
    *DAEMON_SECRETS,
    # Python code no daemon imports (dpkg path-exclude cannot drop .py files:
    # the packages' py3compile fails on a listed file that is missing):
    # help()'s texts, CPython's test suite, fail2ban's (fail2ban-testcases)
    "usr/lib/python3.*/pydoc_data/**",
    "usr/lib/python3.*/test/**",
    "usr/lib/python3/dist-packages/fail2ban/tests/**",
    # (opt/mailwright/**/__pycache__ is kept: build/install-stage.sh compiles it
    # hash-checked, with no mtime inside)
)

# Below these only files go: daemons expect their (empty) log and runtime
# directories with the ownership their packages gave them.
DROP_FILES_PATTERNS = (
    "var/log/**",
    "run/**",
)

# apt recreates these on the next update; keep them so it does not have to.
KEEP_PATHS = frozenset((
    "var/lib/apt/lists/partial",
    "var/cache/apt/archives",
    "var/cache/apt/archives/partial",
))

# Secrets that must never be in an image. Matched on file content, after the
# drop rules, so an unknown key makes the build fail instead of shipping.
PRIVATE_KEY_MARKERS = (b"PRIVATE KEY-----",)
PRIVATE_KEY_SCAN_PREFIXES = ("etc/", "var/", "root/", "opt/", "srv/", "home/")


def _glob_re(pattern: str) -> re.Pattern:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


_DROP = [_glob_re(p) for p in DROP_PATTERNS]
_DROP_FILES = [_glob_re(p) for p in DROP_FILES_PATTERNS]


def dropped(path: str, isdir: bool = False) -> bool:
    if path in KEEP_PATHS:
        return False
    if not isdir and any(r.match(path) for r in _DROP_FILES):
        return True
    return any(r.match(path) for r in _DROP)


def norm_path(name: str) -> str:
    name = name.strip("/")
    while name.startswith("./"):
        name = name[2:].lstrip("/")
    return "" if name == "." else name


@dataclass(eq=False)
class Entry:
    info: tarfile.TarInfo
    # Shared between hard links: the identity of the inode. `data` lives on it.
    inode: "Inode"


@dataclass(eq=False)
class Inode:
    data: bytes | None = None
    paths: set = field(default_factory=set)


class Tree:
    """A merged filesystem: path -> Entry, built from one or more layer tars."""

    def __init__(self):
        self.entries: dict[str, Entry] = {}

    def remove(self, path: str, below_only: bool = False):
        prefix = path + "/" if path else ""
        victims = [p for p in self.entries if p.startswith(prefix)]
        if not below_only:
            victims.append(path)
        for p in victims:
            e = self.entries.pop(p, None)
            if e is not None:
                e.inode.paths.discard(p)

    def add_tar(self, fileobj, layer: bool = False):
        """Add a tar stream; with layer=True apply OCI/Docker whiteouts."""
        with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
            members = []
            for ti in tf:
                data = tf.extractfile(ti).read() if ti.isreg() else None
                members.append((ti, data))
        if layer:
            # Whiteouts refer to lower layers only: apply them first.
            for ti, _ in members:
                path = norm_path(ti.name)
                base = os.path.basename(path)
                parent = os.path.dirname(path)
                if base == ".wh..wh..opq":
                    self.remove(parent, below_only=True)
                elif base.startswith(".wh."):
                    self.remove(os.path.join(parent, base[4:]) if parent else base[4:])
        for ti, data in members:
            path = norm_path(ti.name)
            base = os.path.basename(path)
            if not path or (layer and base.startswith(".wh.")):
                continue
            old = self.entries.get(path)
            if old is not None:
                if not (old.info.isdir() and ti.isdir()):
                    # a directory listed again by an upper layer only changes
                    # its metadata; anything else replaces what was there
                    self.remove(path)
                else:
                    old.inode.paths.discard(path)
            if ti.islnk():
                target = self.entries.get(norm_path(ti.linkname))
                if target is None:
                    raise RuntimeError(f"hard link {path} -> {ti.linkname}: target missing")
                inode = target.inode
            else:
                inode = Inode(data=data)
            inode.paths.add(path)
            self.entries[path] = Entry(info=ti, inode=inode)

    def read(self, path: str) -> bytes | None:
        e = self.entries.get(path)
        return e.inode.data if e is not None else None

    def replace_data(self, path: str, data: bytes):
        e = self.entries[path]
        # A rewrite must not leak into other names of the same inode.
        e.inode.paths.discard(path)
        e.inode = Inode(data=data, paths={path})

    def apply_drop_rules(self) -> list[str]:
        gone = sorted(p for p, e in self.entries.items() if dropped(p, e.info.isdir()))
        for p in gone:
            e = self.entries.pop(p)
            e.inode.paths.discard(p)
        # Symlinks left pointing at a removed generated secret (for example
        # the c_rehash link to the snakeoil certificate) go too.
        for p, e in list(self.entries.items()):
            if e.info.issym():
                tgt = e.info.linkname
                resolved = norm_path(tgt if tgt.startswith("/") else os.path.join(os.path.dirname(p), tgt))
                resolved = os.path.normpath(resolved)
                if dropped(resolved) and resolved not in self.entries:
                    self.entries.pop(p)
                    gone.append(p)
        return gone

    def normalise_shadow(self, epoch: int):
        """Password-change day of accounts created during the build = epoch day."""
        day = str(epoch // 86400)
        for path in ("etc/shadow",):
            data = self.read(path)
            if data is None:
                continue
            lines = []
            for line in data.decode().splitlines():
                f = line.split(":")
                if len(f) >= 3 and f[2] not in ("",):
                    f[2] = day
                lines.append(":".join(f))
            self.replace_data(path, ("\n".join(lines) + "\n").encode())

    def private_keys(self) -> list[str]:
        hits = []
        for p, e in self.entries.items():
            if not e.info.isreg() or not p.startswith(PRIVATE_KEY_SCAN_PREFIXES):
                continue
            data = e.inode.data or b""
            if len(data) < 1 << 20 and any(m in data for m in PRIVATE_KEY_MARKERS):
                hits.append(p)
        return sorted(hits)

    def write(self, fileobj, epoch: int):
        """Sorted entries, clamped mtimes, numeric owners only, no pax noise."""
        emitted: dict[int, str] = {}
        with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT) as tf:
            for path in sorted(self.entries):
                e = self.entries[path]
                src = e.info
                ti = tarfile.TarInfo(path)
                ti.mode = src.mode & 0o7777
                ti.uid, ti.gid = src.uid, src.gid
                ti.uname = ti.gname = ""
                ti.mtime = min(int(src.mtime), epoch)
                ti.pax_headers = {
                    k: v for k, v in src.pax_headers.items() if k.startswith("SCHILY.xattr.")
                }
                data = None
                if src.isreg() or src.islnk():
                    key = id(e.inode)
                    if key in emitted:
                        ti.type = tarfile.LNKTYPE
                        ti.linkname = emitted[key]
                    else:
                        emitted[key] = path
                        ti.type = tarfile.REGTYPE
                        data = e.inode.data or b""
                        ti.size = len(data)
                elif src.issym():
                    ti.type = tarfile.SYMTYPE
                    ti.linkname = src.linkname
                elif src.isdir():
                    ti.type = tarfile.DIRTYPE
                elif src.ischr() or src.isblk() or src.isfifo():
                    ti.type = src.type
                    ti.devmajor, ti.devminor = src.devmajor, src.devminor
                else:
                    raise RuntimeError(f"{path}: unsupported tar entry type {src.type!r}")
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)

    def dpkg_packages(self) -> list[tuple[str, str, str]]:
        """(package, version, architecture) of installed packages, sorted."""
        status = self.read("var/lib/dpkg/status") or b""
        return parse_dpkg_status(status.decode())


def parse_dpkg_status(text: str) -> list[tuple[str, str, str]]:
    out = []
    for fields in paragraphs(text):
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            out.append((fields["Package"], fields["Version"], fields.get("Architecture", "")))
    return sorted(out)


def iso(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def canonical_json(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def load_image(layer_path: str, container_config: dict, tag: str, epoch: int,
               created_by: str, docker: str = "/usr/bin/docker") -> str:
    """Write a docker-save archive around one layer and `docker load` it.

    `docker import` would stamp the current time into the config; writing the
    config ourselves makes the image ID a pure function of layer + config.
    Returns the image ID.
    """
    h = hashlib.sha256()
    with open(layer_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    diff_id = "sha256:" + h.hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": iso(epoch),
        "config": container_config,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": iso(epoch), "created_by": created_by}],
    }
    config_bytes = canonical_json(config)
    config_id = hashlib.sha256(config_bytes).hexdigest()
    layer_dir = h.hexdigest()
    manifest = [{
        "Config": f"{config_id}.json",
        "RepoTags": [tag],
        "Layers": [f"{layer_dir}/layer.tar"],
    }]
    with tempfile.TemporaryDirectory(prefix="mw-load-", dir=os.path.dirname(layer_path)) as tmp:
        archive = os.path.join(tmp, "image.tar")
        with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tf:
            def add_bytes(name, data):
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime, ti.mode = len(data), epoch, 0o644
                tf.addfile(ti, io.BytesIO(data))
            add_bytes(f"{config_id}.json", config_bytes)
            ti = tarfile.TarInfo(layer_dir)
            ti.type, ti.mtime, ti.mode = tarfile.DIRTYPE, epoch, 0o755
            tf.addfile(ti)
            tf.add(layer_path, arcname=f"{layer_dir}/layer.tar", recursive=False,
                   filter=lambda t: _fixed(t, epoch))
            add_bytes("manifest.json", canonical_json(manifest))
        subprocess.run([docker, "load", "-q", "-i", archive], check=True,
                       stdout=subprocess.DEVNULL)
    image_id = "sha256:" + config_id
    got = subprocess.run([docker, "image", "inspect", "-f", "{{.Id}}", tag], check=True,
                         capture_output=True, text=True).stdout.strip()
    if got != image_id:
        raise RuntimeError(f"docker load gave {got} for {tag}, expected {image_id}")
    return image_id


def _fixed(ti: tarfile.TarInfo, epoch: int) -> tarfile.TarInfo:
    ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = epoch, 0, 0, "", ""
    ti.mode = 0o644
    return ti
