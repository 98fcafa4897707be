"""Rate limits over real HTTP (uvicorn on loopback, real Postgres): per address and per DID, the PDS-style
headers on every limited answer and on the 429, windows ending on the injected clock, the upload byte quota,
the write proxy's per-DID limit, counters shared by two app instances, and 0 turning a limit off."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from litestar import Litestar

from appview.app import create_app
from appview.ratelimit import WRITE_PATHS, client_subject
from bench.synth import make_did, track_record
from indexer.audio.store import StorageSettings
from indexer.metrics import Metrics
from indexer.settings import ConfigError, Settings
from tests.api_support import Keypair, StubResolver, service_jwt
from tests.audio_support import UPLOAD, Uploader, wav_bytes
from tests.helpers import rows
from tests.proxy_support import Seen, StubPds, json_reply

# A day boundary (so also an hour's and a minute's), 15 s into the window.
T0 = 86400 * 20833
LATEST = "/xrpc/fm.plyr.getLatestTracks"
CREATE = "/xrpc/com.atproto.repo.createRecord"
ALICE = make_did(1)
VIEWER = make_did(2)
OTHER_VIEWER = make_did(3)
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
REV = "3l3qo2vutsw2b"


class Clock:
    def __init__(self, now: float = T0 + 15) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limited(**kw: Any) -> Settings:
    """The limits `kw` sets, the others off."""
    base: dict[str, Any] = {"public_host": "api.plyr.test", "allow_private_hosts": True, "proxy_timeout": 5.0}
    return msgspec.structs.replace(Settings(**base).without_rate_limits(), **kw)


@contextlib.asynccontextmanager
async def served(app: Litestar) -> AsyncIterator[str]:
    """The app on a free loopback port, with uvicorn's own X-Forwarded-For handling off (as `serve` runs it), so
    the peer address is the socket's."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_config=None, access_log=False, lifespan="on", proxy_headers=False
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


def client(url: str, address: str = "127.0.0.1") -> httpx.AsyncClient:
    """A client whose connections come from `address` (any 127.0.0.0/8 address is loopback)."""
    return httpx.AsyncClient(base_url=url, timeout=30, transport=httpx.AsyncHTTPTransport(local_address=address))


def limit_headers(resp: httpx.Response) -> tuple[str, str, str, str] | None:
    h = resp.headers
    if "ratelimit-limit" not in h:
        return None
    return h["ratelimit-limit"], h["ratelimit-remaining"], h["ratelimit-reset"], h["ratelimit-policy"]


def assert_limited(resp: httpx.Response, *, limit: int, window: int, reset: int, retry_after: int) -> None:
    assert resp.status_code == 429, resp.text
    body = resp.json()
    assert body["error"] == "RateLimitExceeded" and f"at most {limit}" in body["message"], body
    assert limit_headers(resp) == (str(limit), "0", str(reset), f"{limit};w={window}")
    assert resp.headers["retry-after"] == str(retry_after)


async def test_reads_per_address_count_down_then_refuse(db_url: str) -> None:
    clock = Clock()
    metrics = Metrics()
    app = create_app(
        db_url, settings=limited(rate_limit_reads_per_minute=3), clock=clock, metrics=metrics, resolver=StubResolver()
    )
    async with served(app) as url, client(url) as one, client(url, "127.0.0.2") as two:
        seen = [limit_headers(await one.get(LATEST)) for _ in range(3)]
        reset = str(T0 + 60)
        assert seen == [("3", remaining, reset, "3;w=60") for remaining in ("2", "1", "0")]
        refused = await one.get(LATEST)
        assert_limited(refused, limit=3, window=60, reset=T0 + 60, retry_after=45)
        # Pages, audio and HEAD count as reads too.
        assert (await one.get("/listen")).status_code == 429
        assert (await one.head(LATEST)).status_code == 429
        # Another address has its own budget.
        other = await two.get(LATEST)
        assert other.status_code == 200 and limit_headers(other) == ("3", "2", reset, "3;w=60")
        # Probes are never limited, and say nothing of limits.
        for path in ("/xrpc/_health", "/metrics"):
            probe = await one.get(path)
            assert probe.status_code == 200 and limit_headers(probe) is None
        # A CORS preflight is not charged; the limit headers are readable from other origins.
        preflight = await one.options(
            LATEST, headers={"Origin": "https://client.example", "Access-Control-Request-Method": "GET"}
        )
        assert preflight.status_code in (200, 204)
        cors = await two.get(LATEST, headers={"Origin": "https://client.example"})
        exposed = cors.headers["access-control-expose-headers"].lower()
        assert all(name in exposed for name in ("ratelimit-remaining", "ratelimit-reset", "retry-after"))
        # The window ends on the clock: the next one starts afresh.
        clock.now = T0 + 60
        again = await one.get(LATEST)
        assert again.status_code == 200 and limit_headers(again) == ("3", "2", str(T0 + 120), "3;w=60")
    text = metrics.render().decode()
    assert 'plyr_rate_limited_total{policy="reads"} 3.0' in text


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(db_url: str) -> None:
    clock = Clock()
    untrusted = create_app(db_url, settings=limited(rate_limit_reads_per_minute=2), clock=clock)
    async with served(untrusted) as url, client(url) as c:
        answers = [await c.get(LATEST, headers={"X-Forwarded-For": f"198.51.100.{n}"}) for n in range(3)]
        # Three "different" clients, one peer: the header is ignored and the third is refused.
        assert [a.status_code for a in answers] == [200, 200, 429]
    behind = create_app(
        db_url,
        settings=limited(rate_limit_reads_per_minute=2, trusted_proxies=("127.0.0.1/32",)),
        clock=Clock(T0 + 60 + 15),
    )
    async with served(behind) as url, client(url) as c:
        first = [await c.get(LATEST, headers={"X-Forwarded-For": "198.51.100.7"}) for _ in range(3)]
        assert [a.status_code for a in first] == [200, 200, 429]
        # A client's own X-Forwarded-For entries sit left of what the proxy appended: they do not matter.
        spoofed = await c.get(LATEST, headers={"X-Forwarded-For": "203.0.113.9, 198.51.100.7"})
        assert spoofed.status_code == 429
        fresh = await c.get(LATEST, headers={"X-Forwarded-For": "198.51.100.8"})
        assert fresh.status_code == 200 and fresh.headers["ratelimit-remaining"] == "1"


def _scope(peer: str, forwarded: str | None = None) -> dict[str, Any]:
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    return {"type": "http", "client": (peer, 1234), "headers": headers}


@pytest.mark.parametrize(
    ("peer", "forwarded", "subject"),
    [
        ("192.0.2.1", "198.51.100.1", "ip:192.0.2.1"),  # not a trusted proxy: the header is ignored
        ("10.0.0.2", "198.51.100.1", "ip:198.51.100.1"),
        ("10.0.0.2", "203.0.113.5, 198.51.100.1", "ip:198.51.100.1"),  # right-most untrusted entry
        ("10.0.0.2", "198.51.100.1, 10.0.0.9", "ip:198.51.100.1"),  # proxies in a chain are skipped
        ("10.0.0.2", "10.0.0.8, 10.0.0.9", "ip:10.0.0.8"),  # all trusted: the left-most
        ("10.0.0.2", "198.51.100.1, garbage", "ip:10.0.0.2"),  # unreadable: the nearest proxy
        ("10.0.0.2", "[2001:db8::1]:443", "ip:2001:db8::/64"),
        ("10.0.0.2", None, "ip:10.0.0.2"),
        ("2001:db8:1:2:3:4:5:6", None, "ip:2001:db8:1:2::/64"),  # IPv6 per /64
        ("::ffff:192.0.2.4", None, "ip:192.0.2.4"),
        ("testclient", "198.51.100.1", "peer:testclient"),
    ],
)
def test_client_subject(peer: str, forwarded: str | None, subject: str) -> None:
    trusted = (ipaddress.ip_network("10.0.0.0/8"),)
    assert client_subject(_scope(peer, forwarded), trusted) == subject


async def test_service_auth_reads_are_charged_to_the_did(db_url: str) -> None:
    key = Keypair()
    resolver = StubResolver()
    resolver.keys[VIEWER] = key.did_key
    resolver.keys[OTHER_VIEWER] = key.did_key
    nsid = "fm.plyr.getLatestTracks"

    def bearer(did: str, signer: Keypair = key) -> dict[str, str]:
        return {"Authorization": f"Bearer {service_jwt(signer, iss=did, lxm=nsid)}"}

    app = create_app(db_url, settings=limited(rate_limit_reads_per_minute=2), clock=Clock(), resolver=resolver)
    async with served(app) as url, client(url) as c:
        # One address (a PDS proxying for its users), two viewers: each viewer has its own budget.
        viewer = [(await c.get(LATEST, headers=bearer(VIEWER))).status_code for _ in range(3)]
        assert viewer == [200, 200, 429]
        other = await c.get(LATEST, headers=bearer(OTHER_VIEWER))
        assert other.status_code == 200 and other.headers["ratelimit-remaining"] == "1"
        # Anonymous reads from that address were not charged by the viewers'.
        assert (await c.get(LATEST)).headers["ratelimit-remaining"] == "1"
        # A forged token is charged to the address: 401 while it has budget, then 429.
        forged = [await c.get(LATEST, headers=bearer(VIEWER, Keypair())) for _ in range(2)]
        assert [f.status_code for f in forged] == [401, 429]
        assert forged[0].headers["ratelimit-remaining"] == "0"
        assert forged[1].json()["error"] == "RateLimitExceeded"
    subjects = await rows(db_url, "SELECT subject, hits FROM rate_limits WHERE policy = 'reads'")
    assert sorted(subjects) == sorted([(VIEWER, 3), (OTHER_VIEWER, 1), ("ip:127.0.0.1", 3)])


async def test_two_instances_share_the_counters(db_url: str) -> None:
    clock = Clock()
    settings = limited(rate_limit_reads_per_minute=3)
    first = create_app(db_url, settings=settings, clock=clock, resolver=StubResolver())
    second = create_app(db_url, settings=settings, clock=clock, resolver=StubResolver())
    async with served(first) as a, served(second) as b, client(a) as ca, client(b) as cb:
        assert [(await ca.get(LATEST)).status_code for _ in range(2)] == [200, 200]
        last = await cb.get(LATEST)
        assert last.status_code == 200 and last.headers["ratelimit-remaining"] == "0"
        assert (await ca.get(LATEST)).status_code == 429
        assert (await cb.get(LATEST)).status_code == 429


async def test_zero_turns_every_limit_off(db_url: str, tmp_path: Path) -> None:
    uploader = Uploader()
    off = limited(storage=StorageSettings(audio_dir=tmp_path / "audio"))
    assert (off.rate_limit_reads_per_minute, off.rate_limit_uploads_per_hour, off.upload_bytes_per_day) == (0, 0, 0)
    app = create_app(db_url, settings=off, clock=Clock(), resolver=uploader.resolver)
    async with served(app) as url, client(url) as c:
        for _ in range(30):
            resp = await c.get(LATEST)
            assert resp.status_code == 200 and limit_headers(resp) is None
        upload = await c.post(f"/xrpc/{UPLOAD}", content=wav_bytes(0.1), headers=uploader.headers())
        assert upload.status_code == 200 and limit_headers(upload) is None
    assert await rows(db_url, "SELECT count(*) FROM rate_limits") == [(0,)]


async def test_upload_byte_quota_counts_new_bytes_per_day(db_url: str, tmp_path: Path) -> None:
    uploader = Uploader()
    clock = Clock()
    big, small, other = wav_bytes(1.0), wav_bytes(0.2), wav_bytes(0.5, tone=220.0)
    quota = len(big) + len(small) + 100
    settings = limited(storage=StorageSettings(audio_dir=tmp_path / "audio"), upload_bytes_per_day=quota)
    app = create_app(db_url, settings=settings, clock=clock, resolver=uploader.resolver)
    day_end = str(T0 + 86400)

    async def send(c: httpx.AsyncClient, data: bytes) -> httpx.Response:
        return await c.post(f"/xrpc/{UPLOAD}", content=data, headers=uploader.headers())

    async with served(app) as url, client(url) as c:
        stored = await send(c, big)
        assert stored.status_code == 200, stored.text
        left = quota - len(big)
        assert limit_headers(stored) == (str(quota), str(left), day_end, f"{quota};w=86400")
        # The same bytes again: stored once, so they do not count.
        again = await send(c, big)
        assert again.status_code == 200 and again.headers["ratelimit-remaining"] == str(left)
        # More than what is left: refused after hashing, nothing stored, nothing counted.
        refused = await send(c, other)
        assert refused.status_code == 429 and refused.json()["error"] == "RateLimitExceeded"
        assert refused.headers["ratelimit-reset"] == day_end and int(refused.headers["retry-after"]) > 0
        sha = json.loads(stored.text)["sha256"]
        assert await rows(db_url, "SELECT sha256 FROM audio_objects") == [(sha,)]
        # What fits still goes in; then the quota is spent and the next upload is refused before its body is read.
        fits = await send(c, small)
        assert fits.status_code == 200 and fits.headers["ratelimit-remaining"] == "100"
        assert (await send(c, small)).status_code == 200  # deduplicated: allowed even with 100 bytes left
        clock.now = T0 + 86400 + 15
        assert (await send(c, other)).status_code == 200
    assert await rows(db_url, "SELECT count(*) FROM audio_objects") == [(3,)]
    assert len(list((tmp_path / "audio" / "audio").iterdir())) == 3


async def test_a_spent_quota_refuses_before_the_body(db_url: str, tmp_path: Path) -> None:
    uploader = Uploader()
    data = wav_bytes(0.2)
    settings = limited(
        storage=StorageSettings(audio_dir=tmp_path / "audio"),
        upload_bytes_per_day=len(data),
        rate_limit_uploads_per_hour=10,
    )
    metrics = Metrics()
    app = create_app(db_url, settings=settings, clock=Clock(), resolver=uploader.resolver, metrics=metrics)
    async with served(app) as url, client(url) as c:
        first = await c.post(f"/xrpc/{UPLOAD}", content=data, headers=uploader.headers())
        assert first.status_code == 200, first.text
        # The tightest limit is reported: the spent byte quota, not the nine uploads left this hour.
        assert first.headers["ratelimit-policy"] == f"{len(data)};w=86400"
        assert first.headers["ratelimit-remaining"] == "0"
        refused = await c.post(f"/xrpc/{UPLOAD}", content=b"x" * 10, headers=uploader.headers())
        # Refused before the body was read: a body that is not audio would otherwise be InvalidAudio.
        assert refused.status_code == 429 and refused.json()["error"] == "RateLimitExceeded"
    assert 'plyr_audio_uploads_total{outcome="rate_limited"} 1.0' in metrics.render().decode()


async def test_uploads_per_hour_per_did(db_url: str, tmp_path: Path) -> None:
    uploader = Uploader()
    clock = Clock()
    settings = limited(storage=StorageSettings(audio_dir=tmp_path / "audio"), rate_limit_uploads_per_hour=2)
    app = create_app(db_url, settings=settings, clock=clock, resolver=uploader.resolver)
    async with served(app) as url, client(url) as c:
        answers = [
            await c.post(f"/xrpc/{UPLOAD}", content=wav_bytes(0.1), headers=uploader.headers()) for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [200, 200, 429]
        assert [a.headers["ratelimit-remaining"] for a in answers] == ["1", "0", "0"]
        assert answers[2].headers["ratelimit-policy"] == "2;w=3600"
        assert answers[2].headers["retry-after"] == str(3600 - 15)
        clock.now = T0 + 3600
        assert (await c.post(f"/xrpc/{UPLOAD}", content=wav_bytes(0.1), headers=uploader.headers())).status_code == 200


def _pds_answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
    # The stand-in PDS accepts the token "good" only, as a PDS verifies the caller's credentials.
    if seen.headers.get("authorization") != "Bearer good":
        return json_reply(401, {"error": "InvalidToken", "message": "bad token"})
    body = json.loads(seen.body)
    return json_reply(
        200,
        {"uri": f"at://{body['repo']}/{body['collection']}/{REV}", "cid": CID, "commit": {"cid": CID, "rev": REV}},
    )


async def test_proxy_writes_per_did_and_per_address(db_url: str) -> None:
    pds = StubPds(_pds_answer)
    resolver = StubResolver()
    resolver.pds[ALICE] = pds.url
    clock = Clock()
    metrics = Metrics()
    app = create_app(
        db_url, settings=limited(rate_limit_writes_per_minute=2), clock=clock, resolver=resolver, metrics=metrics
    )
    body = {"repo": ALICE, "collection": "fm.plyr.track", "record": track_record("Limited")}
    try:
        async with served(app) as url, client(url) as attacker, client(url, "127.0.0.2") as alice:
            # Someone without Alice's credentials: the PDS refuses, so Alice's writes are given back; the
            # attacker's address pays, and is stopped before the PDS on the third try.
            bad = [
                await attacker.post(CREATE, json=body, headers={"Authorization": "Bearer stolen?"}) for _ in range(3)
            ]
            assert [b.status_code for b in bad] == [401, 401, 429]
            assert len(pds.posts()) == 2
            # Alice, from her own address, still has both writes of the minute.
            good = [await alice.post(CREATE, json=body, headers={"Authorization": "Bearer good"}) for _ in range(2)]
            assert [g.status_code for g in good] == [200, 200]
            assert [g.headers["ratelimit-remaining"] for g in good] == ["1", "0"]
            assert good[0].headers["ratelimit-policy"] == "2;w=60"
            # Her third is refused by her DID's limit, from any address, before reaching the PDS.
            async with client(url, "127.0.0.3") as elsewhere:
                third = await elsewhere.post(CREATE, json=body, headers={"Authorization": "Bearer good"})
            assert_limited(third, limit=2, window=60, reset=T0 + 60, retry_after=45)
            assert len(pds.posts()) == 4
            # The next minute, she writes again.
            clock.now = T0 + 60
            assert (await alice.post(CREATE, json=body, headers={"Authorization": "Bearer good"})).status_code == 200
    finally:
        pds.close()
    text = metrics.render().decode()
    assert 'plyr_rate_limited_total{policy="writes"} 2.0' in text
    assert 'plyr_proxy_writes_total{method="createRecord",outcome="rate_limited"} 1.0' in text


def test_every_write_route_is_a_write() -> None:
    app = create_app("postgresql://unused@127.0.0.1:1/none")
    posts = {
        route.path
        for route in app.routes
        for handler in getattr(route, "route_handlers", [])
        if "POST" in handler.http_methods and route.path.startswith("/xrpc/com.atproto.repo.")
    }
    assert posts == WRITE_PATHS
    assert any(route.path == f"/xrpc/{UPLOAD}" for route in app.routes)


async def test_expired_windows_are_pruned(db_url: str) -> None:
    clock = Clock()
    app = create_app(db_url, settings=limited(rate_limit_reads_per_minute=5), clock=clock, resolver=StubResolver())
    async with served(app) as url, client(url) as c:
        await c.get(LATEST)
        clock.now = T0 + 60 + 15
        await c.get(LATEST)
        assert await rows(db_url, "SELECT window_start FROM rate_limits ORDER BY 1") == [(T0,), (T0 + 60,)]
        assert await app.state.ctx.limits.prune() == 1
        assert await rows(db_url, "SELECT window_start FROM rate_limits") == [(T0 + 60,)]


VARIABLES = [
    "PLYR_APPVIEW_RATE_LIMIT_READS_PER_MINUTE",
    "PLYR_APPVIEW_RATE_LIMIT_WRITES_PER_MINUTE",
    "PLYR_APPVIEW_RATE_LIMIT_UPLOADS_PER_HOUR",
    "PLYR_APPVIEW_UPLOAD_BYTES_PER_DAY",
]


def test_defaults_of_a_public_service_and_zero() -> None:
    s = Settings.from_env({})
    assert (s.rate_limit_reads_per_minute, s.rate_limit_writes_per_minute) == (600, 60)
    assert (s.rate_limit_uploads_per_hour, s.upload_bytes_per_day, s.trusted_proxies) == (30, 1024**3, ())
    off = Settings.from_env(dict.fromkeys(VARIABLES, "0"))
    assert (off.rate_limit_reads_per_minute, off.rate_limit_writes_per_minute) == (0, 0)
    assert (off.rate_limit_uploads_per_hour, off.upload_bytes_per_day) == (0, 0)
    proxies = Settings.from_env({"PLYR_APPVIEW_TRUSTED_PROXIES": " 10.0.0.0/8, ::1,10.0.0.0/8 "}).trusted_proxies
    assert proxies == ("10.0.0.0/8", "::1/128")


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        *((name, "-1", "below the minimum") for name in VARIABLES),
        *((name, "lots", "is not a whole number") for name in VARIABLES),
        *((name, "1.5", "is not a whole number") for name in VARIABLES),
        ("PLYR_APPVIEW_TRUSTED_PROXIES", "10.0.0.1/8", "is not an IP network"),
        ("PLYR_APPVIEW_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal", "is not an IP network"),
        ("PLYR_APPVIEW_TRUSTED_PROXIES", "10.0.0.0/33", "is not an IP network"),
    ],
)
def test_a_wrong_value_names_its_variable(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env({name: value})
    assert str(raised.value).startswith(f"{name}={value!r}") and says in str(raised.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [("PLYR_APPVIEW_RATE_LIMIT_READS_PER_MINUTE", "ten"), ("PLYR_APPVIEW_TRUSTED_PROXIES", "everyone")],
)
def test_the_process_stops_on_a_bad_value(name: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "appview.cli", "serve"],
        env={"PATH": "/usr/bin:/bin", name: value},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: {name}={value!r}") and len(done.stderr.strip().splitlines()) == 1
