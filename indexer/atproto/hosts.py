"""Host names and IP literals as written, read without the network or an HTTP client: shared by the settings
(which build addresses for the hosts the operator names) and the outbound guard (indexer/atproto/netguard.py)."""

from __future__ import annotations

import ipaddress


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address `host` spells (`[::1]` and a zone suffix allowed), or None for a name."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def is_localhost_name(host: str) -> bool:
    name = host.rstrip(".").lower()
    return name == "localhost" or name.endswith(".localhost")


def is_loopback_host(host: str) -> bool:
    """A `localhost` name or a loopback IP literal: a host with no certificate to serve TLS with, so the
    addresses we build for it default to ws:// and http://."""
    if is_localhost_name(host):
        return True
    literal = ip_literal(host)
    return literal is not None and literal.is_loopback
