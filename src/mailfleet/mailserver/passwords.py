"""Mailbox passwords for the hosted mail server: generated ones, and the hash Dovecot checks."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher

# Dovecot verifies ARGON2ID through libsodium, which accepts only parallelism 1.
# Memory and time are OWASP's minimum for Argon2id, so a batch of 1,000 new
# mailboxes hashes in seconds and a login costs Dovecot about 20 MiB for a moment.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)

MIN_PASSWORD_LENGTH = 10


def generate_password() -> str:
    """24 URL-safe characters (144 bits): shown once, then only its hash and ciphertext stay."""
    return secrets.token_urlsafe(18)


def dovecot_hash(password: str) -> str:
    """`{ARGON2ID}$argon2id$...`: the PHC string with the scheme prefix Dovecot reads."""
    return "{ARGON2ID}" + _HASHER.hash(password)


def verify_dovecot_hash(stored: str, password: str) -> bool:
    from argon2.exceptions import VerificationError

    scheme, _, phc = stored.partition("}")
    if scheme != "{ARGON2ID":
        return False
    try:
        return _HASHER.verify(phc, password)
    except VerificationError:
        return False
