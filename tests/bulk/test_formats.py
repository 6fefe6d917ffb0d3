"""Row parsing and report cells, without servers."""

from __future__ import annotations

from typing import Literal

import pytest

from mailfleet.bulk.formats import decode_text, detect_layout, rows_from_csv, rows_from_json
from mailfleet.bulk.service import report_cell
from mailfleet.bulk.workflows import worth_retrying
from mailfleet.kit.errors import ValidationFailed
from mailfleet.platforms.csv_formats import MailboxRow, render_csv


def test_layouts_are_told_apart_by_the_header() -> None:
    assert detect_layout(["email", "smtp_host", "smtp_password"]) == "mailfleet"
    assert detect_layout(["\ufeffEmail", "First Name", "SMTP Host"]) == "instantly"
    assert detect_layout(["from_name", "from_email", "user_name"]) == "smartlead"
    with pytest.raises(ValidationFailed):
        detect_layout(["address", "server"])


def test_rows_keep_their_numbers_and_never_echo_a_password() -> None:
    text = (
        "email,smtp_host,smtp_port,smtp_password\n"
        "a@x.test,smtp.x.test,587,hunter2-secret\n"
        "\n"
        "b@x.test,smtp.x.test,not-a-port,hunter3-secret\n"
        ",smtp.x.test,587,\n"
    )
    layout, rows = rows_from_csv(text, max_rows=10)
    assert layout == "mailfleet"
    assert [row.row for row in rows] == [1, 3, 4]
    assert rows[0].data is not None
    assert rows[0].data.smtp.port == 587
    assert rows[1].error is not None
    assert rows[1].error.startswith("smtp_port:")
    assert rows[2].error is not None
    assert "email:" in rows[2].error
    assert "smtp_password:" in rows[2].error
    assert all("hunter" not in (row.error or "") for row in rows)


def test_too_many_rows_is_refused_early() -> None:
    text = "email,smtp_host,smtp_password\n" + "a@x.test,h.test,p\n" * 4
    with pytest.raises(ValidationFailed) as refused:
        rows_from_csv(text, max_rows=3)
    assert refused.value.extra["details"][0]["field"] == "file"
    with pytest.raises(ValidationFailed):
        rows_from_json([{}] * 4, max_rows=3)


def test_text_that_is_not_utf8_is_read_as_windows_1252() -> None:
    assert decode_text("José".encode("cp1252")) == "José"
    assert decode_text("\ufeffemail".encode()) == "email"


def test_report_cells_never_run_as_formulas() -> None:
    assert report_cell("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert report_cell("-1") == "'-1"
    assert report_cell("SMTP: 535 nope") == "SMTP: 535 nope"
    assert report_cell(None) == ""
    assert report_cell(7) == "7"


def test_only_transient_failures_are_retried() -> None:
    ok = {"ok": True}
    timeout = {"ok": False, "code": "TIMEOUT", "transient": True}
    auth = {"ok": False, "code": "AUTH_FAILED", "transient": False}
    assert worth_retrying({"smtp": timeout, "imap": ok})
    assert not worth_retrying({"smtp": auth, "imap": ok})
    assert not worth_retrying({"smtp": timeout, "imap": auth})
    assert not worth_retrying({"smtp": ok, "imap": ok})
    assert not worth_retrying({"missing": True})


@pytest.mark.parametrize("layout", ["mailfleet", "instantly", "smartlead"])
def test_an_export_imports_again(layout: Literal["mailfleet", "instantly", "smartlead"]) -> None:
    """What `POST /v1/exports/mailboxes` writes in a layout, the bulk import reads back."""
    row = MailboxRow(
        email="ann@x.test",
        display_name="Ann Lee",
        provider="custom",
        daily_limit=30,
        tags=("a", "b"),
        signature=None,
        smtp_host="smtp.x.test",
        smtp_port=465,
        smtp_secure=True,
        smtp_username="ann@x.test",
        imap_host="imap.x.test",
        imap_port=993,
        imap_secure=True,
        imap_username="ann.imap@x.test",
        smtp_password="smtp-secret",
        imap_password="imap-secret",
    )
    detected, (parsed,) = rows_from_csv(render_csv(layout, [row]), max_rows=10)
    assert detected == layout
    assert parsed.data is not None, parsed.error
    data = parsed.data
    assert (data.email, data.display_name, data.daily_send_limit) == ("ann@x.test", "Ann Lee", 30)
    assert (data.smtp.host, data.smtp.port, data.smtp.secure) == ("smtp.x.test", 465, True)
    assert data.imap is not None
    assert (data.imap.host, data.imap.port, data.imap.username) == (
        "imap.x.test",
        993,
        "ann.imap@x.test",
    )
    assert (data.smtp.password, data.imap.password) == ("smtp-secret", "imap-secret")
