"""Fail2ban (ops/fail2ban): its descriptor, its files, the addresses it never bans.

Pure: nothing here starts fail2ban (tests/e2e/test_fail2ban.py does).
"""

from __future__ import annotations

import configparser
import ipaddress
import logging
import os
import subprocess

import pytest
from hypothesis import given, strategies as st

from ops import configdir, daemons, settings as S
from ops.fail2ban import config
from ops.fail2ban.daemon import DAEMON

FQDN = "mail.example.test"
OWN = ["172.30.0.2", "fd00::2"]


def load(**env) -> S.Settings:
    return S.load(environ={"MAILWRIGHT_INIT": "container", **{k: str(v) for k, v in env.items()}}, fqdn=FQDN)


def render(tmp_path, config_files: dict[str, str] | None = None, addresses=OWN, **env):
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    for name, text in (config_files or {}).items():
        (folder / name).write_text(text)
    return {f.path: f for f in config.files(load(**env), configdir.read(folder), None, addresses=addresses)}


def ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


# --- the descriptor -----------------------------------------------------------------------------------

def test_fail2ban_is_found_by_its_folder_and_starts_after_postfix():
    assert daemons.by_name("fail2ban") is DAEMON
    names = [d.name for d in daemons.all_daemons()]
    assert names.index("fail2ban") > names.index("postfix")


def test_descriptor_fields():
    assert DAEMON.packages == ("fail2ban", "nftables")
    assert DAEMON.unit == "fail2ban.service"
    assert DAEMON.pidfile == "/run/fail2ban/fail2ban.pid"
    assert DAEMON.sockets == ("/run/fail2ban/fail2ban.sock",)
    assert (DAEMON.reload.kind, DAEMON.reload.command) == ("command", ("/usr/bin/fail2ban-client", "reload"))
    assert DAEMON.state == ("/var/lib/fail2ban",)           # lib-fail2ban on the state volume
    assert DAEMON.reads == ("fail2ban-jail.cf", "fail2ban-fail2ban.cf")
    assert DAEMON.foreground[-1].endswith("exec /usr/bin/fail2ban-server -xf start")


def test_enabled_follows_enable_fail2ban():
    off, on = load(), load(ENABLE_FAIL2BAN=1)
    assert DAEMON in daemons.enabled(on) and DAEMON not in daemons.enabled(off)
    assert "/var/lib/fail2ban" in daemons.state_folders(on)
    assert "/var/lib/fail2ban" not in daemons.state_folders(off)


# --- the files ------------------------------------------------------------------------------------------

def test_jails_are_docker_mailservers_reading_the_mail_log(tmp_path):
    jail = ini(render(tmp_path, ENABLE_FAIL2BAN=1)["/etc/fail2ban/jail.local"].content)
    d = jail["DEFAULT"]
    assert (d["bantime"], d["findtime"], d["maxretry"]) == ("1w", "1w", "6")
    assert d["banaction"] == "nftables-allports" and d["ignoreself"] == "true"
    for name in ("dovecot", "postfix", "custom"):
        assert jail[name]["enabled"] == "true"
        assert jail[name]["logpath"] == "/var/log/mail/mail.log"
    assert jail["postfix"]["mode"] == "extra"               # SASL failures on 465/587 too
    assert jail["custom"]["bantime"] == "180d"
    assert jail["sshd"]["enabled"] == "false"               # Debian's default jail has no log here


def test_loopback_and_own_addresses_are_never_banned(tmp_path):
    jail = ini(render(tmp_path, ENABLE_FAIL2BAN=1)["/etc/fail2ban/jail.local"].content)
    assert jail["DEFAULT"]["ignoreip"].split() == ["127.0.0.1/8", "::1", "172.30.0.2", "fd00::2"]


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
        +-- 127.0.0.0/31 1 0 0
           |-- 127.0.0.0
              /8 host LOCAL
           |-- 127.0.0.1
              /32 host LOCAL
        |-- 127.255.255.255
           /32 link BROADCAST
     +-- 172.30.0.0/16 2 0 2
        |-- 172.30.0.0
           /16 link UNICAST
        |-- 172.30.0.2
           /32 host LOCAL
        |-- 172.30.255.255
           /32 link BROADCAST
Local:
  +-- 0.0.0.0/0 3 0 5
        |-- 172.30.0.2
           /32 host LOCAL
"""
IF_INET6 = """00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 0b 40 00 00     eth0
fe80000000000000004210fffed81a0e 0b 40 20 80     eth0
"""


def test_own_addresses_come_from_proc(tmp_path):
    (tmp_path / "fib_trie").write_text(FIB_TRIE)
    (tmp_path / "if_inet6").write_text(IF_INET6)
    assert config.own_addresses(tmp_path) == ["172.30.0.2", "fd00::2", "fe80::42:10ff:fed8:1a0e"]
    assert config.own_addresses(tmp_path / "missing") == []


@pytest.mark.skipif(not os.path.exists("/proc/net/fib_trie"), reason="no /proc/net/fib_trie here")
def test_own_addresses_of_this_machine_are_addresses():
    for a in config.own_addresses():
        assert not ipaddress.ip_address(a).is_loopback


@pytest.mark.parametrize("value, blocktype", [("drop", "drop"), ("reject", "reject")])
def test_blocktype(tmp_path, value, blocktype):
    f = render(tmp_path, ENABLE_FAIL2BAN=1, FAIL2BAN_BLOCKTYPE=value)["/etc/fail2ban/action.d/nftables-common.local"]
    assert ini(f.content)["Init"]["blocktype"] == blocktype


def test_sets_hold_networks(tmp_path):
    """`setup fail2ban ban 192.0.2.0/24`: Debian's plain sets refuse a network; ours are interval sets."""
    f = render(tmp_path, ENABLE_FAIL2BAN=1)["/etc/fail2ban/action.d/nftables-common.local"]
    add_set = ini(f.content)["Definition"]["_nft_add_set"]
    assert add_set.splitlines()[0].endswith(r"\{ type <addr_type>\; flags interval\; \}")
    assert "add rule <table_family> <table> <chain> %(rule_stat)s" in add_set


def test_log_and_database(tmp_path):
    d = ini(render(tmp_path, ENABLE_FAIL2BAN=1)["/etc/fail2ban/fail2ban.d/mailwright.conf"].content)["Definition"]
    assert d["logtarget"] == "/var/log/mail/fail2ban.log"
    assert d["dbfile"] == "/var/lib/fail2ban/fail2ban.sqlite3"
    assert d["dbpurgeage"] == "180d"                          # bans are restored at start up to this age


def test_custom_filter_matches_nothing(tmp_path):
    d = ini(render(tmp_path, ENABLE_FAIL2BAN=1)["/etc/fail2ban/filter.d/custom.conf"].content)["Definition"]
    assert d["failregex"] == ""


def test_config_folder_files_are_copied_to_docker_mailservers_paths(tmp_path):
    files = render(tmp_path, {"fail2ban-jail.cf": "[DEFAULT]\nbantime = 2h\n",
                              "fail2ban-fail2ban.cf": "[Definition]\nloglevel = DEBUG"}, ENABLE_FAIL2BAN=1)
    assert ini(files["/etc/fail2ban/jail.d/user-jail.local"].content)["DEFAULT"]["bantime"] == "2h"
    assert files["/etc/fail2ban/fail2ban.local"].content.endswith("[Definition]\nloglevel = DEBUG\n")
    assert files["/etc/fail2ban/jail.d/user-jail.local"].content.startswith("# Copied by mailwright")


def test_absent_or_symlinked_config_folder_files_are_not_copied(tmp_path, caplog):
    folder = tmp_path / "config"
    folder.mkdir()
    (tmp_path / "elsewhere").write_text("[DEFAULT]\nbantime = 1s\n")
    (folder / "fail2ban-jail.cf").symlink_to(tmp_path / "elsewhere")
    files = render(tmp_path, ENABLE_FAIL2BAN=1)
    assert files["/etc/fail2ban/jail.d/user-jail.local"].content is None
    assert files["/etc/fail2ban/fail2ban.local"].content is None
    assert "fail2ban-jail.cf is a symbolic link" in caplog.text


def test_off_means_gone(tmp_path):
    both = {"fail2ban-jail.cf": "[DEFAULT]\n", "fail2ban-fail2ban.cf": "[Definition]\n"}
    on = render(tmp_path, both, ENABLE_FAIL2BAN=1)
    off = render(tmp_path, both)
    assert set(on) == set(off)                                # the same paths, so turning it off removes them
    assert all(f.content is None for f in off.values())
    assert all(f.content is not None for f in on.values())


def test_settings_are_implemented(caplog):
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        s = load(ENABLE_FAIL2BAN=1, FAIL2BAN_BLOCKTYPE="reject")
    assert (s.ENABLE_FAIL2BAN, s.FAIL2BAN_BLOCKTYPE) == (True, "reject")
    assert "not implemented" not in caplog.text


@given(st.lists(st.ip_addresses().map(str), max_size=5))
def test_ignoreip_is_one_line_of_addresses(tmp_path_factory, addresses):
    tmp = tmp_path_factory.mktemp("h")
    jail = render(tmp, addresses=addresses, ENABLE_FAIL2BAN=1)["/etc/fail2ban/jail.local"].content
    line = [l for l in jail.splitlines() if l.startswith("ignoreip = ")]
    assert len(line) == 1
    assert line[0].split()[2:] == ["127.0.0.1/8", "::1", *addresses]


# --- fail2ban.log rotation (mail.log's job, from the descriptor's `logs`) ---------------------------------

def test_fail2ban_log_is_rotated_with_mail_logs_rule_only_when_on():
    from ops import daemons
    assert "/var/log/mail/fail2ban.log" in daemons.logs(load(ENABLE_FAIL2BAN=1))
    assert "/var/log/mail/fail2ban.log" not in daemons.logs(load())
    assert not DAEMON.jobs                                 # no job of its own: mail.log's job rotates it


# --- the foreground command ------------------------------------------------------------------------------

@pytest.mark.parametrize("nft_status, warned", [(0, False), (1, True)])
def test_foreground_warns_without_net_admin_then_runs_the_server(tmp_path, nft_status, warned):
    """Run with sh against stand-ins: `nft` (fails without NET_ADMIN) and `fail2ban-server`."""
    from ops.fail2ban.daemon import FOREGROUND, NO_NFTABLES
    (tmp_path / "nft").write_text(f"#!/bin/sh\nexit {nft_status}\n")
    (tmp_path / "server").write_text('#!/bin/sh\necho "server $*"\n')
    for exe in ("nft", "server"):
        (tmp_path / exe).chmod(0o755)
    argv = [a.replace("/run/fail2ban", str(tmp_path / "run")).replace("/usr/bin/fail2ban-server", str(tmp_path / "server"))
            for a in FOREGROUND]
    done = subprocess.run(argv, capture_output=True, text=True, env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert done.returncode == 0 and done.stdout == "server -xf start\n"
    assert (NO_NFTABLES in done.stderr) is warned
    assert (tmp_path / "run").is_dir()
