"""Domain registrars behind one interface (base.Registrar): Porkbun and Namecheap.

`registrar_for` builds the one this server is configured with
(MAILFLEET_REGISTRAR), or None when none is.
"""

from __future__ import annotations

from mailfleet.config import Settings
from mailfleet.registrars.base import (
    Availability,
    Contact,
    Registrar,
    RegistrarError,
    RegistrarRateLimited,
    Registration,
    UnsupportedTld,
)
from mailfleet.registrars.namecheap import NamecheapRegistrar
from mailfleet.registrars.porkbun import PorkbunRegistrar

__all__ = [
    "Availability",
    "Contact",
    "NamecheapRegistrar",
    "PorkbunRegistrar",
    "Registrar",
    "RegistrarError",
    "RegistrarRateLimited",
    "Registration",
    "UnsupportedTld",
    "missing_settings",
    "registrar_for",
]


def missing_settings(settings: Settings) -> list[str]:
    """The settings the configured registrar still needs (empty: ready)."""
    if settings.registrar == "porkbun":
        wanted = {
            "MAILFLEET_PORKBUN_API_KEY": settings.porkbun_api_key,
            "MAILFLEET_PORKBUN_SECRET_KEY": settings.porkbun_secret_key,
        }
    elif settings.registrar == "namecheap":
        wanted = {
            "MAILFLEET_NAMECHEAP_API_USER": settings.namecheap_api_user,
            "MAILFLEET_NAMECHEAP_API_KEY": settings.namecheap_api_key,
            "MAILFLEET_NAMECHEAP_CLIENT_IP": settings.namecheap_client_ip,
        }
    else:
        return ["MAILFLEET_REGISTRAR"]
    return [name for name, value in wanted.items() if not value]


def registrar_for(settings: Settings) -> Registrar | None:
    if missing_settings(settings):
        return None
    if settings.registrar == "porkbun":
        assert settings.porkbun_api_key
        assert settings.porkbun_secret_key
        return PorkbunRegistrar(
            settings.porkbun_api_key,
            settings.porkbun_secret_key,
            settings.porkbun_api_url,
            timeout=settings.registrar_timeout,
            ca_file=settings.tls_ca_file,
        )
    assert settings.namecheap_api_user
    assert settings.namecheap_api_key
    assert settings.namecheap_client_ip
    return NamecheapRegistrar(
        settings.namecheap_api_user,
        settings.namecheap_api_key,
        settings.namecheap_client_ip,
        settings.namecheap_api_url,
        username=settings.namecheap_username,
        timeout=settings.registrar_timeout,
        ca_file=settings.tls_ca_file,
    )
