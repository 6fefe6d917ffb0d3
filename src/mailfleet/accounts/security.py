"""Password hashes (argon2), API key secrets (SHA-256 digests) and JWTs."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailfleet.kit.clock import utcnow

_hasher = PasswordHasher()

KEY_PREFIXES = {"user": "mf_user_", "workspace": "mf_ws_"}
JWT_ALGORITHM = "HS256"
JWT_AUDIENCE = "mailfleet"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# A hash to verify against when the user does not exist, so a login for an
# unknown email costs as long as one for a known email.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def burn_password_check(password: str) -> None:
    verify_password(_DUMMY_HASH, password)


@dataclass(frozen=True)
class NewApiKey:
    secret: str
    digest: str
    display_prefix: str


def generate_api_key(scope: str) -> NewApiKey:
    secret = KEY_PREFIXES[scope] + secrets.token_urlsafe(32)
    return NewApiKey(
        secret=secret,
        digest=digest_api_key(secret),
        display_prefix=secret[: len(KEY_PREFIXES[scope]) + 6],
    )


def digest_api_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_key(token: str) -> bool:
    return token.startswith(tuple(KEY_PREFIXES.values()))


def issue_jwt(
    user_id: str, epoch: int, signing_secret: str, ttl_seconds: int
) -> tuple[str, datetime]:
    """A login token for the user at their current `token_epoch`."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_seconds)
    token = jwt.encode(
        {"sub": user_id, "ep": epoch, "iat": now, "exp": expires, "aud": JWT_AUDIENCE},
        signing_secret,
        algorithm=JWT_ALGORITHM,
    )
    return token, expires


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    epoch: int


def read_jwt(token: str, signing_secret: str) -> TokenClaims | None:
    """Whom a valid, unexpired token names and at which of their token epochs, or None.
    A token without an epoch (issued before epochs) is at 0, where every user starts."""
    try:
        claims = jwt.decode(
            token, signing_secret, algorithms=[JWT_ALGORITHM], audience=JWT_AUDIENCE
        )
    except jwt.PyJWTError:
        return None
    subject, epoch = claims.get("sub"), claims.get("ep", 0)
    if not isinstance(subject, str) or type(epoch) is not int:
        return None
    return TokenClaims(subject, epoch)
