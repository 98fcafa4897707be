"""The write proxy against stand-in PDSes (loopback HTTP servers that record what reaches them): input checks
before any network call, error mapping (timeouts, 5xx, non-JSON, 4xx pass-through with the OAuth headers),
the private-address refusal, uploadBlob streaming and its size cap, CORS."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from appview.app import create_app
from bench.synth import BASE_US, identity, make_did, track_record
from indexer.atproto.lexicon import Validator
from indexer.metrics import Metrics
from indexer.settings import Settings
from tests.api_support import StubResolver
from tests.helpers import ingest, rows, rows_exec
from tests.proxy_support import Seen, StubPds, json_reply, serve_app

ALICE = make_did(1)
CREATE = "/xrpc/com.atproto.repo.createRecord"
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
REV = "3l3qo2vutsw2b"


def settings(**overrides: Any) -> Settings:
    base: dict[str, Any] = {"public_host": "api.plyr.test", "allow_private_hosts": True, "proxy_timeout": 5.0}
    return Settings(**{**base, **overrides})


def created(seen: Seen) -> tuple[int, dict[str, str], bytes]:
    body = json.loads(seen.body)
    return json_reply(
        200,
        {"uri": f"at://{body['repo']}/{body['collection']}/{REV}", "cid": CID, "commit": {"cid": CID, "rev": REV}},
    )


@pytest.fixture
def stub() -> Iterator[StubPds]:
    pds = StubPds(created)
    yield pds
    pds.close()


@contextlib.asynccontextmanager
async def proxy(
    db_url: str, stub: StubPds, metrics: Metrics | None = None, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    resolver = StubResolver()
    resolver.pds[ALICE] = stub.url
    app = create_app(db_url, settings=settings(**overrides), resolver=resolver, metrics=metrics)
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        yield client


def create_body(record: dict[str, Any], collection: str = "fm.plyr.track") -> dict[str, Any]:
    return {"repo": ALICE, "collection": collection, "record": record}


async def test_forwards_credentials_and_folds(db_url: str, stub: StubPds) -> None:
    async with proxy(db_url, stub) as client:
        resp = await client.post(
            CREATE,
            json=create_body(track_record("Hello")),
            headers={"authorization": "DPoP tok", "dpop": "proof", "atproto-accept-labelers": "did:plc:l"},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["uri"] == f"at://{ALICE}/fm.plyr.track/{REV}"
    (seen,) = stub.posts()
    assert seen.path == CREATE
    assert seen.headers["authorization"] == "DPoP tok" and seen.headers["dpop"] == "proof"
    assert seen.headers["atproto-accept-labelers"] == "did:plc:l"
    assert json.loads(seen.body)["record"]["title"] == "Hello"
    assert await rows(db_url, "SELECT source, operation, rev, cid FROM events") == [("proxy", "create", REV, CID)]
    assert await rows(db_url, "SELECT title FROM tracks") == [("Hello",)]


@pytest.mark.parametrize(
    ("body", "error", "words"),
    [
        (create_body({"text": "hi"}, "app.bsky.feed.post"), "InvalidRequest", ["fm.plyr"]),
        (create_body(track_record("x"), "fm.plyr.nothing"), "InvalidRequest", ["unknown collection"]),
        (create_body(track_record("")), "InvalidRecord", ["title", "minLength"]),
        (create_body(track_record("x", createdAt="yesterday")), "InvalidRecord", ["createdAt", "format:datetime"]),
        (create_body({**track_record("x"), "$type": "fm.plyr.like"}), "InvalidRecord", ["$type"]),
        ({**create_body(track_record("x")), "rkey": "../x"}, "InvalidRequest", ["rkey"]),
        ({**create_body(track_record("x")), "repo": "not a repo"}, "InvalidRequest", ["repo"]),
        ({"repo": ALICE, "collection": "fm.plyr.track"}, "InvalidRequest", ["record"]),
    ],
)
async def test_refused_before_the_pds(
    db_url: str, stub: StubPds, body: dict[str, Any], error: str, words: list[str]
) -> None:
    async with proxy(db_url, stub) as client:
        resp = await client.post(CREATE, json=body)
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == error
        for word in words:
            assert word in resp.json()["message"]
    assert stub.seen == []
    assert await rows(db_url, "SELECT count(*) FROM events") == [(0,)]


async def test_profile_create_without_its_literal_key_is_refused(db_url: str, stub: StubPds) -> None:
    record = {"$type": "fm.plyr.actor.profile", "bio": "hi", "createdAt": "2026-01-01T00:00:00Z"}
    async with proxy(db_url, stub) as client:
        resp = await client.post(CREATE, json=create_body(record, "fm.plyr.actor.profile"))
        assert resp.status_code == 400 and "rkey" in resp.json()["message"], resp.text
    assert stub.seen == []


async def test_private_pds_refused_unless_allowed(db_url: str, stub: StubPds) -> None:
    metrics = Metrics()
    async with proxy(db_url, stub, metrics=metrics, allow_private_hosts=False) as client:
        resp = await client.post(CREATE, json=create_body(track_record("x")))
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "InvalidRequest" and "loopback" in resp.json()["message"]
    assert stub.seen == []
    assert b'plyr_proxy_writes_total{method="createRecord",outcome="refused"} 1.0' in metrics.render()


async def test_hanging_pds_times_out_and_nothing_is_folded(db_url: str, stub: StubPds) -> None:
    stub.hang = True
    async with proxy(db_url, stub, proxy_timeout=1.0) as client:
        started = time.monotonic()
        resp = await client.post(CREATE, json=create_body(track_record("x")))
        elapsed = time.monotonic() - started
    assert resp.status_code == 504 and resp.json()["error"] == "UpstreamTimeout", resp.text
    assert 0.9 < elapsed < 3.0
    assert len(stub.posts()) == 1
    assert await rows(db_url, "SELECT count(*) FROM events") == [(0,)]


@pytest.mark.parametrize(
    ("reply", "status", "error"),
    [
        (json_reply(500, {"error": "InternalServerError", "message": "boom"}), 502, "UpstreamFailure"),
        ((200, {"content-type": "text/html"}, b"<html>"), 502, "UpstreamFailure"),
        ((200, {"content-type": "application/json"}, b'{"nope": 1}'), 502, "UpstreamFailure"),
        ((404, {"content-type": "text/plain"}, b"not here"), 502, "UpstreamFailure"),
        (json_reply(400, {"error": "InvalidSwap", "message": "swap failed"}), 400, "InvalidSwap"),
    ],
)
async def test_pds_errors_are_mapped_and_nothing_is_folded(
    db_url: str, stub: StubPds, reply: tuple[int, dict[str, str], bytes], status: int, error: str
) -> None:
    stub.respond = lambda _seen: reply
    async with proxy(db_url, stub) as client:
        resp = await client.post(CREATE, json=create_body(track_record("x")))
    assert resp.status_code == status, resp.text
    assert resp.json()["error"] == error and resp.json()["message"]
    assert await rows(db_url, "SELECT count(*) FROM events") == [(0,)]


async def test_unreachable_pds_is_502(db_url: str, stub: StubPds) -> None:
    stub.close()
    async with proxy(db_url, stub) as client:
        resp = await client.post(CREATE, json=create_body(track_record("x")))
    assert resp.status_code == 502 and resp.json()["error"] == "UpstreamFailure", resp.text


async def test_auth_challenge_and_dpop_nonce_pass_back(db_url: str, stub: StubPds) -> None:
    challenge = {"www-authenticate": 'DPoP error="use_dpop_nonce"', "dpop-nonce": "n-1"}
    stub.respond = lambda _seen: json_reply(401, {"error": "use_dpop_nonce", "message": "nonce"}, challenge)
    async with proxy(db_url, stub) as client:
        resp = await client.post(CREATE, json=create_body(track_record("x")), headers={"authorization": "DPoP t"})
    assert resp.status_code == 401 and resp.json()["error"] == "use_dpop_nonce"
    assert resp.headers["dpop-nonce"] == "n-1"
    assert resp.headers["www-authenticate"] == 'DPoP error="use_dpop_nonce"'


async def test_fold_failure_still_returns_the_pds_success(db_url: str, stub: StubPds) -> None:
    """The write happened at the PDS: the client is told so even when the index cannot take it now."""
    metrics = Metrics()
    async with proxy(db_url, stub, metrics=metrics) as client:
        await rows_exec(db_url, "ALTER TABLE events RENAME TO events_away")
        try:
            resp = await client.post(CREATE, json=create_body(track_record("x")))
        finally:
            await rows_exec(db_url, "ALTER TABLE events_away RENAME TO events")
    assert resp.status_code == 200, resp.text
    assert b'plyr_proxy_fold_failures_total{method="createRecord"} 1.0' in metrics.render()


def token(sub: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256K'})}.{part({'sub': sub, 'scope': 'com.atproto.access'})}.c2ln"


UPLOAD = "/xrpc/com.atproto.repo.uploadBlob"
BLOB = {"$type": "blob", "ref": {"$link": CID}, "mimeType": "audio/mpeg", "size": 3}


async def test_upload_blob_streams_to_the_token_subjects_pds(db_url: str, stub: StubPds) -> None:
    stub.respond = lambda seen: json_reply(200, {"blob": {**BLOB, "size": len(seen.body)}})
    chunk = b"a" * 65536

    async def body() -> AsyncIterator[bytes]:
        yield chunk
        # The PDS must hold the first chunk before the client sends the rest: nothing buffers the whole blob.
        deadline = time.monotonic() + 10
        while not stub.first_chunk.is_set():
            assert time.monotonic() < deadline, "the first chunk did not reach the PDS before the upload ended"
            await asyncio.sleep(0.01)
        yield chunk

    async with proxy(db_url, stub) as client:
        resp = await client.post(
            UPLOAD,
            content=body(),
            headers={
                "authorization": f"Bearer {token(ALICE)}",
                "content-type": "audio/mpeg",
                "content-length": str(2 * len(chunk)),
            },
        )
    assert resp.status_code == 200, resp.text
    assert resp.json()["blob"]["size"] == 2 * len(chunk)
    (seen,) = stub.posts()
    assert seen.body == chunk * 2 and seen.headers["content-type"] == "audio/mpeg"
    assert seen.headers["authorization"] == f"Bearer {token(ALICE)}"


async def test_upload_blob_cap_and_missing_token(db_url: str, stub: StubPds) -> None:
    stub.respond = lambda seen: json_reply(200, {"blob": BLOB})
    async with proxy(db_url, stub, audio_max_bytes=1000) as client:
        auth = {"authorization": f"Bearer {token(ALICE)}"}
        announced = await client.post(UPLOAD, content=b"x" * 1001, headers=auth)
        assert announced.status_code == 413 and announced.json()["error"] == "PayloadTooLarge"

        async def unannounced() -> AsyncIterator[bytes]:
            for _ in range(4):
                yield b"x" * 400

        streamed = await client.post(UPLOAD, content=unannounced(), headers=auth)
        assert streamed.status_code == 413, streamed.text
        missing = await client.post(UPLOAD, content=b"abc")
        assert missing.status_code == 401 and missing.json()["error"] == "AuthenticationRequired"
        garbage = await client.post(UPLOAD, content=b"abc", headers={"authorization": "Bearer not.a.jwt"})
        assert garbage.status_code == 401
        fine = await client.post(UPLOAD, content=b"abc", headers=auth)
        assert fine.status_code == 200, fine.text
    # The announced one never left; the streamed one was cut off mid-way; only the small one arrived whole.
    assert b"abc" in [s.body for s in stub.posts()]
    assert all(len(s.body) <= 1000 for s in stub.posts())


async def test_cors_allows_proxied_writes(db_url: str, stub: StubPds) -> None:
    async with proxy(db_url, stub) as client:
        resp = await client.options(
            CREATE,
            headers={
                "origin": "https://client.example",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,dpop,content-type,atproto-accept-labelers",
            },
        )
        assert resp.status_code in (200, 204), resp.text
        assert "POST" in resp.headers["access-control-allow-methods"]
        allowed = resp.headers["access-control-allow-headers"].lower()
        for header in ("authorization", "dpop", "content-type", "atproto-accept-labelers"):
            assert header in allowed
        stub.respond = lambda seen: (*created(seen)[:1], {**created(seen)[1], "dpop-nonce": "n"}, created(seen)[2])
        resp = await client.post(CREATE, json=create_body(track_record("x")), headers={"origin": "https://c.example"})
        exposed = resp.headers["access-control-expose-headers"].lower()
        assert "dpop-nonce" in exposed and "www-authenticate" in exposed


APPLY = "/xrpc/com.atproto.repo.applyWrites"


def write_create(record: dict[str, Any]) -> dict[str, Any]:
    return {"$type": "com.atproto.repo.applyWrites#create", "collection": "fm.plyr.track", "value": record}


async def test_apply_writes_checks_every_write(db_url: str, stub: StubPds) -> None:
    async with proxy(db_url, stub) as client:
        too_many = {"repo": ALICE, "writes": [write_create(track_record(f"t{i}")) for i in range(201)]}
        resp = await client.post(APPLY, json=too_many)
        assert resp.status_code == 400 and "too many writes" in resp.json()["message"], resp.text
        one_bad = {"repo": ALICE, "writes": [write_create(track_record("ok")), write_create(track_record(""))]}
        resp = await client.post(APPLY, json=one_bad)
        assert resp.status_code == 400 and resp.json()["error"] == "InvalidRecord", resp.text
        assert resp.json()["message"].startswith("writes[1]: ") and "title" in resp.json()["message"]
        foreign = {"repo": ALICE, "writes": [{**write_create({"text": "x"}), "collection": "app.bsky.feed.post"}]}
        resp = await client.post(APPLY, json=foreign)
        assert resp.status_code == 400 and resp.json()["error"] == "InvalidRequest", resp.text
        unknown_op = {"repo": ALICE, "writes": [{**write_create(track_record("x")), "$type": "something#else"}]}
        resp = await client.post(APPLY, json=unknown_op)
        assert resp.status_code == 400, resp.text
    assert stub.seen == []


async def test_handle_repo_resolves_through_the_index(db_url: str, stub: StubPds, validator: Validator) -> None:
    await ingest(db_url, validator, [identity(ALICE, "alice.test", seq=1, micros=BASE_US)])
    async with proxy(db_url, stub) as client:
        resp = await client.post(CREATE, json={**create_body(track_record("By handle")), "repo": "Alice.Test"})
        assert resp.status_code == 200, resp.text
        unknown = await client.post(CREATE, json={**create_body(track_record("x")), "repo": "nobody.test"})
        assert unknown.status_code == 400 and "unknown handle" in unknown.json()["message"], unknown.text
    (seen,) = stub.posts()
    assert json.loads(seen.body)["repo"] == ALICE  # the PDS is told the DID we resolved, not the handle
