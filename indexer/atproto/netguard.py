"""Outbound-request guard: URLs taken from the network (a DID document's PDS endpoint, a did:web host) must not
lead us into our own network (SSRF).

Two layers:
- `check_url` refuses what is visible in the URL itself, without DNS: a scheme other than http(s), userinfo,
  `localhost` names and IP literals that are not globally routable.
- `guarded_transport` is an httpx transport whose connections are opened by `GuardedBackend`: the host name is
  resolved once, every address it resolves to is checked, and the socket is opened to one of those checked
  addresses. Checking and connecting use the same resolution, so a DNS answer that changes between a check and
  the connection (DNS rebinding) cannot slip a private address through. TLS still verifies the certificate
  against the host name of the URL (httpcore passes the URL's host as the TLS server name, not the address).

`allow_private=True` (PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS=1) turns both off, for development and tests, where
every server is on loopback.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import typing
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpcore
import httpx

from indexer.atproto.hosts import ip_literal, is_localhost_name

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
SocketOption = tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]

# IPv6 forms that carry an IPv4 address a gateway would forward to: NAT64 (RFC 6052) and its local-use prefix.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class ForbiddenHost(Exception):
    """A URL or address we refuse to connect to; `reason` is a short code, the message names the host."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason.replace('_', ' ')} address refused")
        self.host = host
        self.reason = reason


def address_refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast address (a short code), or None if it is one."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and any(ip in net for net in _NAT64):
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is None and ip.teredo is not None:
            embedded = ip.teredo[1]
        if embedded is not None:
            return address_refusal(embedded)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link_local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    # Everything else IANA lists as not globally reachable: CGNAT 100.64/10, benchmarking, documentation, ...
    if not ip.is_global:
        return "non_global"
    return None


_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")


def _host_name(host: str) -> tuple[str, str | None]:
    """(the ASCII form of a host that is not an IP literal, why it is refused or None).

    Refused: what is not a DNS name (empty or over-long labels, stray characters, broken `xn--` labels), which
    HTTP clients and resolvers reject with errors of their own, and names whose last label is a number
    (`2130706433`, `0x7f.1`, `0177.0.0.1`, `127.1`): URL parsers read those as IPv4 addresses in another
    spelling and disagree on which, so none of them is a PDS or did:web host. A Unicode name is judged by its
    IDNA form, in which `①②⑦.0.0.1` is `127.0.0.1`."""
    name = host
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return host, "malformed_host"
    name = name.lower()
    bare = name[:-1] if name.endswith(".") else name
    labels = bare.split(".")
    if not bare or len(bare) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        return name, "malformed_host"
    for label in labels:
        if label.startswith("xn--"):
            try:
                label.encode("ascii").decode("idna")
            except UnicodeError:
                return name, "malformed_host"
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        return name, "numeric_host"
    return name, None


class NetGuard:
    """The policy, injected where requests leave: `allow_private` lifts every address check."""

    def __init__(self, *, allow_private: bool = False) -> None:
        self.allow_private = allow_private

    def check_url(self, url: str) -> None:
        """Raise ForbiddenHost for a URL that must not be fetched, judged from the URL alone (no DNS)."""
        try:
            parts = urlsplit(url)
            host = parts.hostname
            parts.port  # noqa: B018 - raises ValueError on a malformed port
        except ValueError:
            raise ForbiddenHost(url[:200], "malformed_url") from None
        if parts.scheme not in ("http", "https"):
            raise ForbiddenHost(url[:200], "scheme")
        if not host:
            raise ForbiddenHost(url[:200], "missing_host")
        if parts.username is not None or parts.password is not None:
            # `https://pds.example@10.0.0.1/` reads like one host and goes to another.
            raise ForbiddenHost(host, "userinfo")
        ip = ip_literal(host)
        if ip is None:
            name, refusal = _host_name(host)
            ip = ip_literal(name)  # a Unicode spelling of an address
            if ip is None and refusal is not None:
                raise ForbiddenHost(host, refusal)
        if self.allow_private:
            return
        if is_localhost_name(host):
            raise ForbiddenHost(host, "loopback")
        if ip is not None and (reason := address_refusal(ip)) is not None:
            raise ForbiddenHost(host, reason)

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        if self.allow_private:
            return
        for address in addresses:
            ip = ip_literal(address)
            if ip is None:
                raise ForbiddenHost(host, "unparseable")
            if (reason := address_refusal(ip)) is not None:
                raise ForbiddenHost(host, reason)

    async def resolve(self, host: str, port: int) -> list[str]:
        """Every address `host` resolves to, checked; raises ForbiddenHost if any of them is refused. The
        lookup runs in asyncio's resolver thread, off the event loop."""
        if is_localhost_name(host) and not self.allow_private:
            raise ForbiddenHost(host, "loopback")
        ip = ip_literal(host)
        if ip is not None:
            addresses = [str(ip)]
        else:
            if (refusal := _host_name(host)[1]) is not None:
                raise ForbiddenHost(host, refusal)
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as exc:  # the resolver's IDNA codec raises UnicodeError
                raise httpcore.ConnectError(f"{host}: cannot resolve: {exc}") from exc
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not addresses:
            raise httpcore.ConnectError(f"{host}: no addresses")
        self.check_addresses(host, addresses)
        return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections only to addresses the guard has checked (see the module docstring)."""

    def __init__(self, guard: NetGuard, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._guard = guard
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await self._guard.resolve(host, port)
        failure: Exception | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise ForbiddenHost(path, "unix_socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport (pooling, HTTP/1.1, TLS) with its connections opened by `GuardedBackend`."""

    def __init__(self, guard: NetGuard, **kwargs: typing.Any) -> None:
        super().__init__(**kwargs)
        # httpx exposes no network-backend option; the pool it built is a plain httpcore.AsyncConnectionPool
        # (no proxy is configured here), whose backend is swapped before any connection exists.
        pool = self._pool
        if not isinstance(pool, httpcore.AsyncConnectionPool):
            raise TypeError(f"unexpected httpx pool {type(pool).__name__}")
        pool._network_backend = GuardedBackend(guard)


def guarded_client(
    guard: NetGuard,
    *,
    timeout: httpx.Timeout | float,
    limits: httpx.Limits | None = None,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """An AsyncClient that never follows redirects and, unless the guard allows private hosts, only connects
    to public addresses. Environment proxies are ignored: they would connect on our behalf, unchecked."""
    transport: httpx.AsyncBaseTransport
    if guard.allow_private:
        transport = httpx.AsyncHTTPTransport(limits=limits or httpx.Limits(), verify=verify)
    else:
        transport = GuardedTransport(guard, limits=limits or httpx.Limits(), verify=verify)
    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False, trust_env=False)
