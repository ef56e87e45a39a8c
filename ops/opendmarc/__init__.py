"""OpenDMARC: DMARC verification milter for Postfix, after OpenDKIM (ENABLE_OPENDMARC)."""
