"""The Markdown table and the metric catalogue it is built from."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    digits: int
    higher_is_better: bool = False


# Order is the order of the table.
METRICS = [
    Metric("start_smtp_s", "Cold start to SMTP 220 (port 25)", "s", 2),
    Metric("start_imap_s", "Cold start to IMAP * OK (port 143)", "s", 2),
    Metric("start_ready_log_s", "Cold start to 'is up and running' log", "s", 2),
    Metric("idle_pss_mb", "Idle memory, sum of PSS", "MB", 1),
    Metric("idle_rss_mb", "Idle memory, sum of RSS", "MB", 1),
    Metric("idle_processes", "Idle processes", "", 0),
    Metric("configure_noop_s", "No-op configure (docker exec)", "s", 2),
    Metric("exec_overhead_s", "docker exec of `true` (overhead)", "s", 2),
    Metric("accepted_per_s", "Throughput accepted on port 25", "msg/s", 1, True),
    Metric("delivered_per_s", "Throughput delivered to mailboxes", "msg/s", 1, True),
    Metric("stop_s", "docker stop (clean shutdown)", "s", 2),
]
# Properties of the image, not of a running profile.
IMAGE_METRICS = [
    Metric("size_mb", "Image size (docker image inspect; MB = 10^6 B)", "MB", 1),
    Metric("build_cold_s", "Build time, cold (`build/image.py --no-cache`)", "s", 0),
    Metric("build_cached_s", "Build time, cached (`build/image.py`)", "s", 1),
]
METRIC_BY_KEY = {m.key: m for m in METRICS + IMAGE_METRICS}


def fmt_num(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}"


def fmt_with_unit(value: float | None, metric: Metric) -> str:
    s = fmt_num(value, metric.digits)
    return f"{s} {metric.unit}".strip() if value is not None else s


def fmt_spread(summary: dict, metric: Metric) -> str:
    if summary.get("min") is None:
        return ""
    lo, hi = fmt_num(summary["min"], metric.digits), fmt_num(summary["max"], metric.digits)
    return lo if lo == hi else f"{lo}–{hi}"


def fmt_ratio(r: float | None) -> str:
    return "" if r is None else f"×{r:.2f}"


def table(results: dict) -> str:
    """A short Markdown report of a results dict as written to bench.json."""
    lines = []
    img = results.get("image", {})
    lines.append(f"Image `{img.get('name')}` {img.get('id', '')[:19]}")
    meta = results.get("meta", {})
    levels = meta.get("connections")
    levels = levels if isinstance(levels, list) else [levels]
    lines.append(
        f"Runs per profile: {meta.get('runs')}; idle wait {meta.get('idle_wait_s')} s; "
        f"throughput: messages of {meta.get('message_size')} bytes at "
        f"{'/'.join(str(c) for c in levels)} concurrent connections (the rows below: {levels[0]}); "
        f"host {meta.get('host_cpus')} CPUs, git {str(meta.get('git_commit'))[:10]}"
    )
    lines.append("")
    lines.append("| Metric | Profile | Median | Spread (min–max) | n | vs baseline | docker-mailserver 15.1 | Target |")
    lines.append("|---|---|---|---|---|---|---|---|")
    for metric in IMAGE_METRICS:
        s = img.get("summary", {}).get(metric.key)
        if s is not None:
            lines.append(_row(metric, "image", s, None, img.get("reference", {}).get(metric.key, ""),
                              img.get("targets", {}).get(metric.key, "")))
    profiles = results.get("profiles", {})
    for metric in METRICS:
        for pname, prof in profiles.items():
            s = prof.get("summary", {}).get(metric.key)
            if s is None:
                continue
            lines.append(_row(metric, pname, s, prof.get("ratios", {}).get(metric.key),
                              prof.get("reference", {}).get(metric.key, ""),
                              prof.get("targets", {}).get(metric.key, "")))
    curve = curve_table(results)
    if curve:
        lines.append("")
        lines.extend(curve)
    for pname, prof in profiles.items():
        line = memory_line(prof)
        if line:
            lines.append("")
            lines.append(f"Idle PSS by program, {pname} (run with the median PSS): {line}")
    notes = results.get("notes") or []
    if notes:
        lines.append("")
        lines.extend(f"- {n}" for n in notes)
    return "\n".join(lines) + "\n"


def _row(metric: Metric, profile: str, s: dict, ratio: float | None, ref: str, target: str) -> str:
    n = f"{s['n']}" + (f" ({s['failed']} failed)" if s.get("failed") else "")
    return (f"| {metric.label} | {profile} | {fmt_with_unit(s['median'], metric)} | "
            f"{fmt_spread(s, metric)} | {n} | {fmt_ratio(ratio)} | {ref} | {target} |")


def fmt_fraction(f: float | None) -> str:
    return "n/a" if f is None else f"{f * 100:.0f}%" if f >= 0.095 else f"{f * 100:.1f}%"


def curve_table(results: dict) -> list[str]:
    """Delivered msgs/s per concurrency and profile, beside the two ceilings
    measured at that concurrency and the fraction of each it reaches."""
    rows = []
    profiles = results.get("profiles", {})
    levels = sorted({int(c) for prof in profiles.values() for c in prof.get("curve", {})})
    ceil = results.get("ceilings") or {}
    for c in levels:
        for pname, prof in profiles.items():
            point = prof.get("curve", {}).get(str(c))
            if point is None:
                continue
            acc, dlv = point["accepted_per_s"], point["delivered_per_s"]
            sink = point.get("smtp_sink_per_s")
            disk = point.get("disk_fsync_per_s")
            n = f"{dlv['n']}" + (f" ({dlv['failed']} failed)" if dlv.get("failed") else "")
            rows.append(f"| {c} | {pname} | {fmt_num(acc['median'], 1)} | {fmt_num(dlv['median'], 1)} | "
                        f"{fmt_spread(dlv, METRIC_BY_KEY['delivered_per_s'])} | {n} | "
                        f"{fmt_num(sink, 0)} | {fmt_fraction(point.get('delivered_of_sink'))} | "
                        f"{fmt_num(disk, 0)} | {fmt_fraction(point.get('delivered_of_disk'))} |")
    if not rows:
        return []
    where = ceil.get("disk_fsync_dir")
    return [
        "Throughput by concurrency (msgs/s, median over the runs that measured it) against two "
        "ceilings measured in the same bench at the same concurrency: the same generator against "
        "Postfix's smtp-sink (nothing stored: what the generator and SMTP allow), and durable 1 KB "
        "file writes (file and directory fsync'ed, one writer per connection"
        + (f", in {where}" if where else "") + ").",
        "",
        "| Connections | Profile | Accepted | Delivered | Spread | n | smtp-sink | Delivered / sink "
        "| fsync'ed writes/s | Delivered / disk |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *rows,
    ]


def memory_line(profile: dict, top: int = 8) -> str:
    """Who holds the memory: what the closing note needs to say what dominates."""
    runs = [r for r in profile.get("runs", []) if r.get("memory")]
    if not runs:
        return ""
    runs.sort(key=lambda r: r["memory"]["pss_kb"])
    groups = runs[(len(runs) - 1) // 2]["memory"]["by_program"]
    parts = [f"{g['comm']}" + (f"×{g['count']}" if g["count"] > 1 else "") + f" {g['pss_kb'] / 1000:.1f}"
             for g in groups[:top]]
    rest = sum(g["pss_kb"] for g in groups[top:])
    if rest:
        parts.append(f"others {rest / 1000:.1f}")
    return ", ".join(parts) + " MB"
