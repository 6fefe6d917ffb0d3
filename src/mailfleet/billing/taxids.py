"""Country codes and tax ids on billing details, checked with python-stdnum."""

from __future__ import annotations

from typing import TYPE_CHECKING

from stdnum import get_cc_module
from stdnum.eu import vat as eu_vat
from stdnum.exceptions import ValidationError

if TYPE_CHECKING:
    from stdnum.util import NumberValidationModule

# ISO 3166-1 alpha-2, officially assigned codes.
COUNTRY_CODES = frozenset(
    """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL
    BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV
    CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD
    GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM
    IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK
    LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW
    MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR
    PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS
    ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY
    UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW
    """.split()  # noqa: SIM905 (a readable block of 249 codes)
)

# VAT number prefixes that differ from the ISO country code.
_VAT_PREFIX = {"GR": "EL"}
_EU_PREFIXES = frozenset(
    _VAT_PREFIX.get(code.upper(), code.upper()) for code in eu_vat.MEMBER_STATES
) | {"EL"}


class TaxIdError(ValueError):
    pass


def normalize_country(value: str) -> str:
    code = value.strip().upper()
    if code not in COUNTRY_CODES:
        raise TaxIdError("not an ISO 3166-1 alpha-2 country code (e.g. US, DE, GB)")
    return code


def _national_module(country: str) -> NumberValidationModule | None:
    for kind in ("vat", "tin"):
        module = get_cc_module(country.lower(), kind)
        if module is not None:
            return module
    return None


def normalize_tax_id(country: str, value: str) -> str:
    """The tax id in its compact form, checked for the country when python-stdnum
    knows its format: EU VAT numbers (with or without the country prefix) and each
    country's VAT or TIN. Numbers of countries it does not know pass as given."""
    raw = value.strip()
    if not raw:
        raise TaxIdError("empty tax id")
    prefix = raw[:2].upper()
    eu_member = country.lower() in eu_vat.MEMBER_STATES
    try:
        if prefix in _EU_PREFIXES and (eu_member or prefix == "XI"):
            return str(eu_vat.validate(raw))
        if eu_member:
            return str(eu_vat.validate(_VAT_PREFIX.get(country, country) + raw))
        module = _national_module(country)
        if module is None:
            return " ".join(raw.split())[:40]
        return str(module.validate(raw))
    except ValidationError as exc:
        raise TaxIdError(f"not a valid tax id for {country}: {exc}") from None
