from dataclasses import replace
from datetime import UTC, datetime

import pytest
from pydantic import BaseModel

from mailfleet.kit.envelope import ApiOut, RowRenderer
from mailfleet.mailboxes.repository import MailboxListing
from mailfleet.mailboxes.router import mailbox_out, render_listing

LISTING = MailboxListing(
    id="mb1",
    email="ana@fleet.test",
    display_name="Ana",
    provider="custom",
    status="active",
    connection_type="smtp",
    daily_send_limit=30,
    sending_enabled=True,
    signature=None,
    smtp_host="smtp.fleet.test",
    smtp_port=587,
    smtp_secure=False,
    smtp_username="ana",
    imap_host="imap.fleet.test",
    imap_port=993,
    imap_secure=True,
    imap_username="ana",
    domain="fleet.test",
    pool_id="pool1",
    placement_seed=False,
    setup_status={"dns": {"spf": "ok"}},
    last_verified_at=None,
    created_at=datetime(2026, 11, 30, 1, 2, 3, 456789, tzinfo=UTC),
    updated_at=datetime(2026, 11, 30, 4, 5, 6),
    hosted_domain_id=None,
    first_name=None,
    last_name="Lee",
    quota_bytes=None,
    forward_to=None,
    tag_names=["a", "b"],
)


@pytest.mark.parametrize(
    "listing",
    [
        LISTING,
        replace(
            LISTING,
            hosted_domain_id="hd1",
            last_verified_at=datetime(2026, 1, 1, tzinfo=UTC),
            setup_status=None,
            tag_names=[],
        ),
    ],
)
def test_a_rendered_listing_is_what_the_model_dumps(listing: MailboxListing) -> None:
    assert render_listing(listing) == mailbox_out(listing).model_dump(mode="json", by_alias=True)


def test_a_renderer_refuses_nested_models_and_unknown_sources() -> None:
    class Inner(BaseModel):
        x: int

    class Outer(ApiOut):
        inner: Inner

    with pytest.raises(TypeError, match="is a model"):
        RowRenderer(Outer, object)

    class Flat(ApiOut):
        x: int

    with pytest.raises(TypeError, match="no field y"):
        RowRenderer(Flat, object, {"y": lambda row: 1})
