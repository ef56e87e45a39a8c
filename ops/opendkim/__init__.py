"""OpenDKIM: DKIM signing and verification milter for Postfix (ENABLE_OPENDKIM)."""
