"""Property-based tests (hypothesis) of the config folder's reader, writer and `setup` CLI.

(a) Whatever bytes a config-folder file holds, `ops.configdir.read` and the whole
    rendering (`ops.plan.files`) do not crash; problems name the file and line,
    and every other file is still read.
(b) The DB helpers of `mailwright.configwrite` round-trip through the reader.
(c) Writer and reader agree: whatever the CLI accepts, the reader reads back
    exactly (and without a problem); whatever it rejects leaves every file
    byte-identical. This holds whatever the exact validation rule is.

The CLI runs in-process (`mailwright.cli.main.main`) for speed; examples are
few and the database is off, so the whole file stays fast and writes nothing
outside its temporary folders.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import tempfile
import warnings
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from mailwright import configwrite as cw
from ops import configdir, plan, settings as S

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)     # crypt: still in Debian 12's python3.11
    import crypt

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
CLI = settings(max_examples=50, deadline=None, database=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

H1 = "{SHA512-CRYPT}$6$salt1$hash1"

# Characters that have broken line-based formats before: line and field separators of every kind.
NASTY = "\x00\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x7f\x85\u2028\u2029 |:,;@.#=[]\"'\\/"
hostile_char = st.one_of(st.sampled_from(NASTY), st.characters(min_codepoint=0x21, max_codepoint=0x7e),
                         st.sampled_from("éÜ€ß"))
hostile = st.text(alphabet=hostile_char, max_size=12)
atom = st.text(alphabet=st.sampled_from("abcxyzXYZ019._+-!#$%&'*/=?^`{|}~"), min_size=1, max_size=8)
domain = st.one_of(st.sampled_from(["example.test", "Example.TEST", "a-b.example.test", "x.y.example.test"]), hostile)
address = st.one_of(st.builds(lambda local, d: f"{local}@{d}", st.one_of(atom, hostile), domain), hostile)
password = st.text(alphabet=st.one_of(hostile_char, st.sampled_from("abcABC123 ")), min_size=1, max_size=16)


# --- (a) random bytes never crash the reader or the rendering --------------------------------------

# The field of ConfigDir each file feeds.
FIELDS = {
    "postfix-accounts.cf": "accounts", "postfix-virtual.cf": "aliases", "postfix-regexp.cf": "regexp",
    "postfix-aliases.cf": "local_aliases", "dovecot-quotas.cf": "quotas", "dovecot-masters.cf": "masters",
    "postfix-main.cf": "postfix_main", "postfix-master.cf": "postfix_master", "dovecot.cf": "dovecot_cf",
    "before.dovecot.sieve": "global_sieve", "after.dovecot.sieve": "global_sieve",
    "postfix-send-access.cf": "send_access", "postfix-receive-access.cf": "receive_access",
    "postfix-relaymap.cf": "relaymap", "postfix-sasl-password.cf": "relay_auth",
    "user@example.test.dovecot.sieve": "user_sieve",
    "ldap-users.cf": "ldap_maps", "ldap-groups.cf": "ldap_maps", "ldap-aliases.cf": "ldap_maps",
    "ldap-domains.cf": "ldap_maps",
}
assert set(configdir.WATCHED) <= set(FIELDS)

GOOD = {
    "postfix-accounts.cf": f"user@example.test|{H1}\nother@example.test|{H1}|userdb_mail=maildir:~/x\n",
    "postfix-virtual.cf": "alias@example.test user@example.test,other@example.test\n@catch.test user@example.test\n",
    "postfix-regexp.cf": "/^test[0-9]+@example\\.test$/ user@example.test\n",
    "postfix-aliases.cf": "root: user@example.test\n",
    "dovecot-quotas.cf": "user@example.test:10M\n",
    "dovecot-masters.cf": f"admin|{H1}\n",
    "postfix-main.cf": "smtpd_banner = hello\n  world\nmessage_size_limit = 1000000\n",
    "postfix-master.cf": "submission/inet/smtpd_sasl_security_options=noanonymous\n",
    "dovecot.cf": "mail_max_userip_connections = 50\n",
    "before.dovecot.sieve": 'require "fileinto";\n',
    "after.dovecot.sieve": "keep;\n",
    "postfix-send-access.cf": "user@example.test REJECT\n",
    "postfix-receive-access.cf": "other@example.test REJECT\n",
    "postfix-relaymap.cf": "@relayed.test [smtp.relay.test]:2525\n",
    "postfix-sasl-password.cf": "@relayed.test user:pass\n",
    "user@example.test.dovecot.sieve": "discard;\n",
    "ldap-users.cf": "server_host = ldap://ldap.example.test\n",
    "ldap-groups.cf": "query_filter = (mailGroupMember=%s)\n",
    "ldap-aliases.cf": "query_filter = (mailAlias=%s)\n",
    "ldap-domains.cf": "query_filter = (mail=*@%s)\n",
}

# Random bytes, biased towards the delimiters and line ends of the formats.
junk = st.one_of(
    st.binary(max_size=300),
    st.lists(st.one_of(st.sampled_from([b"\n", b"\r\n", b"\r", b"|", b":", b" ", b"\t", b"=", b",", b"#", b"@",
                                        b"\xff", b"\x00", b"\x0c", "\u2028".encode(), b"{SHA512-CRYPT}",
                                        b"user@example.test", b"@example.test", b"[h]:25", b"/a/", b"x/inet/y"]),
                       st.binary(max_size=6)), max_size=40).map(b"".join),
)


@contextmanager
def folder():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def fill(root: Path, files: dict[str, bytes | str]) -> None:
    for name, data in files.items():
        (root / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def check_problems(cfg: configdir.ConfigDir, files: dict[str, bytes]) -> None:
    for p in cfg.problems:
        assert p.file in files, p
        assert 0 <= p.line <= len(configdir.split_lines(files[p.file].decode(errors="replace"))), p


@FAST
@given(name=st.sampled_from(sorted(FIELDS)), data=junk)
def test_junk_in_one_file_is_reported_and_every_other_file_still_read(name, data):
    logging.getLogger("mailwright.config").disabled = True
    try:
        with folder() as root:
            fill(root, {n: t for n, t in GOOD.items() if n != name})
            baseline = configdir.read(root)
            assert baseline.problems == []
            fill(root, {name: data})
            cfg = configdir.read(root)
    finally:
        logging.getLogger("mailwright.config").disabled = False
    check_problems(cfg, {name: data})
    field = FIELDS[name]
    for other in set(FIELDS.values()) - {field}:
        assert getattr(cfg, other) == getattr(baseline, other), other
    if field == "global_sieve":             # before/after share a field: the other one is intact
        which = "after" if name.startswith("before") else "before"
        assert cfg.global_sieve.get(which) == baseline.global_sieve.get(which)


@FAST
@given(files=st.dictionaries(st.sampled_from(sorted(FIELDS)), junk, min_size=1))
def test_junk_everywhere_never_crashes_the_whole_rendering(files):
    logging.getLogger("mailwright.config").disabled = True
    try:
        with folder() as root:
            fill(root, files)
            s = S.load(host_data={"MAILWRIGHT_INIT": "systemd", "MAILWRIGHT_CONFIG_DIR": str(root)},
                       environ={}, fqdn="mail.example.test")
            cfg = configdir.read(root)
            out = plan.files(s)
    finally:
        logging.getLogger("mailwright.config").disabled = False
    check_problems(cfg, files)
    assert any(f.path == "/etc/postfix/main.cf" for f in out)


# --- (b) the DB helpers round-trip ------------------------------------------------------------------

# Keys as the CLI writes them (lower case, no delimiter, not starting a comment).
key = st.builds(lambda local, d: f"{local}@{d}", atom.map(str.lower).filter(configdir.valid_local_part),
                st.sampled_from(["example.test", "x.example.test"]))
other_line = st.text(alphabet=st.one_of(hostile_char, st.sampled_from("ab@.|: ")), max_size=30) \
    .filter(lambda s: "\n" not in s and not s.endswith("\r"))          # a final CR would be a CRLF
delimiter = st.sampled_from(["|", ":", " "])


@FAST
@given(lines=st.lists(other_line, max_size=8), k=key, d=delimiter, value=st.sampled_from(["v1", "{X}y", "a@b.c"]))
def test_replace_and_remove_entry_touch_only_the_key(lines, k, d, value):
    entry = f"{k}{d}{value}"
    untouched = [line for line in lines if not (cw._is_data(line) and cw._key_pattern(k, d).match(line))]
    replaced = cw.replace_entry(lines, k, d, entry)
    assert [line for line in replaced if line != entry] == untouched
    assert replaced.count(entry) == 1 and cw.find(replaced, k, d) == replaced.index(entry)
    assert cw.replace_entry(replaced, k, d, entry) == replaced                     # idempotent
    removed = cw.remove_entry(replaced, k, d)
    assert removed == untouched and cw.find(removed, k, d) is None
    # Through a file, the writer's split and join give the lines back.
    with folder() as root:
        f = root / "postfix-virtual.cf"
        cw.rewrite(f, lambda _: replaced)
        assert cw.read_lines(f) == replaced


alias_map = st.dictionaries(key, st.lists(key, min_size=1, max_size=3, unique=True), max_size=5)


@FAST
@given(aliases=alias_map, k=key, value=key, crlf=st.booleans())
def test_append_and_remove_value_agree_with_the_reader(aliases, k, value, crlf):
    original = [f"{a} {','.join(ts)}" for a, ts in aliases.items()]
    assume(value not in aliases.get(k, []) and value != k)
    with folder() as root:
        f = root / "postfix-virtual.cf"
        f.write_bytes("".join(line + ("\r\n" if crlf else "\n") for line in ["# aliases", *original]).encode())
        cw.rewrite(f, lambda lines: cw.append_value(lines, k, value))
        cfg = configdir.read(root)
        assert cfg.problems == []
        assert dict(cfg.aliases) == {**aliases, k: [*aliases.get(k, []), value]}
        cw.rewrite(f, lambda lines: cw.remove_value(lines, k, value))
        assert f.read_text() == "".join(line + "\n" for line in ["# aliases", *original])
        cw.rewrite(f, lambda lines: cw.remove_value(lines, None, value))         # from every list
        expected = {a: [t for t in ts if t != value] for a, ts in aliases.items()}
        assert dict(configdir.read(root).aliases) == {a: ts for a, ts in expected.items() if ts}


# --- (c) what the CLI accepts is read back exactly; what it rejects changes nothing ------------------

class Cli:
    """`setup` in-process against one config folder, reset for each example."""

    def __init__(self, root: Path, monkeypatch):
        self.root, self.config, self.mail = root, root / "config", root / "mail"
        for k in [k for k in os.environ if k.startswith("MAILWRIGHT_") or k == "LOG_LEVEL"]:
            monkeypatch.delenv(k)
        monkeypatch.setenv("MAILWRIGHT_CONFIG_DIR", str(self.config))
        monkeypatch.setenv("MAILWRIGHT_MAIL_ROOT", str(self.mail))
        monkeypatch.setenv("MAILWRIGHT_LOG_DIR", str(root / "log"))
        monkeypatch.setenv("MAILWRIGHT_DMS_SETTINGS", str(root / "absent-dms-settings"))

    def reset(self, files: dict[str, str]) -> None:
        for d in (self.config, self.mail):
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
        fill(self.config, files)

    def __call__(self, *argv: str) -> int:
        from mailwright.cli.main import main
        with redirect_stdout(StringIO()), redirect_stderr(StringIO()):
            return main(list(argv))

    def snapshot(self) -> dict[str, bytes]:
        return {str(p.relative_to(self.root)): p.read_bytes() if p.is_file() else b"<dir>"
                for d in (self.config, self.mail) for p in sorted(d.rglob("*")) if p.name != cw.LOCK_NAME}

    def read(self) -> configdir.ConfigDir:
        logging.getLogger("mailwright.config").disabled = True
        try:
            return configdir.read(self.config)
        finally:
            logging.getLogger("mailwright.config").disabled = False



SEEDED = {"postfix-accounts.cf": f"user@example.test|{H1}\n", "postfix-virtual.cf": "# aliases\n"}


@pytest.fixture
def cli(tmp_path, monkeypatch):
    return Cli(tmp_path, monkeypatch)


def agree(cli: Cli, argv: list[str], read_back) -> None:
    """Run `setup argv`: accepted => `read_back(cfg)` holds and no problem; rejected => nothing changed."""
    cli.reset(SEEDED)
    before = cli.snapshot()
    code = cli(*argv)
    if code == 0:
        cfg = cli.read()
        assert [str(p) for p in cfg.problems] == [], f"accepted {argv!r} but the reader reports problems"
        read_back(cfg)
    else:
        assert cli.snapshot() == before, f"rejected {argv!r} but files changed"


def normalised(address: str) -> str:
    return address.strip().lower()


@CLI
@given(addr=address, pw=password)
@example(addr="evil|x@example.test", pw="pw")          # '|' splits the line: the reader sees a bad address
@example(addr="#x@example.test", pw="pw")              # the line is a comment: the account does not exist
def test_email_add_agrees_with_the_reader(cli, addr, pw):
    def read_back(cfg):
        account = cfg.account(normalised(addr))
        assert account is not None, f"{addr!r} accepted but not read back"
        scheme, hashed = account.password_hash.split("}", 1)
        assert scheme == "{SHA512-CRYPT" and crypt.crypt(pw, hashed) == hashed
        assert len(cfg.accounts) == 2
    agree(cli, ["email", "add", addr, pw], read_back)


@CLI
@given(alias=st.one_of(address, atom, domain.map(lambda d: "@" + d)), target=st.one_of(address, atom))
@example(alias="#x@example.test", target="user@example.test")         # a comment line: no alias
def test_alias_add_agrees_with_the_reader(cli, alias, target):
    def read_back(cfg):
        got = dict(cfg.aliases)
        assert normalised(alias) in got, f"{alias!r} accepted but not read back: {cfg.aliases!r}"
        import re
        assert got[normalised(alias)] == [normalised(t) for t in re.split(r"[,\s]+", target) if t]
    agree(cli, ["alias", "add", alias, target], read_back)


@CLI
@example(addr="user@example.test", quota="10M\n")         # QUOTA's '$' lets a final line break through
@given(addr=st.one_of(st.just("user@example.test"), st.just("USER@example.test"), address),
       quota=st.one_of(st.sampled_from(["0", "10M", "1G", "5k", "7B", "2T"]), hostile))
def test_quota_set_agrees_with_the_reader(cli, addr, quota):
    def read_back(cfg):
        assert cfg.quotas == {normalised(addr): quota}
    agree(cli, ["quota", "set", addr, quota], read_back)


@CLI
@given(name=st.one_of(atom, hostile), pw=password)
@example(name="admin\n", pw="pw")                          # MASTER_NAME's '$': the line is cut in two
def test_dovecot_master_add_agrees_with_the_reader(cli, name, pw):
    def read_back(cfg):
        assert [user for user, _ in cfg.masters] == [name]
        hashed = cfg.masters[0][1].split("}", 1)[1]
        assert crypt.crypt(pw, hashed) == hashed
    agree(cli, ["dovecot-master", "add", name, pw], read_back)


@CLI
@given(d=domain, user=st.one_of(atom, hostile), pw=password)
@example(d="example.test", user="u", pw="pw\x0c")            # the reader strips the final form feed
def test_relay_add_auth_agrees_with_the_reader(cli, d, user, pw):
    def read_back(cfg):
        assert cfg.relay_auth == [("@" + d.strip().lower().lstrip("@"), f"{user}:{pw}")]
    agree(cli, ["relay", "add-auth", d, user, pw], read_back)


@CLI
@example(d="example.test", host="smtp.relay.test\n", port="25")   # HOSTNAME's '$': the line is cut in two
@given(d=domain, host=st.one_of(st.sampled_from(["smtp.relay.test", "SMTP.Relay.test", "[smtp.relay.test]",
                                                 "192.0.2.1", "2001:db8::1", "[2001:db8::1]"]), hostile),
       port=st.one_of(st.sampled_from(["25", "587", "02525", "65535"]), hostile))
def test_relay_add_domain_agrees_with_the_reader(cli, d, host, port):
    def read_back(cfg):
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        try:
            ip = ipaddress.ip_address(bare)
            bare = f"ipv6:{ip}" if ip.version == 6 else str(ip)
        except ValueError:
            bare = bare.lower()
        assert cfg.relaymap == [("@" + d.strip().lower().lstrip("@"), f"[{bare}]:{int(port) if port else 25}")]
    agree(cli, ["relay", "add-domain", d, host, port], read_back)
