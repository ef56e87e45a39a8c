"""scripts/demo.py (`make up`): refuses to start when another server holds one of its host ports."""

from __future__ import annotations

import importlib.util
import os
import socket
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"


@pytest.fixture
def demo():
    spec = importlib.util.spec_from_file_location("mailwright_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def listener():
    """A server socket of this very process on an ephemeral loopback port (never a real mail port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def me() -> str:
    return f"{Path('/proc/self/comm').read_text().strip()} (pid {os.getpid()}"


def test_check_names_the_port_and_the_process_holding_it(demo, listener):
    with pytest.raises(SystemExit) as e:
        demo.check_ports(ports=(listener,))
    message = str(e.value.code)
    assert message.startswith(f"port {listener} is already taken by {me()}")
    assert "stop the other mail server" in message


def test_check_passes_when_the_ports_are_free(demo, listener):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]          # bound, never listening
        assert demo.check_ports(ports=(free,)) is None


def test_up_checks_the_ports_before_starting_a_container(demo, listener, monkeypatch):
    calls = []

    def docker(*args, check=True):
        calls.append(args[0])
        if args[0] == "run":
            raise AssertionError("a container was started although a port is taken")
        return demo.subprocess.CompletedProcess(args, 0, "", "")
    monkeypatch.setattr(demo, "docker", docker)
    monkeypatch.setattr(demo, "PORTS", (listener,), raising=False)
    monkeypatch.setattr(demo, "prepare", lambda: "pw")
    with pytest.raises(SystemExit) as e:
        demo.up()
    assert f"port {listener} is already taken by {me()}" in str(e.value.code)
    assert "run" not in calls
