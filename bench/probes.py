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


def smtp_warmup(port: int = 25, timeout: float = 60.0) -> float:
    """One connection through postscreen's greet test; its time is excluded."""
    t = time.perf_counter()
    with smtplib.SMTP(HOST, port, local_hostname="bench.example.test", timeout=timeout) as s:
        s.ehlo()
        s.noop()
    return time.perf_counter() - t


def smtp_load(messages: int, connections: int, size: int, sender: str,
              recipients: list[str], port: int = 25, timeout: float = 60.0) -> LoadResult:
    """Send `messages` over `connections` concurrent SMTP sessions.

    Messages are built before the clock starts so the generator's own work
    is not counted against the server.
    """
    plan: list[list[tuple[str, bytes]]] = [[] for _ in range(connections)]
    for i in range(messages):
        rcpt = recipients[i % len(recipients)]
        plan[i % connections].append((rcpt, make_message(sender, rcpt, i, size)))

    result = LoadResult()
    lock = threading.Lock()
    barrier = threading.Barrier(connections + 1)

    def worker(batch: list[tuple[str, bytes]]) -> None:
        barrier.wait()
        try:
            with smtplib.SMTP(HOST, port, local_hostname="bench.example.test", timeout=timeout) as s:
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

    threads = [threading.Thread(target=worker, args=(b,), daemon=True) for b in plan]
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
