"""policyd-spf (ops/spf): a daemon without a process of its own, its config file, its Postfix hooks.

Pure: tests/e2e/test_srs.py checks the rendered Postfix in the image (postconf), the DNS test bed
the SPF verdicts.
"""

from __future__ import annotations

import re

import pytest

from mailwright import services
from ops import configdir, daemons, plan, settings as S
from ops.daemon import Daemon, Reload
from ops.spf import config
from ops.spf.daemon import CONFIG, DAEMON

FQDN = "mail.example.test"


def load(tmp_path, **env):
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    s = S.load(host_data={"MAILWRIGHT_INIT": env.pop("INIT", "container"), "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ={k: str(v) for k, v in env.items()}, fqdn=FQDN)
    return s, {f.path: f for f in plan.files(s, configdir.read(folder))}


def test_found_by_its_folder_and_on_by_default(tmp_path):
    assert daemons.by_name("spf") is DAEMON
    assert DAEMON.packages == ("postfix-policyd-spf-python", "python3-dnspython")
    s, _ = load(tmp_path)
    assert s.ENABLE_POLICYD_SPF is True                 # docker-mailserver's default
    assert DAEMON in daemons.enabled(s)


def test_no_process_means_no_supervisor_line_no_unit_no_reload(tmp_path, monkeypatch):
    s, files = load(tmp_path, INIT="systemd", ENABLE_POLICYD_SPF=1)
    assert not DAEMON.has_process
    assert not any(line.startswith("spf\t") for line in files[daemons.DAEMONS_FILE].content.splitlines())
    assert "" not in daemons.units(s)
    after = re.search(r"^After=(.*)$", files["/etc/systemd/system/mailwright-watch.service"].content, re.M).group(1)
    assert after.split() == [u for u in after.split() if u.endswith(".service")]
    calls = []
    monkeypatch.setattr(services.subprocess, "run", lambda argv, **kw: calls.append(argv))
    services.reload("systemd", "spf")
    services.reload("container", "spf")
    assert calls == []                                  # not `systemctl reload-or-restart ""`


def test_a_process_less_daemon_declares_nothing_to_supervise():
    base = dict(name="x", packages=(), enabled=lambda s: True, foreground=(), unit="", pidfile="")
    Daemon(**base)
    for extra in (dict(unit="x.service"), dict(pidfile="/run/x.pid"), dict(sockets=("/run/x",)),
                  dict(ports=lambda s: (1,)), dict(reload=Reload("signal"))):
        with pytest.raises(ValueError, match="no foreground command"):
            Daemon(**{**base, **extra})
    with pytest.raises(ValueError, match="needs its unit and pidfile"):
        Daemon(**{**base, "foreground": ("/bin/x",)})


def test_config_file_defers_temperror_and_rejects_fail(tmp_path):
    _, files = load(tmp_path, ENABLE_POLICYD_SPF=1)
    f = files[CONFIG]
    assert f.daemon == "spf" and f.reloads == ()        # read by each spawned policyd-spf
    conf = dict(re.findall(r"^(\w+) = (.*)$", f.content, re.M))
    assert conf["TestOnly"] == "1"                      # act on results (0: log only)
    assert conf["HELO_reject"] == conf["Mail_From_reject"] == "Fail"
    assert conf["TempError_Defer"] == "True"            # DNS timeout/SERVFAIL: 4xx, never accepted or bounced
    assert conf["PermError_reject"] == "False"
    assert conf["Header_Type"] == "SPF"                 # Received-SPF
    lines = [line for line in f.content.splitlines() if line.strip() and not line.startswith("#")]
    assert all(re.fullmatch(r"\w+ = \S+", line) for line in lines), lines


def restrictions(main: str, name: str) -> list[str]:
    value = re.search(rf"^{name} =(.*(?:\n[ \t]+.*)*)", main, re.M).group(1)
    return [w.strip() for w in value.replace("\n", " ").split(",") if w.strip()]


def test_postfix_policy_on_port_25_only_after_reject_unauth_destination(tmp_path):
    _, files = load(tmp_path, ENABLE_POLICYD_SPF=1, ENABLE_POSTGREY=1)
    main, master = files["/etc/postfix/main.cf"].content, files["/etc/postfix/master.cf"].content
    rcpt = restrictions(main, "smtpd_recipient_restrictions")
    spf = rcpt.index(config.POLICY)
    assert rcpt.index("reject_unauth_destination") < spf
    assert rcpt.index("permit_sasl_authenticated") < spf          # logged-in users are not SPF-checked
    assert spf < rcpt.index("check_policy_service inet:127.0.0.1:10023")      # before Postgrey
    assert config.POLICY not in main.split("mua_recipient_restrictions", 1)[1].splitlines()[0]
    assert re.search(r"^policyd-spf\s+unix\s+-\s+n\s+n\s+-\s+0\s+spawn\s+user=policyd-spf "
                     r"argv=/usr/bin/policyd-spf$", master, re.M)
    assert "\npolicyd-spf_time_limit = 3600\n" in main


def test_off_means_gone(tmp_path):
    s, files = load(tmp_path, ENABLE_POLICYD_SPF=0)
    assert DAEMON not in daemons.enabled(s)
    assert files[CONFIG].content is None
    main, master = files["/etc/postfix/main.cf"].content, files["/etc/postfix/master.cf"].content
    assert "policyd-spf" not in main and "policyd-spf" not in master
