"""OpenDKIM (ops/opendkim): its descriptor, its files, the config folder's opendkim/ tables and keys,
its Postfix hook, and `setup config dkim` feeding it (rotation: the new selector signs).

Pure: nothing here starts OpenDKIM (tests/e2e/test_dkim.py does). Keys are made with openssl,
as `setup config dkim` makes them.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from ops import configdir, daemons, plan, settings as S, tls as tls_mod
from ops.daemon import PostfixHooks
from ops.opendkim import config
from ops.opendkim.daemon import DAEMON, FOREGROUND, PID_WAIT

FQDN = "mail.example.test"
REPO = Path(__file__).resolve().parents[2]
needs_openssl = pytest.mark.skipif(not shutil.which("openssl"), reason="openssl is not installed")


def load(**env) -> S.Settings:
    return S.load(environ={"MAILWRIGHT_INIT": "container", **{k: str(v) for k, v in env.items()}}, fqdn=FQDN)


def folder_with(tmp_path, files: dict[str, str | bytes] | None = None) -> Path:
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    for name, text in (files or {}).items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return folder


def render(tmp_path, files=None, mynetworks=(), installed=(), resolvers=(), **env) -> dict[str, config.ConfigFile]:
    folder = folder_with(tmp_path, files)
    out = config.files(load(**env), configdir.read(folder), None, list(mynetworks), list(installed), list(resolvers))
    return {f.path: f for f in out}


def body(f) -> list[str]:
    """A generated table's lines, without its comment header."""
    return [line for line in f.content.splitlines() if not line.startswith("#")]


PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----\n"
KEYTABLE = ("mail._domainkey.example.test example.test:mail:/etc/opendkim/keys/example.test/mail.private\n"
            "mail._domainkey.other.test other.test:mail:/etc/opendkim/keys/other.test/mail.private\n")
SIGNING = "*@example.test mail._domainkey.example.test\n*@other.test mail._domainkey.other.test\n"
GOOD = {"opendkim/KeyTable": KEYTABLE, "opendkim/SigningTable": SIGNING, "opendkim/TrustedHosts": "127.0.0.1\nlocalhost\n",
        "opendkim/keys/example.test/mail.private": PEM, "opendkim/keys/other.test/mail.private": PEM,
        "opendkim/keys/example.test/mail.txt": "mail._domainkey IN TXT ( \"v=DKIM1; p=...\" )\n"}


# --- the descriptor -----------------------------------------------------------------------------------

def test_opendkim_is_found_by_its_folder_and_starts_before_postfix():
    assert daemons.by_name("opendkim") is DAEMON
    names = [d.name for d in daemons.all_daemons()]
    assert names.index("opendkim") < names.index("opendmarc") < names.index("postfix")


def test_descriptor_fields():
    assert DAEMON.packages == ("opendkim",)
    assert DAEMON.unit == "opendkim.service"
    assert DAEMON.pidfile == "/run/opendkim/opendkim.pid"
    assert (DAEMON.reload.kind, DAEMON.reload.signal) == ("signal", "USR1")
    assert DAEMON.reads == ("opendkim/KeyTable", "opendkim/SigningTable", "opendkim/TrustedHosts")
    assert DAEMON.secrets == () and DAEMON.state == ()


def test_enabled_by_default_like_docker_mailserver_and_ports_follow_it():
    on, off = load(), load(ENABLE_OPENDKIM=0)
    assert DAEMON.enabled(on) and not DAEMON.enabled(off)
    # In the container it listens on a unix socket (the health check looks for it); on a VPS on 8891.
    assert DAEMON.ports(on) == () and DAEMON.sockets == ("/run/opendkim/opendkim.sock",)
    assert DAEMON.ports(load(MAILWRIGHT_INIT="systemd")) == (8891,) and DAEMON.ports(off) == ()


def test_the_change_poller_watches_the_tables(tmp_path):
    folder = folder_with(tmp_path)
    s = S.load(host_data={"MAILWRIGHT_INIT": "container", "MAILWRIGHT_CONFIG_DIR": str(folder)}, environ={}, fqdn=FQDN)
    watched = plan.watched_paths(s, configdir.read(folder), tls_mod.resolve(s, str(folder)))
    for name in ("KeyTable", "SigningTable", "TrustedHosts"):
        assert str(folder / "opendkim" / name) in watched
    s_off = S.load(host_data={"MAILWRIGHT_INIT": "container", "MAILWRIGHT_CONFIG_DIR": str(folder)},
                   environ={"ENABLE_OPENDKIM": "0"}, fqdn=FQDN)
    watched = plan.watched_paths(s_off, configdir.read(folder), tls_mod.resolve(s_off, str(folder)))
    assert str(folder / "opendkim" / "KeyTable") not in watched


def test_postfix_hook_is_both_milter_lists_only_when_enabled(tmp_path):
    """The container: a unix socket (Postfix is not chrooted there). Over TCP on loopback the milter
    protocol's small writes met Nagle and delayed ACKs (~40 ms a stage): mail-auth went 26 msgs/s.
    A VPS keeps 127.0.0.1:8891."""
    cfg = configdir.read(tmp_path)
    sock = "unix:/run/opendkim/opendkim.sock"
    assert DAEMON.postfix(load(), cfg) == PostfixHooks(
        smtpd_milters=((10, sock),), non_smtpd_milters=((10, sock),),
        aliases=(("inet:localhost:8891", sock), ("inet:127.0.0.1:8891", sock)))   # docker-mailserver's address
    assert DAEMON.postfix(load(MAILWRIGHT_INIT="systemd"), cfg) == PostfixHooks(
        smtpd_milters=((10, "inet:127.0.0.1:8891"),), non_smtpd_milters=((10, "inet:127.0.0.1:8891"),))
    assert DAEMON.postfix(load(ENABLE_OPENDKIM=0), cfg) == PostfixHooks()


def test_main_cf_gets_the_milters_and_keeps_postfixs_tempfail(tmp_path):
    """OpenDKIM then OpenDMARC; no milter_default_action line: Postfix's default (tempfail) defers
    mail while a milter is down, where docker-mailserver's `accept` would let it through unsigned."""
    folder = folder_with(tmp_path)
    s = S.load(host_data={"MAILWRIGHT_INIT": "systemd", "MAILWRIGHT_CONFIG_DIR": str(folder)}, environ={}, fqdn=FQDN)
    main = {f.path: f.content for f in plan.files(s, configdir.read(folder))}["/etc/postfix/main.cf"]
    assert "\nsmtpd_milters = inet:127.0.0.1:8891, inet:127.0.0.1:8893\n" in main
    assert "\nnon_smtpd_milters = inet:127.0.0.1:8891, inet:127.0.0.1:8893\n" in main
    assert "milter_default_action" not in main
    s = S.load(host_data={"MAILWRIGHT_INIT": "systemd", "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ={"ENABLE_OPENDMARC": "0"}, fqdn=FQDN)
    main = {f.path: f.content for f in plan.files(s, configdir.read(folder))}["/etc/postfix/main.cf"]
    assert "\nsmtpd_milters = inet:127.0.0.1:8891\n" in main


# --- /etc/opendkim.conf and the foreground command ---------------------------------------------------------

def test_conf_names_the_fqdn_the_socket_and_the_tables(tmp_path):
    conf = render(tmp_path)["/etc/opendkim.conf"]
    lines = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in conf.content.splitlines()
             if line.strip() and not line.startswith("#")}
    assert lines["AuthservID"] == FQDN
    # Container: a socket Postfix's processes can open (UMask 000, in a 0755 folder); a VPS: 8891, 007.
    assert (lines["Socket"], lines["UMask"]) == ("local:/run/opendkim/opendkim.sock", "000")
    vps = config.files(load(MAILWRIGHT_INIT="systemd"), configdir.read(folder_with(tmp_path)), None, [], [], [])
    vps_lines = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in vps[0].content.splitlines()
                 if line.strip() and not line.startswith("#")}
    assert (vps_lines["Socket"], vps_lines["UMask"]) == ("inet:8891@127.0.0.1", "007")
    assert lines["PidFile"] == "/run/opendkim/opendkim.pid"
    assert lines["Mode"] == "sv"
    assert lines["KeyTable"] == "file:/etc/opendkim/KeyTable"
    assert lines["SigningTable"] == "refile:/etc/opendkim/SigningTable"
    assert lines["InternalHosts"] == lines["ExternalIgnoreList"] == "file:/etc/opendkim/TrustedHosts"
    assert lines["UserID"] == "opendkim:opendkim"
    assert "TrustAnchorFile" not in lines
    assert conf.reloads is None                        # its own daemon: reloaded (SIGUSR1) when it changes


def test_opendkim_asks_the_systems_dns_servers(tmp_path):
    """libunbound ignores resolv.conf: without `Nameservers` OpenDKIM would skip the machine's DNS."""
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("# docker\nsearch example.test\nnameserver 10.231.25.53\nnameserver ::1\n"
                      "nameserver not-an-ip\nnameserver 10.231.25.53\noptions timeout:1\n")
    assert config.nameservers(str(resolv)) == ["10.231.25.53", "::1"]
    assert config.nameservers(str(tmp_path / "absent")) == []
    conf = render(tmp_path, resolvers=["10.231.25.53", "::1"])["/etc/opendkim.conf"].content
    assert "\nNameservers\t\t10.231.25.53,::1\n" in conf
    assert "Nameservers" not in render(tmp_path, resolvers=[])["/etc/opendkim.conf"].content


def test_no_resolver_configuration_file_for_libunbound(tmp_path):
    """OpenDKIM hands ResolverConfiguration to libunbound's (not thread-safe) parser again for every
    message, in the message's thread: two messages at once crashed it (tests/e2e/test_dkim.py::
    test_concurrent_connections_with_an_nxdomain_resolver_all_delivered_and_signed). The file an
    older version wrote is removed."""
    files = render(tmp_path, resolvers=["10.231.25.53"])
    assert all(not line.startswith("ResolverConfiguration") for line in files["/etc/opendkim.conf"].content.splitlines())
    assert files["/etc/opendkim/unbound.conf"].content is None


def test_a_failed_key_lookup_defers_through_the_final_policy_script(tmp_path):
    """Debian 12's OpenDKIM drops its On-DNSError action for a key lookup that failed (SERVFAIL,
    timeout): the message went on with no DKIM result and OpenDMARC refused it (550) where SPF did
    not align. The final policy script defers it instead (tests/e2e/test_mail_auth.py::
    test_a_dns_failure_of_an_uncached_dkim_key_never_bounces_unaligned_mail), the same file on a VPS."""
    for env in ({}, {"MAILWRIGHT_INIT": "systemd"}):
        folder = folder_with(tmp_path)
        files = {f.path: f for f in config.files(load(**env), configdir.read(folder), None, [], [], [])}
        conf = files["/etc/opendkim.conf"].content
        assert "\nFinalPolicyScript\t/etc/opendkim/final.lua\n" in conf
        script = files["/etc/opendkim/final.lua"]
        # Read by OpenDKIM as root at start and as `opendkim` on a reload; it reloads OpenDKIM.
        assert (script.mode, script.owner, script.reloads) == (0o644, "root", None)
        code = [line.split("--", 1)[0].strip() for line in script.content.splitlines()]
        code = "\n".join(line for line in code if line)
        # A failed lookup (DKIM_SIGERROR_KEYFAIL) defers with 451 4.7.5 and is written down; "no key"
        # (DKIM_SIGERROR_NOKEY: a key that does not exist, or libunbound's cached SERVFAIL) only for
        # a domain whose lookup failed in the last 30 s; nothing is ever refused.
        assert "result == DKIM_SIGERROR_KEYFAIL" in code and "result == DKIM_SIGERROR_NOKEY" in code
        assert 'local STATE = "/run/opendkim/keyfail"\nlocal WINDOW = 30' in code
        assert 'odkim.set_reply(ctx, "451", "4.7.5",' in code and "odkim.set_result(ctx, SMFIS_TEMPFAIL)" in code
        assert "SMFIS_REJECT" not in code and '"5' not in code and "SMFIS_DISCARD" not in code
        # The state holds only what its reader takes back: a domain of letters, digits, . - _
        # (a signature's d= is the sender's: no path, no newline ever reaches the file's lines).
        assert 'string.match(domain, "^[%w%.%-_]+$")' in code and '"^(%d+) ([%w%.%-_]+)$"' in code
        # Jinja leaves the Lua as written but for the state's path.
        source = (REPO / "files/etc/opendkim/final.lua.j2").read_text()
        assert script.content == source.replace("{{ state }}", "/run/opendkim/keyfail")
        assert "{#" not in source and "{%" not in source and source.count("{{") == 1


# A stand-in for PID 1 (the supervisor, whose `wait` reaps orphans): runs the foreground command,
# prints its pid, and reaps every process orphaned below it until the command ends.
REAPER = r"""
import ctypes, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)       # PR_SET_CHILD_SUBREAPER: orphans come here, as to PID 1
child = subprocess.Popen(["/bin/sh", "-c", sys.argv[1]])
print(child.pid, flush=True)
while True:
    pid, status = os.wait()
    if pid == child.pid:
        sys.exit(os.waitstatus_to_exitcode(status))
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def running(pid: int) -> bool:
    """Alive and not a zombie: a daemon that has exited (and whose parent, PID 1, has yet to reap it) is gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def start_foreground(tmp_path, pid_text: str = "$!", pid_wait: int | None = None):
    """FOREGROUND run under REAPER, its absolute paths pointed at stand-ins: a fake `opendkim` that
    does what the real one does without -f (forks a daemon that writes its pid to PidFile, and returns)."""
    rundir, fake, argv_out = tmp_path / "run", tmp_path / "opendkim", tmp_path / "argv"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {argv_out}\n"
                    f"echo \"${{GNUTLS_NO_IMPLICIT_INIT:-unset}} ${{MALLOC_ARENA_MAX:-unset}}\" > {tmp_path / 'env'}\n"
                    f"sleep 300 </dev/null >/dev/null 2>&1 &\necho {pid_text} > {rundir}/opendkim.pid\n")
    fake.chmod(0o755)
    me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    script = (FOREGROUND[2].replace("/run/opendkim", str(rundir)).replace("/usr/sbin/opendkim", str(fake))
              .replace("-o opendkim -g opendkim", f"-o {me} -g $(id -gn)"))
    if pid_wait is not None:
        script = script.replace(f"-lt {PID_WAIT} ]", f"-lt {pid_wait} ]")
    proc = subprocess.Popen([sys.executable, "-c", REAPER, script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    shell = int(proc.stdout.readline())
    return proc, shell, rundir


def daemon_pid(proc, rundir) -> int:
    for _ in range(600):
        text = (rundir / "opendkim.pid").read_text() if (rundir / "opendkim.pid").exists() else ""
        if text.endswith("\n") and alive(pid := int(text)):
            return pid
        assert proc.poll() is None, proc.stderr.read()
        subprocess.run(["sleep", "0.05"])
    raise AssertionError("the fake opendkim's daemon never wrote its pid")


def test_foreground_runs_opendkim_forking_and_stays_while_its_daemon_lives(tmp_path):
    """OpenDKIM forks (no -f): the serving process does not map the file pages its start touched
    (libraries' relocations and constructors), 11.1 -> 7.5 MB RSS. The supervisor's process is the
    shell, which stays while the daemon lives and passes the supervisor's TERM on, even one that
    comes while OpenDKIM starts."""
    proc, shell, rundir = start_foreground(tmp_path)
    daemon = daemon_pid(proc, rundir)
    assert (tmp_path / "argv").read_text().splitlines() == ["-x", "/etc/opendkim.conf"]
    assert (rundir.stat().st_mode & 0o777) == 0o755
    # GnuTLS (linked through libldap, unused: the tables are files) skips its load-time initialisation;
    # one malloc arena for all its threads.
    assert (tmp_path / "env").read_text().split() == ["1", "1"]
    assert proc.poll() is None and alive(shell)        # supervised: the shell waits for the daemon
    os.kill(shell, signal.SIGTERM)                      # the supervisor's stop
    proc.wait(timeout=60)
    assert not running(daemon)                          # passed on: no OpenDKIM left behind


def test_foreground_ends_when_opendkim_ends(tmp_path):
    """A crashed OpenDKIM ends the shell: the supervisor sees its daemon exit and restarts it."""
    proc, _shell, rundir = start_foreground(tmp_path)
    os.kill(daemon_pid(proc, rundir), signal.SIGKILL)
    proc.wait(timeout=60)


def children(pid: int) -> list[str]:
    """The commands of `pid`'s child processes (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                out.append(stat[stat.index("(") + 1:stat.rindex(")")])
    return out


def test_the_waiting_shell_has_no_process_of_its_own_while_opendkim_runs(tmp_path):
    """Idle memory: the shell waits for OpenDKIM's end on a pipe the daemon inherited (EOF when it
    is gone, whoever reaps it), not through a helper process such as `tail --pid` (0.15-0.2 MB PSS
    of the mail-auth profile's idle memory); the FIFO that made the pipe is removed at once."""
    proc, shell, rundir = start_foreground(tmp_path)
    daemon = daemon_pid(proc, rundir)
    for _ in range(40):                                 # the pid-wait loop's last `sleep 0.05` may still run
        if not children(shell):
            break
        subprocess.run(["sleep", "0.05"])
    assert children(shell) == []
    assert sorted(p.name for p in rundir.iterdir()) == ["opendkim.pid"]
    os.kill(daemon, signal.SIGKILL)
    proc.wait(timeout=60)                               # still ends when OpenDKIM ends


def test_foreground_gives_up_on_a_pid_file_without_a_pid(tmp_path):
    """The pid file's owner is OpenDKIM's user; the root shell signals only a pid of digits
    (never `-1`, every process) and gives up, exit 1 (restarted), when none comes."""
    proc, _shell, rundir = start_foreground(tmp_path, pid_text="-1", pid_wait=4)
    assert proc.wait(timeout=60) == 1
    assert "wrote no pid" in proc.stderr.read()


# --- the config folder's opendkim/ -------------------------------------------------------------------------

def test_tables_and_keys_from_the_config_folder(tmp_path):
    files = render(tmp_path, GOOD, mynetworks=["127.0.0.0/8", "[::1]/128", "172.16.0.0/12"])
    assert body(files["/etc/opendkim/KeyTable"]) == KEYTABLE.splitlines()
    assert body(files["/etc/opendkim/SigningTable"]) == SIGNING.splitlines()
    # Loopback first (locally made mail is signed), then the folder's, then PERMIT_DOCKER's networks.
    assert body(files["/etc/opendkim/TrustedHosts"]) == ["127.0.0.1", "::1", "localhost", "127.0.0.0/8",
                                                         "::1/128", "172.16.0.0/12"]
    for domain in ("example.test", "other.test"):
        key = files[f"/etc/opendkim/keys/{domain}/mail.private"]
        assert key.content == PEM
        assert (key.mode, key.owner, key.group) == (0o600, "opendkim", "opendkim")
    # The public .txt record stays in the config folder.
    assert not any(p.endswith(".txt") for p in files)
    # Tables and keys reload OpenDKIM when they change (SIGUSR1: no restart).
    assert all(f.reloads is None for f in files.values())


def test_without_keys_opendkim_still_verifies(tmp_path):
    files = render(tmp_path)
    assert body(files["/etc/opendkim/KeyTable"]) == []
    assert body(files["/etc/opendkim/SigningTable"]) == []
    assert body(files["/etc/opendkim/TrustedHosts"]) == ["127.0.0.1", "::1", "localhost"]
    assert not any("/keys/" in p for p in files)


def test_a_key_removed_from_the_config_folder_is_removed(tmp_path):
    stale = "/etc/opendkim/keys/gone.test/old.private"
    files = render(tmp_path, GOOD, installed=[stale, "/etc/opendkim/keys/example.test/mail.private"])
    assert files[stale].content is None
    assert files["/etc/opendkim/keys/example.test/mail.private"].content == PEM


def test_off_means_gone_private_keys_included(tmp_path):
    installed = ["/etc/opendkim/keys/example.test/mail.private"]
    files = render(tmp_path, GOOD, installed=installed, ENABLE_OPENDKIM=0)
    assert {p: f.content for p, f in files.items()} == {
        "/etc/opendkim.conf": None, "/etc/opendkim/KeyTable": None, "/etc/opendkim/SigningTable": None,
        "/etc/opendkim/TrustedHosts": None, "/etc/opendkim/final.lua": None, "/etc/opendkim/unbound.conf": None,
        installed[0]: None}


def test_installed_keys_lists_the_key_files(tmp_path):
    (tmp_path / "a.test").mkdir()
    (tmp_path / "a.test" / "mail.private").write_text(PEM)
    (tmp_path / "loose").write_text("x")
    (tmp_path / "b.test").symlink_to(tmp_path / "a.test")
    assert config.installed_keys(str(tmp_path)) == [str(tmp_path / "a.test" / "mail.private")]
    assert config.installed_keys(str(tmp_path / "missing")) == []


@pytest.mark.parametrize("source, line, why", [
    ("opendkim/KeyTable", "name-only", "expected 'name domain:selector:"),
    ("opendkim/KeyTable", "k bad_domain:mail:/etc/opendkim/keys/x/mail.private", "is not a domain"),
    ("opendkim/KeyTable", "k a.test:bad selector:/etc/opendkim/keys/x/mail.private", "expected 'name"),
    ("opendkim/KeyTable", "k a.test:-bad:/etc/opendkim/keys/a.test/mail.private", "not a valid DNS label"),
    ("opendkim/KeyTable", "k a.test:mail:/etc/shadow", "keys are read from /etc/opendkim/keys"),
    ("opendkim/KeyTable", "k a.test:mail:/etc/opendkim/keys/../../shadow.private", "keys are read from"),
    ("opendkim/KeyTable", "k a.test:mail:/etc/opendkim/keys/a.test/absent.private", "does not exist"),
    ("opendkim/KeyTable", "k a.test:mail:/etc/opendkim/keys/a.test/notpem.private", "not a PEM private key"),
    ("opendkim/KeyTable", "mail._domainkey.example.test a.test:mail:/etc/opendkim/keys/a.test/mail.private",
     "already defined above"),
    ("opendkim/SigningTable", "*@a.test unknown._domainkey.a.test", "names no key"),
    ("opendkim/SigningTable", "*@a.test", "expected 'pattern keyname'"),
    ("opendkim/SigningTable", "*@a\x01.test mail._domainkey.example.test", "not an address pattern"),
    ("opendkim/TrustedHosts", "999.1.2.3", "not an IP address"),
    ("opendkim/TrustedHosts", "host!name", "not an IP address or network, a host name"),
])
def test_malformed_lines_are_skipped_and_named(tmp_path, caplog, source, line, why):
    caplog.set_level(logging.ERROR, logger="mailwright.config")
    given = {**GOOD, "opendkim/keys/a.test/mail.private": PEM, "opendkim/keys/a.test/notpem.private": "not a key\n"}
    given[source] = given[source] + line + "\n"
    files = render(tmp_path, given)
    target = {"opendkim/KeyTable": "/etc/opendkim/KeyTable", "opendkim/SigningTable": "/etc/opendkim/SigningTable",
              "opendkim/TrustedHosts": "/etc/opendkim/TrustedHosts"}[source]
    n = len(GOOD[source].splitlines()) + 1
    assert f"{source}:{n}: " in caplog.text and why in caplog.text and "line skipped" in caplog.text
    # Everything else is kept as it was.
    assert body(files["/etc/opendkim/KeyTable"]) == KEYTABLE.splitlines()
    assert body(files["/etc/opendkim/SigningTable"]) == SIGNING.splitlines()
    assert body(files["/etc/opendkim/TrustedHosts"]) == ["127.0.0.1", "::1", "localhost"]
    assert target in files


def test_a_signing_line_whose_key_is_missing_is_left_out(tmp_path, caplog):
    """A KeyTable line without its key goes, and so does the SigningTable line naming it: OpenDKIM
    would otherwise fail every message from that domain."""
    given = {k: v for k, v in GOOD.items() if k != "opendkim/keys/other.test/mail.private"}
    files = render(tmp_path, given)
    assert body(files["/etc/opendkim/KeyTable"]) == KEYTABLE.splitlines()[:1]
    assert body(files["/etc/opendkim/SigningTable"]) == SIGNING.splitlines()[:1]
    assert "opendkim/SigningTable:2: 'mail._domainkey.other.test' names no key" in caplog.text


def test_symbolic_links_are_not_followed(tmp_path, caplog):
    outside = tmp_path / "outside"
    (outside / "k").mkdir(parents=True)
    (outside / "k" / "mail.private").write_text(PEM)
    folder = folder_with(tmp_path, {"opendkim/KeyTable": "k a.test:mail:/etc/opendkim/keys/a.test/mail.private\n"})
    (folder / "opendkim" / "keys").mkdir()
    (folder / "opendkim" / "keys" / "a.test").symlink_to(outside / "k")
    files = {f.path: f for f in config.files(load(), configdir.read(folder), None, [], [], [])}
    assert body(files["/etc/opendkim/KeyTable"]) == []
    assert "opendkim/keys/a.test is a symbolic link" in caplog.text


_word = st.text(st.sampled_from(list("ab.-_@/:!*0123456789 \t#%")), max_size=30)


@given(st.lists(_word, max_size=6))
@hsettings(max_examples=150, deadline=None)
def test_trusted_hosts_parser_keeps_only_what_it_would_keep_again(words):
    for word in words:
        kept, why = config.check_trusted(word)
        if kept is not None:
            assert kept and not any(ch.isspace() for ch in kept) and "#" not in kept[1:]
            assert config.check_trusted(kept) == (kept, "")
        else:
            assert why


def test_opendkim_settings_are_implemented(caplog):
    load(ENABLE_OPENDKIM=1)
    assert "not implemented" not in caplog.text


# --- `setup config dkim`: what it writes is what OpenDKIM gets; a new selector signs -------------------------

def setup_cli(config_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILWRIGHT_")}
    env.update(MAILWRIGHT_CONFIG_DIR=str(config_dir), MAILWRIGHT_MAIL_ROOT=str(config_dir.parent / "mail"),
               MAILWRIGHT_DMS_SETTINGS=str(config_dir.parent / "dms-settings"),
               MAILWRIGHT_LOG_DIR=str(config_dir.parent / "log"), PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "mailwright.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)


@needs_openssl
def test_setup_config_dkim_output_is_taken_whole_and_a_rotation_signs_with_the_new_selector(tmp_path, caplog):
    folder = folder_with(tmp_path)
    for d in ("mail", "log"):
        (tmp_path / d).mkdir()
    r = setup_cli(folder, "config", "dkim", "keysize", "1024", "domain", "example.test,other.test")
    assert r.returncode == 0, r.stderr
    files = {f.path: f for f in config.files(load(), configdir.read(folder), None, [], [], [])}
    assert "line skipped" not in caplog.text and "file skipped" not in caplog.text
    assert body(files["/etc/opendkim/SigningTable"]) == ["*@example.test mail._domainkey.example.test",
                                                         "*@other.test mail._domainkey.other.test"]
    assert files["/etc/opendkim/keys/example.test/mail.private"].content == \
        (folder / "opendkim/keys/example.test/mail.private").read_text()

    # Rotation: a new selector for one domain replaces its signing line (OpenDKIM signs with the
    # first line that matches: appended, the old key would go on signing).
    r = setup_cli(folder, "config", "dkim", "keysize", "1024", "selector", "2026b", "domain", "example.test")
    assert r.returncode == 0, r.stderr
    files = {f.path: f for f in config.files(load(), configdir.read(folder), None, [], [], [])}
    assert body(files["/etc/opendkim/SigningTable"]) == ["*@example.test 2026b._domainkey.example.test",
                                                         "*@other.test mail._domainkey.other.test"]
    assert "2026b._domainkey.example.test example.test:2026b:/etc/opendkim/keys/example.test/2026b.private" \
        in body(files["/etc/opendkim/KeyTable"])
    assert "/etc/opendkim/keys/example.test/2026b.private" in files

    # Running it again for an existing key changes nothing (no switch back to `mail`).
    before = (folder / "opendkim/SigningTable").read_bytes()
    assert setup_cli(folder, "config", "dkim", "keysize", "1024", "domain", "example.test").returncode == 0
    assert (folder / "opendkim/SigningTable").read_bytes() == before
