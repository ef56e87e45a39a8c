"""Dovecot: IMAP/POP3/ManageSieve, LMTP delivery, SASL for Postfix, quotas, Sieve."""
