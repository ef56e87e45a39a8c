"""Amavis (amavisd-new): Postfix's content filter, with SpamAssassin (and ClamAV) behind it."""
