"""Authentication-Results as seeds' servers write them, and the messages sent."""

from __future__ import annotations

from datetime import UTC, datetime

from mailfleet.placement.messages import TRACKING_HEADER, build_message, parse_auth


def test_the_topmost_header_that_parses_wins_and_the_best_dkim_counts() -> None:
    headers = [
        "garbage ;;;",
        "mx.google.com;\r\n       dkim=fail header.i=@alpha.test header.s=old;"
        "\r\n       dkim=pass header.i=@alpha.test header.s=mf1 header.b=abc;"
        "\r\n       spf=softfail (google.com: domain of transitioning a@alpha.test) "
        "smtp.mailfrom=a@alpha.test;\r\n       dmarc=pass (p=NONE sp=NONE dis=NONE) "
        "header.from=alpha.test",
        # Lower down: what a sender may have forged; never read.
        "mx.google.com; spf=pass; dkim=pass; dmarc=pass",
    ]
    assert parse_auth(headers) == {"spf": "softfail", "dkim": "pass", "dmarc": "pass"}


def test_microsoft_style_and_missing_methods() -> None:
    outlook = (
        "spf=none (sender IP is 192.0.2.7) smtp.mailfrom=beta.test; dkim=none "
        "(message not signed) header.d=none;dmarc=none action=none header.from=beta.test;"
    )
    assert parse_auth([f"mx.microsoft.com; {outlook}"]) == {
        "spf": "none",
        "dkim": "none",
        "dmarc": "none",
    }
    assert parse_auth(["mx.example.test; spf=pass smtp.mailfrom=a@b.test"]) == {
        "spf": "pass",
        "dkim": None,
        "dmarc": None,
    }
    assert parse_auth([]) == {"spf": None, "dkim": None, "dmarc": None}


def test_only_the_named_server_is_believed_when_one_is_named() -> None:
    headers = ["evil.test; spf=pass", "mx.mailnet.test; spf=fail smtp.mailfrom=a@b.test"]
    assert parse_auth(headers, authserv_id="mx.mailnet.test")["spf"] == "fail"


def test_a_message_carries_its_codes_in_header_and_body() -> None:
    message = build_message(
        test_code="mfpabc",
        code="mfpabc-7",
        message_id="<mfpabc-7.x@alpha.test>",
        subject="Hi",
        text="Hello there",
        html="<html><body><p>Hello there</p></body></html>",
        sender_email="ann@alpha.test",
        sender_name="Ann Example",
        seed_email="seed@beta.test",
        at=datetime(2026, 11, 30, 12, tzinfo=UTC),
    )
    assert message[TRACKING_HEADER] == "mfpabc-7"
    assert message["To"] == "seed@beta.test"
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None
    assert html is not None
    assert "Hello there" in text.get_content()
    assert "mfpabc" in text.get_content()
    assert "mfpabc-7" in html.get_content()
    assert html.get_content().rstrip().endswith("</body></html>")
