"""The configuration the shared end-to-end subset runs against, on every target."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .configdir import MailConfig
from .tlsutil import TestTLS

DOMAIN = "example.test"
CATCHALL_DOMAIN = "catchall.test"

USER1 = f"user1@{DOMAIN}"
USER2 = f"user2@{DOMAIN}"
QUOTA_USER = f"quota@{DOMAIN}"
SIEVE_USER = f"sieve@{DOMAIN}"
ALIAS = f"alias1@{DOMAIN}"          # -> USER2
CATCHALL = f"anything@{CATCHALL_DOMAIN}"   # @catchall.test -> USER1
REGEXP_RCPT = f"regexp42@{DOMAIN}"   # /^regexp[0-9]+@example\.test$/ -> USER2
UNKNOWN = f"nobody@{DOMAIN}"
FOREIGN = "someone@foreign.invalid"
SENDER = f"sender@{DOMAIN}"

SIEVE_SCRIPT = """require "fileinto";
if header :contains "subject" "sieve-test" {
  fileinto "Junk";
}
"""


@dataclass
class Scenario:
    config: MailConfig
    malformed_line: int        # line number of the malformed postfix-accounts.cf line
    cert_serial: int           # serial of the certificate written to ssl/cert.pem

    def password(self, address: str) -> str:
        return self.config.passwords[address]


def build(config_dir: Path, tls: TestTLS) -> Scenario:
    cfg = MailConfig(config_dir)
    cfg.accounts_raw("# accounts for the mailwright end-to-end tests")
    cfg.account(USER1, "user1-Secret!")
    # Malformed on purpose (no password hash): must be reported as
    # postfix-accounts.cf:3 and skipped while every other account works.
    malformed = cfg.accounts_raw(f"broken-no-hash@{DOMAIN}")
    cfg.account(USER2, "user2 Secret$")
    cfg.account(QUOTA_USER, "quota-Secret!")
    cfg.account(SIEVE_USER, "sieve-Secret!")
    cfg.alias(ALIAS, USER2)
    cfg.alias(f"@{CATCHALL_DOMAIN}", USER1)
    cfg.regexp(r"/^regexp[0-9]+@example\.test$/", USER2)
    cfg.quota(QUOTA_USER, "1M")
    cfg.user_sieve(SIEVE_USER, SIEVE_SCRIPT)
    cfg.write()
    tls.write(config_dir / "ssl")
    return Scenario(config=cfg, malformed_line=malformed, cert_serial=TestTLS.serial(tls.leaf))
