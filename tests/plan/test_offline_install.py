"""The package index is updated only when a package is missing (ops.base.update_index).

A host that already has every package the deploy asks for (a re-run; a VPS whose packages were
installed beforehand and that has no mirror to reach) runs no `apt-get update`; one missing
package, or a locked version other than the installed one, brings the update back, before the
install. Planned against pyinfra's @fake connector: `dpkg -l` is what the DebPackages fact reads.
"""

from __future__ import annotations

from ops import daemons
from ops.settings import load

SYSTEMD = {"MAILWRIGHT_INIT": "systemd", "OVERRIDE_HOSTNAME": "mail.example.test"}
RUNTIME = ["python3", "python3-jinja2", "iproute2", "ca-certificates", "openssl"]
# What a VPS with docker-mailserver's defaults asks for (systemd installed: Amavis goes without the
# standalone sysusers package), and systemd itself.
ENABLED = sorted({p for d in daemons.enabled(load(host_data=SYSTEMD, fqdn="mail.example.test"))
                  for p in d.packages} - {"systemd-standalone-sysusers"})


def dpkg_l(packages: dict[str, str]) -> dict:
    lines = ["Desired=Unknown/Install/Remove/Purge/Hold", "||/ Name Version Architecture Description",
             "+++-====-=======-============-===========",
             *(f"ii  {n}  {v}  amd64  test package" for n, v in packages.items())]
    return {"dpkg -l": lines}


def everything(version: str = "1.0-test") -> dict[str, str]:
    return {p: version for p in RUNTIME + ENABLED + ["systemd"]}


def test_nothing_missing_no_update_and_no_install(deploy):
    r = deploy(SYSTEMD, responses=dpkg_l(everything()))
    assert r.returncode == 0, r.output[-3000:]
    assert r.op("Package index (when a package is missing)")
    assert not r.ran("apt-get update"), [c for c in r.commands if "apt-get" in c]
    assert not r.ran("apt-get -y"), [c for c in r.commands if "apt-get" in c]


def test_one_missing_package_updates_the_index_before_installing_it(deploy):
    have = everything()
    del have["dovecot-imapd"]
    r = deploy(SYSTEMD, responses=dpkg_l(have))
    assert r.returncode == 0, r.output[-3000:]
    apt = [c for c in r.commands if "apt-get" in c]
    assert any("apt-get update" in c for c in apt), apt
    install = [i for i, c in enumerate(apt) if "apt-get -y" in c and "dovecot-imapd" in c]
    assert install and install[0] > min(i for i, c in enumerate(apt) if "apt-get update" in c), apt


def test_nothing_installed_updates_the_index(deploy):
    r = deploy(SYSTEMD)
    assert r.returncode == 0, r.output[-3000:]
    assert r.ran("apt-get update")


def test_a_locked_version_other_than_the_installed_one_updates_the_index(deploy, tmp_path):
    have = everything("1.0-test")
    lock = tmp_path / "packages.lock"
    locked = {**have, **{p: "1.0-test" for d in daemons.all_daemons() for p in d.packages}}
    lock.write_text("".join(f"{n}={v}\n" for n, v in sorted(locked.items())))
    data = {**SYSTEMD, "mailwright_package_lock": str(lock)}
    # Every locked version installed (systemd-standalone-sysusers too: the lock pins all of it).
    r = deploy(data, responses=dpkg_l(locked))
    assert r.returncode == 0, r.output[-3000:]
    assert not r.ran("apt-get update")
    # The same names, one at another version than the lock's: that install needs the index.
    r = deploy(data, responses=dpkg_l({**locked, "postfix": "0.9-old"}))
    assert r.returncode == 0, r.output[-3000:]
    assert r.ran("apt-get update")


def test_missing_packages_reads_names_and_versions():
    from ops.base import missing_packages
    installed = {"postfix": ["3.7.11-0+deb12u1"], "amavisd-new": ["1:2.13.0-3+deb12u1"]}
    assert missing_packages(["postfix", "amavisd-new=1:2.13.0-3+deb12u1"], installed) == []
    assert missing_packages(["postfix=3.7.10", "dovecot-core", "amavisd-new=2.13.0-3+deb12u1"], installed) == \
        ["postfix=3.7.10", "dovecot-core", "amavisd-new=2.13.0-3+deb12u1"]
