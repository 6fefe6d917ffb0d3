import base64
import re
import stat
from pathlib import Path

import pytest

from mailfleet.kit.crypto import (
    CryptoError,
    Keyring,
    SecretDecryptError,
    add_key_to_file,
    format_secret_key,
    generate_key,
    load_or_create_key_file,
    new_key_id,
    parse_secret_keys,
)

PLAINTEXT = "hunter2-mailbox-password"


def key_spellings(key: bytes) -> list[str]:
    return [
        base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="),
        key.hex(),
    ]


def assert_no_leak(message: str, *keys: bytes, plaintext: str = PLAINTEXT) -> None:
    assert plaintext not in message
    for key in keys:
        for spelling in key_spellings(key):
            assert spelling not in message


def tamper(token: str) -> str:
    prefix, _, data = token.rpartition(":")
    raw = bytearray(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))
    raw[-1] ^= 0x01
    return f"{prefix}:{base64.urlsafe_b64encode(bytes(raw)).decode().rstrip('=')}"


def test_round_trip_and_token_format() -> None:
    keyring = Keyring([("k1", generate_key())])
    token = keyring.encrypt(PLAINTEXT)
    version, key_id, data = token.split(":")
    assert (version, key_id) == ("v1", "k1")
    assert "=" not in data
    assert len(base64.urlsafe_b64decode(data + "==")) == 12 + len(PLAINTEXT) + 16
    assert keyring.decrypt(token) == PLAINTEXT
    assert keyring.key_id_of(token) == "k1"
    assert not keyring.needs_rotation(token)


def test_unicode_and_empty_plaintext() -> None:
    keyring = Keyring([("k1", generate_key())])
    for text in ["", "pässwörd ✓ 密码"]:
        assert keyring.decrypt(keyring.encrypt(text)) == text


def test_each_encryption_uses_a_fresh_nonce() -> None:
    keyring = Keyring([("k1", generate_key())])
    assert keyring.encrypt(PLAINTEXT) != keyring.encrypt(PLAINTEXT)


def test_rotation_keeps_old_tokens_readable() -> None:
    old_key, new_key = generate_key(), generate_key()
    old_token = Keyring([("old", old_key)]).encrypt(PLAINTEXT, aad=b"mailbox:1")
    keyring = Keyring([("new", new_key), ("old", old_key)])

    assert keyring.decrypt(old_token, aad=b"mailbox:1") == PLAINTEXT
    assert keyring.needs_rotation(old_token)

    rotated = keyring.reencrypt(old_token, aad=b"mailbox:1")
    assert keyring.key_id_of(rotated) == "new"
    assert not keyring.needs_rotation(rotated)
    assert keyring.decrypt(rotated, aad=b"mailbox:1") == PLAINTEXT
    with pytest.raises(SecretDecryptError):
        Keyring([("old", old_key)]).decrypt(rotated, aad=b"mailbox:1")


def test_tampered_token_fails_without_leaking() -> None:
    key = generate_key()
    keyring = Keyring([("k1", key)])
    token = keyring.encrypt(PLAINTEXT)
    with pytest.raises(SecretDecryptError) as excinfo:
        keyring.decrypt(tamper(token))
    assert_no_leak(str(excinfo.value), key)
    assert excinfo.value.__cause__ is None


def test_wrong_aad_fails() -> None:
    key = generate_key()
    keyring = Keyring([("k1", key)])
    token = keyring.encrypt(PLAINTEXT, aad=b"mailbox:1")
    for aad in [b"", b"mailbox:2"]:
        with pytest.raises(SecretDecryptError) as excinfo:
            keyring.decrypt(token, aad=aad)
        assert_no_leak(str(excinfo.value), key)


def test_token_relabelled_to_another_id_of_the_same_key_fails() -> None:
    key = generate_key()
    keyring = Keyring([("a", key), ("b", key)])
    token = keyring.encrypt(PLAINTEXT)
    with pytest.raises(SecretDecryptError):
        keyring.decrypt(token.replace("v1:a:", "v1:b:", 1))


def test_unknown_key_id_fails() -> None:
    key = generate_key()
    token = Keyring([("gone", generate_key())]).encrypt(PLAINTEXT)
    keyring = Keyring([("k1", key)])
    assert keyring.key_id_of(token) == "gone"
    with pytest.raises(SecretDecryptError, match="unknown key id 'gone'") as excinfo:
        keyring.decrypt(token)
    assert_no_leak(str(excinfo.value), key)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "not a token",
        "v2:k1:AAAA",
        "v1::AAAA",
        "v1:bad id:AAAA",
        "v1:k1:",
        "v1:k1:AAAA",
        "v1:k1:has+slash/and=pad",
    ],
)
def test_malformed_tokens_fail(token: str) -> None:
    keyring = Keyring([("k1", generate_key())])
    with pytest.raises(SecretDecryptError):
        keyring.decrypt(token)


def test_non_canonical_base64_is_refused() -> None:
    keyring = Keyring([("k1", generate_key())])
    # 12 + 1 + 16 = 29 bytes, so the last base64 character carries unused bits.
    token = keyring.encrypt("x")
    prefix, _, data = token.rpartition(":")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    last = alphabet.index(data[-1])
    variant = f"{prefix}:{data[:-1]}{alphabet[last ^ 0x01]}"
    with pytest.raises(SecretDecryptError):
        keyring.decrypt(variant)


def test_keyring_rejects_bad_keys() -> None:
    with pytest.raises(CryptoError):
        Keyring([])
    with pytest.raises(CryptoError):
        Keyring([("k1", b"short")])
    with pytest.raises(CryptoError):
        Keyring([("bad:id", generate_key())])
    with pytest.raises(CryptoError):
        Keyring([("x" * 33, generate_key())])
    with pytest.raises(CryptoError):
        Keyring([("k1", generate_key()), ("k1", generate_key())])


def test_keyring_repr_hides_keys() -> None:
    key = generate_key()
    assert_no_leak(repr(Keyring([("k1", key)])), key)


def test_parse_secret_keys_round_trip() -> None:
    first, second = generate_key(), generate_key()
    value = f"{format_secret_key('new', first)},{format_secret_key('old', second)}"
    assert parse_secret_keys(value) == [("new", first), ("old", second)]


def test_parse_secret_keys_tolerates_whitespace_and_both_alphabets() -> None:
    key = bytes(range(256))[-32:]  # encodes with '+', '/', '-' or '_' characters
    standard = base64.b64encode(key).decode()
    urlsafe = base64.urlsafe_b64encode(key).decode().rstrip("=")
    assert standard != urlsafe
    value = f"  a : {standard[:20]} {standard[20:]} ,\n b:{urlsafe} , "
    assert parse_secret_keys(value) == [("a", key), ("b", key)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "no secret keys"),
        (" , ", "no secret keys"),
        ("k1:{key},{key}", "entry 2: expected <key_id>:<base64 key>"),
        ("k1:{key},bad id!:{key}", "entry 2: invalid key id"),
        ("k1:{key},k1:{key}", "entry 2: duplicate key id 'k1'"),
        ("k1:{key},k2:not*base64", "entry 2 (key id 'k2'): key is not valid base64"),
        ("k1:{short}", "entry 1 (key id 'k1'): key must decode to 32 bytes, got 16"),
    ],
)
def test_parse_secret_keys_errors_name_the_entry(value: str, message: str) -> None:
    key = generate_key()
    encoded = base64.b64encode(key).decode()
    short = base64.b64encode(key[:16]).decode()
    with pytest.raises(CryptoError, match=re.escape(message)) as excinfo:
        parse_secret_keys(value.format(key=encoded, short=short))
    assert_no_leak(str(excinfo.value), key, key[:16])


def test_format_secret_key_validates() -> None:
    with pytest.raises(CryptoError):
        format_secret_key("k1", b"short")
    with pytest.raises(CryptoError):
        format_secret_key("", generate_key())


def test_new_key_id_is_valid_and_unique() -> None:
    ids = {new_key_id() for _ in range(50)}
    assert len(ids) > 1
    for key_id in ids:
        assert key_id.startswith("k")
        assert len(key_id) <= 32
        Keyring([(key_id, generate_key())])


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "data" / "secret.keys"
    first = load_or_create_key_file(path)
    assert len(first) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert parse_secret_keys(path.read_text()) == first
    assert load_or_create_key_file(path) == first
    assert [p.name for p in path.parent.iterdir()] == ["secret.keys"]


def test_key_file_accepts_lines_commas_and_comments(tmp_path: Path) -> None:
    a, b, c = generate_key(), generate_key(), generate_key()
    path = tmp_path / "secret.keys"
    path.write_text(
        f"# newest first\n{format_secret_key('a', a)},{format_secret_key('b', b)}\n\n"
        f"{format_secret_key('c', c)}\n"
    )
    assert load_or_create_key_file(path) == [("a", a), ("b", b), ("c", c)]


def test_broken_key_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "secret.keys"
    path.write_text("k1:tooshort\n")
    with pytest.raises(CryptoError, match=r"secret\.keys.*entry 1"):
        load_or_create_key_file(path)


def test_add_key_to_file_prepends_and_keeps_old_keys(tmp_path: Path) -> None:
    path = tmp_path / "secret.keys"
    original = load_or_create_key_file(path)
    old_token = Keyring(original).encrypt(PLAINTEXT)

    new_id = add_key_to_file(path)

    keys = load_or_create_key_file(path)
    assert [key_id for key_id, _ in keys] == [new_id, original[0][0]]
    assert keys[1:] == original
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret.keys"]

    keyring = Keyring(keys)
    assert keyring.needs_rotation(old_token)
    assert keyring.key_id_of(keyring.reencrypt(old_token)) == new_id


def test_add_key_to_missing_file_fails(tmp_path: Path) -> None:
    with pytest.raises(CryptoError, match="does not exist"):
        add_key_to_file(tmp_path / "missing.keys")
    assert not (tmp_path / "missing.keys").exists()
