"""The repository names no package-registry or mirror host.

The hosts are not listed here (that would name them): they are read from this
machine's own apt sources and pip configuration, so the check follows whatever
mirror the build actually uses. Build scripts read the mirror from the host at
build time; docs say "the Debian mirror".
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest

REPO = Path(__file__).resolve().parents[2]


def _hosts_in(text: str) -> set[str]:
    hosts = set()
    for url in re.findall(r"\b(?:https?|ftp)://[^\s\"'<>]+", text):
        host = urlsplit(url).hostname
        if host and "." in host and not host.startswith(("127.", "localhost")):
            hosts.add(host.lower())
    return hosts


def registry_hosts() -> set[str]:
    """Hosts of the apt sources and pip indexes configured on this machine (comments included:
    a commented-out snapshot mirror is still a mirror)."""
    text = ""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        try:
            text += path.read_text(errors="replace") + "\n"
        except OSError:
            pass
    for path in (Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf"), Path.home() / ".config/pip/pip.conf",
                 Path.home() / ".pip/pip.conf"):
        parser = configparser.ConfigParser()
        try:
            parser.read(path)
        except configparser.Error:
            continue
        for section in parser.sections():
            text += " ".join(parser[section].values()) + "\n"
    for name in ("PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        text += os.environ.get(name, "") + "\n"
    return _hosts_in(text)


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / p for p in out.decode().split("\0") if p]


def test_the_host_parser_finds_hosts():
    # The check below is only as good as this parser: a URI line of apt's deb822 format.
    assert _hosts_in("URIs: http://mirror.example.net/debian\n# http://snap.example.org/archive/x") == \
        {"mirror.example.net", "snap.example.org"}


def test_no_tracked_file_names_a_registry_or_mirror_host():
    hosts = registry_hosts()
    if not hosts:
        pytest.skip("this machine configures no apt or pip mirror host to look for")
    found = []
    for path in tracked_files():
        try:
            text = path.read_text(errors="replace").lower()
        except (OSError, IsADirectoryError):
            continue
        for host in hosts:
            if host in text:
                found.append(f"{path.relative_to(REPO)} names {host}")
    assert not found, "\n".join(found)


def test_test_modules_have_unique_basenames():
    # The test folders are not packages: pytest imports test modules by basename, so
    # tests/unit/test_x.py and tests/e2e/test_x.py cannot both be collected in one run
    # (`make test` collects every lane; `make test-unit` alone would not notice).
    seen: dict[str, str] = {}
    clashes = []
    for path in sorted((REPO / "tests").rglob("test_*.py")):
        rel = str(path.relative_to(REPO))
        if path.name in seen:
            clashes.append(f"{seen[path.name]} and {rel}")
        seen.setdefault(path.name, rel)
    assert not clashes, "test modules sharing a basename: " + "; ".join(clashes)
