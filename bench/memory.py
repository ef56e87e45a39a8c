"""Memory of a container's processes, read from the host's /proc.

PSS is the honest figure for a set of processes that share libraries (the
Postfix daemons share most of their pages); RSS is reported too because it
is what `docker stats`-style tools and the docker-mailserver reference use.

The kernel's PSS divides a page among every process on the machine that maps
it: another container of the same image (same layers, same page cache) halves
the figure. The bench reports the container's own PSS instead (`own_pss`): each
resident page divided among the container's processes only, read from
/proc/<pid>/pagemap; that is the kernel's figure when the container runs
alone, whatever else runs beside it.
"""
from __future__ import annotations

import os
import struct
from collections import Counter
from pathlib import Path

PROC = Path("/proc")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def parse_smaps_rollup(text: str) -> dict[str, int]:
    """Fields of /proc/<pid>/smaps_rollup in kB (the header line is skipped)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB":
            fields[parts[0][:-1]] = int(parts[1])
    return fields


def cgroup_dir_of(pid: int, proc: Path = PROC, root: Path = CGROUP_ROOT) -> Path | None:
    """The memory cgroup directory of a process (cgroup v1 or v2)."""
    try:
        text = (proc / str(pid) / "cgroup").read_text()
    except OSError:
        return None
    return cgroup_dir_from_text(text, root)


def cgroup_dir_from_text(text: str, root: Path = CGROUP_ROOT) -> Path | None:
    unified = None
    for line in text.splitlines():
        hid, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "memory" in controllers.split(","):
            return root / "memory" / path.lstrip("/")
        if hid == "0" and controllers == "":
            unified = root / path.lstrip("/")
    return unified


def cgroup_pids(cgroup_dir: Path) -> list[int]:
    # cgroup.procs of the container's own cgroup holds every process of the
    # container, including the ones `docker exec` started in it.
    text = (cgroup_dir / "cgroup.procs").read_text()
    return sorted(int(p) for p in text.split())


def process_memory(pid: int, proc: Path = PROC) -> dict | None:
    base = proc / str(pid)
    try:
        rollup = parse_smaps_rollup((base / "smaps_rollup").read_text())
        comm = (base / "comm").read_text().strip()
        cmdline = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError):
        return None  # exited between listing and reading: short-lived helper
    return {
        "pid": pid,
        "comm": comm,
        "cmdline": cmdline[:200],
        "pss_kb": rollup.get("Pss", 0),
        "rss_kb": rollup.get("Rss", 0),
        "pss_anon_kb": rollup.get("Pss_Anon", 0),
        "pss_file_kb": rollup.get("Pss_File", 0),
        "private_kb": rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0),
    }


PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
PRESENT = 1 << 63
PFN_MASK = (1 << 55) - 1


def resident_frames(pid: int, proc: Path = PROC) -> set[int] | None:
    """The physical frames a process has resident (its mappings with Rss > 0, read from pagemap);
    None when they cannot be read (not root: the kernel then hides frame numbers as 0)."""
    base = proc / str(pid)
    try:
        smaps = (base / "smaps").read_text()
        pagemap = open(base / "pagemap", "rb")
    except OSError:
        return None
    frames: set[int] = set()
    page = PAGE_KB * 1024
    with pagemap:
        start = end = 0
        for line in smaps.splitlines():
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = head.split("-")
                start, end = int(lo, 16), int(hi, 16)
            elif head == "Rss:" and int(line.split()[1]) > 0:
                try:
                    pagemap.seek(start // page * 8)
                    data = pagemap.read((end - start) // page * 8)
                except OSError:
                    continue        # [vsyscall] and the like
                for (entry,) in struct.iter_unpack("<Q", data):
                    if entry & PRESENT:
                        frames.add(entry & PFN_MASK)
    if frames == {0}:
        return None
    return frames


def own_pss_kb(frames_by_pid: dict[int, set[int]]) -> dict[int, float]:
    """Each process's PSS counting only the given processes as sharers of a page."""
    sharers = Counter(f for frames in frames_by_pid.values() for f in frames)
    return {pid: sum(PAGE_KB / sharers[f] for f in frames) for pid, frames in frames_by_pid.items()}


def with_own_pss(procs: list[dict], proc: Path = PROC) -> str:
    """Put the container's own PSS in each process's `pss_kb` (the kernel's kept as `kernel_pss_kb`);
    returns the method used: "own", or "kernel" when pagemap cannot be read."""
    frames = {p["pid"]: resident_frames(p["pid"], proc) for p in procs}
    if any(f is None for f in frames.values()):
        for p in procs:
            p["kernel_pss_kb"] = p["pss_kb"]
        return "kernel"
    own = own_pss_kb(frames)        # type: ignore[arg-type]
    for p in procs:
        p["kernel_pss_kb"] = p["pss_kb"]
        p["pss_kb"] = round(own[p["pid"]])
    return "own"


def summarize_processes(procs: list[dict], top: int = 10) -> dict:
    """Totals, the top consumers by PSS and the same grouped by program name."""
    procs = sorted(procs, key=lambda p: p["pss_kb"], reverse=True)
    by_comm: dict[str, dict] = {}
    for p in procs:
        g = by_comm.setdefault(p["comm"], {"comm": p["comm"], "count": 0, "pss_kb": 0, "rss_kb": 0})
        g["count"] += 1
        g["pss_kb"] += p["pss_kb"]
        g["rss_kb"] += p["rss_kb"]
    return {
        "processes": len(procs),
        "pss_kb": sum(p["pss_kb"] for p in procs),
        "rss_kb": sum(p["rss_kb"] for p in procs),
        "top": procs[:top],
        "by_program": sorted(by_comm.values(), key=lambda g: g["pss_kb"], reverse=True),
        "all": procs,
    }


def read_cgroup_usage(cgroup_dir: Path) -> dict:
    """The kernel's own accounting, as a cross-check of the /proc sums."""
    out: dict = {}
    for name in ("memory.usage_in_bytes", "memory.current"):
        f = cgroup_dir / name
        if f.exists():
            out[name] = int(f.read_text())
    stat = cgroup_dir / "memory.stat"
    if stat.exists():
        for line in stat.read_text().splitlines():
            key, _, val = line.partition(" ")
            if key in ("rss", "cache", "anon", "file", "total_rss", "total_cache", "shmem"):
                out["stat." + key] = int(val)
    return out


def parent_pid(pid: int, proc: Path = PROC) -> int | None:
    try:
        text = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: split after the last ')'.
    return int(text.rsplit(")", 1)[1].split()[1])


def descendants(root: int, pids: list[int], proc: Path = PROC) -> set[int]:
    """`root` and every process of `pids` below it."""
    children: dict[int, list[int]] = {}
    for pid in pids:
        ppid = parent_pid(pid, proc)
        if ppid is not None:
            children.setdefault(ppid, []).append(pid)
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree.add(pid)
        todo.extend(children.get(pid, []))
    return tree & (set(pids) | {root})


def snapshot(pids: list[int], root: int | None = None, proc: Path = PROC) -> dict:
    """Memory of the server's own processes.

    With `root` (the container's init), process trees started by `docker exec`
    (the HEALTHCHECK every 30 s, an operator's shell) are reported apart: they
    are not what the server needs to idle, and a health check that happens
    to run at the moment of the snapshot would add a whole Python.
    """
    keep = descendants(root, pids, proc) if root is not None else set(pids)
    procs = [m for m in (process_memory(pid, proc) for pid in sorted(keep)) if m is not None]
    method = with_own_pss(procs, proc)
    out = summarize_processes(procs)
    out["pss_method"] = method
    out["kernel_pss_kb"] = sum(p["kernel_pss_kb"] for p in procs)
    others = [m for m in (process_memory(pid, proc) for pid in pids if pid not in keep) if m is not None]
    out["excluded_exec"] = [{k: m[k] for k in ("pid", "comm", "cmdline", "pss_kb", "rss_kb")} for m in others]
    return out


def listening_inodes(port: int, proc_net: Path) -> set[int]:
    """Socket inodes listening on a TCP port (any address), from /proc/<pid>/net."""
    inodes: set[int] = set()
    for name in ("tcp", "tcp6"):
        f = proc_net / name
        if not f.exists():
            continue
        for line in f.read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], int(cols[9])
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def socket_inodes_of(pids: list[int], proc: Path = PROC) -> set[int]:
    inodes: set[int] = set()
    for pid in pids:
        fd_dir = proc / str(pid) / "fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in names:
            try:
                target = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes
