"""An instant DNS server for the bench and the tests: every query gets NXDOMAIN at once.

SpamAssassin asks DNS blocklists and more for every message (its network tests stay on in the
product). Without a resolver that answers, each lookup waits for its timeout (about 15 s a message
here); with the host's resolver the figures depend on the host. This stub answers every question
on UDP with NXDOMAIN ("not listed"), authoritative, so the time measured is mailwright's.

Standard library only. `DnsStub(address).start()` serves in a daemon thread until `stop()`;
`resolv_conf()` is the text to give the container as its /etc/resolv.conf.
`python3 -m bench.dnsstub [ADDRESS]` serves in the foreground (port 53 needs root).
"""

from __future__ import annotations

import socket
import struct
import sys
import threading

DEFAULT_ADDRESS = "127.0.0.153"      # a loopback address of its own: nothing else answers there


def answer(query: bytes) -> bytes | None:
    """The NXDOMAIN reply to one DNS query (the question echoed), or None for what is not a query."""
    if len(query) < 12:
        return None
    ident, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000 or qdcount != 1:           # a response, or not exactly one question
        return None
    end = 12
    while end < len(query) and query[end] != 0:   # the question's name: length-prefixed labels
        if query[end] & 0xC0:
            return None
        end += 1 + query[end]
    end += 1 + 4                                  # the root label, QTYPE, QCLASS
    if end > len(query):
        return None
    opcode = flags & 0x7800
    rcode = 3 if opcode == 0 else 4               # NXDOMAIN; NOTIMP for anything but a standard query
    reply_flags = 0x8000 | opcode | 0x0400 | (flags & 0x0100) | 0x0080 | rcode   # QR, AA, RD copied, RA
    return struct.pack("!HHHHHH", ident, reply_flags, 1, 0, 0, 0) + query[12:end]


class DnsStub:
    def __init__(self, address: str = DEFAULT_ADDRESS, port: int = 53):
        self.address, self.port = address, port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, port))
        self.sock.settimeout(0.5)
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.serve, name="dnsstub", daemon=True)

    def resolv_conf(self) -> str:
        return f"# mailwright bench/tests: an instant DNS (bench/dnsstub.py)\nnameserver {self.address}\n"

    def serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            reply = answer(data)
            if reply is not None:
                self.queries += 1
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    pass

    def start(self) -> "DnsStub":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def __enter__(self) -> "DnsStub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    stub = DnsStub(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_ADDRESS)
    print(f"answering NXDOMAIN on {stub.address}:{stub.port}", flush=True)
    try:
        stub.serve()
    except KeyboardInterrupt:
        pass
