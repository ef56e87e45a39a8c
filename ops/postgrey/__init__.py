"""Postgrey: greylisting policy service for Postfix's port 25 (ENABLE_POSTGREY)."""
