"""Routers that speak another vendor's dialect verbatim and call the same services."""
