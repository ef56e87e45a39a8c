"""ops.configdir: docker-mailserver's config folder formats.

The rule under test: a malformed line is reported as `file:line: why` and
skipped, and every valid entry of the same file keeps working.
"""

from __future__ import annotations

import logging

import pytest

from ops import configdir

H1 = "{SHA512-CRYPT}$6$salt1$hash1"
H2 = "{SHA512-CRYPT}$6$salt2$hash2"


def write(tmp_path, name, text, crlf=False):
    data = text.replace("\n", "\r\n") if crlf else text
    (tmp_path / name).write_bytes(data.encode())
    return tmp_path


def problems(cfg):
    return [str(p) for p in cfg.problems]


# --- empty folder ----------------------------------------------------------------------------------

def test_empty_or_missing_folder_is_not_an_error(tmp_path):
    for root in (tmp_path, tmp_path / "absent"):
        cfg = configdir.read(root)
        assert (cfg.accounts, cfg.aliases, cfg.problems, cfg.domains) == ([], [], [], [])
        assert cfg.dovecot_cf == "" and cfg.user_patches is False


# --- postfix-accounts.cf -----------------------------------------------------------------------------

@pytest.mark.parametrize("crlf", [False, True])
def test_accounts_good_lines_comments_blank_and_crlf(tmp_path, crlf):
    write(tmp_path, "postfix-accounts.cf",
          f"# accounts\n\nuser1@example.test|{H1}\n   \n  # indented comment\nUser2@Example.Test|{H2}\n", crlf)
    cfg = configdir.read(tmp_path)
    assert [(a.address, a.password_hash) for a in cfg.accounts] == \
        [("user1@example.test", H1), ("user2@example.test", H2)]     # addresses lower-cased
    assert cfg.problems == []
    assert not any(a.password_hash.endswith("\r") for a in cfg.accounts)


def test_accounts_third_column_is_dovecot_extra_fields(tmp_path):
    write(tmp_path, "postfix-accounts.cf", f"a@example.test|{H1}|userdb_mail=mbox:~/mail:INBOX=~/inbox\n")
    [a] = configdir.read(tmp_path).accounts
    assert a.extra == "userdb_mail=mbox:~/mail:INBOX=~/inbox"
    assert (a.local, a.domain) == ("a", "example.test")


def test_accounts_malformed_lines_reported_valid_ones_kept(tmp_path, caplog):
    write(tmp_path, "postfix-accounts.cf", "\n".join([
        f"good@example.test|{H1}",          # 1
        "no-separator-at-all",              # 2
        f"not-an-address|{H1}",             # 3
        "plain@example.test|secret",        # 4: not a {SCHEME}hash
        f"dup@example.test|{H1}",           # 5
        f"DUP@example.test|{H2}",           # 6: same address, other case
        f"also-good@example.test|{H2}",     # 7
    ]) + "\n")
    with caplog.at_level(logging.ERROR, "mailwright.config"):
        cfg = configdir.read(tmp_path)
    assert [a.address for a in cfg.accounts] == ["good@example.test", "dup@example.test", "also-good@example.test"]
    assert cfg.account("dup@example.test").password_hash == H1       # the first definition wins
    lines = [(p.file, p.line) for p in cfg.problems]
    assert lines == [("postfix-accounts.cf", n) for n in (2, 3, 4, 6)]
    assert "defined twice" in problems(cfg)[3]
    # Logged for the operator, with file and line.
    assert "postfix-accounts.cf:2:" in caplog.text and "postfix-accounts.cf:6:" in caplog.text


def test_accounts_bad_password_field_is_not_echoed(tmp_path):
    # A plaintext password typed into the hash column must not end up in the mail log.
    write(tmp_path, "postfix-accounts.cf", "plain@example.test|hunter2\n")
    [p] = configdir.read(tmp_path).problems
    assert p.line == 1 and "plain@example.test" in str(p)
    assert "hunter2" not in str(p)


def test_accounts_bad_address_line_does_not_echo_the_password(tmp_path):
    write(tmp_path, "postfix-accounts.cf", "john doe@example.test|hunter2\n")
    [p] = configdir.read(tmp_path).problems
    assert p.line == 1 and "hunter2" not in str(p)


def test_account_lookup(tmp_path):
    write(tmp_path, "postfix-accounts.cf", f"a@example.test|{H1}\n")
    cfg = configdir.read(tmp_path)
    assert cfg.account("a@example.test").password_hash == H1
    assert cfg.account("b@example.test") is None


# --- the shared address rule (the `setup` CLI imports it) -------------------------------------------

GOOD_ADDRESSES = ["a@example.test", "a.b.c@example.test", "o'neil+tag@sub.example.test", "x" * 64 + "@example.test",
                  "{curly}~^`!#$&*=?_-@example.test", "a@" + "b" * 63 + ".test"]
BAD_ADDRESSES = ["..@example.test", "../..@example.test", ".@example.test", ".a@example.test", "a.@example.test",
                 "a..b@example.test", "a/b@example.test", "evil|x@example.test", "a%b@example.test",
                 "a b@example.test", "a:b@example.test", "a@example.test\n", "a\n@example.test", "a\x0c@example.test",
                 "x" * 65 + "@example.test", "a@" + "b" * 64 + ".test", "a@-b.test", "a@b.test.", "a@nodot",
                 "a@@example.test", "A@example.test", "a@example.test\u2028"]


@pytest.mark.parametrize("address", GOOD_ADDRESSES)
def test_address_rule_accepts_dot_atoms(address):
    assert configdir.valid_address(address) and configdir.ADDRESS.match(address)


@pytest.mark.parametrize("address", BAD_ADDRESSES, ids=[ascii(a) for a in BAD_ADDRESSES])
def test_address_rule_rejects_paths_separators_and_bad_dots(address):
    # `.match` too: every rule is anchored at the very end (a trailing newline does not pass).
    assert not configdir.valid_address(address) and configdir.ADDRESS.match(address) is None


@pytest.mark.parametrize("value", ["example.test\n", "..", "a..b.test", "-a.test", "a_b.test"])
def test_domain_rule_is_a_full_match(value):
    assert not configdir.valid_domain(value) and configdir.DOMAIN.match(value) is None


def test_reader_skips_accounts_the_cli_refuses(tmp_path):
    write(tmp_path, "postfix-accounts.cf", "".join(f"{a}|{H1}\n" for a in [
        "..@example.test", "../..@example.test", "a..b@example.test", "evil|x@example.test", "ok@example.test"]))
    cfg = configdir.read(tmp_path)
    assert [a.address for a in cfg.accounts] == ["ok@example.test"]
    assert [p.line for p in cfg.problems] == [1, 2, 3, 4]


def test_reader_validates_every_address_field(tmp_path):
    write(tmp_path, "postfix-virtual.cf",
          "ok@example.test a@example.test\n.. a@example.test\nx@example.test ../..@example.test\n"
          "y@example.test a..b\nbare o'neil+x\n")
    write(tmp_path, "dovecot-quotas.cf", "ok@example.test:1M\n..@example.test:1M\n")
    write(tmp_path, "postfix-send-access.cf", "a@example.test REJECT\nexample.test REJECT\n@example.org REJECT\n"
                                              "local@ REJECT\n../x@example.test REJECT\n@@example.test REJECT\n")
    write(tmp_path, "postfix-receive-access.cf", "a/b@example.test REJECT\n")
    write(tmp_path, "dovecot-masters.cf", f"admin|{H1}\nad min|{H1}\n")
    write(tmp_path, "postfix-sasl-password.cf", "@example.test u:p w\n[smtp.example.test]:587 u:p\n"
                                                "smtp.example.test u:p\n@../x u:p\nAl.ice@Example.test u:p\n"
                                                "../x@example.test u:p\n")
    cfg = configdir.read(tmp_path)
    assert cfg.aliases == [("ok@example.test", ["a@example.test"]), ("bare", ["o'neil+x"])]
    assert cfg.quotas == {"ok@example.test": "1M"}
    assert [k for k, _ in cfg.send_access] == ["a@example.test", "example.test", "@example.org", "local@"]
    assert cfg.receive_access == []
    assert [m for m, _ in cfg.masters] == ["admin"]
    assert cfg.relay_auth == [("@example.test", "u:p w"), ("[smtp.example.test]:587", "u:p"),
                              ("smtp.example.test", "u:p"), ("al.ice@example.test", "u:p")]
    assert sorted((p.file, p.line) for p in cfg.problems) == [
        ("dovecot-masters.cf", 2), ("dovecot-quotas.cf", 2), ("postfix-receive-access.cf", 1),
        ("postfix-sasl-password.cf", 4), ("postfix-sasl-password.cf", 6), ("postfix-send-access.cf", 5), ("postfix-send-access.cf", 6),
        ("postfix-virtual.cf", 2), ("postfix-virtual.cf", 3), ("postfix-virtual.cf", 4)]


# --- postfix-virtual.cf ----------------------------------------------------------------------------------

@pytest.mark.parametrize("crlf", [False, True])
def test_virtual_aliases_forms(tmp_path, crlf):
    write(tmp_path, "postfix-virtual.cf", "\n".join([
        "# aliases",
        "alias@example.test user@example.test",
        "team@example.test a@example.test,b@example.test, c@example.test",
        "@catchall.test user@example.test",
        "bare user@example.test",
        "Upper@Example.Test User@Example.Test",
    ]) + "\n", crlf)
    cfg = configdir.read(tmp_path)
    assert cfg.aliases == [
        ("alias@example.test", ["user@example.test"]),
        ("team@example.test", ["a@example.test", "b@example.test", "c@example.test"]),
        ("@catchall.test", ["user@example.test"]),
        ("bare", ["user@example.test"]),
        ("upper@example.test", ["user@example.test"]),
    ]
    assert cfg.problems == []


def test_virtual_malformed_lines_reported_valid_ones_kept(tmp_path):
    write(tmp_path, "postfix-virtual.cf", "\n".join([
        "ok@example.test user@example.test",          # 1
        "lonely@example.test",                        # 2: no target
        "bad@@example.test user@example.test",        # 3: not an address
        "x@example.test user@@example.test",          # 4: bad target
        "@not_a_domain user@example.test",            # 5: bad catch-all
        "ok2@example.test user@example.test",         # 6
    ]) + "\n")
    cfg = configdir.read(tmp_path)
    assert [a for a, _ in cfg.aliases] == ["ok@example.test", "ok2@example.test"]
    assert [(p.file, p.line) for p in cfg.problems] == [("postfix-virtual.cf", n) for n in (2, 3, 4, 5)]


def test_virtual_duplicate_alias_is_reported(tmp_path):
    write(tmp_path, "postfix-virtual.cf", "team@example.test a@example.test\nteam@example.test b@example.test\n")
    cfg = configdir.read(tmp_path)
    merged = [t for a, ts in cfg.aliases if a == "team@example.test" for t in ts]
    reported = [(p.file, p.line) for p in cfg.problems] == [("postfix-virtual.cf", 2)]
    assert reported or (len(cfg.aliases) == 1 and merged == ["a@example.test", "b@example.test"])


def test_domains_come_from_accounts_and_aliases_not_bare_local_parts(tmp_path):
    write(tmp_path, "postfix-accounts.cf", f"a@one.test|{H1}\nb@two.test|{H1}\nc@one.test|{H1}\n")
    write(tmp_path, "postfix-virtual.cf", "x@three.test a@one.test\n@four.test a@one.test\nbare a@one.test\n")
    assert configdir.read(tmp_path).domains == ["four.test", "one.test", "three.test", "two.test"]


# --- postfix-regexp.cf ---------------------------------------------------------------------------------

def test_regexp_lines_kept_verbatim_malformed_reported(tmp_path):
    write(tmp_path, "postfix-regexp.cf", "\n".join([
        r"/^test[0-9][0-9]*@example\.test/ qa@example.test",     # 1
        "not a regexp line",                                      # 2
        r"/^sales-.*@example\.test/i sales@example.test",        # 3: flags allowed
        "/nothing-after/",                                        # 4: no target
        r"if /@example\.test$/",                                  # 5: pcre_table if/endif blocks
        r"/^x@/ x@example.test",                                  # 6
        "endif",                                                  # 7
    ]) + "\n")
    cfg = configdir.read(tmp_path)
    assert cfg.regexp == [r"/^test[0-9][0-9]*@example\.test/ qa@example.test",
                          r"/^sales-.*@example\.test/i sales@example.test",
                          r"if /@example\.test$/", r"/^x@/ x@example.test", "endif"]
    assert [p.line for p in cfg.problems] == [2, 4]


# --- postfix-aliases.cf ----------------------------------------------------------------------------------

def test_local_aliases(tmp_path):
    write(tmp_path, "postfix-aliases.cf", "devnull: /dev/null\nAbuse:  postmaster@example.test\nbroken\nempty:\n")
    cfg = configdir.read(tmp_path)
    assert cfg.local_aliases == [("devnull", "/dev/null"), ("abuse", "postmaster@example.test")]
    assert [(p.file, p.line) for p in cfg.problems] == [("postfix-aliases.cf", 3), ("postfix-aliases.cf", 4)]


# --- dovecot-quotas.cf ---------------------------------------------------------------------------------

def test_quotas_sizes_and_malformed_lines(tmp_path):
    write(tmp_path, "dovecot-quotas.cf", "\n".join([
        "a@example.test:10M",       # 1
        "b@example.test:5G",        # 2
        "c@example.test:0",         # 3: unlimited
        "d@example.test 10M",       # 4: wrong separator
        "e@example.test:10 MB",     # 5: not a size
        "f@example.test:10X",       # 6: unknown unit
        "notanaddress:1M",          # 7
    ]) + "\n", crlf=True)
    cfg = configdir.read(tmp_path)
    assert cfg.quotas == {"a@example.test": "10M", "b@example.test": "5G", "c@example.test": "0"}
    assert [p.line for p in cfg.problems] == [4, 5, 6, 7]
    assert all(p.file == "dovecot-quotas.cf" for p in cfg.problems)


# --- dovecot-masters.cf ----------------------------------------------------------------------------------

def test_master_users(tmp_path):
    write(tmp_path, "dovecot-masters.cf", f"admin|{H1}\nbroken line\nsupport|nohash\nops@example.test|{H2}\n")
    cfg = configdir.read(tmp_path)
    assert cfg.masters == [("admin", H1), ("ops@example.test", H2)]
    assert [p.line for p in cfg.problems] == [2, 3]


# --- overrides: postfix-main.cf, postfix-master.cf, dovecot.cf -------------------------------------------

def test_postfix_main_overrides(tmp_path):
    write(tmp_path, "postfix-main.cf", "\n".join([
        "# my overrides",
        "smtpd_banner = $myhostname ESMTP",     # 2
        "message_size_limit=52428800",          # 3: no spaces
        "this is not a parameter",              # 4
        "Bad-Name = x",                         # 5
        "empty_value =",                        # 6: clearing a parameter is legitimate
    ]) + "\n", crlf=True)
    cfg = configdir.read(tmp_path)
    assert cfg.postfix_main == [("smtpd_banner", "$myhostname ESMTP"), ("message_size_limit", "52428800"),
                                ("empty_value", "")]
    assert [p.line for p in cfg.problems] == [4, 5]


def test_postfix_main_continuation_lines_join_the_parameter(tmp_path):
    write(tmp_path, "postfix-main.cf",
          "smtpd_helo_restrictions = permit_mynetworks,\n    reject_invalid_helo_hostname\n")
    cfg = configdir.read(tmp_path)
    assert cfg.problems == []
    [(name, value)] = cfg.postfix_main
    assert name == "smtpd_helo_restrictions"
    assert value.split() == ["permit_mynetworks,", "reject_invalid_helo_hostname"]


def test_postfix_master_overrides(tmp_path):
    write(tmp_path, "postfix-master.cf", "\n".join([
        "submission/inet/smtpd_sasl_security_options=noanonymous",     # 1
        "smtpd/pass/smtpd_client_connection_count_limit = 5",          # 2
        "submission/inet",                                             # 3: no parameter
        "submission/tcp/x=y",                                          # 4: unknown type
        "smtp_helo_timeout=5",                                         # 5: a main.cf line in the wrong file
        "submissions/inet/smtpd_milters=inet:127.0.0.1:1=2",           # 6: '=' inside the value
    ]) + "\n")
    cfg = configdir.read(tmp_path)
    assert cfg.postfix_master == [("submission/inet/smtpd_sasl_security_options", "noanonymous"),
                                  ("smtpd/pass/smtpd_client_connection_count_limit", "5"),
                                  ("submissions/inet/smtpd_milters", "inet:127.0.0.1:1=2")]
    assert [p.line for p in cfg.problems] == [3, 4, 5]


def test_dovecot_cf_is_taken_verbatim(tmp_path):
    text = "# mine\nmail_max_userip_connections = 69\n"
    write(tmp_path, "dovecot.cf", text)
    assert configdir.read(tmp_path).dovecot_cf == text


# --- sieve, user-patches --------------------------------------------------------------------------------

def test_sieve_scripts_global_and_per_user(tmp_path):
    write(tmp_path, "before.dovecot.sieve", 'require "fileinto";\n')
    write(tmp_path, "User@Example.Test.dovecot.sieve", "keep;\n")
    write(tmp_path, "user-patches.sh", "#!/bin/bash\n")
    cfg = configdir.read(tmp_path)
    assert cfg.global_sieve == {"before": 'require "fileinto";\n'}
    assert cfg.user_sieve == {"user@example.test": "keep;\n"}     # the address is matched case-insensitively
    assert cfg.user_patches is True


def test_problem_renders_as_file_colon_line():
    assert str(configdir.Problem("postfix-virtual.cf", 7, "bad")) == "postfix-virtual.cf:7: bad"


def test_watched_files_cover_every_input_format():
    # The change poller watches exactly configdir.WATCHED: a format read here but not watched would need a restart.
    read_names = {"postfix-accounts.cf", "postfix-virtual.cf", "postfix-regexp.cf", "postfix-aliases.cf",
                  "dovecot-quotas.cf", "dovecot-masters.cf", "postfix-main.cf", "postfix-master.cf", "dovecot.cf",
                  "before.dovecot.sieve", "after.dovecot.sieve"}
    assert read_names <= set(configdir.WATCHED)


def test_the_sources_table_names_each_file_its_field_and_derives_watched(tmp_path):
    # One row per file: its parser fills its ConfigDir field; WATCHED is the watched rows, in table order.
    assert configdir.WATCHED == tuple(s.name for s in configdir.SOURCES if s.watched)
    assert len({s.name for s in configdir.SOURCES}) == len(configdir.SOURCES)
    fields = {f for f in configdir.ConfigDir.__dataclass_fields__}
    assert {s.field for s in configdir.SOURCES} <= fields
    empty = configdir.read(tmp_path)
    samples = {"postfix-accounts.cf": f"user@example.test|{H1}\n", "postfix-virtual.cf": "a@example.test user@example.test\n",
               "postfix-regexp.cf": "/^x@example\\.test$/ user@example.test\n", "postfix-aliases.cf": "root: user\n",
               "dovecot-quotas.cf": "user@example.test:10M\n", "dovecot-masters.cf": f"admin|{H1}\n",
               "postfix-main.cf": "smtpd_banner = hi\n", "postfix-master.cf": "submission/inet/a=b\n",
               "dovecot.cf": "x = 1\n", "before.dovecot.sieve": "keep;\n", "after.dovecot.sieve": "keep;\n",
               "postfix-send-access.cf": "a@example.test REJECT\n", "postfix-receive-access.cf": "a@example.test REJECT\n",
               "postfix-relaymap.cf": "@example.test [relay.test]:25\n", "postfix-sasl-password.cf": "@example.test u:p\n",
               "ldap-users.cf": "bind = no\n", "ldap-groups.cf": "bind = no\n", "ldap-aliases.cf": "bind = no\n",
               "ldap-domains.cf": "bind = no\n"}
    assert set(samples) == set(configdir.WATCHED)
    for source in configdir.SOURCES:
        folder = tmp_path / source.name
        folder.mkdir()
        (folder / source.name).write_text(samples[source.name])
        cfg = configdir.read(folder)
        assert cfg.problems == []
        changed = [f for f in fields if f not in ("path", "problems") and getattr(cfg, f) != getattr(empty, f)]
        assert changed == [source.field], source.name


# ====================================================================================================
# Issue 7 (7.5, 7.7, 7.8, 7.12): lines, symbolic links, secrets in messages, long continuations
# ====================================================================================================

MARKER = "S3cr3tMarker"


def logged_and_problems(cfg, caplog) -> str:
    return "\n".join([*problems(cfg), caplog.text])


@pytest.mark.parametrize("separator", ["\x0c", "\u2028", "\x1c", "\x85", "\r", "\x0b"])
def test_lines_split_on_newline_only_like_the_writer(tmp_path, separator):
    # str.splitlines() would cut here and read a second, injected account.
    write(tmp_path, "postfix-accounts.cf", f"user@example.test|{H1}{separator}evil@example.test|{H2}\nok@example.test|{H1}\n")
    cfg = configdir.read(tmp_path)
    assert [a.address for a in cfg.accounts] == ["ok@example.test"]
    assert [p.line for p in cfg.problems] == [1]


def test_reader_and_writer_share_one_splitter():
    from mailwright import configwrite
    data = "a\x0cb\r\nc\u2028d\n\ne\r"
    assert configdir.split_lines(data) == ["a\x0cb", "c\u2028d", "", "e\r"]
    assert configwrite._split(data.encode()) == configdir.split_lines(data)


@pytest.mark.parametrize("name", ["postfix-accounts.cf", "dovecot-masters.cf", "postfix-sasl-password.cf",
                                  "postfix-virtual.cf", "dovecot.cf", "before.dovecot.sieve",
                                  "user@example.test.dovecot.sieve"])
def test_symlinked_file_is_reported_skipped_and_never_read(tmp_path, caplog, name):
    outside = tmp_path / "outside"
    outside.write_text(f"root@example.test|{{PLAIN}}{MARKER}\n")
    config = tmp_path / "config"
    config.mkdir()
    (config / name).symlink_to(outside)
    write(config, "postfix-relaymap.cf", "@other.test [h]:25\n")
    with caplog.at_level(logging.DEBUG):
        cfg = configdir.read(config)
    assert problems(cfg) == [f"{name}: is a symbolic link; symbolic links inside the config folder are not "
                             "followed: replace it by the file itself"]
    assert cfg.accounts == [] and cfg.masters == [] and cfg.relay_auth == [] and cfg.aliases == []
    assert cfg.dovecot_cf == "" and cfg.global_sieve == {} and cfg.user_sieve == {}
    assert cfg.relaymap == [("@other.test", "[h]:25")]                  # every other file still read
    assert MARKER not in logged_and_problems(cfg, caplog)


def test_symlinked_config_folder_itself_is_read(tmp_path):
    (tmp_path / "real").mkdir()
    write(tmp_path / "real", "postfix-accounts.cf", f"a@example.test|{H1}\n")
    (tmp_path / "config").symlink_to(tmp_path / "real")
    cfg = configdir.read(tmp_path / "config")
    assert [a.address for a in cfg.accounts] == ["a@example.test"] and cfg.problems == []


@pytest.mark.parametrize("name, lines", [
    ("postfix-accounts.cf", [f"user@example.test{{SHA512-CRYPT}}{MARKER}",          # '|' forgotten
                             f"{MARKER}|user@example.test",                         # fields swapped
                             f"user@example.test|{MARKER}",                          # not a {SCHEME}hash
                             f"user@example.test {MARKER}|{{PLAIN}}x"]),
    ("dovecot-masters.cf", [f"admin {{SHA512-CRYPT}}{MARKER}",
                            f"{MARKER} x|{{PLAIN}}x",
                            f"admin|{MARKER}",
                            f"admin|{{PLAIN}}{MARKER} extra"]),
    ("postfix-sasl-password.cf", [f"user:{MARKER}",                                 # key forgotten
                                  f"@example.test user{MARKER}",                     # ':' forgotten
                                  f"{MARKER}/@x.test nocolon",                        # neither is valid
                                  f"{MARKER}"]),                                     # a single field
])
def test_malformed_secret_lines_never_show_the_secret(tmp_path, caplog, name, lines):
    write(tmp_path, name, "\n".join(lines) + "\n")
    with caplog.at_level(logging.DEBUG):
        cfg = configdir.read(tmp_path)
    assert [p.line for p in cfg.problems] == list(range(1, len(lines) + 1))
    assert all(p.file == name for p in cfg.problems)
    assert MARKER.lower() not in logged_and_problems(cfg, caplog).lower()


def test_malformed_secret_lines_name_a_valid_key(tmp_path):
    write(tmp_path, "postfix-sasl-password.cf", f"@example.test user{MARKER}\n")
    write(tmp_path, "dovecot-masters.cf", f"admin|{MARKER}\n")
    write(tmp_path, "postfix-accounts.cf", f"user@example.test|{MARKER}\n")
    assert problems(configdir.read(tmp_path)) == [
        "postfix-accounts.cf:1: user@example.test: the password field is not a '{SCHEME}hash'",
        "dovecot-masters.cf:1: admin: the password field is not a '{SCHEME}hash'",
        "postfix-sasl-password.cf:1: @example.test: expected 'user:password' after the key",
    ]


def test_main_cf_many_continuation_lines_are_joined(tmp_path):
    # Before: 80k continuation lines took 3.2 s (quadratic string building); now linear.
    n = 200_000
    write(tmp_path, "postfix-main.cf", "# mine\nmynetworks = 10.0.0.0/8\n" + "".join(f"  10.{i // 65536}.{i // 256 % 256}.{i % 256}/32,\n"
                                                                                  for i in range(n))
          + "\n\t\nsmtpd_banner = hi\n   there\n")
    cfg = configdir.read(tmp_path)
    assert [name for name, _ in cfg.postfix_main] == ["mynetworks", "smtpd_banner"]
    value = cfg.postfix_main[0][1]
    assert value.startswith("10.0.0.0/8 10.0.0.0/32, 10.0.0.1/32,") and value.endswith(", 10.3.13.63/32,")
    assert value.count(",") == n
    assert cfg.postfix_main[1] == ("smtpd_banner", "hi there")
    assert cfg.problems == []


def test_main_cf_continuation_rules(tmp_path):
    write(tmp_path, "postfix-main.cf", "  orphan = 1\n# c\n  not_continued = 2\na = 1\n  b\n\n  c = 3\nd = 4\n\t e\n")
    cfg = configdir.read(tmp_path)
    assert cfg.postfix_main == [("orphan", "1"), ("not_continued", "2"), ("a", "1 b"), ("c", "3"), ("d", "4 e")]


def test_verbatim_file_that_is_not_utf8_is_reported_not_a_crash(tmp_path):
    (tmp_path / "dovecot.cf").write_bytes(b"mail_max_userip_connections = 1\xff\n")
    write(tmp_path, "postfix-accounts.cf", f"a@example.test|{H1}\n")
    cfg = configdir.read(tmp_path)
    assert problems(cfg) == ["dovecot.cf: is not valid UTF-8 (byte offset 31)"]
    assert cfg.dovecot_cf == "" and [a.address for a in cfg.accounts] == ["a@example.test"]
