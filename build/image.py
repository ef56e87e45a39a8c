"""Build the mailwright container image, reproducibly.

    python build/image.py --tag mailwright:latest   # build, print image ID
    python build/image.py --verify-repro            # two clean builds, same ID?
    python build/image.py --refresh-lock            # re-pin Debian packages on purpose
    python build/image.py --refresh-pylock          # re-pin the build's pyinfra wheels

Pipeline: base rootfs (build/rootfs.py, cached by input hash) -> BuildKit of
Debian's docker 20.10 runs build/Dockerfile (the deploy's install stage, held
to build/packages.lock) -> `docker save`, layers merged and rewritten into one
deterministic layer (build/reprotar.py: sorted, SOURCE_DATE_EPOCH, no logs,
caches or generated secrets) with a fixed config -> `docker load`. The engine's
BuildKit ignores SOURCE_DATE_EPOCH, which is why the rewrite is ours.

Writes out/<name>-<tag>.sbom.json (every Debian package and version in the
image) next to nothing else: the image itself lives in the engine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import reprotar  # noqa: E402
import rootfs  # noqa: E402

DOCKER = rootfs.DOCKER  # /usr/bin/docker: the 28.x client first on PATH has no buildx
OUT = os.path.join(ROOT, "out")
CACHE = rootfs.CACHE
WHEELS = os.path.join(CACHE, "wheels")
LOCK = rootfs.LOCK
PYLOCK = os.path.join(HERE, "requirements.lock")
PYINFRA = "pyinfra==3.10.0"

# The image contract: what of the project lands in /opt/mailwright.
PROJECT_DIRS = ("ops", "mailwright", "files")
PROJECT_FILES = ("deploy.py", "inventory.py", "pyproject.toml")
BUILD_HELPERS = ("lockcheck.py", "install-stage.sh")

# Wheels for the image's python (Debian 12: CPython 3.11, glibc 2.36, amd64),
# not for whatever python runs this script.
WHEEL_PLATFORM = [
    "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.11", "--abi", "cp311",
    *(x for p in ("manylinux_2_36_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
                  "manylinux2014_x86_64", "any") for x in ("--platform", p)),
]

# Keys of the container config that describe the image; anything else the
# engine adds (Hostname, Image, ...) describes the build.
CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Healthcheck", "Volumes",
               "WorkingDir", "Labels", "StopSignal", "ArgsEscaped", "Shell")


def log(msg: str):
    print(f"image: {msg}", file=sys.stderr, flush=True)


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


# --- python build dependencies ------------------------------------------------

def _pip(*args):
    return run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def refresh_pylock():
    """Pin pyinfra and its dependencies (and pip, which installs them) by hash."""
    with tempfile.TemporaryDirectory() as d:
        _pip("download", "-q", *WHEEL_PLATFORM, "-d", d, PYINFRA, "pip")
        lines = []
        for name in sorted(os.listdir(d), key=str.lower):
            m = re.match(r"([^-]+)-([^-]+)-", name)
            if not m or not name.endswith(".whl"):
                raise SystemExit(f"image: unexpected download {name}")
            with open(os.path.join(d, name), "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            dist = m.group(1).replace("_", "-").lower()
            lines.append(f"{dist}=={m.group(2)} \\\n    --hash=sha256:{digest}")
    with open(PYLOCK, "w") as f:
        f.write(f"# {PYINFRA} and its dependencies for the throwaway venv of the install stage\n"
                "# (wheels for CPython 3.11 / glibc 2.36 / amd64, Debian 12's python3).\n"
                "# Regenerate on purpose: python build/image.py --refresh-pylock\n")
        f.write("\n".join(lines) + "\n")
    log(f"wrote {os.path.relpath(PYLOCK, ROOT)} ({len(lines)} wheels)")


def ensure_wheels() -> str:
    """The locked wheels, downloaded once and checked against their hashes."""
    if not os.path.exists(PYLOCK):
        refresh_pylock()
    os.makedirs(WHEELS, exist_ok=True)
    wanted = set(re.findall(r"sha256:([0-9a-f]{64})", open(PYLOCK).read()))
    if wanted <= set(_wheel_hashes().values()):
        return WHEELS
    try:
        _pip("download", "-q", "--no-deps", "--require-hashes", *WHEEL_PLATFORM,
             "-d", WHEELS, "-r", PYLOCK)
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"image: pip download of {PYLOCK} failed:\n{e.stdout}")
    return WHEELS


# --- build context ----------------------------------------------------------------

def project_files() -> list[str]:
    """Files of PROJECT_DIRS: what git tracks or would track (not ignored junk)."""
    try:
        r = subprocess.run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard",
                            "--", *PROJECT_DIRS], capture_output=True)
    except FileNotFoundError:
        r = None
    if r is not None and r.returncode == 0:
        names = {n.decode() for n in r.stdout.split(b"\0") if n}
    else:  # an exported tree without .git
        names = set()
        for d in PROJECT_DIRS:
            for dirpath, dirnames, filenames in os.walk(os.path.join(ROOT, d)):
                dirnames[:] = [x for x in dirnames if x != "__pycache__" and not x.endswith(".egg-info")]
                names.update(os.path.relpath(os.path.join(dirpath, f), ROOT) for f in filenames)
    return sorted(n for n in names if os.path.isfile(os.path.join(ROOT, n)) and not n.endswith((".pyc", ".pyo")))


def _copy_normalised(src: str, dst: str, epoch: int):
    """Copy with modes and mtimes that do not depend on the checkout's umask or age."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copyfile(src, dst)
    os.chmod(dst, 0o755 if os.stat(src).st_mode & 0o100 else 0o644)
    os.utime(dst, (epoch, epoch))


def make_context(ctx: str, epoch: int, with_lock: bool) -> None:
    """Only what the image contract names enters the build: no tests, .git, .venv."""
    proj = os.path.join(ctx, "project")
    for rel in project_files():
        _copy_normalised(os.path.join(ROOT, rel), os.path.join(proj, rel), epoch)
    for fn in PROJECT_FILES:
        if os.path.exists(os.path.join(ROOT, fn)):
            _copy_normalised(os.path.join(ROOT, fn), os.path.join(proj, fn), epoch)
    if with_lock and os.path.exists(LOCK):
        _copy_normalised(LOCK, os.path.join(proj, "build", "packages.lock"), epoch)
    mw = os.path.join(ctx, "mwbuild")
    for fn in BUILD_HELPERS:
        _copy_normalised(os.path.join(HERE, fn), os.path.join(mw, fn), epoch)
    _copy_normalised(PYLOCK, os.path.join(mw, "requirements.lock"), epoch)
    wanted = _locked_wheel_names()
    for fn in sorted(os.listdir(WHEELS)):
        if fn in wanted:
            _copy_normalised(os.path.join(WHEELS, fn), os.path.join(mw, "wheels", fn), epoch)
    for dirpath, _, _ in os.walk(ctx):
        os.chmod(dirpath, 0o755)
        os.utime(dirpath, (epoch, epoch))


def _wheel_hashes() -> dict[str, str]:
    out = {}
    for fn in sorted(os.listdir(WHEELS)):
        with open(os.path.join(WHEELS, fn), "rb") as f:
            out[fn] = hashlib.sha256(f.read()).hexdigest()
    return out


def _locked_wheel_names() -> set[str]:
    """Files in the wheel cache whose hash the lock names (older pins stay out)."""
    hashes = set(re.findall(r"sha256:([0-9a-f]{64})", open(PYLOCK).read()))
    return {fn for fn, h in _wheel_hashes().items() if h in hashes}


def project_version() -> str:
    m = re.search(r'^version\s*=\s*"([^"]+)"', open(os.path.join(ROOT, "pyproject.toml")).read(), re.M)
    return m.group(1) if m else "0.0.0"


# --- build + normalise --------------------------------------------------------------

def docker_build(ctx: str, base: str, epoch: int, raw_tag: str, no_cache: bool):
    env = dict(os.environ, DOCKER_BUILDKIT="1")
    cmd = [DOCKER, "build", "--network", "host", "--progress", "plain",
           "-f", os.path.join(HERE, "Dockerfile"),
           "--build-arg", f"BASE_IMAGE={base}",
           "--build-arg", f"SOURCE_DATE_EPOCH={epoch}",
           "--build-arg", f"MAILWRIGHT_VERSION={project_version()}",
           "-t", raw_tag]
    if no_cache:
        cmd.append("--no-cache")
    cmd.append(ctx)
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout[-12000:])
        raise SystemExit(f"image: docker build failed (exit {p.returncode})")
    if os.environ.get("MAILWRIGHT_BUILD_LOG"):
        sys.stderr.write(p.stdout)
    log(f"docker build took {time.monotonic() - t0:.0f} s")


def _raw_key(raw_tag: str) -> str:
    """What the normalised image is a function of: the raw layers and config, and our code.

    Not the raw image ID: BuildKit stamps the build time into it, even on a
    fully cached build.
    """
    raw = json.loads(run([DOCKER, "image", "inspect", raw_tag], stdout=subprocess.PIPE).stdout)[0]
    h = hashlib.sha256(reprotar.canonical_json([raw["RootFS"], raw["Config"]]))
    for mod in ("image.py", "reprotar.py"):
        with open(os.path.join(HERE, mod), "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def normalise_cached(raw_tag: str, tag: str, epoch: int, work: str, reuse: bool = True,
                     keep_layer: str | None = None):
    """A BuildKit cache hit gives the same raw layers: reuse the image made from them."""
    key = _raw_key(raw_tag)
    memo = os.path.join(CACHE, "normalised", key + ".json")
    try:
        if not reuse:
            raise FileNotFoundError
        with open(memo) as f:
            known = json.load(f)
        if run([DOCKER, "image", "inspect", known["id"]], stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL).returncode == 0:
            run([DOCKER, "tag", known["id"], tag])
            log("normalised image cached")
            return known["id"], [tuple(p) for p in known["packages"]]
    except (FileNotFoundError, ValueError, KeyError, subprocess.CalledProcessError):
        pass
    iid, tree, _ = normalise(raw_tag, tag, epoch, work, keep_layer)
    packages = tree.dpkg_packages()
    os.makedirs(os.path.dirname(memo), exist_ok=True)
    with open(memo + f".{os.getpid()}", "w") as f:
        json.dump({"id": iid, "packages": packages}, f)
    os.replace(memo + f".{os.getpid()}", memo)
    return iid, packages


def normalise(raw_tag: str, tag: str, epoch: int, work: str, keep_layer: str | None = None):
    """Flatten raw_tag into one deterministic layer, load it as `tag`."""
    saved = os.path.join(work, "saved.tar")
    run([DOCKER, "save", "-o", saved, raw_tag])
    tree = reprotar.Tree()
    with tarfile.open(saved) as st:
        manifest = json.load(st.extractfile("manifest.json"))[0]
        raw_config = json.load(st.extractfile(manifest["Config"]))
        for layer in manifest["Layers"]:
            tree.add_tar(st.extractfile(layer), layer=True)
    os.unlink(saved)
    gone = tree.apply_drop_rules()
    tree.normalise_shadow(epoch)
    keys = tree.private_keys()
    if keys:
        raise SystemExit("image: private keys in the image (generate them at first start instead):\n  "
                         + "\n  ".join(keys))
    layer = os.path.join(work, "layer.tar")
    with open(layer, "wb") as f:
        tree.write(f, epoch)
    cfg = {k: raw_config["config"][k] for k in CONFIG_KEYS if raw_config["config"].get(k) is not None}
    iid = reprotar.load_image(layer, cfg, tag, epoch, "build/image.py: build/Dockerfile, normalised")
    if keep_layer:
        os.replace(layer, keep_layer)
    else:
        os.unlink(layer)
    return iid, tree, gone


def write_sbom(tag: str, iid: str, packages: list, base_id: str, epoch: int, locked: bool) -> str:
    os.makedirs(OUT, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", tag)
    path = os.path.join(OUT, f"{name}.sbom.json")
    pylock = open(PYLOCK).read()
    sbom = {
        "image": tag,
        "id": iid,
        "source_date_epoch": epoch,
        "base": {"id": base_id, "suite": rootfs.SUITE, "variant": rootfs.VARIANT,
                 "sources": rootfs.host_sources()},
        "packages_locked": locked,
        "debian_packages": [{"name": n, "version": v, "architecture": a}
                            for n, v, a in packages],
        # Used by the build only (throwaway venv); not in the image.
        "build_python_wheels": [
            {"name": n, "version": v, "sha256": h}
            for n, v, h in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n\s+--hash=sha256:([0-9a-f]+)", pylock, re.M)
        ],
    }
    with open(path, "w") as f:
        json.dump(sbom, f, indent=1, sort_keys=True)
        f.write("\n")
    return path


def write_lock(pkgs: list, epoch: int):
    with open(LOCK, "w") as f:
        f.write("# Every Debian package in the mailwright image, exactly as built.\n"
                "# The build installs these versions and fails when the mirror lacks one.\n"
                "# Regenerate on purpose: python build/image.py --refresh-lock\n"
                f"# SOURCE_DATE_EPOCH={epoch}\n")
        for n, v, _ in pkgs:
            f.write(f"{n}={v}\n")
    log(f"wrote {os.path.relpath(LOCK, ROOT)} ({len(pkgs)} packages, SOURCE_DATE_EPOCH={epoch})")


def build(tag: str, no_cache: bool = False, locked: bool = True, keep_layer: str | None = None,
          sbom: bool = True) -> dict:
    t0 = time.monotonic()
    lock = LOCK if locked and os.path.exists(LOCK) else None
    if locked and not lock:
        log("no build/packages.lock yet: package versions float (run --refresh-lock to pin them)")
    epoch = rootfs.source_date_epoch()
    base_tag, base_id = rootfs.build(lock_path=lock, use_cache=not no_cache)
    ensure_wheels()
    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="build-", dir=CACHE)
    raw_tag = f"mailwright-build:raw-{os.getpid()}-{os.path.basename(work)[6:].lower()}"
    try:
        ctx = os.path.join(work, "context")
        make_context(ctx, epoch, with_lock=lock is not None)
        docker_build(ctx, base_tag, epoch, raw_tag, no_cache)
        previous = _image_id(tag)
        iid, packages = normalise_cached(raw_tag, tag, epoch, work,
                                         reuse=not (no_cache or keep_layer), keep_layer=keep_layer)
    finally:
        subprocess.run([DOCKER, "rmi", "-f", raw_tag], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(work, ignore_errors=True)
    if previous and previous != iid:
        # the image this tag named before, unless something still uses it
        subprocess.run([DOCKER, "rmi", previous], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    result = {"tag": tag, "id": iid, "base": base_id, "epoch": epoch,
              "seconds": round(time.monotonic() - t0, 1), "packages": packages}
    if sbom:
        result["sbom"] = write_sbom(tag, iid, packages, base_id, epoch, lock is not None)
    return result


def _image_id(ref: str) -> str | None:
    return rootfs.image_id(ref)


# --- reproducibility check ---------------------------------------------------------

def _listing(layer_path: str) -> dict[str, tuple]:
    out = {}
    with tarfile.open(layer_path) as tf:
        for ti in tf:
            digest = hashlib.sha256(tf.extractfile(ti).read()).hexdigest()[:16] if ti.isreg() else ""
            out[ti.name] = (ti.type.decode(errors="replace") if isinstance(ti.type, bytes) else ti.type,
                            oct(ti.mode), ti.uid, ti.gid, ti.size, ti.mtime, ti.linkname, digest,
                            tuple(sorted(ti.pax_headers.items())))
    return out


def diff_layers(a: str, b: str, limit: int = 40) -> list[str]:
    la, lb = _listing(a), _listing(b)
    lines = []
    for path in sorted(set(la) | set(lb)):
        if la.get(path) != lb.get(path):
            lines.append(f"  {path}\n      a: {la.get(path)}\n      b: {lb.get(path)}")
            if len(lines) >= limit:
                lines.append("  ...")
                break
    return lines


def verify_repro(diffoscope: bool) -> int:
    repro = os.path.join(OUT, "repro")
    os.makedirs(repro, exist_ok=True)
    results = []
    for n in ("a", "b"):
        log(f"clean build {n} (no cache)")
        layer = os.path.join(repro, f"{n}.layer.tar")
        r = build(f"mailwright-repro:{n}", no_cache=True, keep_layer=layer, sbom=False)
        log(f"build {n}: {r['id']} in {r['seconds']} s (base {r['base'][:19]})")
        results.append((r, layer))
    (ra, la), (rb, lb) = results
    if ra["id"] == rb["id"]:
        print(f"reproducible: both clean builds gave {ra['id']}")
        for n in ("a", "b"):
            subprocess.run([DOCKER, "rmi", f"mailwright-repro:{n}"], stdout=subprocess.DEVNULL)
        for p in (la, lb):
            os.unlink(p)
        return 0
    print(f"NOT reproducible:\n  a: {ra['id']} (base {ra['base']})\n  b: {rb['id']} (base {rb['base']})")
    if ra["base"] != rb["base"]:
        print("  the base rootfs already differs (build/rootfs.py)")
    diff = diff_layers(la, lb)
    print("first differing files (type, mode, uid, gid, size, mtime, link, sha256[:16], pax):")
    print("\n".join(diff) if diff else "  none: the layers are equal, the configs differ")
    print(f"layers kept: {la} {lb}; images mailwright-repro:a and :b")
    if diffoscope and shutil.which("diffoscope"):
        report = os.path.join(repro, "diffoscope.txt")
        subprocess.run(["diffoscope", "--text", report, "--max-report-size", "2000000", la, lb])
        print(f"diffoscope report: {report}")
    else:
        print(f"details: diffoscope {la} {lb}")
    return 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tag", default="mailwright:latest")
    ap.add_argument("--no-cache", action="store_true", help="rebuild the base and every build step")
    ap.add_argument("--verify-repro", action="store_true", help="build twice from clean, compare image IDs")
    ap.add_argument("--diffoscope", action="store_true", help="with --verify-repro: run diffoscope on a difference")
    ap.add_argument("--refresh-lock", action="store_true", help="re-pin every Debian package from the mirror, then build")
    ap.add_argument("--refresh-pylock", action="store_true", help="re-pin the pyinfra wheels of the install stage")
    args = ap.parse_args(argv)

    if args.verify_repro:
        sys.exit(verify_repro(args.diffoscope))
    if args.refresh_pylock:
        refresh_pylock()
        if not args.refresh_lock:
            return
    if args.refresh_lock:
        # A new lock is a new input: its own epoch, so the image says when.
        epoch = int(time.time())
        os.environ["SOURCE_DATE_EPOCH"] = str(epoch)
        log("floating build to pick the current versions from the mirror")
        r = build("mailwright-build:float", locked=False, sbom=False)
        subprocess.run([DOCKER, "rmi", "mailwright-build:float"], stdout=subprocess.DEVNULL)
        write_lock(r["packages"], epoch)
        del os.environ["SOURCE_DATE_EPOCH"]
        log("building again from the new lock")
    r = build(args.tag, no_cache=args.no_cache)
    size = subprocess.run([DOCKER, "image", "inspect", "-f", "{{.Size}}", r["tag"]],
                          capture_output=True, text=True).stdout.strip()
    log(f"built in {r['seconds']} s; size {int(size) / 1e6:.0f} MB; SBOM {os.path.relpath(r['sbom'], ROOT)}")
    print(f"{r['tag']} {r['id']}")


if __name__ == "__main__":
    main()
