"""A throwaway certificate authority and a server certificate for loopback test servers.

One CA signs a certificate valid for 127.0.0.1, ::1 and localhost. Servers load the
certificate; clients that should trust it get `client_context()`; clients that should
*not* (to provoke certificate errors) use the system trust store, which never holds
this CA.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["LOOPBACK_NAMES", "LoopbackTLS"]

LOOPBACK_NAMES = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class LoopbackTLS:
    ca: trustme.CA
    server_cert: trustme.LeafCert
    ca_pem: Path
    """The CA certificate, for clients outside Python (curl, openssl s_client)."""
    cert_pem: Path
    """The server certificate followed by its chain, as servers such as Dovecot want it."""
    key_pem: Path

    @classmethod
    def create(cls, directory: Path, names: Sequence[str] = LOOPBACK_NAMES) -> LoopbackTLS:
        """Make a CA and a certificate for `names` and write their PEM files into `directory`.

        Other `names` make a certificate that loopback clients reject for its name.
        """
        directory.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="Mailfleet tests")
        server_cert = ca.issue_cert(*names)
        ca_pem = directory / "ca.pem"
        cert_pem = directory / "server-chain.pem"
        key_pem = directory / "server-key.pem"
        ca.cert_pem.write_to_path(str(ca_pem))
        cert_pem.write_bytes(b"".join(blob.bytes() for blob in server_cert.cert_chain_pems))
        server_cert.private_key_pem.write_to_path(str(key_pem))
        key_pem.chmod(0o600)
        return cls(ca, server_cert, ca_pem, cert_pem, key_pem)

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(ctx)
        return ctx
