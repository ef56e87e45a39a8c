"""Debian 12 base root filesystem for the mailwright image, built locally.

No registry image: mmdebstrap builds bookworm (minbase + Debian's python3 and
python3-jinja2, which the container runtime needs) from the mirror this host's
apt already uses, the result is rewritten into one deterministic layer and
`docker load`ed with a config we write ourselves (fixed `created`), so the
same inputs give the same image ID. The image is tagged by a hash of its
inputs; when that tag exists, nothing is rebuilt.

    python build/rootfs.py            # prints the tag and image ID
    python build/rootfs.py --no-cache # rebuild even when the tag exists
"""

from __future__ import annotations

import argparse
import fnmatch
import glob
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import reprotar  # noqa: E402

DOCKER = "/usr/bin/docker"
SUITE = "bookworm"
VARIANT = "minbase"
INCLUDE = ("python3", "python3-jinja2")
# merged-/usr the way debootstrap (and Debian's own container images) set it
# up: otherwise apt satisfies init-system-helpers with usrmerge, which drags
# in a full perl (45 MB).
HOOK_DIRS = ("/usr/share/mmdebstrap/hooks/merged-usr",)
LOCK = os.path.join(HERE, "packages.lock")
CACHE = os.path.join(ROOT, "out", "cache")
REPO = "mailwright-rootfs"
# Used only until build/packages.lock records the epoch of its refresh:
# 2025-01-01T00:00:00Z.
DEFAULT_EPOCH = 1735689600

# Written into the rootfs's dpkg configuration, so they also hold for every
# package the install stage adds later.
DPKG_OPTS = (
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/lintian/*",
    "path-exclude=/usr/share/linda/*",
    "path-exclude=/usr/share/groff/*",
    # Files no daemon reads (about 9 MB; more in reprotar.DROP_PATTERNS). glibc's iconv modules for IBM and
    # EBCDIC (mainframe) code pages: Dovecot converts mail charsets through
    # iconv, so every charset mail uses stays (UTF-*, ISO-8859-*, CP125x,
    # KOI8-*, ISO-2022-*, EUC-*, SHIFT_JIS/CP932, GB2312/GBK/GB18030, BIG5*,
    # UHC, TIS-620, ...; Perl and Python carry their own converters).
    "path-exclude=/usr/lib/*/gconv/IBM*",
    "path-exclude=/usr/lib/*/gconv/EBCDIC*",
    # leap-second ("right/") time zones: TZ names the ordinary ones
    "path-exclude=/usr/share/zoneinfo/right/*",
    # Python's test-only C modules (its .py files that no daemon imports go in
    # reprotar.DROP_PATTERNS: the packages' py3compile fails on a missing one)
    "path-exclude=/usr/lib/python3*/lib-dynload/_test*",
    "path-exclude=/usr/lib/python3*/lib-dynload/_ctypes_test*",
    "path-exclude=/usr/lib/python3*/lib-dynload/xxlimited*",
    "path-exclude=/usr/lib/python3*/lib-dynload/_xxtestfuzz*",
    # Perl's documentation (.pod: perldoc is not installed) and the Unicode
    # collation tables (Unicode::Collate: no installed module uses it)
    "path-exclude=/usr/share/perl/*.pod",
    "path-exclude=/usr/share/perl5/*.pod",
    "path-exclude=/usr/lib/*/perl/*.pod",
    "path-exclude=/usr/lib/*/perl5/*.pod",
    "path-exclude=/usr/share/perl/*/Unicode/Collate/*",
    "path-exclude=/usr/share/bash-completion/*",
)


def dpkg_excludes(path: str, opts=DPKG_OPTS) -> bool:
    """Whether dpkg leaves `path` out under `opts`: dpkg matches each
    path-exclude/path-include with fnmatch(3) without FNM_PATHNAME ("*" also
    matches "/"), and the last matching option wins."""
    excluded = False
    for opt in opts:
        kind, _, pattern = opt.partition("=")
        if kind in ("path-exclude", "path-include") and fnmatch.fnmatchcase(path, pattern):
            excluded = kind == "path-exclude"
    return excluded
APT_OPTS = (
    'Acquire::Languages "none"',
    # The deploy names every package it needs; recommends would double the
    # image (SpamAssassin and Amavis recommend a lot).
    'APT::Install-Recommends "false"',
    'APT::Install-Suggests "false"',
)

CONTAINER_CONFIG = {
    "Env": ["PATH=" + reprotar.DEFAULT_PATH],
    "Cmd": ["bash"],
}


def log(msg: str):
    print(f"rootfs: {msg}", file=sys.stderr, flush=True)


def _deb822(text: str):
    for para in re.split(r"\n\s*\n", text):
        fields, key = {}, None
        for line in para.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and key:
                fields[key] += " " + line.strip()
                continue
            if ":" in line:
                key, val = line.split(":", 1)
                fields[key.strip().lower()] = val.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        for uri in fields.get("uris", "").split():
            yield uri, fields.get("suites", "").split(), fields.get("components", "").split()


def _one_line(text: str):
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        line = re.sub(r"\[[^]]*\]", "", line)
        parts = line.split()
        if len(parts) >= 3:
            yield parts[1], [parts[2]], parts[3:]


def host_sources(suite: str = SUITE) -> list[str]:
    """sources.list lines for `suite` (and its -updates/-security) from the host.

    The mirror is whatever this machine's apt is configured with; it is never
    written into the code, so CI and developer machines use their own.
    """
    found = []
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        with open(path) as f:
            found.extend(_deb822(f.read()))
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if os.path.exists(path):
            with open(path) as f:
                found.extend(_one_line(f.read()))
    lines = []
    for uri, suites, comps in found:
        for s in suites:
            if s == suite or s.startswith(suite + "-") or s.startswith(suite + "/"):
                comps_main = [c for c in comps if c == "main"] or comps[:1]
                line = f"deb {uri} {s} {' '.join(comps_main)}"
                if line not in lines:
                    lines.append(line)
    if not any(l.split()[2] == suite for l in lines):
        raise SystemExit(f"rootfs: no apt source for Debian {suite} in /etc/apt/sources.list(.d); "
                         "the image is built from the mirror this host uses")
    return lines


def lock_epoch(lock_path: str = LOCK) -> int | None:
    try:
        with open(lock_path) as f:
            for line in f:
                m = re.match(r"#\s*SOURCE_DATE_EPOCH\s*[=:]\s*(\d+)", line)
                if m:
                    return int(m.group(1))
    except FileNotFoundError:
        pass
    return None


def source_date_epoch() -> int:
    """Env override, else the epoch recorded when the lock was refreshed."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env:
        return int(env)
    return lock_epoch() or DEFAULT_EPOCH


def mmdebstrap_version() -> str:
    return subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True,
                          check=True).stdout.strip()


def inputs_key(sources: list[str], epoch: int, lock_path: str | None) -> str:
    h = hashlib.sha256()
    parts = {
        "sources": sources,
        "epoch": epoch,
        "suite": SUITE,
        "variant": VARIANT,
        "include": INCLUDE,
        "hooks": HOOK_DIRS,
        "dpkg": DPKG_OPTS,
        "apt": APT_OPTS,
        "config": CONTAINER_CONFIG,
        "mmdebstrap": mmdebstrap_version(),
        "lock": open(lock_path).read() if lock_path and os.path.exists(lock_path) else None,
    }
    h.update(reprotar.canonical_json(parts))
    for mod in ("rootfs.py", "reprotar.py", "lockcheck.py"):
        with open(os.path.join(HERE, mod), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def image_id(ref: str) -> str | None:
    r = subprocess.run([DOCKER, "image", "inspect", "-f", "{{.Id}}", ref],
                       capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else None


def build(lock_path: str | None = LOCK, use_cache: bool = True, keep_layer: str | None = None,
          tag: str | None = None) -> tuple[str, str]:
    """Returns (tag, image ID). `lock_path=None` floats (used to refresh the lock)."""
    if lock_path and not os.path.exists(lock_path):
        lock_path = None
    epoch = source_date_epoch()
    sources = host_sources()
    key = inputs_key(sources, epoch, lock_path)
    tag = tag or f"{REPO}:{key[:20]}"
    if use_cache:
        iid = image_id(tag)
        if iid:
            log(f"cached {tag} ({iid[:19]})")
            return tag, iid

    os.makedirs(CACHE, exist_ok=True)
    # per process: a test session and the benchmark may build the same base at once
    work = tempfile.mkdtemp(prefix=f"rootfs-{key[:20]}-", dir=CACHE)
    try:
        raw = os.path.join(work, "raw.tar")
        cmd = [
            "mmdebstrap", "--mode=root", f"--variant={VARIANT}", "--format=tar",
            "--include=" + ",".join(INCLUDE),
            *(f"--hook-dir={d}" for d in HOOK_DIRS),
            *(f"--dpkgopt={o}" for o in DPKG_OPTS),
            *(f"--aptopt={o}" for o in APT_OPTS),
        ]
        if lock_path:
            # mmdebstrap runs hooks through sh with the chroot as "$1"
            check = f"{shlex.quote(sys.executable)} {shlex.quote(os.path.join(HERE, 'lockcheck.py'))}"
            lock_arg = f"--lock {shlex.quote(lock_path)}"
            cmd += [
                f'--setup-hook={check} pin --root "$1" {lock_arg}',
                f'--customize-hook={check} verify --root "$1" {lock_arg}',
                f'--customize-hook={check} unpin --root "$1"',
            ]
        cmd += [SUITE, raw, "\n".join(sources)]
        env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), LC_ALL="C.UTF-8")
        log(f"mmdebstrap {VARIANT} {SUITE} from {', '.join(l.split()[1] for l in sources[:1])}"
            f"{' (locked)' if lock_path else ' (floating: no lock)'}")
        t0 = time.monotonic()
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout[-6000:])
            raise SystemExit(f"rootfs: mmdebstrap failed (exit {r.returncode})")
        log(f"mmdebstrap took {time.monotonic() - t0:.0f} s")

        tree = reprotar.Tree()
        with open(raw, "rb") as f:
            tree.add_tar(f)
        os.unlink(raw)
        tree.apply_drop_rules()
        tree.normalise_shadow(epoch)
        layer = os.path.join(work, "layer.tar")
        with open(layer, "wb") as f:
            tree.write(f, epoch)
        iid = reprotar.load_image(layer, CONTAINER_CONFIG, tag, epoch,
                                  f"mmdebstrap --variant={VARIANT} {SUITE} +{','.join(INCLUDE)} (build/rootfs.py)")
        if keep_layer:
            os.replace(layer, keep_layer)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"loaded {tag} {iid}")
    prune(keep=tag)
    return tag, iid


def prune(keep: str, spare: int = 6):
    """Bases of older inputs, beyond the `spare` most recently made ones.

    Several worktrees build at once on one engine, each with its own package lock:
    removing every other base would pull one from under a build in progress."""
    r = subprocess.run([DOCKER, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", REPO],
                       capture_output=True, text=True)
    refs = [ref for ref in r.stdout.split() if ref != keep]
    tagged = []
    for ref in refs:
        t = subprocess.run([DOCKER, "image", "inspect", "-f", "{{.Metadata.LastTagTime}}", ref],
                           capture_output=True, text=True).stdout.strip()
        tagged.append((t, ref))
    for _, ref in sorted(tagged, reverse=True)[spare:]:
        subprocess.run([DOCKER, "rmi", ref], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--no-cache", action="store_true", help="rebuild even if the input hash is cached")
    ap.add_argument("--no-lock", action="store_true", help="ignore build/packages.lock (float)")
    ap.add_argument("--keep-layer", help="also keep the normalised layer tar at this path")
    ap.add_argument("--print-sources", action="store_true")
    args = ap.parse_args(argv)
    if args.print_sources:
        print("\n".join(host_sources()))
        return
    tag, iid = build(None if args.no_lock else LOCK, use_cache=not args.no_cache,
                     keep_layer=args.keep_layer)
    print(json.dumps({"tag": tag, "id": iid}))


if __name__ == "__main__":
    main()
