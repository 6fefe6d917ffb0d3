"""The SPF edits a domain's mail records go through: merge_spf adds a provider's
mechanism to the customer's record, strip_spf takes it out again (a switch of mail
provider), each keeping the rest of the record as it was."""

from __future__ import annotations

import pytest

from mailfleet.dns.records import merge_spf, strip_spf


@pytest.mark.parametrize(
    ("existing", "dropped", "left"),
    [
        ("v=spf1 include:_spf.google.com ~all", ["include:_spf.google.com"], None),
        ("v=spf1 mx ~all", ["mx"], None),
        ("v=spf1 ip4:198.51.100.7 MX -all", ["mx"], "v=spf1 ip4:198.51.100.7 -all"),
        (
            "v=spf1 include:Zoho.com a include:_spf.google.com ?all",
            ["include:zoho.com"],
            "v=spf1 a include:_spf.google.com ?all",
        ),
        # A redirect is kept, and with it the record.
        ("v=spf1 mx redirect=_spf.example.net", ["mx"], "v=spf1 redirect=_spf.example.net"),
        # Nothing of the provider's: unchanged, but for spacing.
        ("v=spf1  a   ~all", ["include:zoho.com"], "v=spf1 a ~all"),
        ("v=spf1 -all", [], None),
    ],
)
def test_strip_spf_takes_out_only_what_it_is_given(
    existing: str, dropped: list[str], left: str | None
) -> None:
    assert strip_spf(existing, dropped) == left


def test_strip_undoes_merge() -> None:
    customer = "v=spf1 ip4:192.0.2.1 include:spf.example.org -all"
    merged = merge_spf(customer, ["include:spf.protection.outlook.com"])
    assert (
        merged
        == "v=spf1 ip4:192.0.2.1 include:spf.example.org include:spf.protection.outlook.com -all"
    )
    assert strip_spf(merged, ["include:spf.protection.outlook.com"]) == customer
