"""A real OpenLDAP directory for the LDAP tests: Debian's slapd in its own container.

The image is the team's base plus `slapd ldap-utils` (apt, no recommends), tagged by the
hash of what goes into it, so it is built once. The container runs with --network host on
127.0.0.1:3389 (not a mail port, not 2024), with the PostfixBook schema, StartTLS with a
trustme certificate for `127.0.0.1`, and a seed the tests write (`Directory.seed`).

`stop()`/`start()` keep the container (and its database): the directory goes away and
comes back with its data, as a real outage would. `pause()`/`unpause()`: a directory that
accepts connections and does not answer (a slow or hung one).
"""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import FORBIDDEN_PORT
from . import dockercli as d

# The PostfixBook schema (cn=config form, as docker-mailserver's LDAP tests load it).
SCHEMA = Path(__file__).with_name("ldap-postfix-book.ldif")

PORT = 3389
assert PORT != FORBIDDEN_PORT
URI = f"ldap://127.0.0.1:{PORT}"
SUFFIX = "dc=localhost,dc=localdomain"
BASE = f"ou=people,{SUFFIX}"
ADMIN_DN = f"cn=admin,{SUFFIX}"
ADMIN_PW = "admin-Secret!"

DOCKERFILE = textwrap.dedent("""\
    FROM {base}
    ENV DEBIAN_FRONTEND=noninteractive
    RUN apt-get update \\
     && apt-get install -y --no-install-recommends slapd ldap-utils \\
     && apt-get clean && rm -rf /var/lib/apt/lists/* /etc/ldap/slapd.d/* /var/lib/ldap/*
""")

CONFIG_LDIF = textwrap.dedent("""\
    dn: cn=config
    objectClass: olcGlobal
    cn: config
    olcPidFile: /tmp/slapd.pid
    olcTLSCertificateFile: /seed/cert.pem
    olcTLSCertificateKeyFile: /seed/key.pem

    dn: cn=module{{0}},cn=config
    objectClass: olcModuleList
    cn: module{{0}}
    olcModulePath: /usr/lib/ldap
    olcModuleLoad: back_mdb

    dn: cn=schema,cn=config
    objectClass: olcSchemaConfig
    cn: schema

    include: file:///etc/ldap/schema/core.ldif

    include: file:///etc/ldap/schema/cosine.ldif

    include: file:///etc/ldap/schema/nis.ldif

    include: file:///etc/ldap/schema/inetorgperson.ldif

    include: file:///seed/postfix-book.ldif

    dn: olcDatabase={{-1}}frontend,cn=config
    objectClass: olcDatabaseConfig
    objectClass: olcFrontendConfig
    olcDatabase: {{-1}}frontend

    dn: olcDatabase={{0}}config,cn=config
    objectClass: olcDatabaseConfig
    olcDatabase: {{0}}config
    olcAccess: {{0}}to * by * none

    dn: olcDatabase={{1}}mdb,cn=config
    objectClass: olcDatabaseConfig
    objectClass: olcMdbConfig
    olcDatabase: {{1}}mdb
    olcDbDirectory: /var/lib/ldap
    olcSuffix: {suffix}
    olcRootDN: {admin}
    olcRootPW: {password}
    olcAccess: {{0}}to attrs=userPassword by anonymous auth by * none
    olcAccess: {{1}}to * by users read by * none
""")

# First start: build the configuration and load the seed; later starts reuse them.
ENTRYPOINT = textwrap.dedent(f"""\
    set -e
    if [ ! -e /etc/ldap/slapd.d/cn=config.ldif ]; then
      slapadd -n0 -F /etc/ldap/slapd.d -l /seed/config.ldif
      slapadd -n1 -F /etc/ldap/slapd.d -l /seed/data.ldif
    fi
    exec slapd -d 0 -h ldap://127.0.0.1:{PORT}/ -F /etc/ldap/slapd.d
""")


def build_image(base: str, workdir: Path) -> str:
    """The slapd test image, tagged by the hash of its Dockerfile (built once per base)."""
    dockerfile = DOCKERFILE.format(base=base)
    tag = "mailwright-test-slapd:" + hashlib.sha256(dockerfile.encode()).hexdigest()[:16]
    if d.image_exists(tag):
        return tag
    ctx = workdir / "slapd-build"
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(dockerfile)
    d.docker("build", "--network", "host", "-t", tag, str(ctx), timeout=1800,
             env={**os.environ, "DOCKER_BUILDKIT": "1"})
    return tag


def ssha(password: str, salt: bytes = b"mwtest-salt") -> str:
    """An LDAP {SSHA} hash (Dovecot's DOVECOT_DEFAULT_PASS_SCHEME and slapd both read it)."""
    digest = hashlib.sha1(password.encode() + salt).digest()
    return "{SSHA}" + base64.b64encode(digest + salt).decode()


def entry(uid: str, mail: str, password: str, *, aliases=(), groups=(), enabled: bool = True) -> str:
    """A PostfixBook mail account (inetOrgPerson), DMS's test layout."""
    lines = [f"dn: uniqueIdentifier={uid},{BASE}", "objectClass: inetOrgPerson",
             "objectClass: PostfixBookMailAccount", "objectClass: extensibleObject",
             f"cn: {uid}", f"sn: {uid}", f"uniqueIdentifier: {uid}", f"mail: {mail}",
             f"userPassword: {ssha(password)}", f"mailEnabled: {'TRUE' if enabled else 'FALSE'}"]
    # docker-mailserver's DOVECOT_USER_ATTRS default reads these (its tests' layout; mailwright's paths).
    local, domain = mail.split("@", 1)
    lines += [f"mailHomeDirectory: /var/mail/{domain}/{local}/home",
              f"mailStorageDirectory: maildir:/var/mail/{domain}/{local}", "mailUidNumber: 5000",
              "mailGidNumber: 5000"]
    lines += [f"mailAlias: {a}" for a in aliases]
    lines += [f"mailGroupMember: {g}" for g in groups]
    return "\n".join(lines) + "\n"


def forward(uid: str, alias: str, target: str) -> str:
    """A PostfixBookMailForward: `alias` delivers to `target`."""
    return "\n".join([f"dn: uniqueIdentifier={uid},{BASE}", "objectClass: inetOrgPerson",
                      "objectClass: PostfixBookMailForward", "objectClass: extensibleObject",
                      f"cn: {uid}", f"sn: {uid}", f"uniqueIdentifier: {uid}", f"mail: {target}",
                      f"mailAlias: {alias}"]) + "\n"


def base_entries() -> str:
    dc = SUFFIX.split(",")[0].split("=")[1]
    return (f"dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\no: mwtest\ndc: {dc}\n\n"
            f"dn: {BASE}\nobjectClass: organizationalUnit\nou: people\n")


@dataclass
class Directory:
    image: str
    workdir: Path
    cert_pem: bytes
    key_pem: bytes
    seed: list[str] = field(default_factory=list)
    name: str = field(default_factory=lambda: d.unique_name("slapd"))

    def start(self, timeout: float = 60) -> "Directory":
        if d.exit_code(self.name) is not None:          # stopped earlier: start it again
            d.docker("start", self.name)
            return self.wait(timeout)
        seed = self.workdir / "seed"
        seed.mkdir(parents=True, exist_ok=True)
        (seed / "cert.pem").write_bytes(self.cert_pem)
        (seed / "key.pem").write_bytes(self.key_pem)
        (seed / "postfix-book.ldif").write_text(SCHEMA.read_text())
        (seed / "config.ldif").write_text(CONFIG_LDIF.format(suffix=SUFFIX, admin=ADMIN_DN, password=ADMIN_PW))
        (seed / "data.ldif").write_text("\n".join([base_entries()] + self.seed))
        (seed / "entrypoint.sh").write_text(ENTRYPOINT)
        for p in seed.iterdir():
            p.chmod(0o644)
        d.docker("run", "-d", "--name", self.name, "--network", "host", "-v", f"{seed}:/seed:ro",
                 "--entrypoint", "sh", self.image, "/seed/entrypoint.sh")
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> "Directory":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = self.search(f"(objectClass=organizationalUnit)", check=False)
            if r.returncode == 0:
                return self
            if d.exit_code(self.name) is not None:
                break
            time.sleep(0.3)
        raise AssertionError(f"slapd did not answer on {URI}:\n{d.logs(self.name)}")

    def stop(self) -> None:
        d.docker("stop", "-t", "5", self.name, timeout=60)

    def pause(self) -> None:
        """A directory that is there but silent (overloaded, hung): `docker pause` freezes slapd;
        the kernel still accepts connections on its port, nothing answers on them."""
        d.docker("pause", self.name, timeout=60)

    def unpause(self) -> None:
        d.docker("unpause", self.name, timeout=60)
        self.wait()

    def remove(self) -> None:
        d.rm(self.name)

    def _tool(self, *argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", "exec", "-i", self.name, *argv], input=input, text=True,
                              capture_output=True, check=check, timeout=60)

    def add(self, ldif: str) -> None:
        self._tool("ldapadd", "-x", "-H", URI, "-D", ADMIN_DN, "-w", ADMIN_PW, input=ldif)

    def search(self, filt: str, *attrs: str, check: bool = True) -> subprocess.CompletedProcess:
        return self._tool("ldapsearch", "-x", "-LLL", "-H", URI, "-D", ADMIN_DN, "-w", ADMIN_PW,
                          "-b", BASE, filt, *attrs, check=check)
