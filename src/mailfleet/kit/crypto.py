"""Secrets keyring: AES-256-GCM tokens that name the key that sealed them."""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import os
import re
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEY_SIZE",
    "CryptoError",
    "Keyring",
    "SecretDecryptError",
    "add_key_to_file",
    "format_secret_key",
    "generate_key",
    "load_or_create_key_file",
    "new_key_id",
    "parse_secret_keys",
]

KEY_SIZE = 32
_NONCE_SIZE = 12
_TAG_SIZE = 16
_FORMAT_VERSION = "v1"
_KEY_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,32}")
_URLSAFE_B64_RE = re.compile(r"[A-Za-z0-9_-]+")
_ANY_B64_RE = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")
_KEY_ID_RULE = "key ids are 1-32 characters from A-Z a-z 0-9 _ -"


class CryptoError(Exception):
    """A key, key list or key file is unusable. Messages never carry key material."""


class SecretDecryptError(CryptoError):
    """A token is malformed, names an unknown key, or fails authentication."""


def _is_key_id(value: str) -> bool:
    return _KEY_ID_RE.fullmatch(value) is not None


_FROM_URLSAFE = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode_canonical(text: str) -> bytes | None:
    if _URLSAFE_B64_RE.fullmatch(text) is None:
        return None
    # binascii directly, not base64.urlsafe_b64decode and _b64url_encode (the same
    # steps through more wrappers): a CSV export of 100,000 mailboxes opens 200,000
    # tokens, and this was most of each decrypt's time.
    spelled = text.encode("ascii")
    try:
        data = binascii.a2b_base64(spelled.translate(_FROM_URLSAFE) + b"=" * (-len(text) % 4))
    except binascii.Error:
        return None
    # Refusing non-canonical spellings keeps one ciphertext to one token string,
    # so a token cannot be altered in its unused trailing bits and still decrypt.
    canonical = binascii.b2a_base64(data, newline=False).translate(_TO_URLSAFE).rstrip(b"=")
    if canonical != spelled:
        return None
    return data


class Keyring:
    """Encrypts with the newest key and decrypts with whichever key a token names."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        """Build from ``(key_id, 32-byte key)`` pairs, newest first."""
        if not keys:
            raise CryptoError("a keyring needs at least one key")
        ciphers: dict[str, AESGCM] = {}
        for key_id, key in keys:
            if not _is_key_id(key_id):
                raise CryptoError(f"invalid key id: {_KEY_ID_RULE}")
            if len(key) != KEY_SIZE:
                raise CryptoError(f"key {key_id!r} must be {KEY_SIZE} bytes, got {len(key)}")
            if key_id in ciphers:
                raise CryptoError(f"duplicate key id {key_id!r}")
            ciphers[key_id] = AESGCM(key)
        self._ciphers = ciphers
        self._newest_key_id = keys[0][0]

    def __repr__(self) -> str:
        return f"Keyring(key_ids={list(self._ciphers)!r})"

    @property
    def newest_key_id(self) -> str:
        """The id new tokens are sealed under."""
        return self._newest_key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """All key ids, newest first."""
        return tuple(self._ciphers)

    def encrypt(self, plaintext: str, *, aad: bytes = b"") -> str:
        """Seal ``plaintext`` under the newest key; ``aad`` must be given again to decrypt."""
        key_id = self._newest_key_id
        nonce = os.urandom(_NONCE_SIZE)
        sealed = self._ciphers[key_id].encrypt(
            nonce, plaintext.encode("utf-8"), _associated_data(key_id, aad)
        )
        return f"{_FORMAT_VERSION}:{key_id}:{_b64url_encode(nonce + sealed)}"

    def decrypt(self, token: str, *, aad: bytes = b"") -> str:
        """Open a token with the key it names."""
        key_id, payload = _split_token(token)
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise SecretDecryptError(f"secret is sealed under unknown key id {key_id!r}")
        nonce, sealed = payload[:_NONCE_SIZE], payload[_NONCE_SIZE:]
        try:
            plaintext = cipher.decrypt(nonce, sealed, _associated_data(key_id, aad))
            return plaintext.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            raise SecretDecryptError(
                f"secret under key id {key_id!r} failed authentication "
                "(tampered token, wrong key or wrong associated data)"
            ) from None

    def key_id_of(self, token: str) -> str:
        """The key id a token names, whether or not this keyring holds it."""
        return _split_token(token)[0]

    def needs_rotation(self, token: str) -> bool:
        """True when the token is not sealed under the newest key."""
        return self.key_id_of(token) != self._newest_key_id

    def reencrypt(self, token: str, *, aad: bytes = b"") -> str:
        """Open a token and seal it again under the newest key, with a fresh nonce."""
        return self.encrypt(self.decrypt(token, aad=aad), aad=aad)


def _associated_data(key_id: str, aad: bytes) -> bytes:
    # The header is authenticated too, so a token relabelled to another key id or
    # version fails even if an operator loaded the same key under two ids.
    return f"{_FORMAT_VERSION}:{key_id}:".encode("ascii") + aad


def _split_token(token: str) -> tuple[str, bytes]:
    parts = token.split(":", 2)
    if len(parts) != 3:
        raise SecretDecryptError("malformed secret token: expected v1:<key_id>:<data>")
    version, key_id, data = parts
    if version != _FORMAT_VERSION:
        raise SecretDecryptError("malformed secret token: unsupported version")
    if not _is_key_id(key_id):
        raise SecretDecryptError("malformed secret token: invalid key id")
    payload = _b64url_decode_canonical(data)
    if payload is None or len(payload) < _NONCE_SIZE + _TAG_SIZE:
        raise SecretDecryptError(f"malformed secret token under key id {key_id!r}: bad data")
    return key_id, payload


def generate_key() -> bytes:
    """A fresh random 32-byte key."""
    return os.urandom(KEY_SIZE)


def new_key_id() -> str:
    """A sortable, unique-enough key id such as ``k20261121T053000a1b2``."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S")
    return f"k{stamp}{secrets.token_hex(2)}"


def format_secret_key(key_id: str, key: bytes) -> str:
    """One ``key_id:base64`` entry of the MAILFLEET_SECRET_KEYS format."""
    if not _is_key_id(key_id):
        raise CryptoError(f"invalid key id: {_KEY_ID_RULE}")
    if len(key) != KEY_SIZE:
        raise CryptoError(f"key {key_id!r} must be {KEY_SIZE} bytes, got {len(key)}")
    return f"{key_id}:{base64.b64encode(key).decode('ascii')}"


def _decode_any_b64(text: str) -> bytes | None:
    if _ANY_B64_RE.fullmatch(text) is None:
        return None
    # Operators paste keys from `openssl rand -base64 32` or from urlsafe tools;
    # folding both alphabets into one lets either work, padded or not.
    unpadded = text.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(unpadded + "=" * (-len(unpadded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def parse_secret_keys(value: str) -> list[tuple[str, bytes]]:
    """Parse ``"kid1:BASE64KEY,kid2:BASE64KEY"`` (newest first) into key pairs."""
    keys: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    entries = [entry for entry in value.split(",") if entry.strip()]
    for position, entry in enumerate(entries, start=1):
        key_id, colon, encoded = entry.partition(":")
        key_id = key_id.strip()
        # Error messages name the position, never the entry: a malformed entry
        # may be nothing but a key.
        if not colon:
            raise CryptoError(f"secret key entry {position}: expected <key_id>:<base64 key>")
        if not _is_key_id(key_id):
            raise CryptoError(f"secret key entry {position}: invalid key id; {_KEY_ID_RULE}")
        if key_id in seen:
            raise CryptoError(f"secret key entry {position}: duplicate key id {key_id!r}")
        key = _decode_any_b64("".join(encoded.split()))
        if key is None:
            raise CryptoError(
                f"secret key entry {position} (key id {key_id!r}): key is not valid base64"
            )
        if len(key) != KEY_SIZE:
            raise CryptoError(
                f"secret key entry {position} (key id {key_id!r}): key must decode to "
                f"{KEY_SIZE} bytes, got {len(key)}"
            )
        seen.add(key_id)
        keys.append((key_id, key))
    if not keys:
        raise CryptoError("no secret keys given: expected <key_id>:<base64 key>[,...]")
    return keys


def _read_key_file(path: Path) -> list[tuple[str, bytes]]:
    text = path.read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    try:
        return parse_secret_keys(",".join(lines))
    except CryptoError as exc:
        raise CryptoError(f"key file {path}: {exc}") from None


def _write_new_file(path: Path, content: str) -> Path:
    """Write ``content`` to a fresh 0600 file beside ``path`` and return its name."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    # O_EXCL with mode 0o600 means the file is never readable by others, not even
    # between creation and a later chmod.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return temp


def _fsync_dir(path: Path) -> None:
    # Makes the rename durable; not every platform can open a directory.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def load_or_create_key_file(path: Path) -> list[tuple[str, bytes]]:
    """Read the key file, generating it with one new key (mode 0600) if it is missing."""
    if path.exists():
        return _read_key_file(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key_id = new_key_id()
    key = generate_key()
    temp = _write_new_file(path, format_secret_key(key_id, key) + "\n")
    try:
        # link() fails if the name exists, so two processes starting at once agree
        # on one key and neither ever reads a half-written file.
        os.link(temp, path)
    except FileExistsError:
        return _read_key_file(path)
    finally:
        temp.unlink()
    _fsync_dir(path.parent)
    return [(key_id, key)]


def add_key_to_file(path: Path) -> str:
    """Prepend a newly generated key to an existing key file and return its id."""
    if not path.exists():
        raise CryptoError(f"key file {path} does not exist")
    keys = _read_key_file(path)
    existing = {key_id for key_id, _ in keys}
    key_id = new_key_id()
    while key_id in existing:
        key_id = new_key_id()
    keys.insert(0, (key_id, generate_key()))
    content = "".join(format_secret_key(kid, key) + "\n" for kid, key in keys)
    temp = _write_new_file(path, content)
    try:
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(path.parent)
    return key_id
