"""Server-side request forgery, as a matrix: every spelling of a loopback, private, link-local, metadata or CGNAT
address we know of, used (1) as a URL for the guarded HTTP client, (2) as the host of a did:web whose document
we would fetch, (3) as the issuer of a service-auth token (which makes the API look that document up), and
(4) as the PDS endpoint of a repo the write proxy forwards to. Each is refused with a clear error, and a real
TCP listener on loopback proves nothing ever connected. Private hosts are not allowed in any of these apps."""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from appview.app import create_app
from bench.synth import make_did, track_record
from indexer.atproto.identity.did_docs import DidDocuments, DidResolutionError
from indexer.atproto.netguard import ForbiddenHost, NetGuard, guarded_client
from indexer.audio.store import StorageSettings
from indexer.settings import Settings
from tests.api_support import Keypair, StubResolver, service_jwt

ALICE = make_did(71)

# (host as written in a URL, what it is)
LOOPBACK = [
    "127.0.0.1",
    "127.0.0.2",
    "[::1]",
    "localhost",
    "LocalHost",
    "pds.localhost",
    "127.1",  # short form
    "2130706433",  # decimal
    "0x7f000001",  # hex
    "017700000001",  # octal
    "0177.0.0.1",  # octal first octet
    "0x7f.0.0.1",  # hex first octet
    "0",
    "0.0.0.0",
    "[::]",
    "[::ffff:127.0.0.1]",  # IPv4-mapped
    "[::ffff:7f00:1]",  # IPv4-mapped, hex
    "[::127.0.0.1]",  # IPv4-compatible (deprecated)
    "[64:ff9b::7f00:1]",  # NAT64
    "[2002:7f00:1::1]",  # 6to4
]
PRIVATE = [
    "10.0.0.1",
    "10.255.255.254",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.0.1",
    "012.0.0.1",  # octal 10.0.0.1
    "167772161",  # decimal 10.0.0.1
    "[fc00::1]",
    "[fd00::1]",
    "[::ffff:10.0.0.1]",
    "[::ffff:192.168.1.1]",
]
LINK_LOCAL = ["169.254.1.1", "[fe80::1]", "[fe80::1%25eth0]"]
METADATA = [
    "169.254.169.254",
    "2852039166",  # decimal
    "0xa9fea9fe",  # hex
    "0251.0376.0251.0376",  # octal
    "[fd00:ec2::254]",  # AWS IMDS over IPv6
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "metadata.google.internal",  # only meaningful where it resolves
]
CGNAT = ["100.64.0.1", "100.127.255.254"]
HOSTS = [
    pytest.param(h, id=f"{kind}:{h}")
    for kind, hosts in (
        ("loopback", LOOPBACK),
        ("private", PRIVATE),
        ("link-local", LINK_LOCAL),
        ("metadata", METADATA),
        ("cgnat", CGNAT),
    )
    for h in hosts
]
# A URL that names a public host to a reader and another one to a parser.
USERINFO = [
    "http://pds.example.com@127.0.0.1:{port}/",
    "http://pds.example.com:443@127.0.0.1:{port}/",
    "http://127.0.0.1:{port}\\@pds.example.com/",
    "http://user:pass@pds.example.com/",
    "http://127.0.0.1%2f@pds.example.com/",
]


def _resolves(host: str) -> bool:
    try:
        socket.getaddrinfo(host.strip("[]"), 80)
    except (OSError, UnicodeError):
        return False
    return True


def _skip_unresolvable(host: str) -> None:
    if host == "metadata.google.internal" and not _resolves(host):
        pytest.skip("metadata.google.internal does not resolve here (not on GCP)")


class Listener:
    """A TCP listener on 127.0.0.1 that counts connections: the proof that a refused request went nowhere."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def _url(host: str, port: int) -> str:
    return f"http://{host}:{port}/xrpc/_health"


# -- 1. the guarded client ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("host", HOSTS)
async def test_guarded_client_refuses(host: str, listener: Listener) -> None:
    _skip_unresolvable(host)
    async with guarded_client(NetGuard(), timeout=3) as client:
        # httpx itself refuses to parse dotted forms with leading zeros (`0177.0.0.1`): refused all the same.
        with pytest.raises((ForbiddenHost, httpx.InvalidURL)) as refused:
            await client.get(_url(host, listener.port))
    if isinstance(refused.value, ForbiddenHost):
        assert refused.value.reason and "refused" in str(refused.value)
    assert listener.accepted == 0


@pytest.mark.parametrize("template", USERINFO)
def test_userinfo_tricks_are_refused(template: str, listener: Listener) -> None:
    with pytest.raises(ForbiddenHost) as refused:
        NetGuard().check_url(template.format(port=listener.port))
    assert refused.value.reason in ("userinfo", "loopback", "malformed_url")


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("\u2460\u2461\u2466.0.0.1", "loopback"),  # ①②⑦.0.0.1: 127.0.0.1 once IDNA-mapped
        ("\uff11\uff10.0.0.1", "private"),  # fullwidth digits: 10.0.0.1
        ("2130706433", "numeric_host"),
        ("0x7f.1", "numeric_host"),
        ("127.1", "numeric_host"),
        ("0177.0.0.1", "numeric_host"),
        ("xn--", "malformed_host"),
        ("a..b", "malformed_host"),
        ("-x-.example", "malformed_host"),
        ("x" * 64 + ".example", "malformed_host"),
        ("%31%32%37.0.0.1", "malformed_host"),
    ],
)
def test_odd_host_spellings_are_refused_with_a_reason(host: str, reason: str) -> None:
    with pytest.raises(ForbiddenHost) as refused:
        NetGuard().check_url(f"https://{host}/")
    assert refused.value.reason == reason


@pytest.mark.parametrize("host", ["pds.example.com", "xn--mnchen-3ya.de", "m\u00fcnchen.de", "_dmarc.example.com"])
def test_ordinary_host_names_pass(host: str) -> None:
    NetGuard().check_url(f"https://{host}/")


def test_the_listener_does_count() -> None:
    # The matrix relies on the listener seeing a connection that does happen.
    lst = Listener()
    try:
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{lst.port}/", timeout=2)
        assert lst.accepted == 1
    finally:
        lst.close()


# -- 2. did:web documents ----------------------------------------------------------------------------------------


def _did_web(host: str, port: int) -> str:
    return f"did:web:{host.replace(':', '%3A')}%3A{port}"


@pytest.mark.parametrize("host", HOSTS)
async def test_did_web_documents_on_forbidden_hosts_are_not_fetched(host: str, listener: Listener) -> None:
    _skip_unresolvable(host)
    async with DidDocuments("http://127.0.0.1:9", allow_private_hosts=False) as docs:
        with pytest.raises(DidResolutionError) as failed:
            await docs.resolve(_did_web(host, listener.port))
    assert failed.value.reason in ("forbidden_host", "invalid_did"), failed.value
    assert listener.accepted == 0


@pytest.mark.parametrize("host", ["xn--", "a..b", "-.example", "x" * 64 + ".example", "%E2%91%A0.0.0.1"])
async def test_did_web_hosts_that_are_not_host_names_fail_cleanly(host: str) -> None:
    async with DidDocuments("http://127.0.0.1:9", allow_private_hosts=False) as docs:
        with pytest.raises(DidResolutionError):
            await docs.resolve(f"did:web:{host}")


# -- 3. a service-auth token naming such a did:web makes the API look it up --------------------------------------


@pytest.fixture
async def api(db_url: str, tmp_path: Path) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = Settings(
        public_host="api.plyr.test", storage=StorageSettings(audio_dir=tmp_path / "audio"), allow_private_hosts=False
    )
    async with AsyncTestClient(app=create_app(db_url, settings=settings)) as client:
        yield client


ISSUERS = [*HOSTS, *(pytest.param(h, id=f"not-a-host:{h}") for h in ("xn--", "a..b", "x" * 64 + ".example"))]


@pytest.mark.parametrize("host", ISSUERS)
async def test_tokens_from_did_web_issuers_on_forbidden_hosts_are_refused(
    api: AsyncTestClient[Any], listener: Listener, host: str
) -> None:
    _skip_unresolvable(host)
    issuer = _did_web(host, listener.port) if not host.startswith(("xn", "a.", "xx")) else f"did:web:{host}"
    token = service_jwt(Keypair(), iss=issuer, lxm="fm.plyr.getStats", aud="did:web:api.plyr.test")
    resp = await api.get("/xrpc/fm.plyr.getStats", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"] in ("BadJwtSignature", "BadJwt")
    assert listener.accepted == 0


# -- 4. the write proxy ------------------------------------------------------------------------------------------


def _access_token(sub: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256K'})}.{part({'sub': sub, 'scope': 'com.atproto.access'})}.c2ln"


@pytest.fixture
def proxy_resolver() -> StubResolver:
    return StubResolver()


@pytest.fixture
async def proxy(db_url: str, tmp_path: Path, proxy_resolver: StubResolver) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = Settings(
        public_host="api.plyr.test", storage=StorageSettings(audio_dir=tmp_path / "audio"), allow_private_hosts=False
    )
    async with AsyncTestClient(app=create_app(db_url, settings=settings, resolver=proxy_resolver)) as client:
        yield client


@pytest.mark.parametrize("host", HOSTS)
async def test_proxy_refuses_a_pds_on_a_forbidden_host(
    proxy: AsyncTestClient[Any], proxy_resolver: StubResolver, listener: Listener, host: str
) -> None:
    _skip_unresolvable(host)
    proxy_resolver.pds[ALICE] = f"http://{host}:{listener.port}"
    headers = {"Authorization": f"Bearer {_access_token(ALICE)}"}
    body = {"repo": ALICE, "collection": "fm.plyr.track", "record": track_record("SSRF")}
    resp = await proxy.post("/xrpc/com.atproto.repo.createRecord", json=body, headers=headers)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "InvalidRequest"
    assert "refus" in resp.json()["message"]
    blob = await proxy.post(
        "/xrpc/com.atproto.repo.uploadBlob", content=b"ID3", headers={**headers, "Content-Type": "audio/mpeg"}
    )
    assert blob.status_code == 400, blob.text
    assert "refus" in blob.json()["message"]
    assert listener.accepted == 0


@pytest.mark.parametrize("template", USERINFO)
async def test_proxy_refuses_userinfo_endpoints(
    proxy: AsyncTestClient[Any], proxy_resolver: StubResolver, listener: Listener, template: str
) -> None:
    proxy_resolver.pds[ALICE] = template.format(port=listener.port).rstrip("/")
    body = {"repo": ALICE, "collection": "fm.plyr.track", "record": track_record("SSRF")}
    resp = await proxy.post(
        "/xrpc/com.atproto.repo.createRecord",
        json=body,
        headers={"Authorization": f"Bearer {_access_token(ALICE)}"},
    )
    assert resp.status_code == 400, resp.text
    assert "refus" in resp.json()["message"]
    assert listener.accepted == 0


@pytest.mark.parametrize("endpoint", ["http://xn--", "http://a..b", "http://%E2%91%A0.0.0.1", "http://[::1"])
async def test_proxy_endpoints_that_are_not_urls_are_clean_errors(
    proxy: AsyncTestClient[Any], proxy_resolver: StubResolver, endpoint: str
) -> None:
    proxy_resolver.pds[ALICE] = endpoint
    body = {"repo": ALICE, "collection": "fm.plyr.track", "record": track_record("SSRF")}
    resp = await proxy.post(
        "/xrpc/com.atproto.repo.createRecord",
        json=body,
        headers={"Authorization": f"Bearer {_access_token(ALICE)}"},
    )
    assert resp.status_code in (400, 502), resp.text
    assert resp.json()["error"] in ("InvalidRequest", "UpstreamFailure")
