"""Relaying and fetching between two servers on the test bed (issue 10): mx1.example.test
relays through mx2.example.org with AUTH over TLS, and pulls mail from mx2's IMAP and POP3.

mx2.example.org hosts example.org and a third domain, example.net, which has no DNS record at
all: mail to user3@example.net reaches it only through mx2 (submission, 587, with the relay
account relay@example.org). mx1 is configured as docker-mailserver users do it, one way per
test: DEFAULT_RELAY_HOST plus `setup relay add-auth`, the legacy RELAY_HOST/RELAY_PORT/
RELAY_USER/RELAY_PASSWORD, and per sender domain `setup relay add-domain` + `add-auth`.
Each relayed message is followed by its Message-ID (the test's token) through both mail.logs:
mx1's smtp client delivered it to mx2.example.org[<mx2's bed IP>]:587 over TLS, mx2's
submission smtpd received it from mx1 with the SASL login of the relay account, after the
TLS handshake on that connection; the message is in user3's mailbox on mx2. No transport_maps
or /etc/hosts shortcut: the bed's DNS and network only.

Fetching: fetchmail (IMAPS 993, POP3S 995) and getmail (IMAPS) on mx1 pull from accounts on
mx2.example.org, verifying its certificate against the bed CA (a copy in mx1's config folder:
`sslcertck sslcertfile`, getmail's `ca_certs`), keeping the mail on mx2; nothing is fetched
twice after mx1 is stopped and started again (state on the state volume).

Every wait is a bounded poll for an observable result, never a timed assertion.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from harness import clients as c
from harness import dockercli as d

pytestmark = pytest.mark.docker

PW = "Bed-Relay-Mailbox-1!"
RELAY, RELAY_PW = "relay@example.org", "Relay-Only-Secret-9q"
RELAY1, RELAY1_PW = "relay-user1@example.org", "Relay-User1-Secret-4k"    # user1's own relay account
PLAIN_RELAY, PLAIN_PW = "plain.example.org", "Plain-Relay-Secret-7z"      # a relay without STARTTLS
USER1 = "user1@example.test"            # mx1: relayed sender
USER5 = "user5@example.test"            # mx1: another sender of the relayed domain
USER4 = "user4@example.com"             # mx1: a second domain, never in the relay map
USER2 = "user2@example.org"             # mx2
USER3 = "user3@example.net"             # mx2: the third domain (no DNS)
FM_IMAP = ("remote-imap@example.org", "fm-imap@example.test")   # mx2 account -> mx1 account
FM_POP = ("remote-pop@example.org", "fm-pop@example.test")
GM_IMAP = ("remote-gm@example.org", "gm@example.test")
FETCHED = (FM_IMAP, FM_POP, GM_IMAP)
CA = "/tmp/docker-mailserver/bed-ca.pem"
MX2_HOP = "[mx2.example.org]:587"

TLS_ENV = {"SSL_TYPE": "manual", "SSL_CERT_PATH": "/tmp/docker-mailserver/ssl/cert.pem",
           "SSL_KEY_PATH": "/tmp/docker-mailserver/ssl/key.pem", "ENABLE_OPENDKIM": "0",
           "ENABLE_OPENDMARC": "0", "ENABLE_POLICYD_SPF": "0"}
MX2_ENV = {**TLS_ENV, "ENABLE_POP3": "1"}
MX1_ENV = {**TLS_ENV, "ENABLE_FETCHMAIL": "1", "FETCHMAIL_POLL": "5", "ENABLE_GETMAIL": "1",
           "GETMAIL_POLL": "1"}
# mx1 starts as the first relay case needs it (credentials come later, from `setup relay add-auth`).
MX1_START_ENV = {**MX1_ENV, "DEFAULT_RELAY_HOST": MX2_HOP}

FETCHMAIL_CF = f"""\
# fetchmail.cf (docker-mailserver's format): mx2's IMAPS and POP3S, its certificate checked
poll mx2.example.org with proto IMAP port 993
    user '{FM_IMAP[0]}' there with password '{PW}' is '{FM_IMAP[1]}' here
    options keep ssl sslcertck sslcertfile {CA}
poll mx2.example.org with proto POP3 port 995 uidl
    user '{FM_POP[0]}' there with password '{PW}' is '{FM_POP[1]}' here
    options keep ssl sslcertck sslcertfile {CA}
"""

GETMAIL_CF = f"""\
[retriever]
type = SimpleIMAPSSLRetriever
server = mx2.example.org
port = 993
username = {GM_IMAP[0]}
password = {PW}
ca_certs = {CA}
mailboxes = ("INBOX",)

[destination]
type = MDA_external
path = /usr/lib/dovecot/deliver
allow_root_commands = true
arguments = ("-d", "{GM_IMAP[1]}")
"""


@dataclass
class Servers:
    mx1: object
    mx2: object
    seed: str            # the token put in mx2's fetch accounts before mx1 first started


def fetch_config(cfg) -> None:
    cfg.file("fetchmail.cf", FETCHMAIL_CF)
    cfg.file("getmail/mx2.cf", GETMAIL_CF)


@pytest.fixture(scope="module")
def servers(bed):
    mx2 = bed.server("mx2.example.org", env=dict(MX2_ENV), start=False,
                     accounts={a: PW for a in (USER2, USER3, FM_IMAP[0], FM_POP[0], GM_IMAP[0])}
                     | {RELAY: RELAY_PW, RELAY1: RELAY1_PW})
    # fetchmail 6.4 (`sslcertck`) looks for the server name in the certificate's subject CN
    # (reading the SubjectAltNames from there); the bed's leaves have no CN. Real ones have.
    leaf = bed.tls_ca.issue_cert(mx2.fqdn, common_name=mx2.fqdn)
    ssl_dir = mx2.volumes.config / "ssl"
    (ssl_dir / "key.pem").write_bytes(leaf.private_key_pem.bytes())
    (ssl_dir / "cert.pem").write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    mx1 = bed.server("mx1.example.test", env=dict(MX1_START_ENV), start=False, config=fetch_config,
                     accounts={a: PW for a in (USER1, USER4, USER5, FM_IMAP[1], FM_POP[1], GM_IMAP[1])})
    (mx1.volumes.config / "bed-ca.pem").write_bytes(bed.tls_ca.cert_pem.bytes())
    bed.dns.mx("example.com", mx1.fqdn)          # USER4's domain (mx2 checks sender domains)
    mx2.start()
    # Mail waits in mx2's accounts before mx1's fetchers first run (getmail runs at start,
    # then every GETMAIL_POLL minute).
    seed = c.token("seed")
    put_on_mx2(mx2, seed)
    mx1.start()
    return Servers(mx1, mx2, seed)


# --- helpers ----------------------------------------------------------------------------------

def message(sender: str, rcpt: str, token: str):
    msg = c.make_message(sender, rcpt, token)
    msg.replace_header("Message-ID", f"<{token}@bed.test>")        # followed through the mail.logs
    return msg


def put_on_mx2(mx2, token: str) -> None:
    for remote, _ in FETCHED:
        assert mx2.submit(USER2, PW, message(USER2, remote, f"{token} for {remote}"), to=[remote]) == {}


def count(box, user: str, token: str) -> int:
    """How many messages in `user`'s INBOX on `box` carry `token` in their Subject."""
    with box.imaps() as imap:
        imap.login(user, PW)
        imap.select("INBOX", readonly=True)
        typ, data = imap.search(None, "SUBJECT", f'"{token}"')
        assert typ == "OK", typ
        return len(data[0].split()) if data and data[0] else 0


def wait_fetched(servers: Servers, token: str) -> None:
    for remote, local in FETCHED:
        servers.mx1.wait_for_message(local, PW, f"{token} for {remote}", timeout=120)


def stop_start(box, between=lambda: None) -> None:
    """`docker stop`, `between()`, `docker start` of the same container (its state kept)."""
    before = box.logs()
    d.docker("stop", box.name, timeout=180)
    between()
    d.docker("start", box.name, timeout=180)
    box.wait_ready(since_logs=before)


def queue_id(log: str, token: str) -> str | None:
    m = re.search(rf"postfix/cleanup\[\d+\]: (\w+): message-id=<{re.escape(token)}@bed\.test>", log)
    return m.group(1) if m else None


@dataclass
class Reception:
    service: str         # smtpd's syslog name: postfix/submission/smtpd, postfix/smtpd, ...
    client: str
    sasl_user: str       # "" without AUTH
    tls: bool            # a TLS handshake on this connection before the message


def reception(box, token: str) -> Reception | None:
    """How `box`'s smtpd received the message with Message-ID `token` (from its mail.log)."""
    log = box.mail_log()
    qid = queue_id(log, token)
    if qid is None:
        return None
    lines = log.splitlines()
    for i, line in enumerate(lines):
        m = re.search(rf" (postfix/[\w/-]*smtpd)\[(\d+)\]: {qid}: client=([^,\s]+)(.*)$", line)
        if not m:
            continue
        service, pid, client, rest = m.groups()
        same = [ln for ln in lines[:i] if f" {service}[{pid}]: " in ln]
        start = max((j for j, ln in enumerate(same) if ": connect from " in ln), default=0)
        tls = any("TLS connection established from" in ln for ln in same[start:])
        user = re.search(r"sasl_username=(\S+)", rest)
        return Reception(service, client, user.group(1) if user else "", tls)
    return None


def deliveries(box, token: str) -> list[str]:
    """`box`'s smtp client lines about the message with Message-ID `token` (to=, relay=, status=)."""
    log = box.mail_log()
    qid = queue_id(log, token)
    if qid is None:
        return []
    return [ln for ln in log.splitlines() if re.search(rf"postfix/\w+\[\d+\]: {qid}: to=<", ln)]


def sent_to(box, token: str) -> str | None:
    return next((ln for ln in deliveries(box, token) if "status=sent" in ln), None)


def tls_before(box, delivery: str, peer: str) -> str | None:
    """The smtp client's `TLS connection established to <peer>` line (smtp_tls_loglevel = 1) of
    the session that made `delivery`: the last one of the same process before that line."""
    pid = re.search(r" postfix/\w+\[(\d+)\]: ", delivery).group(1)
    lines = box.mail_log().splitlines()
    before = lines[:lines.index(delivery)] if delivery in lines else []
    return next((ln for ln in reversed(before) if f"[{pid}]: " in ln and
                 re.search(rf"(Anonymous|Untrusted|Trusted|Verified) TLS connection established to {re.escape(peer)}: ",
                           ln)), None)


def relay_through_mx2(bed, servers: Servers, sender: str = USER1, login: str = RELAY) -> str:
    """Submit sender -> user3@example.net on mx1; check it went mx1 -> mx2:587 (TLS, AUTH as
    `login`, the relay account) and landed in user3's mailbox on mx2. Returns the token."""
    mx1, mx2 = servers.mx1, servers.mx2
    tok = c.token("relay")
    assert mx1.submit(sender, PW, message(sender, USER3, tok), to=[USER3]) == {}
    mx2.wait_for_message(USER3, PW, tok, timeout=90)
    line = c.poll(lambda: sent_to(mx1, tok), f"mx1's delivery of {tok}", bed.diagnostics)
    assert f"relay=mx2.example.org[{mx2.ip}]:587" in line, line
    # mx1's own word that the session went over TLS (docker-mailserver's smtp_tls_loglevel = 1).
    assert tls_before(mx1, line, f"mx2.example.org[{mx2.ip}]:587"), \
        f"mx1 logged no TLS session to mx2 before {line!r}"
    got = c.poll(lambda: reception(mx2, tok), f"mx2's reception of {tok}", bed.diagnostics)
    assert got.service == "postfix/submission/smtpd", got
    assert got.client == f"mx1.example.test[{mx1.ip}]", got
    assert got.sasl_user == login, got
    assert got.tls, f"mx2 received {tok} (and the relay login) without a TLS handshake first: {got}"
    # mx1 requires TLS of this next hop: the relay password never goes out in clear.
    policy = mx1.exec("postmap", "-q", MX2_HOP, "texthash:/etc/postfix/tls_policy", check=False)
    assert policy.stdout.strip() in ("encrypt", "secure", "verify"), (policy.stdout, policy.stderr)
    for text in (mx1.mail_log(), mx1.logs(), mx2.mail_log(), mx2.logs()):
        assert RELAY_PW not in text and RELAY1_PW not in text
    return tok


def wait_config_applied(box, param: str, wanted: str) -> None:
    c.poll(lambda: box.postconf(param) == wanted, f"{box.fqdn}: {param} = {wanted}", box.diagnostics, timeout=60,
           every=0.5)


def recreate_without_relay_files(box, env: dict) -> None:
    for name in ("postfix-relaymap.cf", "postfix-sasl-password.cf"):
        (box.volumes.config / name).unlink(missing_ok=True)
    box.recreate(env=env)


# --- fetching ---------------------------------------------------------------------------------

def test_fetchmail_and_getmail_pull_from_mx2_over_tls(servers):
    mx1, mx2 = servers.mx1, servers.mx2
    wait_fetched(servers, servers.seed)
    for remote, local in FETCHED:
        assert count(mx1, local, servers.seed) == 1, local
        assert count(mx2, remote, servers.seed) == 1, f"{remote}: `keep` leaves the mail on mx2"
    # Over the bed from mx1's address, with TLS: Dovecot's login lines on mx2.
    log = mx2.mail_log()
    for service, remote in (("imap-login", FM_IMAP[0]), ("pop3-login", FM_POP[0]), ("imap-login", GM_IMAP[0])):
        logins = [ln for ln in log.splitlines()
                  if re.search(rf"{service}: (Info: )?Login: user=<{re.escape(remote)}>.* rip={re.escape(mx1.ip)},", ln)]
        assert logins, f"no {service} login of {remote} from mx1 on mx2:\n" + "\n".join(
            ln for ln in log.splitlines() if "-login:" in ln)
        assert all(", TLS" in ln for ln in logins), logins


def test_nothing_is_fetched_twice_after_mx1_stops_and_starts(servers):
    mx1, mx2 = servers.mx1, servers.mx2
    wait_fetched(servers, servers.seed)
    second = c.token("after")
    # While mx1 is down, mx2's accounts get a second message; mx1's first fetch after the start
    # brings it, and would bring the seed again if the fetchers had forgotten it.
    stop_start(mx1, between=lambda: put_on_mx2(mx2, second))
    wait_fetched(servers, second)
    for remote, local in FETCHED:
        assert (count(mx1, local, servers.seed), count(mx1, local, second)) == (1, 1), f"{local} from {remote}"


# --- relaying ---------------------------------------------------------------------------------

def test_default_relay_host_with_setup_relay_add_auth(bed, servers):
    mx1 = servers.mx1
    assert mx1.env.get("DEFAULT_RELAY_HOST") == MX2_HOP          # as the fixture started it
    mx1.setup("relay", "add-auth", "example.test", RELAY, RELAY_PW)
    wait_config_applied(mx1, "smtp_sasl_auth_enable", "yes")
    relay_through_mx2(bed, servers)


def test_legacy_relay_host_port_user_password(bed, servers):
    mx1 = servers.mx1
    recreate_without_relay_files(mx1, {**MX1_ENV, "RELAY_HOST": "mx2.example.org", "RELAY_PORT": "587",
                                       "RELAY_USER": RELAY, "RELAY_PASSWORD": RELAY_PW})
    relay_through_mx2(bed, servers)
    relay_through_mx2(bed, servers, sender=USER4)        # every domain of mx1, not only the first


def test_per_domain_relay_with_setup_relay_add_domain(bed, servers):
    mx1, mx2 = servers.mx1, servers.mx2
    recreate_without_relay_files(mx1, dict(MX1_ENV))
    mx1.setup("relay", "add-domain", "example.test", "mx2.example.org", "587")
    mx1.setup("relay", "add-auth", "example.test", RELAY, RELAY_PW)
    wait_config_applied(mx1, "smtp_sasl_auth_enable", "yes")
    relay_through_mx2(bed, servers)
    # example.com is not in the relay map: its mail goes straight to the MX (mx2:25), no AUTH.
    tok = c.token("direct")
    assert mx1.submit(USER4, PW, message(USER4, USER2, tok), to=[USER2]) == {}
    mx2.wait_for_message(USER2, PW, tok, timeout=90)
    got = c.poll(lambda: reception(mx2, tok), f"mx2's reception of {tok}", bed.diagnostics)
    assert (got.service, got.client, got.sasl_user) == ("postfix/smtpd", f"mx1.example.test[{mx1.ip}]", ""), got
    line = c.poll(lambda: sent_to(mx1, tok), f"mx1's delivery of {tok}", bed.diagnostics)
    assert f"relay=mx2.example.org[{mx2.ip}]:25" in line, line


def test_relayed_mail_waits_on_mx1_while_mx2_is_down(bed, servers):
    """After the per-domain case: mx1 relays example.test's mail through mx2:587."""
    mx1, mx2 = servers.mx1, servers.mx2
    tok = c.token("down")
    before = mx2.logs()
    d.docker("stop", mx2.name, timeout=180)
    try:
        assert mx1.submit(USER1, PW, message(USER1, USER3, tok), to=[USER3]) == {}
        deferred = c.poll(lambda: next((ln for ln in deliveries(mx1, tok) if "status=deferred" in ln), None),
                          f"mx1 deferring {tok}", bed.diagnostics, timeout=120)
        assert re.search(r"dsn=4\.\d+\.\d+", deferred), deferred
        assert f"mx2.example.org[{mx2.ip}]:587" in deferred, deferred
        queue = [json.loads(ln) for ln in mx1.exec("postqueue", "-j").stdout.splitlines() if ln.strip()]
        mine = [e for e in queue if e["queue_id"] == queue_id(mx1.mail_log(), tok)]
        assert mine and [r["address"] for r in mine[0]["recipients"]] == [USER3], queue
        assert mine[0]["queue_name"] == "deferred", mine
    finally:
        d.docker("start", mx2.name, timeout=180)
        mx2.wait_ready(since_logs=before)
    # mx2 is back: the next queue run (here asked for at once, as an operator would) delivers.
    mx1.exec("postqueue", "-f")
    mx2.wait_for_message(USER3, PW, tok, timeout=120)
    got = c.poll(lambda: reception(mx2, tok), f"mx2's reception of {tok}", bed.diagnostics)
    assert (got.service, got.sasl_user, got.tls) == ("postfix/submission/smtpd", RELAY, True), got
    c.poll(lambda: sent_to(mx1, tok), f"mx1's delivery of {tok}", bed.diagnostics)
    qid = queue_id(mx1.mail_log(), tok)
    left = [ln for ln in mx1.exec("postqueue", "-j").stdout.splitlines() if qid in ln]
    assert not left, left


def test_per_sender_credentials_from_a_host_side_edit(bed, servers):
    """postfix-sasl-password.cf edited in the config folder from the host, in place (same inode,
    as an editor or `echo >>` does), with a per-sender-address key: Postfix's sender-dependent
    authentication takes user1's own relay account for user1, and the @domain one for any other
    sender of example.test; applied by the change poller, without a restart.
    After the per-domain case: example.test is relayed through mx2:587."""
    mx1 = servers.mx1
    master = mx1.read_file("/var/spool/postfix/pid/master.pid").split()
    reloads = mx1.logs().count("reloaded postfix")
    sasl = mx1.volumes.config / "postfix-sasl-password.cf"
    with sasl.open("r+") as f:            # rewritten in place: same inode, new size and mtime
        f.seek(0)
        f.truncate()
        f.write(f"# user1 has its own relay account\n{USER1} {RELAY1}:{RELAY1_PW}\n@example.test {RELAY}:{RELAY_PW}\n")

    def applied():
        got = mx1.exec("postmap", "-q", USER1, "texthash:/etc/postfix/sasl_passwd", check=False).stdout.strip()
        return got == f"{RELAY1}:{RELAY1_PW}" and mx1.logs().count("reloaded postfix") > reloads

    c.poll(applied, "mx1's sasl_passwd with user1's key, then Postfix reloaded", mx1.diagnostics, timeout=60,
           every=0.5)
    assert mx1.read_file("/var/spool/postfix/pid/master.pid").split() == master, "Postfix was restarted"
    relay_through_mx2(bed, servers, sender=USER1, login=RELAY1)
    relay_through_mx2(bed, servers, sender=USER5, login=RELAY)


# A relay that offers AUTH but no STARTTLS, in a one-off container of the bed: it answers EHLO,
# refuses AUTH, MAIL and STARTTLS, and prints (JSON) every line each client sent, once a client
# that said EHLO has gone or the time is up. Connections without EHLO (the test's probe) are kept too.
PLAIN_RELAY_SCRIPT = r"""
import json, socket, sys, time
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", 587))
srv.listen(8)
deadline = time.monotonic() + float(sys.argv[1])
sessions = []
while time.monotonic() < deadline:
    srv.settimeout(max(0.1, deadline - time.monotonic()))
    try:
        conn, peer = srv.accept()
    except socket.timeout:
        break
    conn.settimeout(30)
    lines = []
    try:
        conn.sendall(b"220 plain.example.org ESMTP\r\n")
        f = conn.makefile("rb")
        while True:
            raw = f.readline()
            if not raw:
                break
            lines.append(raw.decode("latin-1"))
            cmd = raw.strip().upper()
            if cmd.startswith((b"EHLO", b"HELO")):
                conn.sendall(b"250-plain.example.org\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n")
            elif cmd.startswith(b"QUIT"):
                conn.sendall(b"221 2.0.0 bye\r\n")
                break
            elif cmd.startswith(b"AUTH"):
                conn.sendall(b"535 5.7.8 recorded, refused\r\n")
            else:
                conn.sendall(b"451 4.3.0 this relay takes nothing\r\n")
    except OSError:
        pass
    conn.close()
    sessions.append({"peer": peer[0], "lines": lines})
    if any(ln.upper().startswith(("EHLO", "HELO")) for ln in lines):
        break
print(json.dumps(sessions))
"""


def test_no_relay_password_without_tls(bed, servers):
    """example.com's mail relayed through a host that offers AUTH but no STARTTLS: mx1 defers
    it (4.x.x, TLS required), keeps it queued, and never sends AUTH (nor the password) in clear.
    Last in the module: the message stays in mx1's queue."""
    import base64
    import socket
    import threading
    import time

    mx1 = servers.mx1
    ip = bed.next_client_ip()
    bed.dns.host(PLAIN_RELAY, ip)
    out: dict = {}
    server = threading.Thread(target=lambda: out.update(run=bed.client(PLAIN_RELAY_SCRIPT, "150", ip=ip, timeout=240)),
                              daemon=True)
    server.start()

    def listening() -> bool:
        try:
            socket.create_connection((ip, 587), timeout=2).close()
            return True
        except OSError:
            time.sleep(0.5)
            return False

    c.poll(listening, f"the plain relay listening on {ip}:587", bed.diagnostics, timeout=60)
    mx1.setup("relay", "add-domain", "example.com", PLAIN_RELAY, "587")
    mx1.setup("relay", "add-auth", "example.com", "plainuser", PLAIN_PW)
    c.poll(lambda: mx1.exec("postmap", "-q", "@example.com", "texthash:/etc/postfix/relayhost_map",
                            check=False).stdout.strip() == f"[{PLAIN_RELAY}]:587",
           "mx1's relay map with example.com", mx1.diagnostics, timeout=60, every=0.5)
    c.poll(lambda: mx1.exec("postmap", "-q", f"[{PLAIN_RELAY}]:587", "texthash:/etc/postfix/tls_policy",
                            check=False).stdout.strip() == "encrypt",
           "mx1's TLS policy for the plain relay", mx1.diagnostics, timeout=60, every=0.5)
    tok = c.token("plain")
    assert mx1.submit(USER4, PW, message(USER4, USER2, tok), to=[USER2]) == {}
    deferred = c.poll(lambda: next((ln for ln in deliveries(mx1, tok) if "status=deferred" in ln), None),
                      f"mx1 deferring {tok}", bed.diagnostics, timeout=120)
    assert re.search(r"dsn=4\.\d+\.\d+", deferred), deferred
    assert f"relay={PLAIN_RELAY}[{ip}]:587" in deferred or f"host {PLAIN_RELAY}[{ip}]" in deferred, deferred
    assert "TLS is required, but was not offered" in deferred, deferred
    queue = [json.loads(ln) for ln in mx1.exec("postqueue", "-j").stdout.splitlines() if ln.strip()]
    mine = [e for e in queue if e["queue_id"] == queue_id(mx1.mail_log(), tok)]
    assert mine and mine[0]["queue_name"] == "deferred", queue
    # What crossed the wire, as the relay saw it: mx1's EHLO, then nothing but QUIT.
    server.join(timeout=200)
    assert "run" in out, "the plain relay did not end"
    sessions = [s for s in json.loads(out["run"].stdout) if s["peer"] == mx1.ip]
    assert sessions, out["run"].stdout
    sent = [ln.strip() for s in sessions for ln in s["lines"]]
    assert any(ln.upper().startswith("EHLO") for ln in sent), sent
    assert not [ln for ln in sent if ln.upper().startswith(("AUTH", "MAIL", "STARTTLS"))], sent
    secrets = {PLAIN_PW, base64.b64encode(PLAIN_PW.encode()).decode(),
               base64.b64encode(f"\0plainuser\0{PLAIN_PW}".encode()).decode()}
    assert not [ln for ln in sent if any(x in ln for x in secrets)], sent
    for text in (mx1.mail_log(), mx1.logs()):
        assert PLAIN_PW not in text
