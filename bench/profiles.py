"""What is benchmarked: the environment of each profile, the accounts the
containers get, and the reference figures the table compares against."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DOMAIN = "example.test"
FQDN = f"mail.{DOMAIN}"
READY_LINE = f"{FQDN} is up and running"
USERS = ["user1", "user2", "user3", "user4"]
PASSWORD = "bench-password"


@dataclass
class Profile:
    name: str
    env: dict[str, str]
    # docker-mailserver 15.1 on this kind of machine, same method
    # (shared/reference/platform-notes.md), and the issues' targets.
    reference: dict[str, str] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)
    # Give the container bench/dnsstub.py as its resolver (an instant NXDOMAIN on a loopback
    # address): SpamAssassin's network tests then cost no time, whatever the host's resolver does.
    instant_dns: bool = False
    # A header every delivered message must carry (the filter really ran); the run counts them.
    required_header: str = ""
    # Files put into the container before it starts: absolute path in the container -> content.
    files: dict[str, bytes] = field(default_factory=dict)


CORE_ENV = {
    "OVERRIDE_HOSTNAME": FQDN,
    "ENABLE_AMAVIS": "0",
    "ENABLE_OPENDKIM": "0",
    "ENABLE_OPENDMARC": "0",
    "ENABLE_POLICYD_SPF": "0",
    "ENABLE_UPDATE_CHECK": "0",
    "ENABLE_CLAMAV": "0",
    "ENABLE_SPAMASSASSIN": "0",
    # No TLS: the bench measures the mail path, not the handshake.
    "SSL_TYPE": "",
}

PROFILES = {
    "core": Profile(
        "core",
        CORE_ENV,
        reference={
            "start_smtp_s": "3.1–3.3 s",
            "start_imap_s": "2.3–2.5 s",
            "idle_pss_mb": "64 MB",
            "idle_rss_mb": "124 MB",
            "idle_processes": "20",
            # DKIM/DMARC/SPF are off in this profile, so the comparable
            # docker-mailserver figure is the one with them off.
            "accepted_per_s": "230–250 (77 with DKIM/DMARC/SPF)",
            "delivered_per_s": "230–250 (77 with DKIM/DMARC/SPF)",
        },
        targets={
            "start_smtp_s": "≤ 1.6 s",
            "idle_pss_mb": "≤ 32 MB",
            "configure_noop_s": "≤ 1 s",
            "accepted_per_s": "≥ 150",
            "delivered_per_s": "≥ 150",
        },
    ),
    # Everything mailwright implements switched on: TLS (a certificate made at first
    # start), POP3, ManageSieve, quotas, spoof protection.
    "all-implemented": Profile(
        "all-implemented",
        {**CORE_ENV, "SSL_TYPE": "snakeoil", "ENABLE_POP3": "1", "ENABLE_MANAGESIEVE": "1",
         "ENABLE_QUOTAS": "1", "SPOOF_PROTECTION": "1"},
    ),
    # Amavis + SpamAssassin (issue 9); `--profiles core,filters` measures it against core.
    # SA_TAG=-100000: Amavis adds X-Spam-Status to every message (docker-mailserver's documented way),
    # so the run can check that every delivered message went through SpamAssassin.
    "filters": Profile(
        "filters",
        {**CORE_ENV, "ENABLE_AMAVIS": "1", "ENABLE_SPAMASSASSIN": "1", "SA_TAG": "-100000"},
        reference={
            "start_smtp_s": "4.0 s",
            "idle_pss_mb": "233 MB",
            "idle_rss_mb": "600 MB",
            "accepted_per_s": "266",
            "delivered_per_s": "4.2 (7.8 with an instant DNS)",
        },
        targets={"start_smtp_s": "≤ 1 s", "idle_pss_mb": "≤ 118 MB", "delivered_per_s": "≥ 12"},
        instant_dns=True,
        required_header="X-Spam-Status",
    ),
    # Amavis + SpamAssassin + ClamAV. No signature can be downloaded here: the container gets the
    # tests' EICAR signature (one MD5 line) in /var/lib/clamav before it starts. With the official
    # databases clamd holds far more (see bench/README.md); this measures the pipeline, not them.
    "clamav": Profile(
        "clamav",
        {**CORE_ENV, "ENABLE_AMAVIS": "1", "ENABLE_SPAMASSASSIN": "1", "SA_TAG": "-100000", "ENABLE_CLAMAV": "1"},
        reference={
            # docker-mailserver's documentation: ClamAV alone needs about 1 GB (2 GB during updates).
            "idle_rss_mb": "~1 GB more than filters (docs, official databases)",
        },
        instant_dns=True,
        # Amavis adds it once the virus scan ran (the filters profile checks X-Spam-Status).
        required_header="X-Virus-Scanned",
        files={"/var/lib/clamav/mwtest-eicar.hdb":
               (Path(__file__).resolve().parent.parent / "tests" / "data" / "eicar.hdb").read_bytes()},
    ),
    # OpenDKIM + OpenDMARC + policyd-spf (issue 10), every lookup answered at once by the stub.
    "mail-auth": Profile(
        "mail-auth",
        {**CORE_ENV, "ENABLE_OPENDKIM": "1", "ENABLE_OPENDMARC": "1", "ENABLE_POLICYD_SPF": "1"},
        reference={"start_smtp_s": "4.3–5.5 s", "idle_pss_mb": "64 MB", "idle_rss_mb": "124 MB",
                   "delivered_per_s": "66–70"},
        targets={"start_smtp_s": "≤ 1 s", "idle_pss_mb": "≤ 25 MB", "delivered_per_s": "≥ 0.8 × core"},
        instant_dns=True,
    ),
    # Exactly docker-mailserver's defaults: the three above plus Amavis (SpamAssassin and ClamAV off).
    "dms-defaults": Profile(
        "dms-defaults",
        {**CORE_ENV, "ENABLE_OPENDKIM": "1", "ENABLE_OPENDMARC": "1", "ENABLE_POLICYD_SPF": "1",
         "ENABLE_AMAVIS": "1"},
        reference={"start_smtp_s": "4.65 s", "idle_pss_mb": "123.5 MB", "idle_rss_mb": "283 MB",
                   "accepted_per_s": "64", "delivered_per_s": "21"},
        targets={"idle_pss_mb": "≤ 62 MB", "delivered_per_s": "≥ 42"},
        instant_dns=True,
    ),
}
DEFAULT_PROFILES = ["core", "all-implemented", "filters", "mail-auth", "dms-defaults"]

IMAGE_REFERENCE = "491 MB without ClamAV signatures"
IMAGE_TARGET = "≤ 295 MB"
