"""Benchmark the mailwright image: `make bench` runs `.venv/bin/python bench/run.py`.

Every figure is the median of `--runs` fresh containers, each started cold
with `--network host`, so the host's ports 25/143/... must be free: only one
bench container runs at a time and it is always removed. Results go to
out/bench.json (every sample, per-process memory) and out/bench.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    # Run as a script (`python bench/run.py`), the package is not importable
    # by name otherwise.
    sys.path.insert(0, str(REPO))

from bench import memory, probes, report, stats  # noqa: E402

DOMAIN = "example.test"
FQDN = f"mail.{DOMAIN}"
READY_LINE = f"{FQDN} is up and running"
USERS = ["user1", "user2", "user3", "user4"]
PASSWORD = "bench-password"
CONTAINER_PREFIX = "mwbench-"
LABEL = "mailwright.bench"
# Ports the image binds on the host; any of them taken would make the
# container fail or, worse, make the probes talk to someone else's server.
HOST_PORTS = [25, 143, 465, 587, 993]
# The test suite's own lock (tests/harness/dockercli.py): a bench run and a
# test session would otherwise fight over port 25.
sys.path.insert(0, str(REPO / "tests"))
from harness.dockercli import LOCK_PATH, host_lock as _harness_host_lock  # noqa: E402


class BenchError(Exception):
    """A failure the operator can act on; printed without a traceback."""


@dataclass
class Profile:
    name: str
    env: dict[str, str]
    # docker-mailserver 15.1 on this kind of machine, same method
    # (shared/reference/platform-notes.md), and the issues' targets.
    reference: dict[str, str] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)


CORE_ENV = {
    "OVERRIDE_HOSTNAME": FQDN,
    "ENABLE_AMAVIS": "0",
    "ENABLE_OPENDKIM": "0",
    "ENABLE_OPENDMARC": "0",
    "ENABLE_POLICYD_SPF": "0",
    "ENABLE_UPDATE_CHECK": "0",
    "ENABLE_CLAMAV": "0",
    "ENABLE_SPAMASSASSIN": "0",
    # No TLS: the bench measures the mail path, not the handshake.
    "SSL_TYPE": "",
}

PROFILES = {
    "core": Profile(
        "core",
        CORE_ENV,
        reference={
            "start_smtp_s": "3.1–3.3 s",
            "start_imap_s": "2.3–2.5 s",
            "idle_pss_mb": "64 MB",
            "idle_rss_mb": "124 MB",
            "idle_processes": "20",
            # DKIM/DMARC/SPF are off in this profile, so the comparable
            # docker-mailserver figure is the one with them off.
            "accepted_per_s": "230–250 (77 with DKIM/DMARC/SPF)",
            "delivered_per_s": "230–250 (77 with DKIM/DMARC/SPF)",
        },
        targets={
            "start_smtp_s": "≤ 1.6 s",
            "idle_pss_mb": "≤ 32 MB",
            "configure_noop_s": "≤ 1 s",
            "accepted_per_s": "≥ 150",
            "delivered_per_s": "≥ 150",
        },
    ),
    # Everything mailwright implements switched on: TLS (a certificate made at first
    # start), POP3, ManageSieve, quotas, spoof protection.
    "all-implemented": Profile(
        "all-implemented",
        {**CORE_ENV, "SSL_TYPE": "snakeoil", "ENABLE_POP3": "1", "ENABLE_MANAGESIEVE": "1",
         "ENABLE_QUOTAS": "1", "SPOOF_PROTECTION": "1"},
    ),
    # Not in the default list until Amavis/SpamAssassin exist in the image;
    # `--profiles core,filters` measures it against core.
    "filters": Profile(
        "filters",
        {**CORE_ENV, "ENABLE_AMAVIS": "1", "ENABLE_SPAMASSASSIN": "1"},
        reference={
            "idle_pss_mb": "235 MB",
            "idle_rss_mb": "607 MB",
            "accepted_per_s": "67",
            "delivered_per_s": "7.6–7.8",
        },
        targets={"delivered_per_s": "≥ 11"},
    ),
}
DEFAULT_PROFILES = ["core", "all-implemented"]

IMAGE_REFERENCE = "491 MB without ClamAV signatures"
IMAGE_TARGET = "≤ 295 MB"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- docker -------------------------------------------------------------------

def docker_client():
    try:
        import docker
    except ImportError:
        raise BenchError("the docker SDK is missing: run `make venv` and use .venv/bin/python")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as e:
        raise BenchError(f"cannot reach the Docker engine ({e}); `make host` installs and starts it")
    return client


def get_image(client, name: str):
    import docker
    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        raise BenchError(f"image {name} not found: build it with `make image` (or pass --image)")


@contextlib.contextmanager
def hold_image(image):
    """A tag of our own for the image under test.

    `build/image.py` removes the image a tag named before (`docker rmi <id>`,
    no force): a second tag makes that fail, so a colleague's `make image`
    cannot delete the image between two of our runs.
    """
    ref = f"mwbench-subject:{os.getpid()}"
    image.tag("mwbench-subject", str(os.getpid()))
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            image.client.images.remove(ref)


def remove_stale_containers(client) -> None:
    """Leftovers of an interrupted bench hold no ports once exited; remove them."""
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        if c.status != "running":
            log(f"removing stale {c.name}")
            c.remove(force=True, v=True)


def host_lock(wait: float):
    """The test suite's lock, held for one container's life, so a test session can run between runs."""
    return _harness_host_lock(wait, on_wait=log, error=BenchError)


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

def one_run(client, image_name: str, profile: Profile, args, index: int) -> dict:
    import docker

    wait_ports_free(args.port_wait)
    cfg = Path(tempfile.mkdtemp(prefix="mwbench-config-"))
    write_config_dir(cfg)
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
            volumes={str(cfg): {"bind": "/tmp/docker-mailserver", "mode": "rw"}},
            labels={LABEL: "1"},
        )
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
                  ("throughput", lambda: run.update(throughput(container, args))))
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
    log(f"{container.name}: idle PSS {run['idle_pss_mb']:.1f} MB, RSS {run['idle_rss_mb']:.1f} MB, "
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


def throughput(container, args) -> dict:
    out: dict = {}
    users = [(DOMAIN, u) for u in USERS]
    recipients = [f"{u}@{DOMAIN}" for u in USERS]
    mail_root = Path(f"/proc/{container.attrs['State']['Pid']}/root/var/mail")

    def delivered() -> int:
        return probes.count_maildir_messages(mail_root, users) or 0

    before = delivered()
    # postscreen holds a new client for its greet test (~6 s) once; the
    # verdict is cached, so the measured connections go straight to smtpd.
    out["warmup_s"] = probes.smtp_warmup()
    # The generator shares the host's CPUs with the server: its CPU time says
    # whether the figure is the server's limit or the client's.
    cpu = time.process_time()
    res = probes.smtp_load(args.messages, args.connections, args.message_size, args.sender, recipients)
    out["client_cpu_s"] = time.process_time() - cpu
    out["accepted"] = res.accepted
    out["refused"] = res.refused
    if res.errors:
        out["errors"] = res.errors
    accept_s = res.t_end - res.t_start
    out["accept_s"] = accept_s
    out["accepted_per_s"] = res.accepted / accept_s if res.accepted == args.messages else None
    expected = before + res.accepted
    deadline = time.perf_counter() + args.deliver_timeout
    n = delivered()
    while n < expected and time.perf_counter() < deadline:
        time.sleep(0.02)
        n = delivered()
    t_done = time.perf_counter()
    out["delivered"] = n - before
    if n >= expected and res.accepted == args.messages:
        out["deliver_s"] = t_done - res.t_start
        out["delivered_per_s"] = args.messages / out["deliver_s"]
    else:
        out["delivered_per_s"] = None
        # Maybe not Maildir under /var/mail: ask Dovecot what it holds.
        r = container.exec_run(["doveadm", "search", "-A", "all"])
        out["doveadm_count"] = len((r.output or b"").splitlines()) if r.exit_code == 0 else None
    log(f"{container.name}: {res.accepted}/{args.messages} accepted in {accept_s:.2f} s"
        + (f" ({out['accepted_per_s']:.1f}/s)" if out["accepted_per_s"] else "")
        + f"; {out['delivered']} delivered"
        + (f" in {out['deliver_s']:.2f} s ({out['delivered_per_s']:.1f}/s)" if out["delivered_per_s"] else "")
        + (f"; errors: {res.errors[:2]}" if res.errors else ""))
    return out


# --- whole invocation ---------------------------------------------------------

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
        "runs": runs,
    }


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


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image", default=os.environ.get("IMAGE", "mailwright:latest"))
    p.add_argument("--runs", type=int, default=5, help="fresh containers per profile (default 5)")
    p.add_argument("--idle-wait", type=float, default=60.0, help="seconds after ready before memory is read")
    p.add_argument("--profiles", default=",".join(DEFAULT_PROFILES),
                   help=f"comma-separated, from: {', '.join(PROFILES)}; the first is the baseline for ratios")
    p.add_argument("--messages", type=int, default=500)
    p.add_argument("--connections", type=int, default=4)
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
    p.add_argument("--skip", default="", help="comma-separated: memory, configure, throughput, build")
    p.add_argument("--out", default=str(REPO / "out"), help="directory for bench.json and bench.md")
    p.add_argument("--keep", action="store_true", help="keep containers (debugging; one run only)")
    args = p.parse_args(argv)
    args.skip = {s for s in args.skip.split(",") if s}
    unknown = args.skip - {"memory", "configure", "throughput", "build"}
    if unknown:
        p.error(f"unknown --skip {sorted(unknown)}")
    args.profiles = [s for s in args.profiles.split(",") if s]
    for name in args.profiles:
        if name not in PROFILES:
            p.error(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    if args.runs < 1:
        p.error("--runs must be at least 1")
    if args.keep and args.runs != 1:
        p.error("--keep needs --runs 1 (kept containers hold the host ports)")
    return args


def _interrupt(signum, frame):
    # SIGTERM (CI timeout, `kill`) unwinds like Ctrl-C so containers are removed.
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        client = docker_client()
        image = get_image(client, args.image)
        remove_stale_containers(client)
        results: dict = {
            "meta": {
                "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "git_commit": git_commit(),
                "runs": args.runs,
                "idle_wait_s": args.idle_wait,
                "messages": args.messages,
                "message_size": args.message_size,
                "connections": args.connections,
                "host_cpus": os.cpu_count(),
                "kernel": platform.release(),
                "docker_engine": client.version().get("Version"),
                "method": {
                    "cold_start": "create+start through the Engine API until the first bytes of a "
                                  "'220' (port 25) / '* OK' (port 143) banner, 10 ms connect polling; "
                                  "page cache warm after the first run",
                    "memory": "sum of smaps_rollup Pss/Rss over the container cgroup's cgroup.procs, "
                              "idle_wait seconds after ready; MB = 10^6 bytes (kB*1000)",
                    "configure": "docker exec through the Engine API; exec of `true` shown as overhead",
                    "throughput": "one warm-up connection excluded; then messages over concurrent "
                                  "smtplib sessions to 127.0.0.1:25; delivered = files in new/ and cur/ "
                                  "of the recipients' Maildirs, timed from the first connection",
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
            "profiles": {},
            "notes": [],
        }
        with hold_image(image):
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
                for r in runs:
                    for err in r.get("errors", []):
                        note = f"{pname}: {err.splitlines()[0][:200]}"
                        if note not in results["notes"]:
                            results["notes"].append(note)
            if "build" not in args.skip:
                results["build"] = measure_build(args, image.id)
                summary = results["image"]["summary"]
                for kind in ("cold", "cached"):
                    samples = [r["seconds"] for r in results["build"].get(kind, [])
                           if r["exit_code"] == 0 and not r.get("inputs_changed")]
                    if samples:
                        summary[f"build_{kind}_s"] = stats.summarize(samples)
                changed = [r for r in results["build"].get("cached", []) if r.get("inputs_changed")]
            if changed:
                results["notes"].append(
                    f"{len(changed)} cached build(s) left out: the tree changed under them "
                    "(" + ", ".join(f"{r['seconds']:.1f} s" for r in changed) + ")")
            if results["build"].get("same_id_as_benchmarked") is False:
                    results["notes"].append(
                        f"the timed builds gave another image ID than {args.image} "
                        "(tree changed since `make image`, or the build is not reproducible)")
        if results["build"].get("note"):
            results["notes"].append("build time " + results["build"]["note"])
        write_results(out_dir, results)
        sys.stdout.write(report.table(results))
        return 1 if any(r.get("error") for p in results["profiles"].values() for r in p["runs"]) else 0
    except BenchError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; containers removed", file=sys.stderr)
        return 130


def write_results(out_dir: Path, results: dict) -> None:
    (out_dir / "bench.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    (out_dir / "bench.md").write_text(report.table(results))


if __name__ == "__main__":
    sys.exit(main())
