"""The state volume's folder names are docker-mailserver's (lib-postfix, spool-postfix, ...), so a
DMS `mail-state` volume is used as it is; mailwright's earlier `var-...` names are renamed."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailwright import prepare
from ops import daemons, settings as S


@pytest.mark.parametrize("path,name", [("/var/lib/postfix", "lib-postfix"), ("/var/spool/postfix", "spool-postfix"),
                                       ("/var/lib/amavis", "lib-amavis"), ("/var/lib/clamav", "lib-clamav"),
                                       ("/etc/postsrsd.secret", "etc-postsrsd.secret")])
def test_names_are_docker_mailservers(path, name):
    assert prepare.state_name(path) == name


def test_every_descriptor_state_folder_gets_a_dms_style_name():
    s = S.load(environ={"MAILWRIGHT_INIT": "container"}, fqdn="mail.example.test")
    for d in daemons.all_daemons():
        for folder in d.state:
            assert not prepare.state_name(folder).startswith("var-"), (d.name, folder)


def test_a_dms_volume_is_used_and_a_legacy_name_renamed(tmp_path):
    root = tmp_path / "mail-state"
    (root / "lib-postfix").mkdir(parents=True)
    (root / "lib-postfix" / "master.lock").write_text("dms")
    legacy_src = tmp_path / "var" / "lib" / "postgrey"
    postfix_src = tmp_path / "var" / "lib" / "postfix"
    for p in (legacy_src, postfix_src):
        p.mkdir(parents=True)
        (p / "from-image").write_text("image")
    # What mailwright wrote before: the whole path as the name.
    legacy = root / str(legacy_src).strip("/").replace("/", "-")
    legacy.mkdir()
    (legacy / "postgrey.db").write_text("triplets")

    def name(path):
        return str(Path(path).relative_to(tmp_path / "var")).replace("/", "-")
    orig = prepare.state_name
    prepare.state_name = name
    try:
        prepare.consolidate_state(None, root=root, folders=[str(postfix_src), str(legacy_src)])
    finally:
        prepare.state_name = orig
    assert postfix_src.is_symlink() and (postfix_src / "master.lock").read_text() == "dms"   # persisted wins
    assert legacy_src.is_symlink() and (legacy_src / "postgrey.db").read_text() == "triplets"
    assert (root / "lib-postgrey").is_dir() and not legacy.exists()
