"""Mailfleet: a self-hosted control plane for cold-email inbox infrastructure."""

__version__ = "0.1.0"
