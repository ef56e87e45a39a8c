"""Where the certificate and key come from, per SSL_TYPE (docker-mailserver §7).

Certificates are used in place, never copied: a renewed file on disk is then
picked up by a reload, which the change poller triggers through the
fingerprint file below. A missing file stops the configure stage naming
every missing path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ops.settings import Settings, SettingsError

SNAKEOIL = ("/etc/ssl/certs/ssl-cert-snakeoil.pem", "/etc/ssl/private/ssl-cert-snakeoil.key")
FINGERPRINT = "/etc/mailwright/tls-fingerprint"

# The cipher lists of TLS_LEVEL, shared by Postfix (tls_high_cipherlist) and Dovecot (ssl_cipher_list).
MODERN = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
          "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
          "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")
INTERMEDIATE = ("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:"
                "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-SHA256:"
                "ECDHE-RSA-AES128-SHA256:ECDHE-RSA-AES256-SHA384:ECDHE-ECDSA-AES256-SHA384:"
                "DHE-RSA-AES128-SHA256:DHE-RSA-AES256-SHA256")
CIPHERS = {"modern": MODERN, "intermediate": INTERMEDIATE}


@dataclass(frozen=True)
class Tls:
    enabled: bool
    cert: str = ""
    key: str = ""
    alt_cert: str = ""
    alt_key: str = ""
    ca: str = ""                    # self-signed: the CA offered to clients
    watched: tuple[str, ...] = field(default=())

    @property
    def chain_files(self) -> list[str]:
        """Postfix smtpd_tls_chain_files order: key then its chain, per key pair."""
        # SSL_TYPE=custom: one file holds key and chain, and is listed once.
        files = [self.key] if self.key == self.cert else [self.key, self.cert]
        if self.alt_cert:
            files += [self.alt_key, self.alt_cert]
        return files


def _letsencrypt(s: Settings, root: Path) -> tuple[str, str]:
    names = [s.SSL_DOMAIN.removeprefix("*."), s.fqdn, s.domainname]
    for name in filter(None, names):
        live = root / "live" / name
        if (live / "fullchain.pem").is_file():
            for key in ("privkey.pem", "key.pem"):
                if (live / key).is_file():
                    return str(live / "fullchain.pem"), str(live / key)
    tried = ", ".join(str(root / "live" / n) for n in dict.fromkeys(filter(None, names)))
    raise SettingsError(f"SSL_TYPE=letsencrypt: no fullchain.pem with privkey.pem or key.pem in {tried}")


def resolve(s: Settings, config_dir: str | Path, letsencrypt: str | Path = "/etc/letsencrypt") -> Tls:
    ssl = Path(config_dir) / "ssl"
    kind = s.SSL_TYPE
    if kind == "":
        return Tls(enabled=False)
    if kind == "letsencrypt":
        cert, key = _letsencrypt(s, Path(letsencrypt))
        tls = Tls(True, cert, key)
    elif kind == "manual":
        tls = Tls(True, s.SSL_CERT_PATH, s.SSL_KEY_PATH, s.SSL_ALT_CERT_PATH, s.SSL_ALT_KEY_PATH)
    elif kind == "custom":
        full = str(ssl / f"{s.fqdn}-full.pem")
        tls = Tls(True, full, full)
    elif kind == "self-signed":
        tls = Tls(True, str(ssl / f"{s.fqdn}-cert.pem"), str(ssl / f"{s.fqdn}-key.pem"),
                  ca=str(ssl / "demoCA" / "cacert.pem"))
    else:  # snakeoil: Debian's test certificate, generated at first start (never shipped in the image)
        tls = Tls(True, *SNAKEOIL)
    paths = tuple(dict.fromkeys(p for p in (tls.cert, tls.key, tls.alt_cert, tls.alt_key, tls.ca) if p))
    if kind != "snakeoil":
        missing = [p for p in paths if not Path(p).is_file()]
        if missing:
            raise SettingsError(f"SSL_TYPE={kind}: missing certificate file(s): {', '.join(missing)}")
    return Tls(tls.enabled, tls.cert, tls.key, tls.alt_cert, tls.alt_key, tls.ca, paths)


def fingerprint(tls: Tls) -> str:
    """sha256 of every certificate/key file: changes exactly when a renewal lands."""
    lines = []
    for path in tls.watched:
        try:
            lines.append(f"{hashlib.sha256(Path(path).read_bytes()).hexdigest()}  {path}\n")
        except OSError:
            lines.append(f"missing  {path}\n")
    return "".join(lines)
