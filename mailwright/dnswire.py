"""A small DNS client (standard library only) for `setup dns --check` and `mailwright check`.

The image has no DNS library, and the checks need exactly one thing: ask one
resolver for one name and type, and get the answer's records in the same
presentation form `mailwright.dnsrecords` writes, so that wanted and published
records compare as strings. UDP first, TCP when the answer is truncated.

A resolver that does not answer, or answers SERVFAIL/REFUSED, raises
`DnsError`: "could not check" is never mistaken for "missing" (NXDOMAIN and an
empty answer are "missing").
"""

from __future__ import annotations

import ipaddress
import os
import random
import socket
import struct
from dataclasses import dataclass

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28,
         "SRV": 33, "TLSA": 52}
NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


class DnsError(Exception):
    """The question could not be answered (timeout, SERVFAIL, malformed answer)."""


@dataclass(frozen=True)
class Answer:
    rcode: str                      # NOERROR or NXDOMAIN (the others raise DnsError)
    records: tuple[str, ...]        # presentation form of the records of the asked type


def system_resolver(path: str = "/etc/resolv.conf") -> str:
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    return parts[1]
    except OSError:
        pass
    return "127.0.0.1"


def parse_server(value: str) -> tuple[str, int]:
    """`IP`, `IPv4:PORT` or `[IPv6]:PORT` -> (address, port); ValueError otherwise."""
    host, port = value, "53"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif value.count(":") == 1:
        host, port = value.split(":")
    ipaddress.ip_address(host)
    number = int(port)
    if not 0 < number < 65536:
        raise ValueError(f"port {port} out of range")
    return host, number


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        raw = label.encode("idna") if not label.isascii() else label.encode()
        if not 0 < len(raw) < 64:
            raise DnsError(f"invalid DNS name {name!r}")
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def build_query(name: str, rtype: str, qid: int) -> bytes:
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)     # RD set
    return header + encode_name(name) + struct.pack("!HH", TYPES[rtype], 1)


def _read_name(msg: bytes, off: int) -> tuple[str, int]:
    labels, jumped, end, seen = [], False, off, 0
    while True:
        if off >= len(msg):
            raise DnsError("truncated name in answer")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg):
                raise DnsError("truncated pointer in answer")
            if not jumped:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            jumped = True
            seen += 1
            if seen > 64:
                raise DnsError("compression loop in answer")
            continue
        if n == 0:
            if not jumped:
                end = off + 1
            break
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n
    return (".".join(labels) + ".").lower(), end


def _rdata(msg: bytes, rtype: int, off: int, length: int) -> str:
    data = msg[off:off + length]
    if rtype == 1:
        return str(ipaddress.IPv4Address(data))
    if rtype == 28:
        return str(ipaddress.IPv6Address(data))
    if rtype in (2, 5, 12):
        return _read_name(msg, off)[0]
    if rtype == 15:
        pref = struct.unpack("!H", data[:2])[0]
        return f"{pref} {_read_name(msg, off + 2)[0]}"
    if rtype == 33:
        prio, weight, port = struct.unpack("!HHH", data[:6])
        return f"{prio} {weight} {port} {_read_name(msg, off + 6)[0]}"
    if rtype == 16:
        parts, i = [], 0
        while i < len(data):
            n = data[i]
            parts.append(data[i + 1:i + 1 + n].decode("utf-8", "replace"))
            i += 1 + n
        return "".join(parts)
    if rtype == 52:
        usage, selector, mtype = data[0], data[1], data[2]
        return f"{usage} {selector} {mtype} {data[3:].hex()}"
    return data.hex()


def parse_response(msg: bytes, qid: int, rtype: str) -> tuple[Answer, bool]:
    """(answer, truncated). Only records of the asked type; CNAME chains are followed
    by the resolver, so the final records are among the answers."""
    if len(msg) < 12:
        raise DnsError("short DNS answer")
    rid, flags, qd, an, _ns, _ar = struct.unpack("!HHHHHH", msg[:12])
    if rid != qid:
        raise DnsError("answer for another question")
    truncated = bool(flags & 0x0200)
    rcode = RCODES.get(flags & 0xF, str(flags & 0xF))
    if rcode not in ("NOERROR", "NXDOMAIN"):
        raise DnsError(rcode)
    off = 12
    for _ in range(qd):
        _, off = _read_name(msg, off)
        off += 4
    want = TYPES[rtype]
    records = []
    for _ in range(an):
        _, off = _read_name(msg, off)
        if off + 10 > len(msg):
            raise DnsError("truncated record in answer")
        t, _cls, _ttl, length = struct.unpack("!HHIH", msg[off:off + 10])
        off += 10
        if off + length > len(msg):
            raise DnsError("truncated record data in answer")
        if t == want:
            records.append(_rdata(msg, t, off, length))
        off += length
    return Answer(rcode, tuple(records)), truncated


def query(name: str, rtype: str, server: str | None = None, port: int = 53, timeout: float = 3.0,
          tries: int = 2) -> Answer:
    server = server or system_resolver()
    qid = random.SystemRandom().randrange(1, 65535)
    packet = build_query(name, rtype, qid)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    last = "no answer"
    for _ in range(tries):
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            try:
                s.sendto(packet, (server, port))
                while True:
                    data, _ = s.recvfrom(65535)
                    try:
                        answer, truncated = parse_response(data, qid, rtype)
                    except DnsError as e:
                        if str(e) == "answer for another question":
                            continue
                        raise
                    break
            except socket.timeout:
                last = f"no answer from {server} within {timeout:g} s"
                continue
            except OSError as e:
                raise DnsError(f"cannot reach {server}: {os.strerror(e.errno) if e.errno else e}")
        if not truncated:
            return answer
        return _query_tcp(packet, qid, rtype, server, port, timeout, family)
    raise DnsError(last)


def _query_tcp(packet: bytes, qid: int, rtype: str, server: str, port: int, timeout: float,
               family: int) -> Answer:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((server, port))
            s.sendall(struct.pack("!H", len(packet)) + packet)
            head = _recv_exactly(s, 2)
            data = _recv_exactly(s, struct.unpack("!H", head)[0])
        except (OSError, socket.timeout) as e:
            raise DnsError(f"TCP query to {server} failed: {e}")
    return parse_response(data, qid, rtype)[0]


def _recv_exactly(s: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise DnsError("connection closed mid-answer")
        buf += chunk
    return buf


def reverse_name(address: str) -> str:
    return ipaddress.ip_address(address).reverse_pointer + "."
