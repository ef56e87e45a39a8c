"""`make up` / `make down`: a demo mail server for example.test on this machine.

Starts `mailwright:latest` the way a docker-mailserver user would (a
`mailserver.env`, a config folder, the four volumes), with a demo account and a
self-signed certificate made here, proves it works by sending on 587 and reading
on 993, then prints how to do the same by hand. Everything lives under
`out/demo/`; `make down` removes the container (the data stays).

The container runs with --network host: when another server already holds one
of its ports, `up` stops before starting anything and names the port and,
where /proc shows it, the process (and container) holding it.
"""

from __future__ import annotations

import imaplib
import os
import re
import secrets
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import warnings
from pathlib import Path

import trustme

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))        # run as a script: bench/ is not installed

from bench.memory import PROC, listening_inodes, socket_inodes_of  # noqa: E402
from bench.probes import port_in_use  # noqa: E402

with warnings.catch_warnings():
    # Python 3.11's crypt makes SHA512-CRYPT hashes as docker-mailserver's do; it warns of 3.13.
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt

DEMO = ROOT / "out" / "demo"
DOCKER = "/usr/bin/docker"
NAME = "mailwright-demo"
FQDN = "mail.example.test"
ACCOUNT = "demo@example.test"
ENV_FILE = Path(__file__).resolve().parent / "demo.env"
# What the demo's container binds on the host (demo.env: POP3 on, ManageSieve off).
PORTS = (25, 110, 143, 465, 587, 993, 995)
CONTAINER_ID = re.compile(r"(?:docker-|/docker/)([0-9a-f]{64})")


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([DOCKER, *args], check=check, capture_output=True, text=True)


def container_of(pid: int, proc: Path = PROC) -> str | None:
    """The name (or short id) of the Docker container a process runs in, if it runs in one."""
    try:
        m = CONTAINER_ID.search((proc / str(pid) / "cgroup").read_text())
    except OSError:
        return None
    if not m:
        return None
    try:
        name = docker("ps", "--no-trunc", "--filter", f"id={m.group(1)}", "--format", "{{.Names}}",
                      check=False).stdout.strip()
    except OSError:
        name = ""
    return name or m.group(1)[:12]


def port_holders(port: int, proc: Path = PROC) -> list[str]:
    """'<command> (pid N[, container X])' for each process with a socket listening on `port`."""
    inodes = listening_inodes(port, proc / "net")
    holders = []
    for entry in proc.iterdir() if inodes else ():
        if not entry.name.isdigit() or not socket_inodes_of([int(entry.name)], proc) & inodes:
            continue
        pid = int(entry.name)
        try:
            command = (entry / "comm").read_text().strip()
        except OSError:
            command = "?"
        where = container_of(pid, proc)
        if command == "docker-proxy":           # a port published with -p: the proxy runs on the host
            try:
                where = docker("ps", "--filter", f"publish={port}", "--format", "{{.Names}}",
                               check=False).stdout.strip().replace("\n", ", ") or None
            except OSError:
                where = None
        holders.append(f"{command} (pid {pid}" + (f", container {where}" if where else "") + ")")
    return holders


def check_ports(ports: tuple[int, ...] | None = None, proc: Path = PROC) -> None:
    """Stop with a message naming the first port taken, and who holds it."""
    ports = ports or PORTS
    for port in ports:
        if not listening_inodes(port, proc / "net") and not port_in_use(port):
            continue
        holders = port_holders(port, proc)
        who = (" by " + ", ".join(holders)) if holders else \
            f" (by a process this user cannot see: `ss -ltnp 'sport = :{port}'` as root names it)"
        sys.exit(f"port {port} is already taken{who}.\n"
                 f"The demo server binds {', '.join(map(str, ports))} on this host (--network host): "
                 "stop the other mail server first, or use it instead of the demo.")


def prepare() -> str:
    """Config folder with one account, a postmaster alias and a self-signed certificate."""
    config = DEMO / "config"
    (config / "ssl" / "demoCA").mkdir(parents=True, exist_ok=True)
    password_file = DEMO / "password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(12) + "\n")
        password_file.chmod(0o600)
    password = password_file.read_text().strip()
    accounts = config / "postfix-accounts.cf"
    if not accounts.exists():
        hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_SHA512))
        accounts.write_text(f"{ACCOUNT}|{{SHA512-CRYPT}}{hashed}\n")
        (config / "postfix-virtual.cf").write_text(f"postmaster@example.test {ACCOUNT}\n")
    ssl_dir = config / "ssl"
    if not (ssl_dir / f"{FQDN}-cert.pem").exists():
        ca = trustme.CA(organization_name="mailwright demo CA")
        cert = ca.issue_cert(FQDN)
        ca.cert_pem.write_to_path(str(ssl_dir / "demoCA" / "cacert.pem"))
        cert.cert_chain_pems[0].write_to_path(str(ssl_dir / f"{FQDN}-cert.pem"))
        cert.private_key_pem.write_to_path(str(ssl_dir / f"{FQDN}-key.pem"))
        (ssl_dir / f"{FQDN}-key.pem").chmod(0o600)
    for volume in ("mail", "mail-state", "logs"):
        (DEMO / volume).mkdir(exist_ok=True)
    return password


def start() -> None:
    docker("rm", "-f", NAME, check=False)
    docker("run", "-d", "--name", NAME, "--network", "host", "--add-host", f"{FQDN}:127.0.0.1",
           "--env-file", str(ENV_FILE),
           "-v", f"{DEMO / 'config'}:/tmp/docker-mailserver", "-v", f"{DEMO / 'mail'}:/var/mail",
           "-v", f"{DEMO / 'mail-state'}:/var/mail-state", "-v", f"{DEMO / 'logs'}:/var/log/mail",
           "mailwright:latest")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        logs = docker("logs", NAME, check=False)
        if f"{FQDN} is up and running" in logs.stdout + logs.stderr:
            return
        if docker("inspect", "-f", "{{.State.Running}}", NAME, check=False).stdout.strip() == "false":
            break
        time.sleep(0.2)
    logs = docker("logs", NAME, check=False)
    sys.exit(f"the demo server did not come up:\n{logs.stdout}{logs.stderr}")


def prove(password: str) -> None:
    """Send on 587 (STARTTLS + AUTH) and read it back on 993, verifying the demo CA."""
    ctx = ssl.create_default_context(cafile=str(DEMO / "config" / "ssl" / "demoCA" / "cacert.pem"))
    subject = f"welcome {secrets.token_hex(4)}"
    with smtplib.SMTP("127.0.0.1", 587, local_hostname="demo-client.example.test", timeout=30) as smtp:
        smtp._host = FQDN          # verify the certificate against the server's name, not 127.0.0.1
        smtp.starttls(context=ctx)
        smtp.login(ACCOUNT, password)
        smtp.sendmail(ACCOUNT, [ACCOUNT], f"From: {ACCOUNT}\r\nTo: {ACCOUNT}\r\nSubject: {subject}\r\n\r\n"
                      "Sent by make up through port 587.\r\n")
    deadline = time.monotonic() + 15
    imap = IMAP4_SSL_Named("127.0.0.1", ctx)
    imap.login(ACCOUNT, password)
    while time.monotonic() < deadline:
        imap.select("INBOX")
        if imap.search(None, "SUBJECT", f'"{subject}"')[1][0]:
            imap.logout()
            return
        time.sleep(0.5)
    sys.exit("the welcome message did not arrive in the demo mailbox within 15 s")


class IMAP4_SSL_Named(imaplib.IMAP4_SSL):
    """IMAPS to an address, verifying the certificate for FQDN."""

    def __init__(self, host: str, ctx: ssl.SSLContext):
        super().__init__(host, 993, ssl_context=ctx, timeout=30)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout)
        return self.ssl_context.wrap_socket(sock, server_hostname=FQDN)


def self_check(ca: Path) -> None:
    """The operator's `./setup.sh check` against the demo, as the last word of `make up`.
    No DNS checks: example.test is not published anywhere."""
    print(f"$ ./setup.sh -c {NAME} check --cafile {ca.relative_to(ROOT)} --no-dns", flush=True)
    p = subprocess.run([sys.executable, "-m", "mailwright.hostsetup", "-c", NAME, "check", "--cafile", str(ca),
                        "--no-dns"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT),
                                                    "MAILWRIGHT_SETUP_DIR": str(ROOT)})
    if p.returncode == 2:
        sys.exit("mailwright check found a failure in the demo server (above)")


def up() -> None:
    docker("rm", "-f", NAME, check=False)     # an earlier demo's ports are ours to take
    check_ports()
    password = prepare()
    start()
    prove(password)
    ca = DEMO / "config" / "ssl" / "demoCA" / "cacert.pem"
    self_check(ca)
    print(f"""
mailwright demo is up: {FQDN} (container {NAME}, data under {DEMO})
  account   {ACCOUNT}
  password  {password}
  CA        {ca}

Send on 587 (STARTTLS, AUTH):
  printf 'Subject: hello\\r\\n\\r\\nhi\\r\\n' > /tmp/msg.txt
  curl --ssl-reqd --cacert {ca} --resolve {FQDN}:587:127.0.0.1 --url smtp://{FQDN}:587 \\
       --user '{ACCOUNT}:{password}' --mail-from {ACCOUNT} --mail-rcpt {ACCOUNT} --upload-file /tmp/msg.txt

Read on 993 (IMAPS):
  curl --cacert {ca} --resolve {FQDN}:993:127.0.0.1 --user '{ACCOUNT}:{password}' 'imaps://{FQDN}:993/INBOX;UID=1'

Manage accounts:  ./setup.sh -c {NAME} email add someone@example.test
Stop:             make down
""")


def down() -> None:
    docker("rm", "-f", NAME, check=False)
    print(f"removed {NAME}; its data stays in {DEMO}")


if __name__ == "__main__":
    {"up": up, "down": down}[sys.argv[1] if len(sys.argv) > 1 else "up"]()
