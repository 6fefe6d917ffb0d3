"""Folder classing and the parsing of LIST and FETCH answers (mail/folders.py)."""

from __future__ import annotations

import pytest

from mailfleet.mail.folders import classify_folder, parse_folders, parse_header_fetch


@pytest.mark.parametrize(
    ("name", "flags", "delimiter", "kind"),
    [
        ("INBOX", [], "/", "inbox"),
        ("Inbox", [], "/", "inbox"),
        ("Bulk Mail", [], "/", "spam"),
        ("Whatever", ["\\Junk"], "/", "spam"),
        ("[Gmail]/Spam", ["\\HasNoChildren"], "/", "spam"),
        ("Junk E-mail", [], "/", "spam"),
        ("INBOX.Junk", [], ".", "spam"),
        ("Courrier indésirable", [], "/", "spam"),
        ("[Gmail]/Promotions", [], "/", "promotions"),
        ("[Gmail]/Updates", [], "/", "other"),
        ("Sent", ["\\Sent"], "/", None),
        ("Projects/Junkyard", [], "/", None),
    ],
)
def test_folders_are_classed_by_special_use_then_known_names(
    name: str, flags: list[str], delimiter: str, kind: str | None
) -> None:
    assert classify_folder(name, flags, delimiter) == kind


def test_list_lines_keep_flags_wire_names_and_skip_placeholders() -> None:
    lines = [
        b'(\\HasNoChildren) "/" INBOX',
        b'(\\HasNoChildren \\Junk) "/" "Courrier ind&AOk-sirable"',
        b'(\\Noselect \\HasChildren) "/" "[Gmail]"',
        b'(\\HasNoChildren) "/" {11}',
        b'Bulk "Mail"',
        b'(\\HasNoChildren) NIL "Notes"',
    ]
    folders = parse_folders(lines)
    assert [(f.name, f.kind) for f in folders] == [
        ("INBOX", "inbox"),
        ("Courrier indésirable", "spam"),
        ('Bulk "Mail"', None),
        ("Notes", None),
    ]
    # Commands send the name back as the server spelled it (modified UTF-7, quoted).
    assert folders[1].wire == '"Courrier ind&AOk-sirable"'
    assert folders[2].wire == '"Bulk \\"Mail\\""'


def test_header_fetch_answers_are_read_whichever_side_of_the_literal_the_uid_is() -> None:
    lines = [
        b"1 FETCH (UID 7 BODY[HEADER.FIELDS (X-MAILFLEET-WARMUP)] {33}",
        bytearray(b"X-Mailfleet-Warmup: mfwaaa\r\n\r\n"),
        b")",
        b"2 FETCH (BODY[HEADER.FIELDS (X-MAILFLEET-WARMUP)] {33}",
        bytearray(b"x-mailfleet-warmup: mfwbbb\r\n\r\n"),
        b" UID 9)",
        b"3 FETCH (UID 10 BODY[HEADER.FIELDS (X-MAILFLEET-WARMUP)] {2}",
        bytearray(b"\r\n"),
        b")",
        b"Fetch completed (0.001 + 0.000 secs).",
    ]
    assert parse_header_fetch(lines, "X-Mailfleet-Warmup") == {7: "mfwaaa", 9: "mfwbbb"}
