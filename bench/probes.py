"""Network probes and the SMTP load generator (loopback only)."""
from __future__ import annotations

import os
import smtplib
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"


def wait_for_banner(port: int, prefix: bytes, deadline: float, stop: threading.Event,
                    interval: float = 0.01, host: str = HOST) -> float | None:
    """perf_counter() at which `prefix` is first read from `port`, or None.

    Connection refused means nothing listens yet: retry after `interval`.
    Once connected, the first bytes are awaited without a short timeout,
    because the kernel accepts on Postfix's listening socket before
    postscreen is running; the bytes arrive when it is. A connection closed
    without a banner (a daemon restarted by the entrypoint) is retried.
    """
    while not stop.is_set() and time.perf_counter() < deadline:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.settimeout(0.05)
            if s.connect_ex((host, port)) != 0:
                time.sleep(interval)
                continue
            buf = b""
            while not stop.is_set() and time.perf_counter() < deadline:
                s.settimeout(max(0.001, min(0.5, deadline - time.perf_counter())))
                try:
                    chunk = s.recv(512)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                buf += chunk
                if buf.startswith(prefix):
                    return time.perf_counter()
                if len(buf) >= len(prefix):
                    break  # someone else's banner: treat as not ready
            time.sleep(interval)
        except OSError:
            time.sleep(interval)
        finally:
            s.close()
    return None


def port_in_use(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def make_message(sender: str, rcpt: str, seq: int, size: int) -> bytes:
    """An RFC 5322 message of exactly `size` bytes (CRLF line ends included)."""
    head = (
        f"From: <{sender}>\r\n"
        f"To: <{rcpt}>\r\n"
        f"Subject: mailwright bench {seq}\r\n"
        f"Message-ID: <bench-{seq}-{os.getpid()}@example.test>\r\n"
        f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        "\r\n"
    ).encode()
    room = size - len(head)
    if room < 2:
        raise ValueError(f"message size {size} too small for the headers ({len(head)} bytes)")
    # Lines start with a letter so smtplib never dot-stuffs (which would
    # change the size on the wire).
    full, rem = divmod(room, 78)
    lines = [b"b" * 76 + b"\r\n"] * full
    if rem == 1:
        # A one-byte tail cannot hold CRLF: lengthen the last full line.
        lines[-1] = b"b" * 77 + b"\r\n"
    elif rem:
        lines.append(b"b" * (rem - 2) + b"\r\n")
    return head + b"".join(lines)


@dataclass
class LoadResult:
    accepted: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)
    t_start: float = 0.0
    t_end: float = 0.0


# Postfix limits concurrent connections per client address (421 "too many
# connections" at smtpd_client_connection_count_limit, 50 by default): a
# generator spreads its connections over several loopback source addresses,
# as many clients would, with at most this many on one address.
PER_SOURCE = 16
FIRST_SOURCE = 2  # 127.0.0.2: 127.0.0.1 stays what the probes and the tests use


def source_addresses(connections: int, per_source: int = PER_SOURCE, first: int = FIRST_SOURCE) -> list[str]:
    """The source address of each of `connections` connections: blocks of
    `per_source` on 127.0.0.<first>, 127.0.0.<first+1>, ..."""
    if connections < 1 or per_source < 1:
        raise ValueError("connections and per_source must be at least 1")
    last = first + (connections - 1) // per_source
    if not 1 <= first <= last <= 254:
        raise ValueError(f"{connections} connections at {per_source} per address do not fit in "
                         f"127.0.0.{first}-127.0.0.254")
    return [f"127.0.0.{first + i // per_source}" for i in range(connections)]


def smtp_warmup(sources: list[str] | None = None, port: int = 25, timeout: float = 60.0) -> float:
    """One connection from each distinct source address, all at once.

    postscreen holds a client address it has not seen for its greet test
    (~6 s) once; the verdict is cached, so the measured connections go
    straight to smtpd. This time is excluded from the figures.
    """
    errors: list[BaseException] = []

    def one(source: str | None) -> None:
        try:
            with smtplib.SMTP(HOST, port, local_hostname="bench.example.test", timeout=timeout,
                              source_address=(source, 0) if source else None) as s:
                s.ehlo()
                s.noop()
        except (OSError, smtplib.SMTPException) as e:
            errors.append(e)

    t = time.perf_counter()
    threads = [threading.Thread(target=one, args=(a,), daemon=True)
               for a in dict.fromkeys(sources or [None])]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - t


def smtp_load(messages: int, connections: int, size: int, sender: str,
              recipients: list[str], port: int = 25, timeout: float = 60.0,
              sources: list[str] | None = None) -> LoadResult:
    """Send `messages` over `connections` concurrent SMTP sessions.

    Connection i binds `sources[i]` as its source address when given (see
    source_addresses). Messages are built before the clock starts so the
    generator's own work is not counted against the server.
    """
    if sources is not None and len(sources) != connections:
        raise ValueError(f"{len(sources)} source addresses for {connections} connections")
    plan: list[list[tuple[str, bytes]]] = [[] for _ in range(connections)]
    for i in range(messages):
        rcpt = recipients[i % len(recipients)]
        plan[i % connections].append((rcpt, make_message(sender, rcpt, i, size)))

    result = LoadResult()
    lock = threading.Lock()
    barrier = threading.Barrier(connections + 1)

    def worker(batch: list[tuple[str, bytes]], source: str | None) -> None:
        barrier.wait()
        try:
            with smtplib.SMTP(HOST, port, local_hostname="bench.example.test", timeout=timeout,
                              source_address=(source, 0) if source else None) as s:
                s.ehlo()
                for rcpt, msg in batch:
                    try:
                        s.sendmail(sender, [rcpt], msg)
                        with lock:
                            result.accepted += 1
                    except smtplib.SMTPException as e:
                        with lock:
                            result.refused += 1
                            if len(result.errors) < 5:
                                result.errors.append(f"{rcpt}: {e!r}")
                        if isinstance(e, smtplib.SMTPServerDisconnected):
                            return
        except (OSError, smtplib.SMTPException) as e:
            with lock:
                result.errors.append(f"connection: {e!r}")

    threads = [threading.Thread(target=worker, args=(b, sources[i] if sources else None), daemon=True)
               for i, b in enumerate(plan)]
    for t in threads:
        t.start()
    barrier.wait()
    result.t_start = time.perf_counter()
    for t in threads:
        t.join()
    result.t_end = time.perf_counter()
    return result


def count_maildir_messages(mail_root: Path, users: list[tuple[str, str]]) -> int | None:
    """Delivered messages of the given (domain, local) users, or None when no
    maildir is visible (another mailbox format: the caller falls back).

    Dovecot delivers into tmp/ and renames into new/, so files in new/ and
    cur/ are complete deliveries.
    """
    total = 0
    found = False
    for domain, local in users:
        base = mail_root / domain / local
        if not base.is_dir():
            continue
        found = True
        for dirpath, dirnames, filenames in os.walk(base):
            if os.path.basename(dirpath) in ("new", "cur"):
                total += len(filenames)
                dirnames[:] = []
    return total if found else None


def count_header(mail_root: Path, users: list[tuple[str, str]], name: str) -> tuple[int, int]:
    """(messages whose header block has `name:`, delivered messages) in the users' maildirs."""
    wanted = name.lower().encode() + b":"
    with_header = total = 0
    for domain, local in users:
        for dirpath, dirnames, filenames in os.walk(mail_root / domain / local):
            if os.path.basename(dirpath) not in ("new", "cur"):
                continue
            dirnames[:] = []
            for f in filenames:
                total += 1
                try:
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        head = fh.read(65536).split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0]
                except OSError:
                    continue
                if any(line.lower().startswith(wanted) for line in head.splitlines()):
                    with_header += 1
    return with_header, total
