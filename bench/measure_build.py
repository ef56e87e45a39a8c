"""Build time of the image: `build/image.py` cold (--no-cache) and cached,
the command `make image` runs, under a tag of its own."""
from __future__ import annotations

import subprocess
import sys
import time

from bench import stats
from bench.common import REPO, log
from bench.engine import host_lock

BUILD_TAG = "mwbench-build:latest"


def build_once(no_cache: bool) -> dict:
    """Wall time of one `build/image.py` run, the command `make image` runs.

    Built under its own tag so the image being benchmarked is never replaced
    mid-run; the build is reproducible, so the ID should match it anyway.
    """
    cmd = [sys.executable, str(REPO / "build" / "image.py"), "--tag", BUILD_TAG]
    if no_cache:
        cmd.append("--no-cache")
    t = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    # Kept on success too: it says which stages were cached and what took long.
    out = {"cmd": cmd[1:], "seconds": seconds, "exit_code": proc.returncode,
           "stderr_tail": proc.stderr[-1500:]}
    if proc.returncode == 0:
        last = (proc.stdout.strip().splitlines() or [""])[-1].split()
        out["image_id"] = last[-1] if last else None
    return out


def measure_build(args, benchmarked_id: str) -> dict:
    if not (REPO / "build" / "image.py").exists():
        return {"note": "not measured: build/image.py is missing"}
    result: dict = {"cold": [], "cached": []}
    try:
        # The tests build inside their session lock; building here under the
        # same lock keeps two builds from sharing the rootfs work folder.
        with host_lock(args.lock_wait):
            for kind, no_cache, n in (("cold", True, args.build_cold_runs),
                                      ("cached", False, args.build_cached_runs)):
                for i in range(n):
                    log(f"build {kind} {i + 1}/{n}")
                    r = build_once(no_cache)
                    result[kind].append(r)
                    if r["exit_code"] != 0:
                        tail = r["stderr_tail"].strip().splitlines()[-1:] or ["?"]
                        result["note"] = f"build failed ({kind}): {tail[0][:200]}"
                        log(result["note"])
                        return result
                    prev = (result["cold"] + result["cached"])[-2:-1]
                    if kind == "cached" and prev and prev[0].get("image_id") != r["image_id"]:
                        # Someone edited the tree meanwhile: this was a rebuild
                        # of changed inputs, not a cached build.
                        r["inputs_changed"] = True
                    log(f"build {kind}: {r['seconds']:.1f} s, {r['image_id']}"
                        + (" (inputs changed since the previous build: not counted as cached)"
                           if r.get("inputs_changed") else ""))
    finally:
        subprocess.run(["docker", "rmi", BUILD_TAG], capture_output=True)
        sbom = REPO / "out" / f"{BUILD_TAG.replace(':', '-')}.sbom.json"
        if sbom.exists():
            sbom.unlink()
    ids = {r.get("image_id") for k in ("cold", "cached") for r in result[k]}
    result["same_id_as_benchmarked"] = ids == {benchmarked_id}
    return result


def summarize_build(build: dict, image_summary: dict, benchmarked_name: str) -> list[str]:
    """Add the build times to the image's summary; the notes they call for.

    A cached build whose inputs changed under it is not a cached build and
    is left out; an image ID other than the benchmarked one is noted.
    """
    notes = []
    for kind in ("cold", "cached"):
        samples = [r["seconds"] for r in build.get(kind, [])
                   if r["exit_code"] == 0 and not r.get("inputs_changed")]
        if samples:
            image_summary[f"build_{kind}_s"] = stats.summarize(samples)
    changed = [r for r in build.get("cached", []) if r.get("inputs_changed")]
    if changed:
        notes.append(f"{len(changed)} cached build(s) left out: the tree changed under them "
                     "(" + ", ".join(f"{r['seconds']:.1f} s" for r in changed) + ")")
    if build.get("same_id_as_benchmarked") is False:
        notes.append(f"the timed builds gave another image ID than {benchmarked_name} "
                     "(tree changed since `make image`, or the build is not reproducible)")
    return notes
