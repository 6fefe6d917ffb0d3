"""Domains: connect, DNS records through providers, SPF/DKIM/DMARC, checks, forwarding."""
