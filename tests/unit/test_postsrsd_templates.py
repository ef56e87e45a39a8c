"""postsrsd (ops/postsrsd): descriptor, /etc/default/postsrsd, the SRS_SECRET file, the Postfix maps,
the settings' checks, and the generated secret (ops/postsrsd/secret.py: made once, kept in the state
volume, 0600, never printed).

Pure: tests/e2e/test_srs.py runs postsrsd in the image.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from ops import configdir, daemons, plan, settings as S
from ops.postsrsd import config, secret
from ops.postsrsd.daemon import DAEMON, GIVEN_SECRET, OPTIONS, PIDFILE, RUNTIME, SECRET

FQDN = "mail.example.test"


def load(tmp_path, **env):
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    s = S.load(host_data={"MAILWRIGHT_INIT": "container", "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ={k: str(v) for k, v in env.items()}, fqdn=FQDN)
    return s, {f.path: f for f in plan.files(s, configdir.read(folder))}


def options(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_descriptor():
    assert daemons.by_name("postsrsd") is DAEMON
    assert DAEMON.packages == ("postsrsd",) and DAEMON.unit == "postsrsd.service"
    assert DAEMON.secrets == ("/etc/postsrsd.secret",)        # the post-install's: stripped from the image
    assert DAEMON.state == ("/var/lib/postsrsd",)
    assert DAEMON.reload.kind == "restart"
    names = [d.name for d in daemons.all_daemons()]
    assert names.index("postsrsd") < names.index("postfix")
    from ops.facts import RUNTIME as FACTS_RUNTIME
    assert RUNTIME == FACTS_RUNTIME
    assert DAEMON.foreground[:2] == ("/usr/bin/python3", f"{RUNTIME}/ops/postsrsd/secret.py")


def test_off_by_default_and_off_means_gone(tmp_path):
    s, files = load(tmp_path)
    assert not s.ENABLE_SRS and DAEMON not in daemons.enabled(s)
    assert files[OPTIONS].content is None and files[GIVEN_SECRET].content is None
    assert "postsrsd" not in files[daemons.DAEMONS_FILE].content
    main = files["/etc/postfix/main.cf"].content
    assert "canonical" not in main and "10001" not in main
    assert DAEMON.ports(s) == ()


def test_on_defaults(tmp_path):
    s, files = load(tmp_path, ENABLE_SRS=1)
    opts = options(files[OPTIONS].content)
    assert opts["SRS_DOMAIN"] == "example.test"                # DOMAINNAME
    assert opts["SRS_SECRET"] == SECRET                        # the generated one
    assert opts["SRS_EXCLUDE_DOMAINS"] == ""
    assert (opts["SRS_FORWARD_PORT"], opts["SRS_REVERSE_PORT"], opts["SRS_LISTEN_ADDR"]) == ("10001", "10002", "127.0.0.1")
    assert files[GIVEN_SECRET].content is None
    table = [line.split("\t") for line in files[daemons.DAEMONS_FILE].content.splitlines()]
    row = next(r for r in table if r[0] == "postsrsd")
    assert (row[1], row[2]) == (PIDFILE, "10001 10002")
    main = files["/etc/postfix/main.cf"].content
    for line in ("sender_canonical_maps = tcp:127.0.0.1:10001", "sender_canonical_classes = envelope_sender",
                 "recipient_canonical_maps = tcp:127.0.0.1:10002",
                 "recipient_canonical_classes = envelope_recipient, header_recipient"):
        assert f"\n{line}\n" in main


def test_settings_reach_the_files(tmp_path):
    _, files = load(tmp_path, ENABLE_SRS=1, SRS_DOMAINNAME="Forward.Example.TEST",
                    SRS_EXCLUDE_DOMAINS="a.test, .b.test,a.test", SRS_SENDER_CLASSES="envelope_sender, header_sender",
                    SRS_SECRET="c2VjcmV0b25l,c2VjcmV0dHdv")
    opts = options(files[OPTIONS].content)
    assert opts["SRS_DOMAIN"] == "forward.example.test"
    assert opts["SRS_EXCLUDE_DOMAINS"] == "a.test,.b.test"     # one shell word: the launcher sources the file
    assert opts["SRS_SECRET"] == GIVEN_SECRET
    given = files[GIVEN_SECRET]
    assert given.content == "c2VjcmV0b25l\nc2VjcmV0dHdv\n" and given.mode == 0o600
    assert given.daemon == "postsrsd" and given.reloads == ("postsrsd",)
    assert "c2VjcmV0" not in files[OPTIONS].content
    assert "\nsender_canonical_classes = envelope_sender, header_sender\n" in files["/etc/postfix/main.cf"].content


@pytest.mark.parametrize("name,value", [
    ("SRS_SENDER_CLASSES", "envelope_recipient"), ("SRS_SENDER_CLASSES", "envelope_sender;x"),
    ("SRS_DOMAINNAME", "a b.test"), ("SRS_DOMAINNAME", "x.test$(id)"),
    ("SRS_EXCLUDE_DOMAINS", "a.test;reboot"), ("SRS_EXCLUDE_DOMAINS", "a.test,,b.test"),
    ("SRS_SECRET", "short"), ("SRS_SECRET", "abcdefghij k"),
])
def test_bad_values_are_refused_naming_the_setting(tmp_path, name, value):
    with pytest.raises(S.SettingsError) as e:
        load(tmp_path, ENABLE_SRS=1, **{name: value})
    assert name in str(e.value)
    if name == "SRS_SECRET":
        assert value not in str(e.value)                        # a secret is never shown


def test_srs_settings_are_implemented():
    implemented = {f.name: f.metadata["implemented"] for f in S.fields(S.Settings)}
    for name in ("ENABLE_POLICYD_SPF", "ENABLE_SRS", "SRS_SENDER_CLASSES", "SRS_DOMAINNAME",
                 "SRS_EXCLUDE_DOMAINS", "SRS_SECRET"):
        assert implemented[name], name


# --- the generated secret -------------------------------------------------------------------------

def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_secret_without_state_volume_made_once(tmp_path):
    path = tmp_path / "postsrsd.secret"
    state = tmp_path / "no-state"
    assert secret.ensure(path, state) == path
    first = path.read_bytes()
    assert len(first.strip()) == 32 and mode(path) == 0o600
    secret.ensure(path, state)
    assert path.read_bytes() == first                          # a restart keeps it


def test_secret_in_state_volume_survives_a_recreate(tmp_path):
    state = tmp_path / "mail-state"
    state.mkdir()
    etc1 = tmp_path / "c1"
    etc1.mkdir()
    kept = secret.ensure(etc1 / "postsrsd.secret", state)
    assert kept == state / "etc-postsrsd.secret"               # docker-mailserver's name
    assert os.readlink(etc1 / "postsrsd.secret") == str(kept) and mode(kept) == 0o600
    value = kept.read_bytes()
    etc2 = tmp_path / "c2"                                     # a new container: nothing in its /etc
    etc2.mkdir()
    secret.ensure(etc2 / "postsrsd.secret", state)
    assert (etc2 / "postsrsd.secret").read_bytes() == value
    secret.ensure(etc2 / "postsrsd.secret", state)             # its restart
    assert (etc2 / "postsrsd.secret").read_bytes() == value


def test_secret_persisted_by_docker_mailserver_is_used_and_container_secret_adopted(tmp_path):
    state = tmp_path / "mail-state"
    state.mkdir()
    (state / "etc-postsrsd.secret").write_bytes(b"dms-secret\n")
    etc = tmp_path / "postsrsd.secret"
    etc.write_bytes(b"other\n")                                 # e.g. left by a package
    secret.ensure(etc, state)
    assert etc.read_bytes() == b"dms-secret\n"
    state2 = tmp_path / "state2"
    state2.mkdir()
    own = tmp_path / "own.secret"
    own.write_bytes(b"mine\n")
    secret.ensure(own, state2)                                  # a volume mounted later: this secret moves in
    assert (state2 / "etc-postsrsd.secret").read_bytes() == b"mine\n" and own.is_symlink()


def test_secret_dangling_link_and_empty_file_are_replaced(tmp_path):
    etc = tmp_path / "postsrsd.secret"
    etc.symlink_to(tmp_path / "gone" / "etc-postsrsd.secret")
    secret.ensure(etc, tmp_path / "no-state")
    assert not etc.is_symlink() and len(etc.read_bytes().strip()) == 32
    etc.write_bytes(b"")
    secret.ensure(etc, tmp_path / "no-state")
    assert len(etc.read_bytes().strip()) == 32


def test_start_script_writes_pid_and_execs_without_printing_the_secret(tmp_path):
    pidfile, path = tmp_path / "pid", tmp_path / "postsrsd.secret"
    script = os.path.join(os.path.dirname(secret.__file__), "secret.py")
    out = subprocess.run([sys.executable, "-I", script, "--secret", str(path), "--state", str(tmp_path / "none"),
                          "--pidfile", str(pidfile), "--", "/bin/sh", "-c", 'echo "pid $$"'],
                         capture_output=True, text=True, check=True)
    assert out.stdout == f"pid {pidfile.read_text().strip()}\n"     # exec'd: postsrsd keeps the written pid
    assert path.read_text().strip() not in out.stdout + out.stderr


def test_vps_drop_in_makes_a_missing_secret_at_start(tmp_path):
    """Under systemd, Debian's postsrsd.service gets an ExecStartPre running secret.py (as the
    container's start does): a host without the package's secret still starts postsrsd.
    tests/e2e/test_vps_features.py::test_a_missing_srs_secret_is_made_at_start runs it."""
    folder = tmp_path / "config"
    folder.mkdir()
    s = S.load(host_data={"MAILWRIGHT_INIT": "systemd", "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ={"ENABLE_SRS": "1"}, fqdn=FQDN)
    files = {f.path: f for f in plan.files(s, configdir.read(folder))}
    drop_in = files[config.DROP_IN]
    assert drop_in.content.splitlines()[1:] == [
        "[Service]",
        f"ExecStartPre=/usr/bin/python3 {RUNTIME}/ops/postsrsd/secret.py --secret {SECRET} "
        "--state-name etc-postsrsd.secret -- /bin/true"]
    assert drop_in.after == ("systemctl daemon-reload",) and drop_in.reloads == ()
    # In a container the supervisor's command does it; SRS off: no drop-in either.
    assert load(tmp_path, ENABLE_SRS=1)[1][config.DROP_IN].content is None
    s_off = S.load(host_data={"MAILWRIGHT_INIT": "systemd", "MAILWRIGHT_CONFIG_DIR": str(folder)},
                   environ={}, fqdn=FQDN)
    assert {f.path: f for f in plan.files(s_off, configdir.read(folder))}[config.DROP_IN].content is None
