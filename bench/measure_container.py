"""One benchmark run: a fresh container of one profile, measured from cold
start to clean stop.

Start (create+start through the Engine API), cold start probes (SMTP and
IMAP banners, the readiness log line), idle memory, a no-op configure, the
throughput curve, and `docker stop`. The container runs with
`--network host`, is named `mwbench-*` and always removed.
"""
from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path

from bench import memory, probes
from bench.common import BenchError, log
from bench.engine import CONTAINER_PREFIX, LABEL
from bench.profiles import DOMAIN, FQDN, PASSWORD, READY_LINE, USERS, Profile

# Ports the image binds on the host; any of them taken would make the
# container fail or, worse, make the probes talk to someone else's server.
HOST_PORTS = [25, 143, 465, 587, 993]
def wait_ports_free(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        busy = [p for p in HOST_PORTS if probes.port_in_use(p)]
        if not busy:
            return
        if time.monotonic() > deadline:
            raise BenchError(
                f"host ports {busy} are in use (another mail container with --network host?); "
                "the bench needs them free: stop that container or retry later")
        if not announced:
            log(f"ports {busy} busy; waiting up to {timeout:.0f} s for them to be free")
            announced = True
        time.sleep(2)


def write_config_dir(path: Path) -> None:
    with warnings.catch_warnings():
        # crypt is deprecated in 3.11 and gone in 3.13; it is what produces the
        # {SHA512-CRYPT}$6$ hashes docker-mailserver's setup.sh writes.
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    lines = []
    for u in USERS:
        h = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_SHA512))
        lines.append(f"{u}@{DOMAIN}|{{SHA512-CRYPT}}{h}")
    (path / "postfix-accounts.cf").write_text("\n".join(lines) + "\n")
    path.chmod(0o755)


class LogWatcher(threading.Thread):
    """Follows `docker logs` and notes when the readiness line appears."""

    def __init__(self, container, t0: float):
        super().__init__(daemon=True)
        self.container = container
        self.t0 = t0
        self.ready_at: float | None = None
        self.tail: list[str] = []
        # (seconds since t0, line) up to readiness: shows which start-up
        # phase dominates without a second instrumented run.
        self.startup: list[tuple[float, str]] = []
        self.event = threading.Event()

    def run(self) -> None:
        buf = b""
        try:
            for chunk in self.container.logs(stream=True, follow=True):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for raw in lines:
                    line = raw.decode(errors="replace")
                    self.tail = (self.tail + [line])[-60:]
                    if self.ready_at is None and len(self.startup) < 200:
                        self.startup.append((round(time.perf_counter() - self.t0, 3), line[:300]))
                    if self.ready_at is None and READY_LINE in line:
                        self.ready_at = time.perf_counter()
                        self.event.set()
        except Exception:
            pass  # the container went away; the caller notices
        finally:
            self.event.set()


class BannerProbe(threading.Thread):
    def __init__(self, port: int, prefix: bytes, deadline: float, stop: threading.Event):
        super().__init__(daemon=True)
        self.port, self.prefix, self.deadline, self.stop = port, prefix, deadline, stop
        self.at: float | None = None

    def run(self) -> None:
        self.at = probes.wait_for_banner(self.port, self.prefix, self.deadline, self.stop)


def exec_timed(container, cmd: list[str]) -> dict:
    t = time.perf_counter()
    res = container.exec_run(cmd)
    dt = time.perf_counter() - t
    out = (res.output or b"").decode(errors="replace")
    return {"cmd": cmd, "seconds": dt, "exit_code": res.exit_code, "output_tail": out[-2000:]}


def container_pids(container) -> list[int]:
    container.reload()
    init_pid = container.attrs["State"]["Pid"]
    cg = memory.cgroup_dir_of(init_pid)
    if cg is not None and (cg / "cgroup.procs").exists():
        return memory.cgroup_pids(cg)
    # docker top lists host PIDs too; used when the cgroup is not visible.
    top = container.top(ps_args="-o pid")
    return sorted(int(row[0]) for row in top["Processes"])


def check_listeners_are_ours(container, pids: list[int]) -> None:
    init_pid = container.attrs["State"]["Pid"]
    ours = memory.socket_inodes_of(pids)
    net = Path(f"/proc/{init_pid}/net")
    for port in (25, 143):
        listening = memory.listening_inodes(port, net)
        if listening and not (listening & ours):
            raise BenchError(f"port {port} is served by a process outside {container.name}; "
                             "another server took the host port: results would be wrong")


# --- one run ------------------------------------------------------------------

def put_files(container, files: dict[str, bytes]) -> None:
    """A profile's files into the created container, before it starts (not counted in its start)."""
    import io
    import tarfile
    by_dir: dict[str, list[tuple[str, bytes]]] = {}
    for path, data in files.items():
        folder, name = os.path.split(path)
        by_dir.setdefault(folder, []).append((name, data))
    for folder, entries in by_dir.items():
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for name, data in entries:
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        container.put_archive(folder, buf.getvalue())


def one_run(client, image_name: str, profile: Profile, args, index: int) -> dict:
    import docker

    wait_ports_free(args.port_wait)
    cfg = Path(tempfile.mkdtemp(prefix="mwbench-config-"))
    write_config_dir(cfg)
    volumes = {str(cfg): {"bind": "/tmp/docker-mailserver", "mode": "rw"}}
    dns = None
    if profile.instant_dns:
        from bench.dnsstub import DnsStub
        dns = DnsStub().start()
        resolv = cfg.parent / f"{cfg.name}-resolv.conf"
        resolv.write_text(dns.resolv_conf())
        volumes[str(resolv)] = {"bind": "/etc/resolv.conf", "mode": "ro"}
    name = f"{CONTAINER_PREFIX}{profile.name}-{os.getpid()}-{index}"
    run: dict = {"index": index, "container": name, "loadavg_before": os.getloadavg()}
    container = None
    stop = threading.Event()
    try:
        deadline = time.perf_counter() + args.ready_timeout
        smtp = BannerProbe(25, b"220", deadline, stop)
        imap = BannerProbe(143, b"* OK", deadline, stop)
        smtp.start()
        imap.start()
        # The clock starts at the equivalent of `docker run -d`: create+start
        # through the API, so the CLI's own start-up is not counted.
        t0 = time.perf_counter()
        container = client.containers.create(
            image_name,
            name=name,
            detach=True,
            network_mode="host",
            extra_hosts={FQDN: "127.0.0.1"},
            environment=profile.env,
            volumes=volumes,
            labels={LABEL: "1"},
        )
        t_files = time.perf_counter()
        if profile.files:
            put_files(container, profile.files)
            t0 += time.perf_counter() - t_files
        container.start()
        run["docker_run_s"] = time.perf_counter() - t0
        logs = LogWatcher(container, t0)
        logs.start()

        while time.perf_counter() < deadline:
            if logs.ready_at and smtp.at and imap.at:
                break
            container.reload()
            if container.status not in ("created", "running"):
                break
            time.sleep(0.05)
        stop.set()
        run["start_smtp_s"] = smtp.at - t0 if smtp.at else None
        run["start_imap_s"] = imap.at - t0 if imap.at else None
        run["start_ready_log_s"] = logs.ready_at - t0 if logs.ready_at else None
        run["startup_log"] = logs.startup
        if not (logs.ready_at and smtp.at and imap.at):
            container.reload()
            tail = "\n    ".join(logs.tail[-25:]) or "(no output)"
            waited = (f"exited with {container.attrs['State']['ExitCode']} before it was ready"
                      if container.status == "exited" else f"not ready after {args.ready_timeout:.0f} s")
            raise BenchError(
                f"{name} {waited} (status {container.status}; "
                f"SMTP banner {'yes' if smtp.at else 'no'}, IMAP banner {'yes' if imap.at else 'no'}, "
                f"'{READY_LINE}' {'yes' if logs.ready_at else 'no'}). Last log lines:\n    {tail}")
        t_ready = max(smtp.at, imap.at, logs.ready_at)
        log(f"{name}: SMTP {run['start_smtp_s']:.2f} s, IMAP {run['start_imap_s']:.2f} s, "
            f"ready log {run['start_ready_log_s']:.2f} s")

        pids = container_pids(container)
        check_listeners_are_ours(container, pids)

        phases = (("memory", lambda: measure_idle_memory(container, run, t_ready, args)),
                  ("configure", lambda: measure_configure(container, run, args)),
                  ("throughput", lambda: throughput(
                      container, args, levels_of_run(args.levels, index, args.runs, args.curve_runs), run)))
        for phase, measure in phases:
            if phase in args.skip:
                continue
            try:
                measure()
            except Exception as e:  # noqa: BLE001
                # One broken phase (an SMTP refusal, an exec error) should not
                # cost the figures of the others.
                run.setdefault("errors", []).append(f"{phase}: {e!r}")
                log(f"{name}: {phase} failed: {e!r}")
        if profile.required_header and "throughput" not in args.skip:
            check_required_header(container, profile.required_header, run)
        if dns is not None:
            run["dns_queries"] = dns.queries

        if args.keep:
            log(f"kept {name} running; remove it with: docker rm -f -v {name}")
            return run
        t = time.perf_counter()
        container.stop(timeout=30)
        run["stop_s"] = time.perf_counter() - t
        container.reload()
        run["exit_code"] = container.attrs["State"]["ExitCode"]
        run["loadavg_after"] = os.getloadavg()
        return run
    finally:
        stop.set()
        if container is not None and not args.keep:
            try:
                container.remove(force=True, v=True)
            except docker.errors.APIError as e:
                log(f"could not remove {name}: {e}")
        shutil.rmtree(cfg, ignore_errors=True)
        if dns is not None:
            dns.stop()
            (cfg.parent / f"{cfg.name}-resolv.conf").unlink(missing_ok=True)


def check_required_header(container, name: str, run: dict) -> None:
    """How many delivered messages carry header `name` (in their header block): all of them, or an error."""
    mail_root = Path(f"/proc/{container.attrs['State']['Pid']}/root/var/mail")
    with_header, total = probes.count_header(mail_root, [(DOMAIN, u) for u in USERS], name)
    run["required_header"] = {"name": name, "with": with_header, "delivered": total}
    log(f"{container.name}: {with_header} of {total} delivered messages carry {name}")
    if total == 0 or with_header != total:
        run.setdefault("errors", []).append(f"{total - with_header} of {total} delivered messages lack {name}")


def measure_idle_memory(container, run: dict, t_ready: float, args) -> None:
    time.sleep(max(0.0, t_ready + args.idle_wait - time.perf_counter()))
    container.reload()
    snap = memory.snapshot(container_pids(container), root=container.attrs["State"]["Pid"])
    cg = memory.cgroup_dir_of(container.attrs["State"]["Pid"])
    snap["cgroup"] = memory.read_cgroup_usage(cg) if cg else {}
    run["memory"] = snap
    run["idle_pss_mb"] = snap["pss_kb"] / 1000
    run["idle_rss_mb"] = snap["rss_kb"] / 1000
    run["idle_processes"] = snap["processes"]
    top = ", ".join(f"{g['comm']}×{g['count']} {g['pss_kb']/1000:.1f}" for g in snap["by_program"][:5])
    log(f"{container.name}: idle PSS ({snap['pss_method']}) {run['idle_pss_mb']:.1f} MB "
        f"(kernel's {snap['kernel_pss_kb'] / 1000:.1f}), RSS {run['idle_rss_mb']:.1f} MB, "
        f"{snap['processes']} processes; top PSS MB: {top}"
        + (f"; left out (docker exec): {', '.join(m['cmdline'][:40] for m in snap['excluded_exec'])}"
           if snap["excluded_exec"] else ""))


def measure_configure(container, run: dict, args) -> None:
    base = exec_timed(container, ["true"])
    run["exec_overhead_s"] = base["seconds"] if base["exit_code"] == 0 else None
    conf = exec_timed(container, shlex.split(args.configure_cmd))
    run["configure"] = conf
    # A "no-op" that rewrote files would be timing something else.
    conf["changed"] = [line for line in conf["output_tail"].splitlines() if line.startswith("changed ")]
    if conf["changed"]:
        run.setdefault("errors", []).append(
            f"no-op configure changed {len(conf['changed'])} files, e.g. {conf['changed'][0]}")
    tail = conf["output_tail"][-300:].strip()
    if conf["exit_code"] == 0:
        run["configure_noop_s"] = conf["seconds"]
        log(f"{container.name}: no-op configure {conf['seconds']:.2f} s (exec overhead {base['seconds']:.2f} s)")
    else:
        run["configure_noop_s"] = None
        run.setdefault("errors", []).append(f"`{args.configure_cmd}` exited {conf['exit_code']}: {tail}")
        log(f"{container.name}: configure failed (exit {conf['exit_code']}): {tail}")


def messages_at(connections: int, messages: int, per_connection: int = 16) -> int:
    """Messages sent at one concurrency: `messages`, or more so that every
    connection carries at least `per_connection` and its set-up is a small
    share of its time."""
    return max(messages, per_connection * connections)


def levels_of_run(levels: list[int], index: int, runs: int, curve_runs: int) -> list[int]:
    """The concurrencies run `index` (0-based) of `runs` measures: the whole
    curve on the last `curve_runs` runs, the first level on the others."""
    return list(levels) if index >= runs - curve_runs else list(levels[:1])


def throughput(container, args, levels: list[int], run: dict) -> None:
    """The throughput curve: one point per concurrency, lowest first.

    The first point also gives the run's `accepted_per_s`/`delivered_per_s`
    (the figures the docker-mailserver references were taken at). A point
    whose messages were not all delivered ends the curve: what is still in
    the queue would be counted in the next point.
    """
    points: list[dict] = []
    run["throughput"] = points
    for c in levels:
        try:
            point = throughput_point(container, args, c)
        except Exception as e:  # noqa: BLE001
            point = {"connections": c, "accepted_per_s": None, "delivered_per_s": None, "error": repr(e)}
            run.setdefault("errors", []).append(f"throughput at {c} connections: {e!r}")
            log(f"{container.name}: throughput at {c} connections failed: {e!r}")
        points.append(point)
        if c == levels[0]:
            run["accepted_per_s"] = point["accepted_per_s"]
            run["delivered_per_s"] = point["delivered_per_s"]
        if "error" in point:
            break
        if point["accepted"] != point["messages"]:
            run.setdefault("errors", []).append(
                f"throughput at {c} connections: {point['accepted']} of {point['messages']} accepted"
                + (f" ({point['errors'][0]})" if point.get("errors") else ""))
            break
        if point["delivered_per_s"] is None:
            run.setdefault("errors", []).append(
                f"throughput at {c} connections: {point['delivered']} of {point['messages']} "
                f"delivered within {args.deliver_timeout:.0f} s")
            break


def throughput_point(container, args, connections: int) -> dict:
    messages = messages_at(connections, args.messages)
    sources = probes.source_addresses(connections)
    out: dict = {"connections": connections, "messages": messages,
                 "sources": sorted(set(sources), key=lambda a: int(a.rsplit(".", 1)[1]))}
    users = [(DOMAIN, u) for u in USERS]
    recipients = [f"{u}@{DOMAIN}" for u in USERS]
    mail_root = Path(f"/proc/{container.attrs['State']['Pid']}/root/var/mail")

    def delivered() -> int:
        return probes.count_maildir_messages(mail_root, users) or 0

    before = delivered()
    # One connection per new source address through postscreen's greet test.
    out["warmup_s"] = probes.smtp_warmup(sources)
    # The generator shares the host's CPUs with the server: its CPU time says
    # whether the figure is the server's limit or the client's.
    cpu = time.process_time()
    res = probes.smtp_load(messages, connections, args.message_size, args.sender, recipients,
                           sources=sources)
    out["client_cpu_s"] = time.process_time() - cpu
    out["accepted"] = res.accepted
    out["refused"] = res.refused
    if res.errors:
        out["errors"] = res.errors
    accept_s = res.t_end - res.t_start
    out["accept_s"] = accept_s
    out["accepted_per_s"] = res.accepted / accept_s if res.accepted == messages else None
    expected = before + res.accepted
    deadline = time.perf_counter() + args.deliver_timeout
    n = delivered()
    while n < expected and time.perf_counter() < deadline:
        time.sleep(0.02)
        n = delivered()
    t_done = time.perf_counter()
    out["delivered"] = n - before
    if n >= expected and res.accepted == messages:
        out["deliver_s"] = t_done - res.t_start
        out["delivered_per_s"] = messages / out["deliver_s"]
    else:
        out["delivered_per_s"] = None
        # Maybe not Maildir under /var/mail: ask Dovecot what it holds.
        r = container.exec_run(["doveadm", "search", "-A", "all"])
        out["doveadm_count"] = len((r.output or b"").splitlines()) if r.exit_code == 0 else None
    log(f"{container.name}: {connections} connections: {res.accepted}/{messages} accepted in {accept_s:.2f} s"
        + (f" ({out['accepted_per_s']:.1f}/s)" if out["accepted_per_s"] else "")
        + f"; {out['delivered']} delivered"
        + (f" in {out['deliver_s']:.2f} s ({out['delivered_per_s']:.1f}/s)" if out["delivered_per_s"] else "")
        + (f"; errors: {res.errors[:2]}" if res.errors else ""))
    return out
