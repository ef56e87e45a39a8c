"""Container start-up chores that are not files: state volume, vmail ids, log folder,
the Postfix queue's layout and the mail store's owners.

All idempotent: a restarted container finds everything already right and
changes nothing (docker-mailserver re-runs mutating scripts; #3109).

`python3 -m mailwright.prepare [--check] queue|mail|host` runs the two repairs a
VPS deploy (and the image build) need too: `--check` only lists what is wrong,
one line each (the pyinfra fact), and changes nothing.
"""

from __future__ import annotations

import argparse
import logging
import grp
import os
import pwd
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from ops.settings import Settings

log = logging.getLogger("mailwright.prepare")

STATE = Path("/var/mail-state")


def state_name(path: str | Path) -> str:
    """docker-mailserver's name for a state folder: the path under /var (or under / for
    anything else), '/' -> '-': /var/lib/postfix -> lib-postfix, /etc/postsrsd.secret ->
    etc-postsrsd.secret. A volume from docker-mailserver is then found as it is."""
    p = Path(path)
    rel = p.relative_to("/var") if p.is_relative_to("/var") else p.relative_to("/")
    return str(rel).replace("/", "-")


def consolidate_state(s: Settings, root: Path = STATE, folders: list[str] | None = None) -> None:
    """Keep the enabled daemons' state (their descriptors' `state`) in /var/mail-state when it is
    mounted; persisted data wins."""
    if not root.is_dir():
        return
    if folders is None:
        from ops import daemons
        folders = daemons.state_folders(s)
    for src in map(Path, folders):
        dest = root / state_name(src)
        # mailwright before 2026-11-29 named the folders after the whole path (var-lib-postfix).
        legacy = root / str(src).strip("/").replace("/", "-")
        if legacy != dest and legacy.exists() and not dest.exists() and not legacy.is_symlink():
            legacy.rename(dest)
            log.info("renamed %s to docker-mailserver's name %s", legacy, dest)
        if src.is_symlink():
            if os.readlink(src) != str(dest):
                src.unlink()
                src.symlink_to(dest)
            continue
        if dest.exists():
            shutil.rmtree(src, ignore_errors=True)
            log.info("using persisted %s for %s", dest, src)
        elif src.exists():
            # mv, not shutil.move: across filesystems only mv (as root) keeps the owners,
            # and Postfix refuses a queue that is not postfix's.
            subprocess.run(["mv", str(src), str(dest)], check=True)
        else:
            dest.mkdir(parents=True)
        src.symlink_to(dest)


def vmail_ids(s: Settings) -> None:
    """The vmail user `docker` gets DMS_VMAIL_UID/GID; mail_ownership() then gives it the store."""
    if grp.getgrnam("docker").gr_gid != s.DMS_VMAIL_GID:
        subprocess.run(["groupmod", "-o", "-g", str(s.DMS_VMAIL_GID), "docker"], check=True)
    if pwd.getpwnam("docker").pw_uid != s.DMS_VMAIL_UID:
        subprocess.run(["usermod", "-o", "-u", str(s.DMS_VMAIL_UID), "docker"], check=True)


def logs() -> None:
    folder = Path("/var/log/mail")
    folder.mkdir(parents=True, exist_ok=True)
    mail_log = folder / "mail.log"
    if not mail_log.exists():
        mail_log.touch(mode=0o644)
    legacy = Path("/var/log/mail.log")
    if not legacy.is_symlink():
        legacy.unlink(missing_ok=True)
        legacy.symlink_to(mail_log)


def timezone(s: Settings) -> None:
    if not s.TZ:
        return
    zone = Path("/usr/share/zoneinfo") / s.TZ
    if not zone.is_file():
        log.warning("TZ=%s is not a known time zone; keeping UTC", s.TZ)
        return
    localtime = Path("/etc/localtime")
    if localtime.is_symlink() and os.readlink(localtime) == str(zone):
        return
    localtime.unlink(missing_ok=True)
    localtime.symlink_to(zone)
    Path("/etc/timezone").write_text(s.TZ + "\n")


def snakeoil(s: Settings) -> None:
    """SSL_TYPE=snakeoil: Debian's test certificate, made here so no image carries a key."""
    if s.SSL_TYPE == "snakeoil" and not Path("/etc/ssl/private/ssl-cert-snakeoil.key").exists():
        subprocess.run(["make-ssl-cert", "generate-default-snakeoil"], check=True)


# --- the Postfix queue ----------------------------------------------------------------------

POSTFIX_FILES = Path("/etc/postfix/postfix-files")
QUEUE = Path("/var/spool/postfix")
# postfix-files' owner/group names, as main.cf sets them (Debian's defaults).
NAMES = {"$mail_owner": "postfix", "$setgid_group": "postdrop"}


def queue_layout(postfix_files: Path = POSTFIX_FILES) -> list[tuple[str, str, str, int, bool]]:
    """The queue's directories as Postfix's own `postfix-files` lists them:
    (name, owner, group or '', mode, recursive owner)."""
    layout = []
    for line in postfix_files.read_text().splitlines():
        fields = line.split(":")
        if line.startswith("#") or len(fields) < 5 or fields[1] != "d":
            continue
        path, _, owner, group, mode = fields[:5]
        if not path.startswith("$queue_directory/"):
            continue
        name = path[len("$queue_directory/"):]
        layout.append((name, NAMES.get(owner, owner), "" if group == "-" else NAMES.get(group, group),
                       int(mode, 8), "r" in (fields[5] if len(fields) > 5 else "")))
    return layout


def postfix_queue(check: bool = False, queue: Path = QUEUE, postfix_files: Path = POSTFIX_FILES) -> list[str]:
    """Create the queue directories that are missing and reset their owners and modes, as
    `postfix set-permissions` would (what `postfix start` checks; mailwright starts Postfix's
    master directly). Without `hold` and `trace`, `mailq` fails with "malformed showq server
    response". A few stat calls when all is right (set-permissions costs ~0.3 s)."""
    if not postfix_files.is_file():
        return []
    root = Path(os.path.realpath(queue))       # through the state volume's symlink
    wrong = []
    for name, owner, group, mode, recursive in queue_layout(postfix_files):
        path = root / name
        uid = pwd.getpwnam(owner).pw_uid
        gid = grp.getgrnam(group).gr_gid if group else -1
        try:
            st = path.lstat()
        except FileNotFoundError:
            wrong.append(f"missing Postfix queue directory {path}")
            if not check:
                path.mkdir(mode=0o700)
                os.chown(path, uid, gid)
                os.chmod(path, mode)
            continue
        if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
            raise OSError(f"{path} is not a directory; the Postfix queue needs one there")
        if st.st_uid != uid or (gid != -1 and st.st_gid != gid):
            wrong.append(f"wrong owner of Postfix queue directory {path}")
            if not check:
                os.chown(path, uid, gid)
                if recursive:       # queue files of a previous version's postfix uid
                    for entry in walk(path):
                        os.lchown(entry, uid, -1)
        if st.st_mode & 0o777 != mode:
            wrong.append(f"wrong mode of Postfix queue directory {path}")
            if not check:
                os.chmod(path, (st.st_mode & 0o7000) | mode)
    if wrong and not check:
        log.info("repaired the Postfix queue: %s", "; ".join(wrong))
    return wrong


# --- the mail store's owners ----------------------------------------------------------------

MAIL = Path("/var/mail")


def walk(top: Path):
    """Every entry under `top` (not `top`), never following a symlink out of it."""
    for folder, dirs, names in os.walk(top, followlinks=False):
        for name in dirs + names:
            yield os.path.join(folder, name)


def _misowned(path: Path, uid: int, gid: int) -> bool:
    st = path.lstat()
    return (st.st_uid, st.st_gid) != (uid, gid)


def _children(path: Path) -> list[Path]:
    """Entries of a real directory (a symlink is not entered)."""
    if path.is_symlink() or not path.is_dir():
        return []
    return sorted(path.iterdir())


def mail_ownership(check: bool = False, mail: Path = MAIL, user: str = "docker") -> list[str]:
    """Give the mail store to the vmail user, as docker-mailserver does at start.

    A fresh bind mount, or mail copied from another host, is root's: Dovecot's LMTP then
    fails with `Permission denied` and mail waits in the queue. Checked cheaply down to
    <domain>/<user>/<entry> (docker-mailserver's depth 3); only a user folder found wrong
    there (or the whole domain, when the domain folder is) is walked and lchown'd, never
    through a symlink. Returns the top folders changed."""
    if not mail.is_dir():
        return []
    pw = pwd.getpwnam(user)
    uid, gid = pw.pw_uid, pw.pw_gid
    top_wrong = _misowned(mail, uid, gid)
    todo: list[Path] = []           # folders walked and chowned whole
    for domain in _children(mail):
        if top_wrong or _misowned(domain, uid, gid):
            todo.append(domain)
            continue
        for folder in _children(domain):
            if _misowned(folder, uid, gid) or any(_misowned(e, uid, gid) for e in _children(folder)):
                todo.append(folder)
    # Entries directly in /var/mail or a domain folder that are not folders (rare) are left alone
    # unless their parent is walked.
    if not todo and not top_wrong:
        return []
    names = [str(p.relative_to(mail)) for p in todo]
    if check:
        return [f"{mail} is not owned by {user}"] * top_wrong + [f"{mail / n} is not owned by {user}" for n in names]
    count = 0
    if top_wrong:
        os.chown(mail, uid, gid)
        count += 1
    for top in todo:
        entries = [str(top)] + ([] if top.is_symlink() else list(walk(top)))
        for entry in entries:
            st = os.lstat(entry)
            if (st.st_uid, st.st_gid) != (uid, gid):
                os.lchown(entry, uid, gid)
                count += 1
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    log.info("gave %d entries of %s to %s (%d:%d): %s", count, mail, user, uid, gid,
             shown or "the folder itself")
    return [str(mail)] * top_wrong + names


def container(s: Settings) -> None:
    consolidate_state(s)
    postfix_queue()
    vmail_ids(s)
    mail_ownership()
    logs()
    timezone(s)
    snakeoil(s)


def main(argv: list[str] | None = None) -> int:
    """The repairs a VPS deploy and the image build run (the container's start runs them itself)."""
    import logging.handlers
    parser = argparse.ArgumentParser(prog="mailwright.prepare")
    parser.add_argument("--check", action="store_true", help="only list what is wrong ('unknown': cannot tell yet)")
    parser.add_argument("--syslog", action="store_true", help="log the changes to syslog too (the journal on a VPS)")
    parser.add_argument("what", choices=("queue", "mail", "host"), help="host: both")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    if args.syslog and os.path.exists("/dev/log"):
        handler = logging.handlers.SysLogHandler(address="/dev/log")
        handler.ident = "mailwright-prepare: "
        logging.getLogger().addHandler(handler)
    wrong = []
    if args.what in ("queue", "host"):
        if args.check and not POSTFIX_FILES.is_file():
            wrong.append("unknown")         # Postfix not installed yet: the repair runs after it is
        else:
            wrong += postfix_queue(check=args.check)
    if args.what in ("mail", "host"):
        try:
            pwd.getpwnam("docker")
        except KeyError:
            if args.check:
                wrong.append("unknown")
        else:
            wrong += mail_ownership(check=args.check)
    if args.check:
        print("\n".join(wrong), end="\n" if wrong else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
