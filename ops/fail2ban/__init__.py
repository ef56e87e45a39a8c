"""Fail2ban: bans addresses that fail to log in to Postfix or Dovecot, on nftables (ENABLE_FAIL2BAN)."""
