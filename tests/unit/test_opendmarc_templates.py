"""OpenDMARC (ops/opendmarc): its descriptor, its files, its settings, its Postfix hook.

Pure: nothing here starts OpenDMARC (tests/e2e/test_mail_auth.py does, on the two-server bed).
"""

from __future__ import annotations

import subprocess

from ops import configdir, daemons, settings as S
from ops.daemon import PostfixHooks
from ops.opendmarc import config
from ops.opendmarc.daemon import DAEMON, FOREGROUND

FQDN = "mail.example.test"


def load(**env) -> S.Settings:
    return S.load(environ={"MAILWRIGHT_INIT": "container", **{k: str(v) for k, v in env.items()}}, fqdn=FQDN)


def render(mynetworks=(), **env) -> dict[str, config.ConfigFile]:
    return {f.path: f for f in config.files(load(**env), None, None, list(mynetworks))}


def conf_lines(text: str) -> dict[str, str]:
    return {line.split(None, 1)[0]: line.split(None, 1)[1] for line in text.splitlines()
            if line.strip() and not line.startswith("#")}


def test_opendmarc_is_found_and_starts_after_opendkim_before_postfix():
    assert daemons.by_name("opendmarc") is DAEMON
    names = [d.name for d in daemons.all_daemons()]
    assert names.index("opendkim") < names.index("opendmarc") < names.index("postfix")


def test_descriptor_fields():
    # dbconfig-no-thanks: apt would otherwise satisfy `dbconfig-mysql | dbconfig-no-thanks` with a MySQL client.
    assert DAEMON.packages == ("opendmarc", "dbconfig-no-thanks")
    assert DAEMON.unit == "opendmarc.service"
    assert DAEMON.pidfile == "/run/opendmarc/opendmarc.pid"
    assert (DAEMON.reload.kind, DAEMON.reload.signal) == ("signal", "USR1")
    assert DAEMON.secrets == () and DAEMON.reads == ()


def test_enabled_by_default_like_docker_mailserver_and_ports_follow_it():
    on, off = load(), load(ENABLE_OPENDMARC=0)
    assert DAEMON.enabled(on) and not DAEMON.enabled(off)
    assert DAEMON.ports(on) == () and DAEMON.sockets == ("/run/opendmarc/opendmarc.sock",)
    assert DAEMON.ports(load(MAILWRIGHT_INIT="systemd")) == (8893,) and DAEMON.ports(off) == ()


def test_postfix_hook_comes_after_opendkim_only_when_enabled(tmp_path):
    cfg = configdir.read(tmp_path)
    sock = "unix:/run/opendmarc/opendmarc.sock"
    assert DAEMON.postfix(load(), cfg) == PostfixHooks(
        smtpd_milters=((20, sock),), non_smtpd_milters=((20, sock),),
        aliases=(("inet:localhost:8893", sock), ("inet:127.0.0.1:8893", sock)))   # docker-mailserver's address
    assert DAEMON.postfix(load(MAILWRIGHT_INIT="systemd"), cfg) == PostfixHooks(
        smtpd_milters=((20, "inet:127.0.0.1:8893"),), non_smtpd_milters=((20, "inet:127.0.0.1:8893"),))
    assert DAEMON.postfix(load(ENABLE_OPENDMARC=0), cfg) == PostfixHooks()


def test_conf_rejects_failures_checks_spf_itself_and_names_the_fqdn():
    lines = conf_lines(render()["/etc/opendmarc.conf"].content)
    assert lines["AuthservID"] == lines["TrustedAuthservIDs"] == FQDN
    assert (lines["Socket"], lines["UMask"]) == ("local:/run/opendmarc/opendmarc.sock", "0000")
    vps = conf_lines(render(MAILWRIGHT_INIT="systemd")["/etc/opendmarc.conf"].content)
    assert (vps["Socket"], vps["UMask"]) == ("inet:8893@127.0.0.1", "0002")
    assert lines["PidFile"] == "/run/opendmarc/opendmarc.pid"
    assert lines["RejectFailures"] == "true"
    # Its own SPF check, never a header's (a sender can write a Received-SPF header).
    assert lines["SPFSelfValidate"] == "true" and lines["SPFIgnoreResults"] == "true"
    assert lines["IgnoreHosts"] == "/etc/opendmarc/ignore.hosts"
    assert lines["IgnoreAuthenticatedClients"] == "true"
    assert lines["FailureReports"] == "false" and "HistoryFile" not in lines


def test_ignore_hosts_are_loopback_and_the_permit_docker_networks():
    files = render(mynetworks=["127.0.0.0/8", "[::ffff:127.0.0.0]/104", "[::1]/128", "192.168.0.0/16"])
    hosts = [h for h in files["/etc/opendmarc/ignore.hosts"].content.splitlines() if not h.startswith("#")]
    assert hosts == ["127.0.0.1", "::1", "localhost", "127.0.0.0/8", "::ffff:127.0.0.0/104", "::1/128",
                     "192.168.0.0/16"]


def test_off_means_gone():
    assert {p: f.content for p, f in render(ENABLE_OPENDMARC=0).items()} == {
        "/etc/opendmarc.conf": None, "/etc/opendmarc/ignore.hosts": None}


def test_foreground_makes_the_run_folder_and_execs_opendmarc(tmp_path):
    rundir, fake, argv_out, pid_out = tmp_path / "run", tmp_path / "opendmarc", tmp_path / "argv", tmp_path / "pid"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_out}\nprintf '%s\\n' \"$@\" > {argv_out}\n")
    fake.chmod(0o755)
    me = subprocess.run(["id", "-un"], capture_output=True, text=True).stdout.strip()
    script = (FOREGROUND[2].replace("/run/opendmarc", str(rundir)).replace("/usr/sbin/opendmarc", str(fake))
              .replace("-o opendmarc -g opendmarc", f"-o {me} -g $(id -gn)"))
    subprocess.run(["/bin/sh", "-c", script], check=True)
    assert argv_out.read_text().splitlines() == ["-f", "-c", "/etc/opendmarc.conf"]
    assert (rundir / "opendmarc.pid").read_text().strip() == pid_out.read_text().strip()


def test_opendmarc_settings_are_implemented(caplog):
    load(ENABLE_OPENDMARC=1)
    assert "not implemented" not in caplog.text
