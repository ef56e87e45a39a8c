"""The reproducible image build (build/), its pure parts: normalisation rules, the package lock.

No docker, no mmdebstrap: these run in the unit lane. The image contract is
checked on a built image in tests/integration/test_build_repro.py; the full
check, two clean builds with the same image ID, is `make verify-repro` (minutes).
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import pytest

BUILD = Path(__file__).resolve().parents[2] / "build"
sys.path.insert(0, str(BUILD))

import lockcheck  # noqa: E402
import reprotar  # noqa: E402
import rootfs  # noqa: E402

EPOCH = 1_700_000_000


def _tar(entries) -> io.BytesIO:
    """entries: (name, type, data_or_linkname, mtime)"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, kind, payload, mtime in entries:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.uname, ti.gname = mtime, "someone", "users"
            if kind == "dir":
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(ti)
            elif kind == "file":
                ti.size, ti.mode = len(payload), 0o644
                tf.addfile(ti, io.BytesIO(payload))
            elif kind == "hard":
                ti.type, ti.linkname = tarfile.LNKTYPE, payload
                tf.addfile(ti)
            elif kind == "sym":
                ti.type, ti.linkname = tarfile.SYMTYPE, payload
                tf.addfile(ti)
    buf.seek(0)
    return buf


def _written(tree: reprotar.Tree) -> bytes:
    out = io.BytesIO()
    tree.write(out, EPOCH)
    return out.getvalue()


def test_same_content_in_any_order_and_age_gives_the_same_bytes():
    files = [("etc", "dir", None, 5), ("etc/b", "file", b"b", EPOCH + 99), ("etc/a", "file", b"a", 10),
             ("usr", "dir", None, 5), ("usr/bin", "dir", None, 5), ("usr/bin/x", "file", b"x", 1)]
    t1, t2 = reprotar.Tree(), reprotar.Tree()
    t1.add_tar(_tar(files))
    t2.add_tar(_tar([(n, k, p, m + 7 if m > EPOCH else m) for n, k, p, m in reversed(files)]))
    assert _written(t1) == _written(t2)
    with tarfile.open(fileobj=io.BytesIO(_written(t1))) as tf:
        members = tf.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert max(m.mtime for m in members) == EPOCH
    assert {m.uname for m in members} == {""}


def test_layers_apply_whiteouts_and_keep_hard_links_consistent():
    tree = reprotar.Tree()
    tree.add_tar(_tar([("d", "dir", None, 1), ("d/old", "file", b"1", 1), ("d/keep", "file", b"k", 1),
                       ("o", "dir", None, 1), ("o/gone", "file", b"g", 1)]), layer=True)
    tree.add_tar(_tar([("d/.wh.old", "file", b"", 1), ("o/.wh..wh..opq", "file", b"", 1),
                       ("o/new", "file", b"n", 1), ("z", "file", b"same", 1), ("a", "hard", "z", 1)]),
                 layer=True)
    assert sorted(tree.entries) == ["a", "d", "d/keep", "o", "o/new", "z"]
    with tarfile.open(fileobj=io.BytesIO(_written(tree))) as tf:
        a, z = tf.getmember("a"), tf.getmember("z")
        # the first name in sorted order carries the data, the other links to it
        assert a.isreg() and z.islnk() and z.linkname == "a"
        assert tf.extractfile("a").read() == b"same"


def test_drop_rules_remove_secrets_logs_and_caches_but_keep_directories():
    tree = reprotar.Tree()
    tree.add_tar(_tar([
        ("etc", "dir", None, 1), ("etc/ssl", "dir", None, 1), ("etc/ssl/private", "dir", None, 1),
        ("etc/ssl/private/ssl-cert-snakeoil.key", "file", b"-----BEGIN PRIVATE KEY-----", 1),
        ("etc/ssl/certs", "dir", None, 1), ("etc/ssl/certs/ssl-cert-snakeoil.pem", "file", b"c", 1),
        ("etc/ssl/certs/abcd1234.0", "sym", "ssl-cert-snakeoil.pem", 1),
        ("etc/ssl/certs/ffff0000.0", "sym", "ISRG_Root_X1.pem", 1),
        ("etc/ssl/certs/ISRG_Root_X1.pem", "file", b"ca", 1),
        ("etc/passwd-", "file", b"x", 1), ("etc/passwd", "file", b"root:x:0:0::/root:/bin/sh\n", 1),
        ("var", "dir", None, 1), ("var/log", "dir", None, 1), ("var/log/apt", "dir", None, 1),
        ("var/log/apt/history.log", "file", b"Start-Date: today", 1),
        ("var/lib", "dir", None, 1), ("var/lib/apt", "dir", None, 1), ("var/lib/apt/lists", "dir", None, 1),
        ("var/lib/apt/lists/deb_Packages", "file", b"x", 1),
        ("var/cache", "dir", None, 1), ("var/cache/ldconfig", "dir", None, 1),
        ("var/cache/ldconfig/aux-cache", "file", b"x", 1),
        ("var/cache/debconf", "dir", None, 1), ("var/cache/debconf/config.dat-old", "file", b"x", 1),
        ("var/cache/debconf/config.dat", "file", b"x", 1),
        ("etc/machine-id", "file", b"0123", 1), ("etc/aliases.db", "file", b"\x00", 1),
        ("opt", "dir", None, 1), ("opt/mailwright", "dir", None, 1), ("opt/mailwright/ops", "dir", None, 1),
        ("opt/mailwright/ops/__pycache__", "dir", None, 1),
        ("opt/mailwright/ops/__pycache__/a.cpython-311.pyc", "file", b"x", 1),
    ]))
    tree.apply_drop_rules()
    assert sorted(tree.entries) == [
        "etc", "etc/passwd", "etc/ssl", "etc/ssl/certs", "etc/ssl/certs/ISRG_Root_X1.pem",
        "etc/ssl/certs/ffff0000.0", "etc/ssl/private",
        "opt", "opt/mailwright", "opt/mailwright/ops",
        # Kept: build/install-stage.sh compiles them hash-checked (no mtime inside).
        "opt/mailwright/ops/__pycache__", "opt/mailwright/ops/__pycache__/a.cpython-311.pyc",
        "var", "var/cache", "var/cache/debconf", "var/cache/debconf/config.dat", "var/cache/ldconfig",
        "var/lib", "var/lib/apt", "var/lib/apt/lists", "var/log", "var/log/apt",
    ]
    assert tree.private_keys() == []


def test_an_unknown_private_key_is_reported():
    tree = reprotar.Tree()
    tree.add_tar(_tar([("etc", "dir", None, 1), ("etc/x.pem", "file", b"-----BEGIN EC PRIVATE KEY-----", 1)]))
    tree.apply_drop_rules()
    assert tree.private_keys() == ["etc/x.pem"]


def test_shadow_password_change_day_is_the_epoch_day():
    tree = reprotar.Tree()
    tree.add_tar(_tar([("etc", "dir", None, 1),
                       ("etc/shadow", "file", b"root:*:19000:0:99999:7:::\npostfix:*:20417:0:99999:7:::\n", 1)]))
    tree.normalise_shadow(EPOCH)
    day = EPOCH // 86400
    assert tree.read("etc/shadow") == f"root:*:{day}:0:99999:7:::\npostfix:*:{day}:0:99999:7:::\n".encode()


def _debian_root(tmp_path: Path, installed: dict[str, str], mirror: dict[str, str]) -> Path:
    root = tmp_path / "root"
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/apt/lists").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("\n".join(
        f"Package: {n}\nStatus: install ok installed\nVersion: {v}\nArchitecture: amd64\n"
        for n, v in installed.items()))
    (root / "var/lib/apt/lists/mirror_dists_bookworm_main_binary-amd64_Packages").write_text("\n".join(
        f"Package: {n}\nVersion: {v}\n" for n, v in mirror.items()))
    return root


def test_lock_check_names_the_package_the_mirror_lacks(tmp_path, capsys):
    root = _debian_root(tmp_path, {"bash": "5.2"}, {"bash": "5.2", "postfix": "3.7.11"})
    lock = tmp_path / "packages.lock"
    lock.write_text("# SOURCE_DATE_EPOCH=1\nbash=5.2\npostfix=3.7.10\n")
    with pytest.raises(SystemExit) as e:
        lockcheck.main(["avail", "--root", str(root), "--lock", str(lock)])
    assert "postfix=3.7.10: the mirror lacks this version (it offers 3.7.11)" in str(e.value)
    lockcheck.main(["verify", "--root", str(root), "--lock", str(lock)])  # subset: fine
    with pytest.raises(SystemExit) as e:
        lockcheck.main(["verify", "--exact", "--root", str(root), "--lock", str(lock)])
    assert "postfix=3.7.10: locked but not installed" in str(e.value)
    lockcheck.main(["pin", "--root", str(root), "--lock", str(lock)])
    pins = (root / lockcheck.PIN_FILE).read_text()
    assert "Package: postfix\nPin: version 3.7.10\nPin-Priority: 1001" in pins


def test_the_mirror_comes_from_deb822_sources_not_from_the_code():
    text = ("Types: deb\n# a comment\nURIs: http://mirror.invalid/debian\nSuites: bookworm bookworm-updates\n"
            "Components: main contrib\n\nTypes: deb-src\nURIs: http://src.invalid/debian\nSuites: bookworm\n"
            "Components: main\n")
    assert list(rootfs._deb822(text)) == [
        ("http://mirror.invalid/debian", ["bookworm", "bookworm-updates"], ["main", "contrib"])]


def test_the_lock_records_the_epoch():
    lock = BUILD / "packages.lock"
    if not lock.exists():
        pytest.skip("no build/packages.lock yet")
    assert rootfs.lock_epoch(str(lock))
    entries = lockcheck.read_lock(str(lock))
    assert {"postfix", "dovecot-core", "python3", "python3-jinja2"} <= set(entries)


GCONV = "/usr/lib/x86_64-linux-gnu/gconv/"


@pytest.mark.parametrize("path", [
    GCONV + "IBM037.so", GCONV + "IBM1390.so", GCONV + "EBCDIC-AT-DE.so",
    "/usr/share/zoneinfo/right/Europe/Berlin",
    "/usr/lib/python3.11/lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so",
    "/usr/share/perl/5.36.0/pod/perldiag.pod",
    "/usr/lib/x86_64-linux-gnu/perl5/5.36/Net/SSLeay.pod",
    "/usr/share/perl/5.36.0/Unicode/Collate/allkeys.txt",
    "/usr/share/man/man8/postconf.8.gz",
])
def test_the_dpkg_config_leaves_out_files_no_daemon_uses(path):
    assert rootfs.dpkg_excludes(path)


@pytest.mark.parametrize("path", [
    # the charsets mail arrives in: Dovecot converts them through glibc's iconv
    *(GCONV + m for m in (
        "gconv-modules", "gconv-modules.cache", "UTF-16.so", "UTF-7.so", "ISO8859-1.so", "ISO8859-15.so",
        "CP1252.so", "CP1251.so", "KOI8-R.so", "KOI8-U.so", "ISO-2022-JP.so", "ISO-2022-KR.so",
        "ISO-2022-CN.so", "EUC-JP.so", "EUC-KR.so", "EUC-CN.so", "SJIS.so", "CP932.so", "GBK.so",
        "GB18030.so", "BIG5.so", "BIG5HKSCS.so", "UHC.so", "TIS-620.so", "libJIS.so", "libGB.so",
        "libKSC.so", "libCNS.so")),
    "/usr/share/zoneinfo/Europe/Berlin", "/usr/share/zoneinfo/UTC",
    "/usr/lib/python3.11/email/charset.py", "/usr/lib/python3.11/pydoc.py",
    "/usr/lib/python3.11/lib-dynload/_codecs_jp.cpython-311-x86_64-linux-gnu.so",
    "/usr/lib/python3.11/unittest/__init__.py",
    "/usr/lib/python3/dist-packages/fail2ban/server/server.py",
    "/usr/share/perl/5.36.0/unicore/Name.pl",
    "/usr/lib/x86_64-linux-gnu/perl/5.36.0/Unicode/Collate.pm",
    "/usr/lib/x86_64-linux-gnu/perl/5.36.0/Encode/JP.pm",
    "/usr/share/perl5/Mail/SpamAssassin.pm",
    "/usr/share/doc/postfix/copyright",
])
def test_the_dpkg_config_keeps_what_mail_needs(path):
    assert not rootfs.dpkg_excludes(path)


def test_dpkg_exclusion_follows_dpkg_last_match_wins():
    opts = ("path-exclude=/usr/share/doc/*", "path-include=/usr/share/doc/*/copyright")
    assert rootfs.dpkg_excludes("/usr/share/doc/x/README", opts)
    assert not rootfs.dpkg_excludes("/usr/share/doc/x/copyright", opts)
    assert not rootfs.dpkg_excludes("/usr/lib/x", opts)


@pytest.mark.parametrize("path", [
    "usr/lib/python3.11/pydoc_data/topics.py",
    "usr/lib/python3.11/pydoc_data/__pycache__/topics.cpython-311.pyc",
    "usr/lib/python3.11/test/support/__init__.py",
    "usr/lib/python3/dist-packages/fail2ban/tests/utils.py",
    "usr/lib/python3/dist-packages/fail2ban/tests/files/logs/postfix",
])
def test_the_normalisation_drops_python_code_no_daemon_imports(path):
    # (not dpkg's path-exclude: the packages' py3compile fails on a listed .py that is missing)
    assert reprotar.dropped(path)


@pytest.mark.parametrize("path", [
    "usr/lib/python3.11/pydoc.py", "usr/lib/python3.11/unittest/case.py",
    "usr/lib/python3.11/email/charset.py", "usr/lib/python3.11/__pycache__/pydoc.cpython-311.pyc",
    "usr/lib/python3/dist-packages/fail2ban/server/filter.py",
    "usr/lib/python3/dist-packages/fail2ban/client/fail2banregex.py",
])
def test_the_normalisation_keeps_the_python_daemons_use(path):
    assert not reprotar.dropped(path)
