"""Postfix: SMTP in (25, behind postscreen), submission (465/587, AUTH through Dovecot)."""
