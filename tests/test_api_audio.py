"""`/audio/<did>/<rkey>`: redirects to a trusted CDN copy that exists, else to the blob on the author's PDS,
else 404. The CDN and the PDS are a real HTTP server on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from bench.synth import BASE_US, account, commit, make_cid, make_did, make_tid, track_record
from indexer.atproto.lexicon import Validator
from indexer.settings import Settings
from tests.api_support import StubResolver, app
from tests.helpers import TRACK, ingest

ALICE = make_did(1)
BLOB = make_cid({"audio": "bytes"})


class Stub:
    """One loopback server playing both a CDN (/cdn/...) and a PDS (/xrpc/com.atproto.sync.getBlob)."""

    def __init__(self) -> None:
        self.heads: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _status(self) -> int:
                if self.path.startswith("/cdn/ok"):
                    return 200
                if self.path.startswith("/xrpc/com.atproto.sync.getBlob"):
                    return 200
                return 404

            def do_HEAD(self) -> None:
                stub.heads.append(self.path)
                self.send_response(self._status())
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                body = f"audio at {self.path}".encode()
                self.send_response(self._status())
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    s.thread.start()
    try:
        yield s
    finally:
        s.server.shutdown()
        s.server.server_close()


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def track(n: int, audio_url: str | None, blob: bool) -> Any:
    rec = track_record(f"Track {n}")
    rec.pop("audioUrl")
    if audio_url:
        rec["audioUrl"] = audio_url
    if blob:
        rec["audioBlob"] = {"$type": "blob", "ref": {"$link": BLOB}, "mimeType": "audio/mpeg", "size": 1234}
    return commit(ALICE, TRACK, tid(n), tid(n), rec)


@pytest.fixture
def settings(stub: Stub) -> Settings:
    return Settings(public_host="api.plyr.test", trusted_audio_origins=(stub.origin,))


@pytest.fixture
def resolver(stub: Stub) -> StubResolver:
    r = StubResolver()
    r.pds[ALICE] = stub.origin
    return r


async def test_audio_sources(
    db_url: str, validator: Validator, stub: Stub, settings: Settings, resolver: StubResolver
) -> None:
    blob_url = f"{stub.origin}/xrpc/com.atproto.sync.getBlob?did={ALICE.replace(':', '%3A')}&cid={BLOB}"
    await ingest(
        db_url,
        validator,
        [
            track(1, f"{stub.origin}/cdn/ok.mp3", blob=True),  # trusted and present
            track(2, f"{stub.origin}/cdn/gone.mp3", blob=True),  # trusted, missing: the blob
            track(3, "https://untrusted.example/a.mp3", blob=True),  # untrusted: the blob
            track(4, "https://untrusted.example/a.mp3", blob=False),  # nothing playable
            track(5, f"{stub.origin}/cdn/gone.mp3", blob=False),  # nothing playable
        ],
    )
    async with AsyncTestClient(app=app(db_url, resolver, settings)) as client:
        got = {n: await client.get(f"/audio/{ALICE}/{tid(n)}", follow_redirects=False) for n in range(1, 7)}
        head = await client.head(f"/audio/{ALICE}/{tid(1)}", follow_redirects=False)
        again = await client.get(f"/audio/{ALICE}/{tid(1)}", follow_redirects=False)
        views = (await client.get("/xrpc/fm.plyr.getLatestTracks")).json()["tracks"]
    assert got[1].status_code == 307
    assert got[1].headers["location"] == f"{stub.origin}/cdn/ok.mp3"
    assert head.status_code == 307
    assert head.headers["location"] == f"{stub.origin}/cdn/ok.mp3"
    assert again.headers["location"] == f"{stub.origin}/cdn/ok.mp3"
    assert stub.heads.count("/cdn/ok.mp3") == 1, "the existence check is cached"
    assert got[2].status_code == 307
    assert got[2].headers["location"] == blob_url
    assert got[3].headers["location"] == blob_url
    for n in (4, 5, 6):
        assert got[n].status_code == 404, got[n].text
        assert got[n].json()["error"] == "NotFound"
    async with httpx.AsyncClient() as http:
        played = await http.get(got[3].headers["location"])
    assert played.status_code == 200
    sources = {t["uri"].rsplit("/", 1)[1]: t["audio"] for t in views}
    assert sources[tid(1)]["source"] == "url"
    assert sources[tid(3)] == {
        "url": f"https://api.plyr.test/audio/{ALICE}/{tid(3)}",
        "mimeType": "audio/mpeg",
        "source": "blob",
    }


async def test_hidden_or_unresolvable_author_does_not_play(
    db_url: str, validator: Validator, stub: Stub, settings: Settings
) -> None:
    await ingest(db_url, validator, [track(1, None, blob=True)])
    async with AsyncTestClient(app=app(db_url, StubResolver(), settings)) as client:
        no_pds = await client.get(f"/audio/{ALICE}/{tid(1)}", follow_redirects=False)
        bad = await client.get("/audio/not-a-did/x", follow_redirects=False)
    await ingest(db_url, validator, [account(ALICE, False, "deactivated", seq=1, micros=BASE_US)])
    resolver = StubResolver()
    resolver.pds[ALICE] = stub.origin
    async with AsyncTestClient(app=app(db_url, resolver, settings)) as client:
        hidden = await client.get(f"/audio/{ALICE}/{tid(1)}", follow_redirects=False)
    assert no_pds.status_code == 404
    assert bad.status_code == 400
    assert hidden.status_code == 404
