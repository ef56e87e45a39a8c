"""Fetchmail and getmail against the image (issue 10, "Fetching"): mail pulled over TLS from a
remote IMAP/POP3 account into local mailboxes, nothing fetched twice across a re-created
container (state volume), `setup debug fetchmail|getmail`, off means gone, FETCHMAIL_PARALLEL.

The "remote" server is the container's own Dovecot on loopback (mail.example.test, IMAPS 993
and POP3S 995), with the test certificate; fetchmail and getmail trust the test CA through the
operator's own files (`sslcertfile` in fetchmail.cf, `ca_certs` in getmail/<id>.cf), a copy of
the CA in the config folder. Every account keeps the mail on the remote side (`keep`,
`delete = false`), so only the fetchers' state tells them what they already fetched.

Every wait is a bounded poll for an observable result, never a timed assertion.
"""

from __future__ import annotations

import imaplib
import time

import pytest

from harness import SERVER_NAME
from harness import clients as c
from harness.configdir import MailConfig
from harness.mailserver import MailContainer, Volumes

pytestmark = pytest.mark.docker

PW = "Fetch-Secret-1!"
SENDER = "sender@example.test"
# remote account -> local account, per fetcher
FM_IMAP = ("remote-imap@example.test", "fm-imap@example.test")
FM_POP = ("remote-pop@example.test", "fm-pop@example.test")
GM_IMAP = ("remote-gm@example.test", "gm@example.test")
ACCOUNTS = [a for pair in (FM_IMAP, FM_POP, GM_IMAP) for a in pair] + [SENDER]
CA = "/tmp/docker-mailserver/test-ca.pem"

FETCHMAIL_CF = f"""\
# fetchmail.cf: docker-mailserver's format
poll mail.example.test with proto IMAP port 993
    user '{FM_IMAP[0]}' there with password '{PW}' is '{FM_IMAP[1]}' here
    options keep ssl sslcertck sslcertfile {CA}
poll mail.example.test with proto POP3 port 995 uidl
    user '{FM_POP[0]}' there with password '{PW}' is '{FM_POP[1]}' here
    options keep ssl sslcertck sslcertfile {CA}
"""

GETMAIL_CF = f"""\
[retriever]
type = SimpleIMAPSSLRetriever
server = mail.example.test
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

ENV = {"ENABLE_FETCHMAIL": "1", "FETCHMAIL_POLL": "5", "ENABLE_GETMAIL": "1", "GETMAIL_POLL": "1",
       "ENABLE_POP3": "1"}


@pytest.fixture(scope="module")
def server(image, tls, tmp_path_factory):
    root = tmp_path_factory.mktemp("fetching")
    cfg = MailConfig(root / "config")
    for address in ACCOUNTS:
        cfg.account(address, PW)
    cfg.file("fetchmail.cf", FETCHMAIL_CF)
    cfg.write()
    (cfg.path / "getmail").mkdir()
    (cfg.path / "getmail" / "remote.cf").write_text(GETMAIL_CF)
    (cfg.path / "test-ca.pem").write_bytes(tls.ca_pem())
    # fetchmail 6.4 checks the server name only inside a certificate's subject CommonName (its
    # SubjectAltNames are read there too): one without a CN fails `sslcertck` ("Server name not
    # specified in certificate!"). The test CA's default leaf has none; this one has.
    tls.write(cfg.path / "ssl", tls.ca.issue_cert(SERVER_NAME, common_name=SERVER_NAME))
    box = MailContainer(image, Volumes.under(root, cfg.path), env=dict(ENV))
    try:
        box.start()
        c.wait_for_ports([25, 993, 995])
        yield box
    finally:
        box.remove()


def count(user: str, token: str, tls) -> int:
    """How many messages in `user`'s INBOX carry `token` in their Subject."""
    with c.IMAPS(context=tls.client_context()) as imap:
        imap.login(user, PW)
        imap.select("INBOX", readonly=True)
        typ, data = imap.search(None, "SUBJECT", f'"{token}"')
        assert typ == "OK", typ
        return len(data[0].split()) if data and data[0] else 0


def poll(predicate, what: str, diagnostics, timeout: float = 150, every: float = 1.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (OSError, imaplib.IMAP4.error) as e:
            last = repr(e)
        if last is True:
            return
        time.sleep(every)
    raise AssertionError(f"{what}: not seen within {timeout}s (last: {last!r})\n{diagnostics()}")


def send_to_remotes(token: str) -> None:
    for remote, _ in (FM_IMAP, FM_POP, GM_IMAP):
        assert c.send(SENDER, remote, f"{token} for {remote}") == {}


def wait_fetched(server, tls, token: str, pairs=(FM_IMAP, FM_POP, GM_IMAP)) -> None:
    for remote, local in pairs:
        poll(lambda: count(local, f"{token} for {remote}", tls) >= 1,
             f"{token} fetched from {remote} into {local}", server.diagnostics)


PROCESSES = r"""
import os
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
        uid = next(l.split()[1] for l in open(f"/proc/{pid}/status") if l.startswith("Uid:"))
    except (OSError, StopIteration):
        continue
    print(uid, cmd)
"""


def processes(server) -> list[tuple[str, str]]:
    out = server.exec("python3", "-c", PROCESSES).stdout
    return [tuple(line.split(" ", 1)) for line in out.splitlines() if " " in line]


def fetchmails(server) -> list[tuple[str, str]]:
    return [(uid, cmd) for uid, cmd in processes(server) if cmd.startswith("/usr/bin/fetchmail ")]


# --- the tests, in order: they share one server (and then its volumes) ---------------------------

def test_fetchmail_over_imaps_and_pop3s_and_getmail_over_imaps_deliver(server, tls):
    token = c.token("fetch1")
    send_to_remotes(token)
    wait_fetched(server, tls, token)
    for remote, local in (FM_IMAP, FM_POP, GM_IMAP):
        assert count(local, token, tls) == 1, local
        assert count(remote, token, tls) == 1, f"{remote}: `keep` leaves the mail on the remote side"
    # fetchmail runs as its own user, with its private rc file
    uid = server.exec("id", "-u", "fetchmail").stdout.strip()
    running = fetchmails(server)
    assert running and all(u == uid for u, _ in running), running
    rc = server.exec("stat", "-c", "%U %a", "/etc/fetchmailrc").stdout.split()
    assert rc == ["fetchmail", "600"], rc
    # the UIDL cache (POP3) and getmail's oldmail file are on the state volume
    state = server.volumes.state
    assert (state / "lib-fetchmail" / ".fetchids").is_file(), sorted(p.name for p in state.iterdir())
    assert any(p.name.startswith("oldmail-") for p in (state / "lib-getmail").iterdir())


def test_nothing_is_fetched_twice_after_a_recreate_with_the_same_state(server, tls):
    first = c.token("fetch1")            # a fresh token, fetched once before the re-create
    send_to_remotes(first)
    wait_fetched(server, tls, first)
    server.recreate()
    c.wait_for_ports([25, 993, 995])
    second = c.token("fetch2")
    send_to_remotes(second)
    # The remote accounts hold `first` then `second`: a fetcher that forgot what it fetched
    # fetches `first` again in the same poll that brings `second`.
    wait_fetched(server, tls, second)
    for remote, local in (FM_IMAP, FM_POP, GM_IMAP):
        assert count(local, first, tls) == 1, f"{local}: {first} fetched again from {remote}"
        assert count(local, second, tls) == 1, local


def test_setup_debug_fetchmail_is_a_dry_run(server):
    done = server.exec("setup", "debug", "fetchmail", check=False)
    out = done.stdout + done.stderr
    assert "--check mode enabled, not fetching mail" in out, out
    assert "querying mail.example.test (protocol IMAP)" in out and "querying mail.example.test (protocol POP3)" in out, out
    # fetchmail's status: 0, messages are waiting (the remote accounts keep theirs)
    assert done.returncode == 0 and "fetchmail: normal termination, status 0" in out, out
    assert PW not in out


def test_setup_debug_getmail_prints_the_parsed_configuration(server):
    done = server.exec("setup", "debug", "getmail", check=False)
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.startswith("remote:"), out
    assert "SimpleIMAPSSLRetriever" in out and GM_IMAP[0] in out, out
    assert "message_log_syslog" in out, out                   # the general defaults, merged


def test_off_means_gone(server):
    server.recreate(env={**ENV, "ENABLE_FETCHMAIL": "0", "ENABLE_GETMAIL": "0"})
    files = server.exec("sh", "-c", "ls /etc/fetchmailrc /etc/mailwright/getmail.json "
                        "/etc/default/mailwright-fetchmail /etc/default/mailwright-getmail 2>/dev/null",
                        check=False).stdout
    assert files.strip() == "", files
    cmds = [cmd for _, cmd in processes(server)]
    assert not [x for x in cmds if "fetchmail" in x or "getmail" in x], cmds


def test_fetchmail_parallel_runs_one_fetchmail_per_poll_entry(server, tls):
    server.recreate(env={**ENV, "FETCHMAIL_PARALLEL": "1", "ENABLE_GETMAIL": "0"})
    c.wait_for_ports([25, 993, 995])
    poll(lambda: len(fetchmails(server)) == 2, "two fetchmail processes", server.diagnostics, timeout=60)
    token = c.token("fetch3")
    for remote, _ in (FM_IMAP, FM_POP):
        assert c.send(SENDER, remote, f"{token} for {remote}") == {}
    wait_fetched(server, tls, token, pairs=(FM_IMAP, FM_POP))
    # Each fetchmail started with the UIDs the single one had seen: nothing fetched twice.
    for _, local in (FM_IMAP, FM_POP):
        assert (count(local, "fetch1", tls), count(local, "fetch2", tls), count(local, token, tls)) == (2, 1, 1), local
