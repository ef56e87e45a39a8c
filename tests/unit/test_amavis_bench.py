"""The bench's pieces for the filters profile: the instant DNS (bench/dnsstub.py) and the header count."""

from __future__ import annotations

import socket
import struct
import sys
from pathlib import Path

from hypothesis import given, strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench import probes, profiles  # noqa: E402
from bench.dnsstub import DnsStub, answer  # noqa: E402


def query(name: str, qtype: int = 16, ident: int = 0x1234, flags: int = 0x0100) -> bytes:
    labels = b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
    return struct.pack("!HHHHHH", ident, flags, 1, 0, 0, 0) + labels + b"\0" + struct.pack("!HH", qtype, 1)


def test_every_query_gets_an_authoritative_nxdomain_echoing_the_question():
    q = query("2.0.0.127.zen.spamhaus.org", qtype=1)
    r = answer(q)
    ident, flags, qd, an, ns, ar = struct.unpack("!HHHHHH", r[:12])
    assert ident == 0x1234 and flags & 0x8000 and flags & 0x0400 and flags & 0x000F == 3
    assert flags & 0x0100                           # recursion desired, copied
    assert (qd, an, ns, ar) == (1, 0, 0, 0)
    assert r[12:] == q[12:]


def test_responses_and_garbage_get_no_answer():
    assert answer(b"") is None
    assert answer(query("a.test", flags=0x8180)) is None          # a response, not a query
    assert answer(query("a.test")[:-3]) is None                    # truncated question


@given(st.binary(max_size=300))
def test_answer_never_raises(data):
    r = answer(data)
    assert r is None or r[:2] == data[:2]


def test_the_stub_answers_over_udp():
    with DnsStub("127.0.0.153", 15353) as stub:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(5)
            s.sendto(query("example.test"), ("127.0.0.153", 15353))
            reply = s.recv(512)
        assert reply[3] & 0x0F == 3 and stub.queries == 1
        assert stub.resolv_conf().endswith("nameserver 127.0.0.153\n")


def test_count_header_reads_only_the_header_block(tmp_path):
    new = tmp_path / "example.test" / "user1" / "new"
    new.mkdir(parents=True)
    (new / "a").write_bytes(b"Subject: x\nX-Spam-Status: No, score=0.1\n\nbody\n")
    (new / "b").write_bytes(b"Subject: y\n\nX-Spam-Status: in the body\n")
    assert probes.count_header(tmp_path, [("example.test", "user1")], "X-Spam-Status") == (1, 2)


def test_filters_profile_targets_and_checks():
    p = profiles.PROFILES["filters"]
    assert p.env["ENABLE_AMAVIS"] == p.env["ENABLE_SPAMASSASSIN"] == "1"
    assert p.instant_dns and p.required_header == "X-Spam-Status"
    assert p.targets == {"start_smtp_s": "≤ 1 s", "idle_pss_mb": "≤ 118 MB", "delivered_per_s": "≥ 12"}
