"""getmail (ops/getmail): its descriptor, the merged rc files, the round runner's dump.

Pure: nothing here runs getmail (tests/e2e/test_fetching.py does)."""

from __future__ import annotations

import configparser
import json
import logging
import subprocess

from ops import configdir, daemons, settings as S
from ops.getmail import config, run
from ops.getmail.daemon import DAEMON, FOREGROUND, OPTIONS, RCS, UNIT_FILE

FQDN = "mail.example.test"
ACCOUNT = ("[retriever]\ntype = SimpleIMAPSSLRetriever\nserver = imap.example.org\nusername = a\n"
           "password = s3cret\n\n[destination]\ntype = MDA_external\npath = /usr/lib/dovecot/deliver\n"
           "arguments = (\"-d\", \"a@example.test\")\n")


def load(**env) -> S.Settings:
    return S.load(environ={"MAILWRIGHT_INIT": "container", **{k: str(v) for k, v in env.items()}}, fqdn=FQDN)


def render(tmp_path, cfs: dict[str, str | bytes] | None = None, **env):
    folder = tmp_path / "config"
    (folder / "getmail").mkdir(parents=True, exist_ok=True)
    for name, text in (cfs or {}).items():
        (folder / "getmail" / name).write_bytes(text.encode() if isinstance(text, str) else text)
    return {f.path: f for f in DAEMON.files(load(**env), configdir.read(folder), None)}


def parsed(text: str) -> configparser.RawConfigParser:
    p = configparser.RawConfigParser()
    p.optionxform = str
    p.read_string(text)
    return p


def test_descriptor():
    assert daemons.by_name("getmail") is DAEMON
    assert DAEMON.packages == ("getmail6",)
    assert DAEMON.state == ("/var/lib/getmail",)
    assert not DAEMON.enabled(load()) and DAEMON.enabled(load(ENABLE_GETMAIL=1))


def test_each_account_is_the_general_defaults_plus_its_file(tmp_path):
    files = render(tmp_path, {"one.cf": ACCOUNT}, ENABLE_GETMAIL=1, GETMAIL_POLL=3)
    rcs = files[RCS]
    assert (rcs.mode, rcs.owner) == (0o600, "root")
    rc = parsed(json.loads(rcs.content)["one"])
    # docker-mailserver's getmailrc_general
    assert dict(rc.items("options")) == {"verbose": "0", "read_all": "false", "delete": "false",
                                          "max_messages_per_session": "500", "received": "false",
                                          "delivered_to": "false", "message_log_syslog": "true"}
    assert rc.get("retriever", "password") == "s3cret"
    assert rc.get("destination", "arguments") == '("-d", "a@example.test")'
    assert files[OPTIONS].content.strip().endswith("GETMAIL_POLL=3")


def test_own_general_file_and_own_options_win_key_by_key(tmp_path):
    account = ACCOUNT + "\n[options]\ndelete = true\n"
    rcs = json.loads(render(tmp_path, {"getmailrc_general.cf": "[options]\nverbose = 2\nread_all = true\n",
                                       "b.cf": account}, ENABLE_GETMAIL=1)[RCS].content)
    assert list(rcs) == ["b"]                                # getmailrc_general.cf is no account
    rc = parsed(rcs["b"])
    assert dict(rc.items("options")) == {"verbose": "2", "read_all": "true", "delete": "true"}


def test_unusable_files_are_skipped_naming_them_never_a_value(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        rcs = json.loads(render(tmp_path, {
            "ok.cf": ACCOUNT,
            "nodest.cf": "[retriever]\ntype = SimplePOP3Retriever\npassword = hunter2\n",
            "junk.cf": "password = hunter2 without a section\n",
            "bin.cf": b"[retriever]\npassword = \xff\n",
            "bad name.cf": ACCOUNT,
            "notes.txt": "not an rc file",
        }, ENABLE_GETMAIL=1)[RCS].content)
    assert list(rcs) == ["ok"]
    for name in ("nodest.cf: no [destination] section", "junk.cf: not getmail's INI syntax", "bin.cf: is not UTF-8",
                 "bad name.cf: the name before .cf"):
        assert name in caplog.text, caplog.text
    assert "hunter2" not in caplog.text


def test_off_means_gone(tmp_path):
    files = render(tmp_path, {"one.cf": ACCOUNT})
    assert {p: f.content for p, f in files.items()} == {RCS: None, OPTIONS: None, UNIT_FILE: None}


def test_systemd_unit(tmp_path):
    unit = render(tmp_path, {"one.cf": ACCOUNT}, ENABLE_GETMAIL=1, MAILWRIGHT_INIT="systemd")[UNIT_FILE].content
    assert "$$((GETMAIL_POLL * 60))" in unit


def test_the_loop_runs_a_round_then_sleeps_getmail_poll_minutes(tmp_path):
    """The foreground's shell, with stand-ins: a round at once, then `sleep GETMAIL_POLL*60`."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "log"
    (bin_ / "sleep").write_text(f'#!/bin/sh\necho "sleep $*" >> {log}\nkill -TERM $PPID\n')
    (bin_ / "python3").write_text(f'#!/bin/sh\necho "round $*" >> {log}\n')
    for name in ("sleep", "python3"):
        (bin_ / name).chmod(0o755)
    (tmp_path / "opts").write_text("GETMAIL_POLL=7\n")
    script = (FOREGROUND[2].replace(OPTIONS, str(tmp_path / "opts")).replace("/run/getmail.pid", str(tmp_path / "pid"))
              .replace("/var/lib/getmail", str(tmp_path / "state")).replace("cd /opt/mailwright", "cd /")
              .replace("/usr/bin/python3", "python3"))
    done = subprocess.run(["/bin/sh", "-c", script], env={"PATH": f"{bin_}:/usr/bin:/bin"}, timeout=30)
    assert done.returncode == 0
    assert log.read_text().splitlines() == ["round -m ops.getmail.run", "sleep 420"]


def test_round_without_accounts_does_nothing(tmp_path, capsys):
    assert run.main([], rcs={}) == 0
