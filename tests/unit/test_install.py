"""A non-editable install ships the whole runtime: every package, files/ and the shell scripts.

The working tree (what git tracks or would track) is copied aside, an sdist is
built from it and a wheel from that sdist, both with this venv's setuptools and
no index (offline). The wheel goes, without its dependencies, into a fresh venv
that sees this venv's packages through a plain path entry: the dependencies
but not this venv's editable install of the checkout, whose hook lives in a .pth
file that a path entry does not run. A Python started outside the repository
then imports and renders from the installed copy only.

No docker, no network; about 4 s (venv, sdist, wheel).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FQDN = "mail.example.test"

PROBE = r"""
import importlib.metadata as md, json, sys
from pathlib import Path

import ops, mailwright
import ops.postfix.config, ops.dovecot.config, mailwright.cli, mailwright.cli.main, mailwright.configure
from ops import plan, render, settings as S

config_dir = sys.argv[1]
s = S.load(host_data={"MAILWRIGHT_INIT": "container", "MAILWRIGHT_CONFIG_DIR": config_dir},
           environ={"OVERRIDE_HOSTNAME": sys.argv[2]})
files = plan.files(s)
dist = md.distribution("mailwright")
print(json.dumps({
    "ops": ops.__file__,
    "mailwright": mailwright.__file__,
    "templates": sorted(str(p.relative_to(render.FILES)) for p in render.FILES.rglob("*") if p.is_file()),
    "scripts": sorted(p.name for p in Path(mailwright.__file__).parent.glob("*.sh")),
    "rendered": {f.path: f.content for f in files},
    "requires": dist.requires,
    "tops": sorted({f.parts[0] for f in dist.files}),
}))
"""


def _run(argv, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, **kw)
    assert p.returncode == 0, f"{' '.join(map(str, argv))}: exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _tree(dst: Path) -> None:
    """The working tree as git tracks it or would track it (no .venv, no egg-info, no caches)."""
    out = _run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]).stdout
    for rel in filter(None, out.split("\0")):
        src = REPO / rel
        if src.is_file() and not src.is_symlink():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _repo_files(top: str, pattern: str = "**/*") -> list[str]:
    return sorted(str(p.relative_to(REPO / top)) for p in (REPO / top).glob(pattern)
                  if p.is_file() and "__pycache__" not in p.parts)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("install")
    src, dist, venv, outside = root / "src", root / "dist", root / "venv", root / "elsewhere"
    for d in (src, dist, outside / "config"):
        d.mkdir(parents=True)
    _tree(src)
    # pip's configured indexes stay out of it: everything below is offline.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")} | {"PIP_NO_INDEX": "1"}
    _run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; b.build_sdist(sys.argv[1])",
          dist], cwd=src, env=env)
    sdist, = dist.glob("mailwright-*.tar.gz")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, sdist],
         cwd=root, env=env)
    wheel, = dist.glob("mailwright-*.whl")
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    py = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", wheel], cwd=root, env=env)
    purelib = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (purelib / "zz_deps_from_test_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root)}
    p = _run([py, "-c", PROBE, outside / "config", FQDN], cwd=outside, env=clean)
    return {"venv": venv, "purelib": purelib, **json.loads(p.stdout)}


def test_the_installed_copy_is_what_runs(installed):
    for mod in ("ops", "mailwright"):
        assert Path(installed[mod]).is_relative_to(installed["purelib"]), installed[mod]


def test_every_template_and_shell_script_is_shipped(installed):
    assert installed["templates"] == _repo_files("files")
    assert installed["scripts"] == _repo_files("mailwright", "*.sh")
    assert "lib.sh" in installed["scripts"] and "supervise.sh" in installed["scripts"]


def test_the_installed_package_renders_the_plan(installed):
    rendered = installed["rendered"]
    assert f"myhostname = {FQDN}" in rendered["/etc/postfix/main.cf"].splitlines()
    assert rendered["/etc/dovecot/dovecot.conf"]
    assert rendered["/etc/mailname"] == "example.test\n"


def test_only_our_packages_and_pinned_runtime_dependencies(installed):
    assert set(installed["tops"]) <= {"ops", "mailwright", "mailwright-0.1.0.dist-info", ".."}, installed["tops"]
    runtime = [r for r in installed["requires"] if "extra ==" not in r]
    assert runtime == ["pyinfra==3.10.0", "jinja2==3.1.6"]
    test_extra = {r.split(";")[0].strip() for r in installed["requires"] if 'extra == "test"' in r}
    assert {r.split("==")[0] for r in test_extra} == {"pytest", "trustme", "docker", "hypothesis", "setuptools"}
    assert all("==" in r for r in test_extra), test_extra
    assert (installed["venv"] / "bin" / "mailwright-setup").is_file()
