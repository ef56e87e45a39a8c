"""`setup fail2ban …` (mailwright/cli/fail2ban.py) against a stand-in fail2ban-client.

The stand-in records every argv it gets and answers like fail2ban-client 1.0 does, from a
table of banned addresses per jail. The address argument is hostile: only one IPv4/IPv6
address or network, normalised, may ever reach fail2ban-client.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from mailwright.cli.common import CliError
from mailwright.cli.fail2ban import address

REPO = Path(__file__).resolve().parents[2]

FAKE = textwrap.dedent(r'''
    #!PYTHON
    import json, os, sys
    here = os.path.dirname(os.path.abspath(__file__))
    args = sys.argv[1:]
    with open(os.path.join(here, "calls"), "a") as f:
        f.write(json.dumps(args) + "\n")
    state = json.load(open(os.path.join(here, "bans.json")))
    if not state.get("running", True):
        print("Failed to access socket path: /run/fail2ban/fail2ban.sock. Is fail2ban running?", file=sys.stderr)
        sys.exit(255)
    bans = state["bans"]
    if args == ["ping"]:
        print("Server replied: pong")
    elif args == ["status"]:
        print("Status\n|- Number of jail:\t%d\n`- Jail list:\t%s" % (len(bans), ", ".join(bans)))
    elif args[0] == "status":
        ips = bans[args[1]]
        print("Status for the jail: %s\n|- Filter\n|  |- Currently failed:\t0\n`- Actions\n"
              "   |- Currently banned:\t%d\n   `- Banned IP list:\t%s" % (args[1], len(ips), " ".join(ips)))
    elif args[0] == "set" and args[2] == "banip":
        new = [ip for ip in args[3:] if ip not in bans[args[1]]]
        bans[args[1]] += new
        print(len(new))
    elif args[0] == "set" and args[2] == "unbanip":
        gone = [ip for ip in args[3:] if ip in bans[args[1]]]
        bans[args[1]] = [ip for ip in bans[args[1]] if ip not in gone]
        print(len(gone))
    json.dump(state, open(os.path.join(here, "bans.json"), "w"))
''').lstrip()


class F2B:
    def __init__(self, root: Path, enabled: bool = True):
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        exe = self.bin / "fail2ban-client"
        exe.write_text(FAKE.replace("PYTHON", sys.executable))
        exe.chmod(0o755)
        self.logs = root / "log"
        self.logs.mkdir()
        (root / "config").mkdir()
        self.settings = root / "dms-settings"
        self.settings.write_text(f"ENABLE_FAIL2BAN='{int(enabled)}'\n")
        self.state({"custom": [], "dovecot": [], "postfix": []})

    def state(self, bans: dict, running: bool = True) -> None:
        (self.bin / "bans.json").write_text(json.dumps({"bans": bans, "running": running}))

    def bans(self) -> dict:
        return json.loads((self.bin / "bans.json").read_text())["bans"]

    def calls(self) -> list[list[str]]:
        path = self.bin / "calls"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILWRIGHT_") and k != "LOG_LEVEL"}
        env.update(MAILWRIGHT_CONFIG_DIR=str(self.root / "config"), MAILWRIGHT_MAIL_ROOT=str(self.root),
                   MAILWRIGHT_DMS_SETTINGS=str(self.settings), MAILWRIGHT_LOG_DIR=str(self.logs),
                   PYTHONPATH=str(REPO), PATH=f"{self.bin}{os.pathsep}{env.get('PATH', '')}")
        return subprocess.run([sys.executable, "-m", "mailwright.cli", "fail2ban", *args], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=60)


@pytest.fixture
def f2b(tmp_path) -> F2B:
    return F2B(tmp_path)


# --- docker-mailserver's messages ------------------------------------------------------------------

def test_listing_without_bans(f2b):
    r = f2b()
    assert (r.returncode, r.stdout) == (0, "")
    assert "No IPs have been banned" in r.stderr


def test_listing_names_each_jail_with_bans(f2b):
    f2b.state({"custom": ["192.0.2.9"], "dovecot": [], "postfix": ["192.0.2.1", "2001:db8::1"]})
    r = f2b()
    assert (r.returncode, r.stdout) == (0, "Banned in custom: 192.0.2.9\nBanned in postfix: 192.0.2.1 2001:db8::1\n")


def test_ban_goes_to_the_custom_jail(f2b):
    r = f2b("ban", "192.0.2.7")
    assert (r.returncode, r.stdout) == (0, "Banned custom IP: 1\n")
    assert ["set", "custom", "banip", "192.0.2.7"] in f2b.calls()
    r = f2b("ban", "192.0.2.7")
    assert r.stdout == "" and "Banning '192.0.2.7' failed. Already banned?" in r.stderr


@pytest.mark.parametrize("arg, passed", [("198.51.100.7/24", "198.51.100.0/24"), ("2001:DB8::1", "2001:db8::1"),
                                         ("2001:db8::/32", "2001:db8::/32"), ("192.0.2.1/32", "192.0.2.1")])
def test_ban_passes_the_normalised_address(f2b, arg, passed):
    r = f2b("ban", arg)
    assert (r.returncode, r.stdout) == (0, "Banned custom IP: 1\n"), r
    assert f2b.bans()["custom"] == [passed]


def test_unban_from_every_jail_that_holds_it(f2b):
    f2b.state({"custom": ["192.0.2.1"], "dovecot": ["192.0.2.2"], "postfix": ["192.0.2.1"]})
    r = f2b("unban", "192.0.2.1")
    assert (r.returncode, r.stdout) == (0, "Unbanned IP from custom: 1\nUnbanned IP from postfix: 1\n")
    assert f2b.bans() == {"custom": [], "dovecot": ["192.0.2.2"], "postfix": []}
    r = f2b("unban", "192.0.2.1")
    assert r.stdout == "" and "'192.0.2.1' is not banned" in r.stderr


def test_missing_address(f2b):
    r = f2b("unban")
    assert r.returncode == 0 and "You need to specify an IP address: Run" in r.stderr
    r = f2b("ban")
    assert r.returncode == 0 and "You need to specify an IP address: Run" in r.stderr
    assert not any(c[0] == "set" for c in f2b.calls())


def test_status_is_each_jails_status(f2b):
    r = f2b("status")
    assert r.returncode == 0
    assert [line for line in r.stdout.splitlines() if line.startswith("Status for the jail")] == [
        "Status for the jail: custom", "Status for the jail: dovecot", "Status for the jail: postfix"]


def test_log_prints_fail2bans_log(f2b):
    (f2b.logs / "fail2ban.log").write_text("2026-11-29 fail2ban.actions [1]: NOTICE [postfix] Ban 192.0.2.1\n")
    r = f2b("log")
    assert (r.returncode, r.stdout) == (0, "2026-11-29 fail2ban.actions [1]: NOTICE [postfix] Ban 192.0.2.1\n")


def test_not_running(f2b):
    f2b.state({"custom": []}, running=False)
    r = f2b("ban", "192.0.2.1")
    assert r.returncode == 1 and "Fail2ban not running" in r.stderr


def test_help_and_unknown_subcommand(f2b):
    assert f2b("help").returncode == 0
    r = f2b("explode")
    assert r.returncode == 1 and "Unknown command 'explode'" in r.stderr


@pytest.mark.parametrize("args", [[], ["status"], ["log"], ["ban", "192.0.2.1"], ["unban", "192.0.2.1"]])
def test_off_says_so_and_fails(tmp_path, args):
    f2b = F2B(tmp_path, enabled=False)
    (f2b.logs / "fail2ban.log").write_text("old\n")
    r = f2b(*args)
    assert r.returncode == 1 and "Fail2ban is not enabled: set ENABLE_FAIL2BAN=1" in r.stderr, r
    assert r.stdout == "" and f2b.calls() == []


# --- hostile addresses ---------------------------------------------------------------------------------

HOSTILE = ["192.0.2.1; nft flush ruleset", "$(reboot)", "--all", "-h", "192.0.2.300", "192.0.2", "fe80::1%eth0",
           "example.test", "192.0.2.1\n", " 192.0.2.1", "192.0.2.1/33", "192.0.2.1/-1", "١٩٢.0.2.1", "",
           "192.0.2.1\x00", "::ffff:1.2.3.4.5", "192.0.2.1/24/8", "1" * 5000]


@pytest.mark.parametrize("arg", HOSTILE)
def test_hostile_address_is_refused_naming_it(f2b, arg):
    if "\x00" in arg:           # argv cannot carry a NUL: check the validator itself
        with pytest.raises(CliError):
            address(arg)
        return
    for command in ("ban", "unban"):
        r = f2b(command, arg)
        assert r.returncode == 1, r
        assert "is not an IP address or network" in r.stderr, r
    assert f2b.calls() == []


def test_one_address_at_a_time(f2b):
    r = f2b("ban", "192.0.2.1", "192.0.2.2")
    assert r.returncode == 1 and "Too many arguments" in r.stderr
    assert f2b.calls() == []


def test_error_shows_control_characters_escaped(f2b):
    r = f2b("ban", "1\x1b[31m")
    assert r.returncode == 1 and "\x1b" not in r.stderr and "\\x1b[31m" in r.stderr


@hsettings(max_examples=300)
@given(st.text(max_size=60))
def test_address_is_a_normalised_ip_or_refused(arg):
    try:
        out = address(arg)
    except CliError as e:
        assert "is not an IP address or network" in str(e)
        assert "\n" not in str(e) and "\x1b" not in str(e)
        return
    parsed = ipaddress.ip_network(out, strict=True)          # what reaches fail2ban-client
    assert out == (str(parsed.network_address) if parsed.num_addresses == 1 else str(parsed))
    assert not out.startswith("-") and out.isascii() and " " not in out


@given(st.one_of(st.ip_addresses(), st.ip_addresses().flatmap(
    lambda ip: st.integers(0, ip.max_prefixlen).map(lambda n: f"{ip}/{n}"))))
def test_every_address_and_network_is_accepted(value):
    out = address(str(value))
    assert ipaddress.ip_network(out, strict=False) == ipaddress.ip_network(str(value), strict=False)
