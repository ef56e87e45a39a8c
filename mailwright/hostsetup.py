"""`mailwright-setup` / `./setup.sh`: run `setup …` from the operator's machine.

docker-mailserver's `setup.sh [-c CONTAINER] [-i IMAGE] [-p CONFIG_PATH] COMMAND…`,
plus a VPS over SSH:

- `-c NAME`, or the running container labelled
  `org.opencontainers.image.title=mailwright`: `docker exec -i NAME setup …`;
- no running container: a throw-away `docker run --rm` of IMAGE with the config
  folder (CONFIG_PATH, default `./docker-data/dms/config`) mounted at
  `/tmp/docker-mailserver`, which is all `setup` edits;
- `--ssh [user@]host[:port]`, or `--ssh NAME` for a host of the pyinfra
  inventory (its `ssh_*` host data is used): `ssh … setup …` on the VPS.

Arguments reach the remote `setup` unchanged (quoted for the remote shell), the
exit code comes back, and passwords are prompted for by the remote side so they
never appear in a process list here. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

LABEL = "org.opencontainers.image.title=mailwright"
DEFAULT_IMAGE = "mailwright:latest"
DMS_CONFIG = "/tmp/docker-mailserver"

USAGE = """OPTIONS (of this host-side wrapper, before the COMMAND)
    -c CONTAINER        The running mailwright container (default: the one labelled
                        org.opencontainers.image.title=mailwright).
    -i IMAGE            The image for a one-off container when none is running
                        (default: the running container's image, else mailwright:latest).
    -p PATH             The config folder mounted into that one-off container
                        (default: ./docker-data/dms/config, or ./config if it exists).
    --ssh TARGET        Run on a VPS over SSH: [user@]host[:port], or the name of a host
                        of the pyinfra inventory.
    --inventory FILE    The pyinfra inventory for --ssh NAME (default: ./inventory.py).
    -o SSH_OPTION       An extra `ssh -o` option (repeatable).

EXIT STATUS
    The exit status of `setup` (0 success, 1 invalid argument, 2 unknown command);
    1 when the container, image or host cannot be reached.
"""


class HostError(Exception):
    pass


@dataclass
class Options:
    container: str = ""
    image: str = ""
    config_path: str = ""
    ssh: str = ""
    inventory: str = ""
    ssh_options: list[str] = field(default_factory=list)
    command: list[str] = field(default_factory=list)


def parse(argv: list[str]) -> Options:
    """getopt-style, stopping at the first word that is not an option so that
    the command's own options (`email del -y`) pass through untouched."""
    o = Options()
    args = list(argv)
    takes = {"-c": "container", "-i": "image", "-p": "config_path", "--ssh": "ssh", "--inventory": "inventory"}
    while args and args[0].startswith("-"):
        flag = args.pop(0)
        if flag == "--":
            break
        name, _, inline = flag.partition("=") if flag.startswith("--") else (flag[:2], "", flag[2:])
        if name in ("-z", "-Z", "-R"):
            continue            # SELinux labels / Podman rootless: irrelevant here, accepted for scripts
        if name not in takes and name != "-o":
            raise HostError(f"Invalid option: '{flag}'\nUse './setup.sh help' to get a complete overview.")
        value = inline or (args.pop(0) if args else None)
        if not value:
            raise HostError(f"The option '{name}' needs a value")
        if name == "-o":
            o.ssh_options.append(value)
        else:
            setattr(o, takes[name], value)
    o.command = args or ["help"]
    return o


# --- SSH -----------------------------------------------------------------------------------------

def inventory_hosts(path: Path) -> dict[str, dict]:
    """Hosts of a pyinfra inventory file: `name` or `(name, data)` items of its
    top-level lists, and `(hosts, group_data)` groups. Executes the file (it is
    Python, written by the operator), without needing pyinfra."""
    cwd = os.getcwd()
    try:
        os.chdir(path.parent)
        namespace = runpy.run_path(str(path))
    finally:
        os.chdir(cwd)
    hosts: dict[str, dict] = {}

    def add(items, group_data: dict) -> None:
        for item in items:
            if isinstance(item, str):
                hosts.setdefault(item, dict(group_data))
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str) \
                    and isinstance(item[1], dict):
                hosts.setdefault(item[0], {**group_data, **item[1]})

    for name, value in namespace.items():
        if name.startswith("_"):
            continue
        if isinstance(value, list):
            add(value, {})
        elif isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], list) \
                and isinstance(value[1], dict):
            add(value[0], value[1])
    return hosts


def ssh_argv(o: Options, base: Path, interactive: bool) -> list[str]:
    target, data = o.ssh, {}
    inventory = Path(o.inventory) if o.inventory else base / "inventory.py"
    if inventory.is_file() and re.fullmatch(r"[A-Za-z0-9._@-]+", target) and "@" not in target:
        hosts = inventory_hosts(inventory.resolve())
        data = hosts.get(target, {})
    elif o.inventory:
        raise HostError(f"Inventory '{o.inventory}' does not exist")

    user, host, port = data.get("ssh_user"), data.get("ssh_hostname") or target, data.get("ssh_port")
    if not data:
        found = re.fullmatch(r"(?:(?P<user>[^@]+)@)?(?P<host>\[[^\]]+\]|[^:@]+)(?::(?P<port>[0-9]+))?", target)
        if not found:
            raise HostError(f"'{target}' is not [user@]host[:port] nor a host of the inventory")
        user, host, port = found["user"], found["host"].strip("[]"), found["port"]

    argv = [os.environ.get("MAILWRIGHT_SSH", "ssh")]
    if port:
        argv += ["-p", str(port)]
    if data.get("ssh_key"):
        argv += ["-i", str(data["ssh_key"])]
    if data.get("ssh_known_hosts_file"):
        argv += ["-o", f"UserKnownHostsFile={data['ssh_known_hosts_file']}"]
    if "ssh_strict_host_key_checking" in data:
        argv += ["-o", f"StrictHostKeyChecking={data['ssh_strict_host_key_checking']}"]
    for option in o.ssh_options:
        argv += ["-o", option]
    argv += ["-t"] if interactive else ["-T"]
    argv += ["--", f"{user}@{host}" if user else host, "setup " + shlex.join(o.command)]
    return argv


# --- docker --------------------------------------------------------------------------------------

def docker() -> str:
    found = os.environ.get("DOCKER") or shutil.which("docker") or shutil.which("podman")
    if not found:
        raise HostError("No supported Container Runtime Interface detected.")
    return found


def running(cri: str) -> tuple[str, str]:
    """(image, name) of the newest running mailwright container, or ('', '')."""
    done = subprocess.run([cri, "ps", "--no-trunc", "--format", "{{.Image}};{{.Names}}", "--filter",
                           f"label={LABEL}"], capture_output=True, text=True)
    if done.returncode != 0:
        raise HostError(f"'{cri} ps' failed: {done.stderr.strip()}")
    lines = [line for line in done.stdout.splitlines() if ";" in line]
    if not lines:
        return "", ""
    image, name = lines[0].split(";", 1)        # `docker ps` lists the newest first
    return image, name


def default_config_path(base: Path) -> Path:
    legacy = base / "config"
    return legacy if legacy.is_dir() else base / "docker-data" / "dms" / "config"


def docker_argv(o: Options, base: Path, interactive: bool) -> list[str]:
    cri = docker()
    tty = ["-i", "-t"] if interactive else ["-i"]
    image, name = running(cri) if not o.container else ("", o.container)
    # An explicit -p means "this folder", so it wins over a running container found by label.
    if o.container or (name and not o.config_path):
        return [cri, "exec", *tty, name, "setup", *o.command]

    if o.config_path:
        config = Path(o.config_path) if os.path.isabs(o.config_path) else base / o.config_path
        if not config.is_dir():
            raise HostError(f"Specified directory '{config}' doesn't exist")
    else:
        config = default_config_path(base)
    image = o.image or image or DEFAULT_IMAGE
    if subprocess.run([cri, "image", "inspect", image], capture_output=True).returncode != 0:
        raise HostError(f"Image '{image}' not found; build it with 'make image' or name one with -i")
    # `setup` only edits the config folder: no network, no mail server started. The image runs a
    # command it is given instead of the server (docker-mailserver's documented
    # `docker run --rm … IMAGE setup …`): the same path here, no --entrypoint override.
    return [cri, "run", "--rm", *tty, "--network", "none", "-v", f"{config.resolve()}:{DMS_CONFIG}",
            image, "setup", *o.command]


# --- check: runs here, talks to the server over the network ------------------------------------

CHECK_USAGE = """CHECK(8)

NAME
    check - a live self-test of a running mailwright server, from outside it

SYNOPSIS
    ./setup.sh [ -c CONTAINER | --ssh TARGET ] check [ OPTIONS... ]

OPTIONS
    --address HOST      Where to connect (default: the container's address, or the SSH host).
                        With --address alone (no -c/--ssh) also give --fqdn and --account.
    --fqdn NAME         The server's name (default: what the server says).
    --account U:P       Use this account instead of creating and removing a test account.
    --cafile FILE       Also trust this CA (a private or test CA).
    --resolver IP[:PORT]  The DNS resolver for the DNS and DKIM checks (default: the server's own
                        for the DNS records, the system's for the DKIM key).
    --no-dns            Leave out the DNS checks.
    --wait SECONDS      How long a message may take to arrive (default 60).
    --json              Machine-readable output.

EXIT STATUS
    0 every check passed; 1 warnings; 2 a failure (or the server could not be reached).
"""


def check_main(o: Options, base: Path) -> int:
    from mailwright import selfcheck
    opts = {"address": "", "fqdn": "", "account": "", "cafile": None, "resolver": None, "dns": True,
            "wait": 60.0, "json": False}
    args = o.command[1:]
    while args:
        a = args.pop(0)
        if a in ("help", "-h", "--help"):
            print(CHECK_USAGE, end="")
            return 0
        if a == "--json":
            opts["json"] = True
        elif a == "--no-dns":
            opts["dns"] = False
        elif a in ("--address", "--fqdn", "--account", "--cafile", "--resolver", "--wait") and args:
            value = args.pop(0)
            key = a[2:]
            if key == "wait":
                try:
                    opts["wait"] = float(value)
                except ValueError:
                    raise HostError(f"--wait '{value}' is not a number of seconds")
            elif key == "resolver":
                from mailwright.dnswire import parse_server
                try:
                    opts["resolver"] = parse_server(value)
                except ValueError:
                    raise HostError(f"--resolver '{value}' is not IP, IPv4:PORT or [IPv6]:PORT")
            else:
                opts[key] = value
        else:
            raise HostError(f"check: unknown option '{a}'\n{CHECK_USAGE}")
    account = None
    if opts["account"]:
        user, sep, password = opts["account"].partition(":")
        if not sep or "@" not in user:
            raise HostError("--account needs USER@DOMAIN:PASSWORD")
        account = (user, password)

    runner, address = None, opts["address"]
    if o.ssh or o.container or not opts["address"]:
        def runner(command: list[str], stdin: str) -> tuple[int, str, str]:
            sub = Options(o.container, o.image, "", o.ssh, o.inventory, o.ssh_options, command)
            argv = ssh_argv(sub, base, False) if o.ssh else docker_argv(sub, base, False)
            if argv[1] == "run":
                raise HostError("no running mailwright container: start one, or name it with -c, "
                                "or check a remote server with --ssh/--address")
            p = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=300)
            return p.returncode, p.stdout, p.stderr
        rc, out, err = runner(["check", "facts"], "")
        try:
            facts = json.loads(out)
        except ValueError:
            raise HostError(f"the server did not answer 'setup check facts' ({rc}): {err.strip()[-300:]}")
        if not address:
            address = ssh_host(o, base) if o.ssh else container_address(o)
    else:
        if not opts["fqdn"]:
            raise HostError("check --address without -c/--ssh needs --fqdn (and --account for the mail round trip)")
        facts = {"fqdn": opts["fqdn"], "domains": [opts["fqdn"].split(".", 1)[-1]],
                 "listen": [25, 465, 587, 143, 993], "closed": [], "tls_level": "modern"}
    if opts["fqdn"]:
        facts["fqdn"] = opts["fqdn"]
    if account:
        facts["domains"] = [account[0].rsplit("@", 1)[1]] + [d for d in facts["domains"]
                                                             if d != account[0].rsplit("@", 1)[1]]
    target = selfcheck.Target(address, facts, runner, opts["cafile"], account, opts["wait"])
    report = selfcheck.run(target, opts["resolver"], opts["dns"])
    selfcheck.render(report, opts["json"], sys.stdout)
    return report.exit_code


def container_address(o: Options) -> str:
    cri = docker()
    name = o.container or running(cri)[1]
    p = subprocess.run([cri, "inspect", "-f", "{{.HostConfig.NetworkMode}} "
                        "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", name],
                       capture_output=True, text=True)
    words = p.stdout.split()
    if p.returncode != 0 or not words:
        raise HostError(f"cannot inspect container '{name}': {p.stderr.strip()}")
    if words[0] == "host" or len(words) < 2:
        return "127.0.0.1"
    return words[1]


def ssh_host(o: Options, base: Path) -> str:
    argv = ssh_argv(Options(ssh=o.ssh, inventory=o.inventory, command=["true"]), base, False)
    target = argv[argv.index("--") + 1]
    return target.rsplit("@", 1)[-1]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    base = Path(os.environ.get("MAILWRIGHT_SETUP_DIR") or os.getcwd())
    try:
        o = parse(argv)
        if o.command[0] == "check":
            try:
                return check_main(o, base)
            except HostError as e:
                print(e, file=sys.stderr)
                return 2
        interactive = sys.stdin.isatty() and sys.stdout.isatty()
        command = ssh_argv(o, base, interactive) if o.ssh else docker_argv(o, base, interactive)
    except HostError as e:
        print(e, file=sys.stderr)
        return 1
    try:
        rc = subprocess.run(command).returncode
    except FileNotFoundError as e:
        print(f"Cannot run '{command[0]}': {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    if o.command[0] == "help":
        print(USAGE, end="")
    return rc


if __name__ == "__main__":
    sys.exit(main())
