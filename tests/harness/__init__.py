"""Test harness for mailwright's integration and end-to-end tests.

Modules:
  dockercli   thin wrapper around Debian's /usr/bin/docker, naming, sweeping, host lock
  tlsutil     trustme CA, server certificates, client contexts, served-certificate probes
  configdir   writes a docker-mailserver config folder (accounts, aliases, quotas, sieve, ...)
  clients     smtplib/imaplib/poplib helpers (TLS verified against the test CA)
  mailserver  runs the mailwright image as docker-mailserver is run
  vps         a systemd+sshd container standing in for a VPS, and pyinfra runs against it
  targets     one interface over the three ways of running mailwright (image, VPS, docker connector)
  scenario    the shared configuration the end-to-end subset runs against
"""

SERVER_NAME = "mail.example.test"
HOST = "127.0.0.1"
# Ports a running mail server binds on the host (all targets use --network host).
MAIL_PORTS = (25, 143, 465, 587, 993, 110, 995, 4190)
# Never touched, never bound, never addressed by anything in this harness.
FORBIDDEN_PORT = 2024
