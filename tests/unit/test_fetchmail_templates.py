"""Fetchmail (ops/fetchmail): its descriptor, its rendered files, the FETCHMAIL_PARALLEL split.

Pure: nothing here starts fetchmail (tests/e2e/test_fetching.py does)."""

from __future__ import annotations

import logging
import os
import subprocess

from hypothesis import given, strategies as st

from ops import configdir, daemons, settings as S
from ops.fetchmail import config, run
from ops.fetchmail.daemon import DAEMON, FOREGROUND, OPTIONS, RC, UNIT_FILE

FQDN = "mail.example.test"
CF = ("# remote accounts\n"
      "poll pop.example.org with proto POP3 user 'a' there with password 's3cret' is 'a@example.test' here options keep ssl\n"
      "poll imap.example.org with proto IMAP\n"
      "  user 'b' there with password 'x' is 'b@example.test' here options ssl\n")


def load(**env) -> S.Settings:
    return S.load(environ={"MAILWRIGHT_INIT": "container", **{k: str(v) for k, v in env.items()}}, fqdn=FQDN)


def render(tmp_path, cf: str | bytes | None = CF, **env) -> dict[str, config.ConfigFile]:
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    if cf is not None:
        (folder / "fetchmail.cf").write_bytes(cf.encode() if isinstance(cf, str) else cf)
    return {f.path: f for f in DAEMON.files(load(**env), configdir.read(folder), None)}


def test_descriptor():
    assert daemons.by_name("fetchmail") is DAEMON
    assert DAEMON.packages == ("fetchmail",)
    assert DAEMON.state == ("/var/lib/fetchmail",)
    assert DAEMON.reads == ("fetchmail.cf",)
    assert DAEMON.reload.kind == "restart"
    assert not DAEMON.enabled(load()) and DAEMON.enabled(load(ENABLE_FETCHMAIL=1))
    names = [d.name for d in daemons.all_daemons()]
    assert names.index("postfix") < names.index("fetchmail"), "fetchmail delivers to Postfix: it starts after"


def test_rc_file_is_the_general_part_then_fetchmail_cf_private_to_fetchmail(tmp_path):
    files = render(tmp_path, ENABLE_FETCHMAIL=1, FETCHMAIL_POLL=42)
    rc = files[RC]
    assert (rc.mode, rc.owner, rc.group) == (0o600, "fetchmail", "nogroup")
    body = [line for line in rc.content.splitlines() if line and not line.startswith("#")]
    assert body[:2] == ["set daemon 42", 'defaults mda "/usr/sbin/sendmail -i -f %F -- %T"']
    assert rc.content.endswith(CF.split("\n", 1)[1])        # fetchmail.cf verbatim, after the general part
    assert "set syslog" not in rc.content
    assert files[OPTIONS].content.strip().endswith("FETCHMAIL_PARALLEL=0")
    assert render(tmp_path, ENABLE_FETCHMAIL=1, FETCHMAIL_PARALLEL=1)[OPTIONS].content.strip().endswith(
        "FETCHMAIL_PARALLEL=1")


def test_off_means_gone(tmp_path):
    files = render(tmp_path)
    assert {p: f.content for p, f in files.items()} == {RC: None, OPTIONS: None, UNIT_FILE: None}


def test_unusable_fetchmail_cf_is_left_out_naming_the_file(tmp_path, caplog):
    with caplog.at_level(logging.ERROR):
        rc = render(tmp_path, b"poll x password '\xff'\n", ENABLE_FETCHMAIL=1)[RC]
    assert not [x for x in rc.content.splitlines() if x.startswith("poll")]
    assert "fetchmail.cf: is not UTF-8 text" in caplog.text and "\xff" not in caplog.text


def test_symlinked_fetchmail_cf_is_not_followed(tmp_path, caplog):
    secret = tmp_path / "secret"
    secret.write_text("poll leaked\n")
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "fetchmail.cf").symlink_to(secret)
    with caplog.at_level(logging.ERROR):
        rc = render(tmp_path, None, ENABLE_FETCHMAIL=1)[RC]
    assert "leaked" not in rc.content and "symbolic link" in caplog.text


def test_systemd_unit_runs_the_foreground_command(tmp_path):
    unit = render(tmp_path, ENABLE_FETCHMAIL=1, MAILWRIGHT_INIT="systemd")[UNIT_FILE].content
    line = next(x for x in unit.splitlines() if x.startswith("ExecStart="))
    assert "$$$$ > /run/mailwright-fetchmail.pid" in line and '"$$FETCHMAIL_PARALLEL"' in line
    assert render(tmp_path, ENABLE_FETCHMAIL=1)[UNIT_FILE].content is None


def test_foreground_drops_to_fetchmail_with_the_parallel_flag(tmp_path):
    """The foreground's shell part, run with stand-ins for the privileged commands."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for name in ("chown", "chmod", "mkdir"):
        (bin_ / name).write_text("#!/bin/sh\nexit 0\n")
        (bin_ / name).chmod(0o755)
    (bin_ / "setpriv").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (bin_ / "setpriv").chmod(0o755)
    script = FOREGROUND[2].replace(OPTIONS, str(tmp_path / "opts")).replace("/run/mailwright-fetchmail.pid", str(tmp_path / "pid"))
    script = script.replace("cd /opt/mailwright", "cd /")
    (tmp_path / "opts").write_text("FETCHMAIL_PARALLEL=1\n")
    out = subprocess.run(["/bin/sh", "-c", script], env={"PATH": f"{bin_}:/usr/bin:/bin"},
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[:4] == ["--reuid=fetchmail", "--regid=nogroup", "--clear-groups", "--reset-env"]
    assert out[-4:] == ["/usr/bin/python3", "-m", "ops.fetchmail.run", "1"]
    assert (tmp_path / "pid").read_text().strip().isdigit()


# --- FETCHMAIL_PARALLEL: docker-mailserver's split ------------------------------------------------

def test_split_copies_the_global_lines_into_each_entry():
    text = "set daemon 60\n# c\nset postmaster 'pm'\n\n" + CF
    head, parts = run.split(text)
    assert head == "set daemon 60\nset postmaster 'pm'\n"
    assert len(parts) == 2
    assert parts[0] == head + CF.splitlines()[1] + "\n"
    assert parts[1] == head + CF.splitlines()[2] + "\n" + CF.splitlines()[3] + "\n"


def test_split_without_entries():
    assert run.split("set daemon 60\n") == ("set daemon 60\n", [])


@given(st.lists(st.sampled_from(["poll h user u", "skip h2", "  password 'p'", "set daemon 5", "# x", ""]),
                max_size=12))
def test_split_keeps_every_entry_line_once(lines):
    head, parts = run.split("\n".join(lines))
    kept = [x for x in lines if x.strip() and not x.startswith("#")]
    first = next((i for i, x in enumerate(kept) if x.startswith(("poll", "skip"))), len(kept))
    assert head == "".join(x + "\n" for x in kept[:first])
    assert "".join(p[len(head):] for p in parts) == "".join(x + "\n" for x in kept[first:])
    assert all(p[len(head):].startswith(("poll", "skip")) for p in parts)


def test_argv_keeps_the_uidl_cache_in_the_state_folder():
    cmd = run.argv("/etc/fetchmailrc", "/var/lib/fetchmail/.fetchids", "/run/fetchmail/fetchmail.pid")
    assert cmd[:3] == ["/usr/bin/fetchmail", "--nodetach", "--nosyslog"]
    assert cmd[cmd.index("--idfile") + 1].startswith("/var/lib/fetchmail/")


def test_uidl_caches_are_merged_so_switching_parallel_fetches_nothing_twice(tmp_path):
    (tmp_path / ".fetchids").write_text("a@h 1\na@h 2\n")
    (tmp_path / "fetchmail-2.fetchids").write_text("b@h 7\na@h 2\n")
    run.merge_idfiles(tmp_path, [tmp_path / "fetchmail-1.fetchids", tmp_path / "fetchmail-2.fetchids"])
    for n in (1, 2):
        cache = tmp_path / f"fetchmail-{n}.fetchids"
        assert cache.read_text() == "a@h 1\na@h 2\nb@h 7\n"
        assert cache.stat().st_mode & 0o777 == 0o600
    (tmp_path / "fetchmail-1.fetchids").write_text("a@h 3\n")            # seen in parallel mode
    run.merge_idfiles(tmp_path, [tmp_path / ".fetchids"])                 # back to one fetchmail
    assert set((tmp_path / ".fetchids").read_text().split("\n")) >= {"a@h 1", "a@h 3", "b@h 7"}


def test_no_uidl_cache_yet_writes_nothing(tmp_path):
    run.merge_idfiles(tmp_path, [tmp_path / ".fetchids"])
    assert not (tmp_path / ".fetchids").exists()
