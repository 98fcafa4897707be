"""The outbound guard (indexer.atproto.netguard): which addresses and URLs are refused, that the guarded client checks
the addresses a name resolves to at connect time, and that did:web documents on private hosts are refused
unless allowed."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from indexer.atproto.identity.did_docs import DidDocuments, DidResolutionError
from indexer.atproto.netguard import ForbiddenHost, NetGuard, address_refusal, guarded_client


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link_local"),
        ("fe80::1", "link_local"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("100.64.0.1", "non_global"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:169.254.169.254", "link_local"),
        ("2002:a9fe:a9fe::1", "link_local"),  # 6to4 of 169.254.169.254
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "private"),  # Teredo tunnels: never a PDS
        ("8.8.8.8", None),
        ("2606:4700:4700::1111", None),
    ],
)
def test_address_refusal(address: str, reason: str | None) -> None:
    assert address_refusal(ipaddress.ip_address(address)) == reason


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080",
        "https://[::1]/",
        "http://localhost:3000",
        "https://pds.localhost",
        "http://169.254.169.254/latest/meta-data",
        "http://[::ffff:10.0.0.1]/",
        "https://pds.example@10.0.0.1/",
        "ftp://pds.example/",
        "file:///etc/passwd",
        "https:///nohost",
        "https://pds.example:99999/",
    ],
)
def test_check_url_refuses(url: str) -> None:
    with pytest.raises(ForbiddenHost):
        NetGuard().check_url(url)


def test_check_url_allows() -> None:
    NetGuard().check_url("https://pds.example.com")
    NetGuard().check_url("https://8.8.8.8:443/")
    NetGuard(allow_private=True).check_url("http://127.0.0.1:2583")
    # userinfo and foreign schemes stay refused even in development
    with pytest.raises(ForbiddenHost):
        NetGuard(allow_private=True).check_url("https://user@pds.example/")


def _resolves_public(host: str) -> bool:
    addresses = {info[4][0] for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    return all(address_refusal(ipaddress.ip_address(str(a))) is None for a in addresses)


class Documents:
    """A loopback HTTP server serving DID documents by path."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.hits: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits.append(self.path)
                doc = outer.docs.get(self.path)
                body = json.dumps(doc).encode() if doc is not None else b"{}"
                self.send_response(200 if doc is not None else 404)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def documents() -> Iterator[Documents]:
    docs = Documents()
    yield docs
    docs.server.shutdown()
    docs.server.server_close()


async def test_guarded_client_checks_resolved_addresses(documents: Documents) -> None:
    """A name is judged by what it resolves to, at connect time: this machine's host name resolves to a
    loopback or private address here, and the connection is refused before anything is sent."""
    host = socket.gethostname()
    if _resolves_public(host):
        pytest.skip(f"{host} resolves to public addresses here")
    documents.docs["/x"] = {"ok": True}
    async with guarded_client(NetGuard(), timeout=5) as client:
        with pytest.raises(ForbiddenHost):
            await client.get(f"http://{host}:{documents.port}/x")
        with pytest.raises(ForbiddenHost):
            await client.get(f"http://127.0.0.1:{documents.port}/x")
    assert documents.hits == []
    async with guarded_client(NetGuard(allow_private=True), timeout=5) as client:
        resp = await client.get(f"http://127.0.0.1:{documents.port}/x")
        assert resp.json() == {"ok": True}
    assert documents.hits == ["/x"]


async def test_did_web_on_a_private_host_is_refused_unless_allowed(documents: Documents) -> None:
    did = f"did:web:localhost%3A{documents.port}"
    documents.docs["/.well-known/did.json"] = {
        "id": did,
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://p.ex"}],
    }
    async with DidDocuments("http://plc.invalid") as docs:
        with pytest.raises(DidResolutionError) as refused:
            await docs.pds(did)
        assert refused.value.reason == "forbidden_host"
    # A name the URL check cannot judge (this machine's, resolving to a private address here): refused once
    # resolved, before any connection.
    if not _resolves_public(socket.gethostname()):
        async with DidDocuments("http://plc.invalid") as docs:
            with pytest.raises(DidResolutionError) as refused:
                await docs.pds(f"did:web:{socket.gethostname()}%3A{documents.port}")
            assert refused.value.reason == "forbidden_host"
    assert documents.hits == []
    async with DidDocuments("http://plc.invalid", allow_private_hosts=True) as docs:
        assert await docs.pds(did) == "https://p.ex"
    assert documents.hits == ["/.well-known/did.json"]
