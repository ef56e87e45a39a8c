"""Benchmark the mailwright image: `make bench` runs `.venv/bin/python bench/run.py`.

Every figure is the median of `--runs` fresh containers, each started cold
with `--network host`, so the host's ports 25/143/... must be free: only one
bench container runs at a time and it is always removed. Results go to
out/bench.json (every sample, per-process memory) and out/bench.md.

This file parses the arguments, runs the measurements in order and puts the
results together; the measurements are in measure_container.py (one run),
ceilings.py (what the host allows) and measure_build.py (build time).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:
    # Run as a script (`python bench/run.py`), the package is not importable
    # by name otherwise.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import ceilings, probes, report, stats  # noqa: E402
from bench.common import REPO, BenchError, log  # noqa: E402
from bench.engine import (LOCK_PATH, docker_client, get_image, hold_image, host_lock,  # noqa: E402
                          remove_stale_containers)
from bench.measure_build import measure_build, summarize_build  # noqa: E402
from bench.measure_container import messages_at, one_run  # noqa: E402
from bench.profiles import (DEFAULT_PROFILES, DOMAIN, IMAGE_REFERENCE, IMAGE_TARGET, PROFILES,  # noqa: E402
                            USERS, Profile)

DEFAULT_LEVELS = [4, 16, 64]
SKIPPABLE = {"memory", "configure", "throughput", "ceilings", "build"}


# --- results ------------------------------------------------------------------

def summarize_profile(profile: Profile, runs: list[dict], baseline: dict | None) -> dict:
    summary = {}
    for m in report.METRICS:
        values = [r.get(m.key) for r in runs]
        if all(r.get(m.key) is None and m.key not in r for r in runs):
            continue  # not measured at all (skipped), rather than failed
        summary[m.key] = stats.summarize(values)
    ratios = {}
    if baseline is not None:
        for key, s in summary.items():
            b = baseline["summary"].get(key)
            ratios[key] = stats.ratio(s["median"], b["median"] if b else None)
    return {
        "env": profile.env,
        "reference": profile.reference,
        "targets": profile.targets,
        "summary": summary,
        "ratios": ratios,
        "curve": curve_summary(runs),
        "runs": runs,
    }


def curve_summary(runs: list[dict]) -> dict[str, dict]:
    """Accepted and delivered msgs/s per concurrency over the runs that
    measured it, keyed by the connection count (a string, as in the JSON)."""
    by_level: dict[int, dict[str, list]] = {}
    for r in runs:
        for point in r.get("throughput", []):
            d = by_level.setdefault(point["connections"], {"accepted_per_s": [], "delivered_per_s": []})
            for key in d:
                d[key].append(point.get(key))
    return {str(c): {key: stats.summarize(v) for key, v in d.items()} for c, d in sorted(by_level.items())}


def add_ceiling_fractions(results: dict) -> None:
    """Each profile's median delivered rate at each concurrency as a fraction
    of the two ceilings at that concurrency (None when either is missing)."""
    ceil = results.get("ceilings") or {}
    sink, disk = ceil.get("smtp_sink") or {}, ceil.get("disk_fsync") or {}
    for prof in results.get("profiles", {}).values():
        for c, point in prof.get("curve", {}).items():
            delivered = point["delivered_per_s"]["median"]
            point["smtp_sink_per_s"] = (sink.get(c) or {}).get("per_s")
            point["disk_fsync_per_s"] = (disk.get(c) or {}).get("per_s")
            point["delivered_of_sink"] = stats.ratio(delivered, point["smtp_sink_per_s"])
            point["delivered_of_disk"] = stats.ratio(delivered, point["disk_fsync_per_s"])


def new_results(args, image, engine_version: str | None) -> dict:
    return {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "git_commit": git_commit(),
            "runs": args.runs,
            "idle_wait_s": args.idle_wait,
            "messages": args.messages,
            "messages_per_level": {str(c): messages_at(c, args.messages) for c in args.levels},
            "message_size": args.message_size,
            "connections": args.levels,
            "curve_runs": min(args.curve_runs, args.runs),
            "connections_per_source_address": probes.PER_SOURCE,
            "host_cpus": os.cpu_count(),
            "kernel": platform.release(),
            "docker_engine": engine_version,
            "method": {
                "cold_start": "create+start through the Engine API until the first bytes of a "
                              "'220' (port 25) / '* OK' (port 143) banner, 10 ms connect polling; "
                              "page cache warm after the first run",
                "memory": "sum over the container cgroup's cgroup.procs of the container's own PSS "
                          "(each resident page, from pagemap, divided among the container's processes "
                          "only: the kernel's PSS of the container alone; the kernel's own figure, "
                          "which other containers of the same image lower, as kernel_pss_kb) and of "
                          "smaps_rollup Rss, idle_wait seconds after ready; MB = 10^6 bytes (kB*1000)",
                "configure": "docker exec through the Engine API; exec of `true` shown as overhead",
                "throughput": "per concurrency: one warm-up connection per source address excluded; "
                              "then max(messages, 16 x connections) messages over that many concurrent "
                              "smtplib sessions to 127.0.0.1:25 from 127.0.0.2 and up (16 per address); "
                              "delivered = files in new/ and cur/ of the recipients' Maildirs, timed "
                              "from the first connection. The lowest concurrency on every run, the "
                              "others on the last curve_runs runs",
                "ceilings": "once per bench, same concurrencies: the same generator against smtp-sink "
                            "from the image under test (median of 3 rounds of 10x the server's messages); "
                            "N threads creating, "
                            "fsync'ing 1 KB files and fsync'ing their directory for 2 s on the "
                            "filesystem of Docker's data root",
            },
        },
        "image": {
            "name": args.image,
            "id": image.id,
            "size_bytes": image.attrs.get("Size"),
            "summary": {"size_mb": stats.summarize([(image.attrs.get("Size") or 0) / 1e6])},
            "reference": {"size_mb": IMAGE_REFERENCE},
            "targets": {"size_mb": IMAGE_TARGET},
        },
        "build": {"note": "not measured (--skip build)"},
        "ceilings": {"note": "not measured"},
        "profiles": {},
        "notes": [],
    }


def note_run_errors(results: dict, pname: str, runs: list[dict]) -> None:
    for r in runs:
        for err in r.get("errors", []):
            note = f"{pname}: {err.splitlines()[0][:200]}"
            if note not in results["notes"]:
                results["notes"].append(note)


def write_results(out_dir: Path, results: dict) -> None:
    (out_dir / "bench.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out_dir / "bench.md").write_text(report.table(results))


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


# --- command line -------------------------------------------------------------

def parse_levels(text: str) -> list[int]:
    try:
        levels = sorted({int(s) for s in text.split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of numbers: {text!r}")
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError("connection counts must be at least 1")
    try:
        probes.source_addresses(levels[-1])
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))
    return levels


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default=os.environ.get("IMAGE", "mailwright:latest"))
    p.add_argument("--runs", type=int, default=5, help="fresh containers per profile (default 5)")
    p.add_argument("--idle-wait", type=float, default=60.0, help="seconds after ready before memory is read")
    p.add_argument("--profiles", default=",".join(DEFAULT_PROFILES),
                   help=f"comma-separated, from: {', '.join(PROFILES)}; the first is the baseline for ratios")
    p.add_argument("--messages", type=int, default=500,
                   help="messages per throughput point (at least 16 per connection; default 500)")
    p.add_argument("--connections", dest="levels", type=parse_levels,
                   default=list(DEFAULT_LEVELS),
                   help="the throughput curve's concurrencies, comma-separated (default 4,16,64); "
                        "the lowest is measured on every run and gives the table's throughput rows")
    p.add_argument("--curve-runs", type=int, default=1,
                   help="how many of the last runs of each profile measure the whole curve (default 1)")
    p.add_argument("--message-size", type=int, default=940)
    p.add_argument("--sender", default=f"sender@{DOMAIN}")
    p.add_argument("--configure-cmd", default="python3 -m mailwright.configure")
    p.add_argument("--ready-timeout", type=float, default=120.0)
    p.add_argument("--deliver-timeout", type=float, default=300.0)
    p.add_argument("--port-wait", type=float, default=300.0,
                   help="how long to wait for host ports taken by another container")
    p.add_argument("--lock-wait", type=float, default=3600.0,
                   help=f"how long to wait for {LOCK_PATH}, held by a running test session")
    p.add_argument("--build-cold-runs", type=int, default=1,
                   help="`build/image.py --no-cache` runs (minutes each; default 1)")
    p.add_argument("--build-cached-runs", type=int, default=3)
    p.add_argument("--skip", default="", help=f"comma-separated: {', '.join(sorted(SKIPPABLE))}")
    p.add_argument("--out", default=str(REPO / "out"), help="directory for bench.json and bench.md")
    p.add_argument("--keep", action="store_true", help="keep containers (debugging; one run only)")
    args = p.parse_args(argv)
    args.skip = {s for s in args.skip.split(",") if s}
    unknown = args.skip - SKIPPABLE
    if unknown:
        p.error(f"unknown --skip {sorted(unknown)}")
    if "throughput" in args.skip:
        args.skip.add("ceilings")  # nothing to compare them with
    args.profiles = [s for s in args.profiles.split(",") if s]
    for name in args.profiles:
        if name not in PROFILES:
            p.error(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.curve_runs < 0:
        p.error("--curve-runs must be at least 0")
    if args.keep and args.runs != 1:
        p.error("--keep needs --runs 1 (kept containers hold the host ports)")
    return args


def _interrupt(signum, frame):
    # SIGTERM (CI timeout, `kill`) unwinds like Ctrl-C so containers are removed.
    raise KeyboardInterrupt


# --- orchestration ------------------------------------------------------------

def measure_profiles(client, image, args, results: dict, out_dir: Path) -> None:
    baseline = None
    for pname in args.profiles:
        profile = PROFILES[pname]
        runs: list[dict] = []
        for i in range(args.runs):
            log(f"profile {pname}: run {i + 1}/{args.runs}")
            try:
                with host_lock(args.lock_wait):
                    # By ID: a colleague's `make image` may move the tag mid-bench.
                    runs.append(one_run(client, image.id, profile, args, i))
            except Exception as e:  # noqa: BLE001
                # A container that never gets ready fails the same way
                # every time: stop this profile instead of waiting N times.
                if not isinstance(e, BenchError):
                    traceback.print_exc()
                runs.append({"index": i, "error": str(e) or repr(e)})
                results["notes"].append(f"{pname} run {i + 1}: {str(e) or repr(e)}".splitlines()[0])
                log(str(e))
                break
            results["profiles"][pname] = summarize_profile(profile, runs, baseline)
            write_results(out_dir, results)
        results["profiles"][pname] = summarize_profile(profile, runs, baseline)
        if baseline is None:
            baseline = results["profiles"][pname]
        note_run_errors(results, pname, runs)


def measure_ceilings(client, image, args, results: dict) -> None:
    recipients = [f"{u}@{DOMAIN}" for u in USERS]
    try:
        # Under the lock: a test session's load would lower the ceilings.
        with host_lock(args.lock_wait):
            results["ceilings"] = ceilings.measure(
                client, image.id, args.levels, lambda c: messages_at(c, args.messages),
                args.message_size, args.sender, recipients)
    except Exception as e:  # noqa: BLE001
        if not isinstance(e, BenchError):
            traceback.print_exc()
        results["ceilings"] = {"error": str(e) or repr(e)}
        results["notes"].append(f"ceilings: {str(e) or repr(e)}".splitlines()[0])
        log(f"ceilings failed: {e!r}")


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        client = docker_client()
        image = get_image(client, args.image)
        remove_stale_containers(client)
        results = new_results(args, image, client.version().get("Version"))
        with hold_image(image):
            measure_profiles(client, image, args, results, out_dir)
            if "ceilings" not in args.skip:
                measure_ceilings(client, image, args, results)
            if "build" not in args.skip:
                results["build"] = measure_build(args, image.id)
                results["notes"] += summarize_build(results["build"], results["image"]["summary"], args.image)
        if results["build"].get("note"):
            results["notes"].append("build time " + results["build"]["note"])
        add_ceiling_fractions(results)
        write_results(out_dir, results)
        sys.stdout.write(report.table(results))
        return 1 if any(r.get("error") for p in results["profiles"].values() for r in p["runs"]) else 0
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; containers removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
