"""Domain names: the one normalisation (IDNA 2008 with UTS 46 mapping) and the
registrable domain from the Public Suffix List.

Python's built-in "idna" codec is IDNA 2003: it maps `faß.de` to `fass.de`, which
is another domain with another owner, and it accepts A-labels that decode to
nothing (`xn--zz`). Every name Mailfleet stores, compares or looks up goes through
`ascii_name` instead.
"""

from __future__ import annotations

import functools

import idna
from publicsuffixlist import PublicSuffixList

__all__ = ["ascii_name", "registrable_domain", "unicode_name"]

_ACE_PREFIX = "xn--"


def ascii_name(text: str) -> str:
    """`text` as lowercase ASCII (A-labels), without the trailing dot.

    Labels with non-ASCII characters are mapped (UTS 46, non-transitional: `ß`
    stays `ß`) and encoded; ASCII labels are kept, so `_dmarc` and other
    underscore labels pass; callers that want host names check the letters
    allowed. An A-label that does not decode to a valid U-label is refused.
    Raises ValueError for anything that is not a name.
    """
    name = text.strip()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("a name is required")
    try:
        mapped = idna.uts46_remap(name, std3_rules=False, transitional=False)
    except idna.IDNAError as exc:
        raise ValueError(f"not a valid name: {exc}") from None
    labels = [_ascii_label(label) for label in mapped.split(".")]
    result = ".".join(labels)
    if len(result) > 253:
        raise ValueError("a name has at most 253 characters")
    return result


def _ascii_label(label: str) -> str:
    if not label:
        raise ValueError("a name has no empty labels")
    try:
        if label.isascii():
            label = label.lower()
            if label.startswith(_ACE_PREFIX):
                # Decoding checks the Punycode and the U-label's code points.
                idna.ulabel(label)
        else:
            label = idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ValueError(f"{label!r} is not a valid label: {exc}") from None
    if len(label) > 63:
        raise ValueError("a label has at most 63 characters")
    return label


def unicode_name(name: str) -> str:
    """The display form of an ASCII name (U-labels); labels that do not decode stay."""
    labels = []
    for label in name.split("."):
        try:
            labels.append(idna.ulabel(label) if label.startswith(_ACE_PREFIX) else label)
        except (idna.IDNAError, UnicodeError):
            labels.append(label)
    return ".".join(labels)


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    # The snapshot bundled with the package: a lookup never fetches a newer list.
    # Loaded on first use, since parsing it costs a few milliseconds.
    return PublicSuffixList()


def registrable_domain(name: str) -> str | None:
    """The registrable domain of an ASCII name ("mx1.eu.hoster.co.uk" -> "hoster.co.uk"),
    None when the name is a public suffix itself."""
    result: str | None = _public_suffixes().privatesuffix(name.lower().rstrip("."))
    return result
