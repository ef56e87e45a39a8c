"""SPF verdicts (policyd-spf, ENABLE_POLICYD_SPF) with the image's own policyd-spf and mailwright's
rendered policyd-spf.conf, against a DNS that answers what each case needs.

The container has no network (`--network none`): a stub DNS server on its 127.0.0.1:53 (this
module's STUB_DNS, standard library) serves the sender domains' SPF records, a SERVFAIL and a
silent name; policyd-spf is fed Postfix policy requests on stdin, exactly as Postfix's `spawn`
service runs it. Fail -> 550, Pass/SoftFail -> a Received-SPF header, SERVFAIL and a timeout ->
a deferral (4xx), never a 5xx. tests/e2e/test_srs.py shows Postfix asking it on port 25.
"""

from __future__ import annotations

import json
import textwrap

import pytest

from harness import dockercli as d

pytestmark = pytest.mark.docker

CLIENT = "198.51.100.7"

RUN = textwrap.dedent(r'''
    import json, pathlib, socket, struct, subprocess, sys, threading
    sys.path.insert(0, "/opt/mailwright")
    from ops import configdir, settings as S
    from ops.spf.daemon import DAEMON, BINARY, CONFIG

    TXT = {"spf-pass.test": "v=spf1 ip4:198.51.100.7 -all", "spf-soft.test": "v=spf1 ip4:192.0.2.1 ~all",
           "spf-fail.test": "v=spf1 ip4:192.0.2.1 -all"}
    RCODE = {"servfail.test": 2}
    SILENT = {"timeout.test"}

    def name_at(msg, i):
        labels = []
        while msg[i]:
            labels.append(msg[i + 1:i + 1 + msg[i]].decode()); i += 1 + msg[i]
        return ".".join(labels).lower(), i + 1

    def dns():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sock.bind(("127.0.0.1", 53))
        tcp = socket.create_server(("127.0.0.1", 53))     # a TCP retry finds nobody answering either
        while True:
            q, peer = sock.recvfrom(512)
            name, end = name_at(q, 12)
            qtype = struct.unpack("!H", q[end:end + 2])[0]
            if name in SILENT:
                continue
            rcode = RCODE.get(name, 0 if name in TXT else 3)
            answers = b""
            if rcode == 0 and qtype == 16:
                txt = TXT[name].encode()
                rdata = bytes([len(txt)]) + txt
                answers = b"\xc0\x0c" + struct.pack("!HHIH", 16, 1, 60, len(rdata)) + rdata
            flags = 0x8400 | (q[2] & 1) << 8 | rcode
            header = q[:2] + struct.pack("!HHHHH", flags, 1, 1 if answers else 0, 0, 0)
            sock.sendto(header + q[12:end + 4] + answers, peer)

    threading.Thread(target=dns, daemon=True).start()
    pathlib.Path("/etc/resolv.conf").write_text("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n")

    folder = pathlib.Path("/tmp/config"); folder.mkdir()
    s = S.load(environ={"MAILWRIGHT_INIT": "container", "ENABLE_POLICYD_SPF": "1"}, fqdn="mail.example.test")
    for f in DAEMON.files(s, configdir.read(folder), None):
        pathlib.Path(f.path).write_text(f.content)

    out = {}
    for domain in ["spf-pass.test", "spf-soft.test", "spf-fail.test", "servfail.test", "timeout.test"]:
        request = ("request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
                   "client_address=198.51.100.7\nclient_name=unknown\nhelo_name=mx." + domain + "\n"
                   "sender=someone@" + domain + "\nrecipient=user@example.test\ninstance=1\n\n")
        p = subprocess.run([BINARY, CONFIG], input=request, capture_output=True, text=True, timeout=120)
        out[domain] = p.stdout.strip()
    print(json.dumps(out))
''')


@pytest.fixture(scope="module")
def verdicts(image):
    name = d.unique_name("spf")
    try:
        out = d.docker("run", "--rm", "--name", name, "--network", "none", "--entrypoint", "python3",
                       image, "-c", RUN, timeout=300).stdout
    finally:
        d.rm(name)
    return json.loads(out.strip().splitlines()[-1])


def test_pass_and_softfail_are_recorded_in_received_spf(verdicts):
    assert verdicts["spf-pass.test"].lower().startswith("action=prepend received-spf: pass (mailfrom)"), verdicts
    assert f"client-ip={CLIENT}" in verdicts["spf-pass.test"]
    assert verdicts["spf-soft.test"].lower().startswith("action=prepend received-spf: softfail"), verdicts


def test_fail_is_refused_with_550(verdicts):
    assert verdicts["spf-fail.test"].startswith("action=550 5.7.23 "), verdicts


@pytest.mark.parametrize("domain", ["servfail.test", "timeout.test"])
def test_dns_trouble_defers_never_rejects(verdicts, domain):
    action = verdicts[domain]
    # Postfix answers DEFER_IF_PERMIT with 450 once the other restrictions permit.
    assert action.lower().startswith("action=defer_if_permit 4."), verdicts
    assert "550" not in action and " 5." not in action
