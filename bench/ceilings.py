"""What the machine allows, measured at the same concurrencies as the server.

Two ceilings frame a throughput figure:

- smtp-sink: Postfix's test server, which accepts every message and stores
  nothing, run from the image under test and driven by the same generator
  with the same connections and source addresses. It is what the generator,
  Python's smtplib and the SMTP protocol allow on this host.
- durable small writes: N threads each creating a 1 KB file, fsync'ing it
  and fsync'ing the directory, on the filesystem of Docker's data root
  (where the containers' queue and mailboxes live). Every delivered message
  costs at least one such write (the queue file), in practice more.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from bench import probes, stats
from bench.common import BenchError, log
from bench.engine import LABEL

SINK_PREFIX = "mwbench-sink-"
FORBIDDEN_PORTS = {2024}
SINK_FACTOR = 10  # the sink's rounds carry this many times the server's messages  # not ours on this host: never bind or connect to it


def free_port(host: str = probes.HOST) -> int:
    """A TCP port nobody listens on now (the kernel's pick), never a forbidden one."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in FORBIDDEN_PORTS and port > 1024:
            return port
    raise BenchError("no free TCP port for smtp-sink")


def sink_command(port: int, backlog: int = 256, max_concurrency: int = 512) -> list[str]:
    """smtp-sink's arguments (`smtp-sink` alone prints its usage): drop to
    the postfix user, accept up to `max_concurrency` sessions, listen on
    127.0.0.1:<port>. No -c: its counter would write to the container log."""
    return ["-u", "postfix", "-m", str(max_concurrency), f"{probes.HOST}:{port}", str(backlog)]


@contextlib.contextmanager
def smtp_sink(client, image_id: str, timeout: float = 30.0):
    """A running smtp-sink from the image under test; yields its port.

    The container is `mwbench-sink-*` and removed whatever happens."""
    import docker

    port = free_port()
    name = f"{SINK_PREFIX}{os.getpid()}-{port}"
    container = None
    try:
        container = client.containers.run(
            image_id, sink_command(port), name=name, entrypoint="/usr/sbin/smtp-sink",
            detach=True, network_mode="host", labels={LABEL: "1"})
        stop = threading.Event()
        at = probes.wait_for_banner(port, b"220", time.perf_counter() + timeout, stop)
        if at is None:
            container.reload()
            logs = container.logs(tail=5).decode(errors="replace").strip()
            raise BenchError(f"smtp-sink in {name} did not answer on port {port} "
                             f"(status {container.status}): {logs or '(no output)'}")
        yield port
    finally:
        if container is not None:
            try:
                container.remove(force=True, v=True)
            except docker.errors.APIError as e:
                log(f"could not remove {name}: {e}")


def sink_rate(port: int, connections: int, messages: int, size: int, sender: str,
              recipients: list[str], repeats: int = 3) -> dict:
    """Messages/s the generator gets through smtp-sink: the median of
    `repeats` rounds (each is short, the sink being fast)."""
    sources = probes.source_addresses(connections)
    rounds = []
    errors: list[str] = []
    for _ in range(repeats):
        res = probes.smtp_load(messages, connections, size, sender, recipients, port=port, sources=sources)
        errors += res.errors
        elapsed = res.t_end - res.t_start
        rounds.append(res.accepted / elapsed if res.accepted == messages and elapsed > 0 else None)
    out = {"connections": connections, "messages": messages, "rounds_per_s": rounds,
           "per_s": stats.summarize(rounds)["median"]}
    if errors:
        out["errors"] = errors[:5]
    return out


def scratch_dir_on(target: str, candidates: list[str], dev_of=lambda p: os.stat(p).st_dev) -> str | None:
    """The first candidate directory on the same filesystem as `target`."""
    try:
        want = dev_of(target)
    except OSError:
        return None
    for c in candidates:
        try:
            if dev_of(c) == want and os.access(c, os.W_OK):
                return c
        except OSError:
            continue
    return None


def fsync_write_rate(directory: str, writers: int, seconds: float = 2.0, size: int = 1024) -> dict:
    """Durable small-file writes per second with `writers` threads in one directory.

    Each write: create a new file, write `size` bytes, fsync it, close it,
    fsync the directory (what makes the new name durable). The threads run
    for `seconds`; the files are removed afterwards.
    """
    work = Path(tempfile.mkdtemp(prefix="mwbench-disk-", dir=directory))
    payload = b"x" * size
    counts = [0] * writers
    barrier = threading.Barrier(writers + 1)
    errors: list[str] = []
    end = [0.0]

    def writer(w: int) -> None:
        dfd = os.open(work, os.O_RDONLY | os.O_DIRECTORY)
        try:
            barrier.wait()
            n = 0
            while True:  # at least one write each
                fd = os.open(work / f"{w}-{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    os.write(fd, payload)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.fsync(dfd)
                n += 1
                if time.perf_counter() >= end[0]:
                    break
            counts[w] = n
        except OSError as e:
            errors.append(repr(e))
        finally:
            os.close(dfd)

    threads = [threading.Thread(target=writer, args=(w,), daemon=True) for w in range(writers)]
    try:
        for t in threads:
            t.start()
        t0 = time.perf_counter()
        end[0] = t0 + seconds
        barrier.wait()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = sum(counts)
    out = {"writers": writers, "seconds": elapsed, "writes": total, "size": size,
           "per_s": total / elapsed if total and not errors else None}
    if errors:
        out["errors"] = errors[:5]
    return out


def measure(client, image_id: str, levels: list[int], messages_at, size: int, sender: str,
            recipients: list[str], disk_seconds: float = 2.0) -> dict:
    """Both ceilings at every concurrency of `levels`.

    `messages_at(connections)` is the message count the server got at that
    concurrency; the sink, some 30-50 times faster, gets SINK_FACTOR times
    as many so that a round lasts long enough to be timed (tenths of a
    second rather than hundredths).
    """
    out: dict = {"smtp_sink": {}, "disk_fsync": {}}
    with smtp_sink(client, image_id) as port:
        out["smtp_sink_port"] = port
        for c in levels:
            r = sink_rate(port, c, SINK_FACTOR * messages_at(c), size, sender, recipients)
            out["smtp_sink"][str(c)] = r
            log(f"smtp-sink, {c} connections: "
                + (f"{r['per_s']:.0f} msgs/s" if r["per_s"] else f"failed {r.get('errors', [])[:1]}"))
    docker_root = client.info().get("DockerRootDir") or "/var/lib/docker"
    scratch = scratch_dir_on(docker_root, ["/var/tmp", tempfile.gettempdir(),
                                           os.path.join(docker_root, "tmp")])
    out["disk_fsync_dir"] = scratch
    out["docker_root"] = docker_root
    if scratch is None:
        out["disk_fsync_note"] = f"no writable directory on the filesystem of {docker_root}"
        return out
    for c in levels:
        r = fsync_write_rate(scratch, c, seconds=disk_seconds)
        out["disk_fsync"][str(c)] = r
        log(f"disk, {c} writers: " + (f"{r['per_s']:.0f} fsync'ed writes/s" if r["per_s"]
                                       else f"failed {r.get('errors', [])[:1]}"))
    return out
