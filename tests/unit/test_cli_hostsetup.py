"""mailwright.hostsetup (`./setup.sh`, `mailwright-setup`) with a stand-in `docker` and `ssh`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mailwright import hostsetup as hs

REPO = Path(__file__).resolve().parents[2]


def fake_tool(tmp_path: Path, name: str, ps_output: str = "", image_exists: bool = True) -> Path:
    """A `docker`/`ssh` that records its argv and answers `ps` and `image inspect`."""
    log = tmp_path / f"{name}.log"
    tool = tmp_path / name
    tool.write_text(textwrap.dedent(f"""\
        #!{sys.executable}
        import sys
        with open({str(log)!r}, "a") as f:
            f.write(repr(sys.argv[1:]) + "\\n")
        if sys.argv[1:2] == ["ps"]:
            print({ps_output!r}, end="")
        if sys.argv[1:3] == ["image", "inspect"]:
            sys.exit({0 if image_exists else 1})
        if "fail-with-2" in sys.argv:
            sys.exit(2)
    """))
    tool.chmod(0o755)
    return tool


def calls(tmp_path: Path, name: str) -> list[list[str]]:
    log = tmp_path / f"{name}.log"
    return [eval(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_parse_stops_at_the_command():
    o = hs.parse(["-c", "mail", "-p", "cfg", "email", "del", "-y", "a@x.com"])
    assert (o.container, o.config_path, o.command) == ("mail", "cfg", ["email", "del", "-y", "a@x.com"])
    assert hs.parse([]).command == ["help"]
    assert hs.parse(["--ssh=root@h:2", "-o", "ConnectTimeout=3", "alias", "list"]).ssh_options == ["ConnectTimeout=3"]
    with pytest.raises(hs.HostError, match="Invalid option: '-x'"):
        hs.parse(["-x", "email", "list"])


def test_exec_in_the_labelled_container(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER", str(fake_tool(tmp_path, "docker", "mailwright:latest;mail-1\nold;mail-0\n")))
    assert hs.main(["email", "add", "a@x.com", "pw"]) == 0
    ps, exec_ = calls(tmp_path, "docker")
    assert f"label={hs.LABEL}" in ps
    assert exec_ == ["exec", "-i", "mail-1", "setup", "email", "add", "a@x.com", "pw"]


def test_exit_code_comes_back(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER", str(fake_tool(tmp_path, "docker", "img;mail-1\n")))
    assert hs.main(["fail-with-2"]) == 2


def test_named_container(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER", str(fake_tool(tmp_path, "docker")))
    assert hs.main(["-c", "other", "alias", "list"]) == 0
    assert calls(tmp_path, "docker") == [["exec", "-i", "other", "setup", "alias", "list"]]


def test_one_off_container_with_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER", str(fake_tool(tmp_path, "docker")))
    monkeypatch.setenv("MAILWRIGHT_SETUP_DIR", str(tmp_path))
    (tmp_path / "mycfg").mkdir()
    assert hs.main(["-p", "mycfg", "-i", "mailwright:test", "email", "list"]) == 0
    run = calls(tmp_path, "docker")[-1]
    assert run[:2] == ["run", "--rm"] and "--network" in run and run[run.index("--network") + 1] == "none"
    assert f"{tmp_path / 'mycfg'}:/tmp/docker-mailserver" in run
    # The image's own dispatch runs `setup` (as `docker run --rm IMAGE setup …` does): no entrypoint override.
    assert run[-4:] == ["mailwright:test", "setup", "email", "list"] and "--entrypoint" not in run


def test_one_off_container_default_path_and_missing_image(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER", str(fake_tool(tmp_path, "docker", image_exists=False)))
    monkeypatch.setenv("MAILWRIGHT_SETUP_DIR", str(tmp_path))
    assert hs.main(["email", "list"]) == 1
    assert "Image 'mailwright:latest' not found" in capsys.readouterr().err
    assert hs.main(["-p", "/does/not/exist", "email", "list"]) == 1
    assert "doesn't exist" in capsys.readouterr().err


def test_ssh_target_quotes_arguments(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILWRIGHT_SSH", str(fake_tool(tmp_path, "ssh")))
    monkeypatch.setenv("MAILWRIGHT_SETUP_DIR", str(tmp_path))
    assert hs.main(["--ssh", "admin@[2001:db8::1]:2222", "email", "add", "a@x.com", "p w'x"]) == 0
    argv, = calls(tmp_path, "ssh")
    assert argv[:2] == ["-p", "2222"] and argv[-2:-1] == ["admin@2001:db8::1"]
    assert argv[-1] == "setup email add a@x.com 'p w'\"'\"'x'"


def test_ssh_host_from_the_pyinfra_inventory(tmp_path, monkeypatch):
    monkeypatch.setenv("MAILWRIGHT_SSH", str(fake_tool(tmp_path, "ssh")))
    monkeypatch.setenv("MAILWRIGHT_SETUP_DIR", str(tmp_path))
    (tmp_path / "inventory.py").write_text(textwrap.dedent("""\
        mailservers = [("vps1", {"ssh_hostname": "127.0.0.1", "ssh_port": 2200, "ssh_user": "root",
                                 "ssh_key": "/k", "ssh_known_hosts_file": "/dev/null",
                                 "ssh_strict_host_key_checking": "no"}), "plain.example.com"]
        _private = ["ignored"]
    """))
    assert hs.main(["--ssh", "vps1", "quota", "set", "a@x.com", "1G"]) == 0
    argv, = calls(tmp_path, "ssh")
    assert argv == ["-p", "2200", "-i", "/k", "-o", "UserKnownHostsFile=/dev/null", "-o",
                    "StrictHostKeyChecking=no", "-T", "--", "root@127.0.0.1", "setup quota set a@x.com 1G"]


def test_setup_sh_runs_without_the_venv(tmp_path):
    env = {**os.environ, "MAILWRIGHT_SSH": str(fake_tool(tmp_path, "ssh"))}
    r = subprocess.run([str(REPO / "setup.sh"), "--ssh", "h", "email", "list"], env=env,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert calls(tmp_path, "ssh") == [["-T", "--", "h", "setup email list"]]


# --- where `setup` writes, and what the image does with a command (issues 7.0, 13.3) ------------

def test_setup_without_settings_writes_the_container_config_folder(tmp_path):
    """A one-off container has no /etc/dms-settings: the folder is docker-mailserver's, never the cwd."""
    from mailwright.cli.common import Context
    missing = str(tmp_path / "no-dms-settings")
    ctx = Context.from_env({"MAILWRIGHT_DMS_SETTINGS": missing, "MAILWRIGHT_INIT": "container"})
    assert ctx.config_dir == Path("/tmp/docker-mailserver")
    assert Context.from_env({"MAILWRIGHT_DMS_SETTINGS": missing}).config_dir == Path("/tmp/docker-mailserver")
    assert Context.from_env({"MAILWRIGHT_DMS_SETTINGS": missing, "MAILWRIGHT_INIT": "systemd"}).config_dir \
        == Path("/etc/mailwright/config")
    # Written settings win over the defaults; an empty value there is "unset", not the cwd.
    written = tmp_path / "dms-settings"
    written.write_text("MAILWRIGHT_INIT='systemd'\nMAILWRIGHT_CONFIG_DIR=''\n")
    assert Context.from_env({"MAILWRIGHT_DMS_SETTINGS": str(written)}).config_dir == Path("/etc/mailwright/config")


def test_setup_refuses_a_relative_config_folder(tmp_path, capsys):
    from mailwright.cli.common import Context
    with pytest.raises(SystemExit) as e:
        Context.from_env({"MAILWRIGHT_DMS_SETTINGS": str(tmp_path / "none"), "MAILWRIGHT_CONFIG_DIR": "config"})
    assert e.value.code == 1
    assert "'config' is not an absolute path" in capsys.readouterr().err


def init(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailwright.init", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_the_image_entrypoint_runs_a_command_instead_of_the_server():
    r = init("sh", "-c", "echo ran; exit 3")
    assert (r.returncode, r.stdout) == (3, "ran\n"), r.stderr
    r = init("no-such-command-mwtest")
    assert r.returncode == 127 and "no-such-command-mwtest" in r.stderr


def test_the_image_entrypoint_refuses_an_unknown_option():
    r = init("--bogus")
    assert r.returncode == 2 and "--bogus" in r.stderr
