"""Postgrey (ops/postgrey): its descriptor, its files, its whitelists, its settings, its Postfix hook.

Pure: nothing here starts postgrey (tests/e2e/test_postgrey.py does). The foreground
command's quoting is checked by running it with sh against a stand-in postgrey.
"""

from __future__ import annotations

import logging
import os
import subprocess

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from ops import configdir, daemons, settings as S
from ops.daemon import PostfixHooks
from ops.postgrey import config
from ops.postgrey.daemon import DAEMON, FOREGROUND

FQDN = "mail.example.test"


def load(**env) -> S.Settings:
    return S.load(environ={"MAILWRIGHT_INIT": "container", **{k: str(v) for k, v in env.items()}}, fqdn=FQDN)


def render(tmp_path, config_files: dict[str, str] | None = None, **env) -> dict[str, config.ConfigFile]:
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    for name, text in (config_files or {}).items():
        (folder / name).write_text(text)
    return {f.path: f for f in DAEMON.files(load(**env), configdir.read(folder), None)}


# --- the descriptor -----------------------------------------------------------------------------------

def test_postgrey_is_found_by_its_folder():
    assert daemons.by_name("postgrey") is DAEMON
    names = [d.name for d in daemons.all_daemons()]
    assert names.index("postgrey") < names.index("postfix"), "Postfix asks Postgrey: it must start first"


def test_descriptor_fields():
    assert DAEMON.packages == ("postgrey",)
    assert DAEMON.unit == "postgrey.service"
    assert DAEMON.pidfile == "/run/postgrey.pid"
    assert (DAEMON.reload.kind, DAEMON.reload.signal) == ("signal", "HUP")
    assert DAEMON.state == ("/var/lib/postgrey",)
    assert DAEMON.reads == ("whitelist_clients.local", "whitelist_recipients")
    assert DAEMON.secrets == ()


def test_enabled_and_ports_follow_enable_postgrey():
    off, on = load(), load(ENABLE_POSTGREY=1)
    assert not DAEMON.enabled(off) and DAEMON.enabled(on)
    assert DAEMON in daemons.enabled(on) and DAEMON not in daemons.enabled(off)
    assert DAEMON.ports(on) == (10023,)
    assert DAEMON.ports(off) == ()


def test_postfix_hook_is_the_policy_service_only_when_enabled(tmp_path):
    cfg = configdir.read(tmp_path)
    assert DAEMON.postfix(load(ENABLE_POSTGREY=1), cfg) == PostfixHooks(
        recipient_restrictions=((50, "check_policy_service inet:127.0.0.1:10023"),))
    assert DAEMON.postfix(load(), cfg) == PostfixHooks()


# --- /etc/default/postgrey and the foreground command ---------------------------------------------------

def test_options_file_carries_the_settings(tmp_path):
    files = render(tmp_path, ENABLE_POSTGREY=1, POSTGREY_DELAY=5, POSTGREY_MAX_AGE=7,
                   POSTGREY_AUTO_WHITELIST_CLIENTS=0, POSTGREY_TEXT="Come back later")
    f = files["/etc/default/postgrey"]
    assert 'POSTGREY_OPTS="--inet=127.0.0.1:10023 --delay=5 --max-age=7 --auto-whitelist-clients=0"\n' in f.content
    assert 'POSTGREY_TEXT="Come back later"\n' in f.content
    assert f.reloads == ("postgrey",)


def test_defaults_are_docker_mailservers(tmp_path):
    content = render(tmp_path, ENABLE_POSTGREY=1)["/etc/default/postgrey"].content
    assert "--delay=300 --max-age=35 --auto-whitelist-clients=5" in content
    assert 'POSTGREY_TEXT="Delayed by Postgrey"' in content


HOSTILE_TEXT = "it's \"greylisted\" $HOME `id` \\n %s; $(id) * ?"


def test_foreground_runs_postgrey_with_the_options_and_text_verbatim(tmp_path):
    """The foreground command as the supervisor runs it (sh), with its absolute paths pointed
    at a rendered options file and a stand-in postgrey that records its argv and pid."""
    options = tmp_path / "default-postgrey"
    options.write_text(render(tmp_path, ENABLE_POSTGREY=1, POSTGREY_DELAY=5,
                              POSTGREY_TEXT=HOSTILE_TEXT)["/etc/default/postgrey"].content)
    argv_out, pid_out, pidfile = tmp_path / "argv", tmp_path / "pid", tmp_path / "postgrey.pid"
    fake = tmp_path / "postgrey"
    fake.write_text(f"#!/bin/sh\necho $$ > {pid_out}\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > {argv_out}\n")
    fake.chmod(0o755)
    assert FOREGROUND[:2] == ("/bin/sh", "-c")
    script = (FOREGROUND[2].replace(config.OPTIONS, str(options)).replace(config.PIDFILE, str(pidfile))
              .replace("/usr/sbin/postgrey", str(fake)))
    subprocess.run(["/bin/sh", "-c", script], check=True, cwd=tmp_path, env={"PATH": os.environ["PATH"]})
    assert argv_out.read_text().splitlines() == [
        "--inet=127.0.0.1:10023", "--delay=5", "--max-age=35", "--auto-whitelist-clients=5",
        f"--greylist-text={HOSTILE_TEXT}"]
    # `exec`: the pid the shell wrote is postgrey's own.
    assert pidfile.read_text().strip() == pid_out.read_text().strip()


@given(st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
@hsettings(max_examples=60, deadline=None)
def test_double_quoted_survives_sh(text):
    """systemd's EnvironmentFile parser unescapes the same four characters inside "..." as sh."""
    text = text.replace("\u2028", "").replace("\u2029", "")
    out = subprocess.run(["/bin/sh", "-c", f'T="{config.double_quoted(text)}"; printf %s "$T"'],
                         capture_output=True, check=True).stdout.decode()
    assert out == text


# --- whitelists -------------------------------------------------------------------------------------------

def test_whitelists_from_the_config_folder(tmp_path):
    files = render(tmp_path, {
        "whitelist_clients.local": "# mine\nMX.Example.com\n10.1.2.0/24\n10.1.2  # a /24\n2001:DB8::/32\n"
                                   "/^mail\\d+\\.example\\.net$/\n",
        "whitelist_recipients": "Boss@Example.test\npostmaster@\nexample.org\n",
    }, ENABLE_POSTGREY=1)
    clients = files["/etc/postgrey/whitelist_clients.local"]
    recipients = files["/etc/postgrey/whitelist_recipients.local"]
    assert clients.content.splitlines()[1:] == [
        "mx.example.com", "10.1.2.0/24", "10.1.2", "2001:db8::/32", "/^mail\\d+\\.example\\.net$/"]
    assert recipients.content.splitlines()[1:] == ["boss@example.test", "postmaster@", "example.org"]
    # Live: a changed whitelist makes postgrey re-read them (SIGHUP).
    assert clients.reloads == recipients.reloads == ("postgrey",)


def test_debians_whitelists_are_left_alone(tmp_path):
    """Debian's packaged whitelist_clients/whitelist_recipients stay; the config folder's add to them."""
    paths = set(render(tmp_path, {"whitelist_recipients": "a@example.test\n"}, ENABLE_POSTGREY=1))
    assert "/etc/postgrey/whitelist_clients" not in paths
    assert "/etc/postgrey/whitelist_recipients" not in paths


def test_absent_whitelists_are_removed(tmp_path):
    files = render(tmp_path, ENABLE_POSTGREY=1)
    assert files["/etc/postgrey/whitelist_clients.local"].content is None
    assert files["/etc/postgrey/whitelist_recipients.local"].content is None


def test_off_means_gone(tmp_path):
    files = render(tmp_path, {"whitelist_recipients": "a@example.test\n"})
    assert {p: f.content for p, f in files.items()} == {
        "/etc/default/postgrey": None,
        "/etc/postgrey/whitelist_clients.local": None,
        "/etc/postgrey/whitelist_recipients.local": None,
    }


@pytest.mark.parametrize("source, line, why", [
    ("whitelist_clients.local", "two words", "one host"),
    ("whitelist_clients.local", "999.1.2.3", "not an IP address"),
    ("whitelist_clients.local", "10.300", "not a partial IPv4"),
    ("whitelist_clients.local", "/bad(/", "does not compile"),
    ("whitelist_clients.local", "host!name", "not a host name"),
    ("whitelist_recipients", "@example.test", "without the '@'"),
    ("whitelist_recipients", "a@b@example.test", "not an address"),
    ("whitelist_recipients", "a b@example.test", "one address"),
    ("whitelist_recipients", "..@example.test", "not an address"),
    ("whitelist_recipients", "/x[/", "does not compile"),
])
def test_malformed_lines_are_skipped_and_named(tmp_path, caplog, source, line, why):
    caplog.set_level(logging.ERROR, logger="mailwright.config")
    good = "ok.example.test" if source == "whitelist_clients.local" else "ok@example.test"
    files = render(tmp_path, {source: f"{good}\n{line}\n"}, ENABLE_POSTGREY=1)
    target = {"whitelist_clients.local": config.CLIENTS, "whitelist_recipients": config.RECIPIENTS}[source]
    assert files[target].content.splitlines()[1:] == [good]
    assert f"{source}:2: " in caplog.text and why in caplog.text and "line skipped" in caplog.text


def test_a_symlinked_whitelist_is_refused(tmp_path, caplog):
    outside = tmp_path / "outside"
    outside.write_text("secret.example.test\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "whitelist_clients.local").symlink_to(outside)
    files = render(tmp_path, ENABLE_POSTGREY=1)
    assert files[config.CLIENTS].content is None
    assert "whitelist_clients.local: is a symbolic link" in caplog.text


_line = st.text(st.sampled_from(list("ab.-_@/#:0123456789 \t\\(+*xX")), max_size=24)


@given(st.sampled_from(sorted(config.CHECKS)), st.lists(_line, max_size=8))
@hsettings(max_examples=200, deadline=None)
def test_whitelist_parser_keeps_only_what_it_would_keep_again(source, lines):
    """Never raises; every kept entry is one word, no comment, and passes its own check unchanged."""
    wl = config.parse(source, "\n".join(lines))
    for entry in wl.entries:
        assert entry and not any(ch.isspace() for ch in entry) and "#" not in entry
        assert config.CHECKS[source](entry) == (entry, "")
    assert all(p.line >= 1 and p.file == source for p in wl.problems)


# --- settings ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, value", [("POSTGREY_DELAY", "0"), ("POSTGREY_MAX_AGE", "0"),
                                         ("POSTGREY_AUTO_WHITELIST_CLIENTS", "-1")])
def test_settings_below_postgreys_minimum_are_refused(name, value):
    # postgrey reads a delay or max-age of 0 as its default (300 s, 35 days): say so instead.
    with pytest.raises(S.SettingsError, match=name):
        load(**{name: value})


def test_auto_whitelist_zero_is_accepted():
    assert load(POSTGREY_AUTO_WHITELIST_CLIENTS=0).POSTGREY_AUTO_WHITELIST_CLIENTS == 0


def test_postgrey_settings_are_implemented(caplog):
    load(ENABLE_POSTGREY=1, POSTGREY_DELAY=5, POSTGREY_MAX_AGE=2, POSTGREY_AUTO_WHITELIST_CLIENTS=1,
         POSTGREY_TEXT="later")
    assert "not implemented" not in caplog.text
