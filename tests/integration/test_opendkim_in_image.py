"""The generated OpenDKIM configuration and its final policy script, loaded by the image's OpenDKIM.

`opendkim -n` reads the configuration and loads (and runs, with no message) the FinalPolicyScript,
then exits: a Lua syntax error there crashes OpenDKIM (every message would then meet Postfix's
milter tempfail, 451 4.7.1). The text tests in tests/unit/test_opendkim_templates.py cannot see
that. Skipped without docker or without the image (`mailwright:latest`, or $MAILWRIGHT_IMAGE);
never builds it.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from ops import configdir, settings as S
from ops.opendkim import config

pytestmark = pytest.mark.docker



def check(image: str, tmp_path: Path, script: str | None = None) -> subprocess.CompletedProcess:
    """`opendkim -n` on the rendered /etc/opendkim.conf and script (`script` replaces the script)."""
    folder = tmp_path / "config"
    folder.mkdir(exist_ok=True)
    s = S.load(environ={"MAILWRIGHT_INIT": "container"}, fqdn="mail.example.test")
    files = {f.path: f for f in config.files(s, configdir.read(folder), None, [], [], ["127.0.0.1"])}
    conf, final = tmp_path / "opendkim.conf", tmp_path / "final.lua"
    conf.write_text(files[config.CONF].content)
    final.write_text(files[config.FINAL].content if script is None else script)
    final.chmod(0o644)
    # The tables are empty files here: only the configuration and the script are checked.
    return subprocess.run(
        ["docker", "run", "--rm", "--name", f"mwtest-dkimconf-{uuid.uuid4().hex[:8]}", "--network", "none",
         "-v", f"{conf}:{config.CONF}:ro", "-v", f"{final}:{config.FINAL}:ro", "--entrypoint", "/bin/sh", image,
         "-c", f"install -d -o opendkim -g opendkim /run/opendkim && touch {config.KEYTABLE} "
               f"{config.SIGNINGTABLE} {config.TRUSTED} && opendkim -n -x {config.CONF}"],
        capture_output=True, text=True, timeout=120)


def test_opendkim_loads_the_generated_configuration_and_final_script(image, tmp_path):
    r = check(image, tmp_path)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)


def test_the_check_sees_a_broken_script(image, tmp_path):
    """The check above can fail: a script with a syntax error is refused (OpenDKIM crashes on it)."""
    r = check(image, tmp_path, script="local sigs = \n")
    assert r.returncode != 0, (r.stdout, r.stderr)
