"""The container's syslog sink: the mail-facility lines of daemons that log only to syslog (OpenDKIM, OpenDMARC, policyd-spf) into the mail log."""
