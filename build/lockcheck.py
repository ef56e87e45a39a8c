"""Hold a Debian root filesystem to build/packages.lock.

Runs on the build host (against mmdebstrap's chroot) and inside the image
build (Debian's python3, standard library only), so it takes the root
directory as an argument instead of asking dpkg or apt.

  pin     write apt preferences that force every locked version
  unpin   remove them again (an operator's apt inside the container floats)
  avail   fail if the mirror lacks a locked version that is not installed yet
  verify  fail if installed packages differ from the lock

A pin on a version the mirror no longer carries is silently ignored by apt,
so `avail`/`verify` are what make the build fail loudly instead of floating.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

PIN_FILE = "etc/apt/preferences.d/mailwright-lock"
LOCK_HINT = "refresh the lock on purpose with: python build/image.py --refresh-lock"


def read_lock(path: str) -> dict[str, str]:
    out = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, version = line.partition("=")
            if not sep or not name or not version:
                sys.exit(f"{path}:{n}: expected package=version, got {line!r}")
            out[name] = version
    return out


def paragraphs(text: str):
    for para in text.split("\n\n"):
        fields = {}
        for line in para.splitlines():
            if line[:1] in (" ", "\t") or ":" not in line:
                continue
            k, v = line.split(":", 1)
            fields[k] = v.strip()
        if fields:
            yield fields


def installed(root: str) -> dict[str, str]:
    try:
        with open(os.path.join(root, "var/lib/dpkg/status")) as f:
            text = f.read()
    except FileNotFoundError:
        return {}
    return {
        p["Package"]: p["Version"]
        for p in paragraphs(text)
        if p.get("Status", "").endswith(" installed") and "Package" in p
    }


def available(root: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for path in glob.glob(os.path.join(root, "var/lib/apt/lists/*_Packages")):
        with open(path, errors="replace") as f:
            for p in paragraphs(f.read()):
                if "Package" in p and "Version" in p:
                    out.setdefault(p["Package"], set()).add(p["Version"])
    return out


def cmd_pin(root: str, lock: dict[str, str]):
    path = os.path.join(root, PIN_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("# written by build/lockcheck.py from build/packages.lock; removed after the build\n")
        for name in sorted(lock):
            f.write(f"\nPackage: {name}\nPin: version {lock[name]}\nPin-Priority: 1001\n")


def cmd_unpin(root: str):
    try:
        os.unlink(os.path.join(root, PIN_FILE))
    except FileNotFoundError:
        pass


def missing_from_mirror(root: str, lock: dict[str, str], names) -> list[str]:
    have = installed(root)
    avail = available(root)
    if not avail:
        sys.exit("lockcheck: no apt lists under var/lib/apt/lists: run apt-get update first")
    out = []
    for name in sorted(names):
        want = lock[name]
        if have.get(name) == want or want in avail.get(name, ()):
            continue
        offered = ", ".join(sorted(avail.get(name, ()))) or "nothing"
        out.append(f"  {name}={want}: the mirror lacks this version (it offers {offered})")
    return out


def cmd_avail(root: str, lock: dict[str, str]):
    problems = missing_from_mirror(root, lock, lock)
    if problems:
        sys.exit("lockcheck: locked package versions are not available:\n"
                 + "\n".join(problems) + "\n" + LOCK_HINT)


def cmd_verify(root: str, lock: dict[str, str], exact: bool):
    have = installed(root)
    problems = []
    for name in sorted(have):
        if name not in lock:
            problems.append(f"  {name}={have[name]}: installed but not in the lock")
        elif have[name] != lock[name]:
            problems.append(f"  {name}: installed {have[name]}, locked {lock[name]}")
    if exact:
        for name in sorted(set(lock) - set(have)):
            problems.append(f"  {name}={lock[name]}: locked but not installed")
    if problems:
        hint = []
        if available(root):
            hint = missing_from_mirror(root, lock, [n for n in lock if have.get(n) != lock[n]])
        sys.exit("lockcheck: installed packages differ from build/packages.lock:\n"
                 + "\n".join(problems + hint) + "\n" + LOCK_HINT)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["pin", "unpin", "avail", "verify"])
    ap.add_argument("--root", default="/")
    ap.add_argument("--lock")
    ap.add_argument("--exact", action="store_true",
                    help="verify: every locked package must be installed too")
    args = ap.parse_args(argv)
    if args.command == "unpin":
        return cmd_unpin(args.root)
    if not args.lock:
        ap.error("--lock is required")
    lock = read_lock(args.lock)
    if args.command == "pin":
        cmd_pin(args.root, lock)
    elif args.command == "avail":
        cmd_avail(args.root, lock)
    else:
        cmd_verify(args.root, lock, args.exact)


if __name__ == "__main__":
    main()
