"""The runtime on the target needs no pyinfra: the image has none.

What the image holds (checked on an image of main): Debian's python3 (3.11) with
python3-jinja2 and python3-markupsafe in /usr/lib/python3/dist-packages, no
pyinfra, no pip; PYTHONPATH=/opt/mailwright. The pyinfra used by the image build
lives in a throwaway venv that no layer keeps (build/install-stage.sh).

A fresh interpreter gets a meta-path finder that refuses every top-level module
the image lacks: anything but the standard library, jinja2, markupsafe and the
project's own packages. It then imports the container's entry points and runs
the configure plan. The probe first checks that the finder does refuse pyinfra,
so the test cannot pass with a blind finder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FQDN = "mail.example.test"

PROBE = r"""
import importlib.abc, sys

IMAGE_HAS = set(sys.stdlib_module_names) | {"jinja2", "markupsafe", "ops", "mailwright"}


class OnlyWhatTheImageHas(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top not in IMAGE_HAS:
            raise ModuleNotFoundError(f"No module named {top!r} in the image", name=top)
        return None


assert "pyinfra" not in sys.modules
sys.meta_path.insert(0, OnlyWhatTheImageHas())
try:
    import pyinfra  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the finder let pyinfra through")

import json
import mailwright.configure, mailwright.init, mailwright.prepare, mailwright.apply, mailwright.services
import mailwright.cli.main, mailwright.configwrite
from ops import plan, settings as S

s = S.load(host_data={"MAILWRIGHT_INIT": "container", "MAILWRIGHT_CONFIG_DIR": sys.argv[1]},
           environ={"OVERRIDE_HOSTNAME": sys.argv[2]})
files = plan.files(s)
print(json.dumps({
    "rendered": {f.path: f.content for f in files},
    "third_party": sorted({m.partition(".")[0] for m in sys.modules} - set(sys.stdlib_module_names)),
}))
"""


def test_configure_stage_runs_without_pyinfra(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    p = subprocess.run([sys.executable, "-c", PROBE, str(config), FQDN], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert f"myhostname = {FQDN}" in out["rendered"]["/etc/postfix/main.cf"].splitlines()
    assert out["rendered"]["/etc/dovecot/dovecot.conf"]
    assert "pyinfra" not in out["third_party"]
