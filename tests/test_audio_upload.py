"""fm.plyr.uploadAudio with the local directory backend, and playback of what was uploaded: upload → record →
`/audio/<did>/<rkey>` (307) → `/audio-files/<sha256>` (200/206 with Range). Real Postgres, real fold; the
interrupted upload goes through a real uvicorn server on loopback and a raw socket."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import uvicorn
from litestar.testing import AsyncTestClient

from appview.app import create_app
from bench.synth import BASE_US, commit, make_did, make_tid, track_record
from indexer.atproto.lexicon import Validator
from indexer.audio.store import StorageSettings
from indexer.fold.writer import BatchWriter
from indexer.metrics import Metrics
from indexer.status import state_hash
from tests.api_support import StubResolver
from tests.audio_support import UPLOAD, Uploader, flac_bytes, mp3_bytes, settings_with, wav_bytes
from tests.helpers import TRACK, ingest, one, rows

ALICE = make_did(1)
URL = f"/xrpc/{UPLOAD}"


@pytest.fixture
def storage(tmp_path: Path) -> StorageSettings:
    return StorageSettings(audio_dir=tmp_path / "audio")


@pytest.fixture
def uploader() -> Uploader:
    return Uploader()


def objects(storage: StorageSettings) -> list[str]:
    d = storage.audio_dir / "audio"
    return sorted(os.listdir(d)) if d.exists() else []


def spooled(storage: StorageSettings) -> list[str]:
    d = storage.audio_dir / ".incoming"
    return sorted(os.listdir(d)) if d.exists() else []


@pytest.fixture
async def client(db_url: str, storage: StorageSettings, uploader: Uploader) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(db_url, settings=settings_with(storage), resolver=uploader.resolver)
    async with AsyncTestClient(app=app) as c:
        yield c


async def test_upload_stores_by_content_hash(
    client: AsyncTestClient[Any], db_url: str, storage: StorageSettings, uploader: Uploader
) -> None:
    data = wav_bytes(3.0)
    sha = hashlib.sha256(data).hexdigest()
    resp = await client.post(URL, content=data, headers=uploader.headers("audio/x-wav"))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {
        "audioUrl": f"https://api.plyr.test/audio-files/{sha}",
        "sha256": sha,
        "size": len(data),
        "mimeType": "audio/wav",
        "fileType": "wav",
        "duration": 3,
    }
    assert objects(storage) == [sha]
    assert (storage.audio_dir / "audio" / sha).read_bytes() == data
    assert spooled(storage) == []
    row = await one(db_url, "SELECT size, mime_type, file_type, duration, uploaded_by FROM audio_objects")
    assert row == (len(data), "audio/wav", "wav", 3, uploader.did)


async def test_same_bytes_twice_is_one_object(
    client: AsyncTestClient[Any], db_url: str, storage: StorageSettings, uploader: Uploader
) -> None:
    data = mp3_bytes(400)  # 400 frames of 1152 samples at 44.1 kHz: 10.4 s
    first = await client.post(URL, content=data, headers=uploader.headers("audio/mpeg"))
    second = await client.post(URL, content=data, headers=uploader.headers("audio/mpeg"))
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json() == second.json()
    assert first.json()["fileType"] == "mp3"
    assert first.json()["duration"] == 10
    assert objects(storage) == [first.json()["sha256"]]
    assert await one(db_url, "SELECT count(*) FROM audio_objects") == 1
    metrics = (await client.get("/metrics")).text
    assert 'plyr_audio_uploads_total{outcome="stored"} 1.0' in metrics
    assert 'plyr_audio_uploads_total{outcome="deduplicated"} 1.0' in metrics


def _bad_tokens(u: Uploader) -> list[tuple[str, dict[str, str], str]]:
    forger = Uploader(u.did)  # same DID, a key the resolver does not know
    return [
        ("none", {"Content-Type": "audio/wav"}, "AuthRequired"),
        ("forged", forger.headers(), "BadJwtSignature"),
        ("expired", u.headers(exp_in=-300), "JwtExpired"),
        ("wrong-audience", u.headers(aud="did:web:elsewhere.test"), "BadJwtAudience"),
        ("wrong-lxm", u.headers(lxm="fm.plyr.getTrack"), "BadJwtLexiconMethod"),
        ("not-bearer", {"Authorization": "Basic abc", "Content-Type": "audio/wav"}, "AuthMissing"),
    ]


async def test_bad_tokens_are_refused(
    client: AsyncTestClient[Any], db_url: str, storage: StorageSettings, uploader: Uploader
) -> None:
    data = wav_bytes(1.0)
    for name, headers, error in _bad_tokens(uploader):
        resp = await client.post(URL, content=data, headers=headers)
        assert resp.status_code == 401, (name, resp.text)
        assert resp.json()["error"] == error, name
    assert objects(storage) == []
    assert spooled(storage) == []
    assert await one(db_url, "SELECT count(*) FROM audio_objects") == 0


@pytest.mark.parametrize(
    ("content_type", "body", "needle"),
    [
        ("audio/mpeg", os.urandom(50_000), "not audio"),
        ("audio/mpeg", flac_bytes(30), "FLAC"),  # real audio, but not what was declared
        ("audio/flac", wav_bytes(1.0), "WAVE"),
        ("audio/wav", b"RIFF\x00\x00\x00\x00WAVEjunk" * 100, "not audio"),
        ("text/plain", wav_bytes(1.0), "audio/*"),
        ("audio/x-unheard-of", wav_bytes(1.0), "unsupported"),
        ("audio/wav", b"", "empty"),
        ("audio/wav", wav_bytes(0.0), "no playable audio"),
    ],
)
async def test_not_audio_of_the_declared_type_is_refused(
    client: AsyncTestClient[Any],
    db_url: str,
    storage: StorageSettings,
    uploader: Uploader,
    content_type: str,
    body: bytes,
    needle: str,
) -> None:
    resp = await client.post(URL, content=body, headers=uploader.headers(content_type))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "InvalidAudio"
    assert needle in resp.json()["message"]
    assert objects(storage) == []
    assert spooled(storage) == []
    assert await one(db_url, "SELECT count(*) FROM audio_objects") == 0


async def test_size_limit(db_url: str, storage: StorageSettings, uploader: Uploader) -> None:
    data = wav_bytes(10.0)  # 160 kB
    settings = settings_with(storage, audio_max_bytes=100_000)
    app = create_app(db_url, settings=settings, resolver=uploader.resolver)

    async def chunks() -> AsyncIterator[bytes]:  # chunked, no Content-Length: refused while streaming
        for i in range(0, len(data), 16_384):
            yield data[i : i + 16_384]

    async for port in _served(app):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            announced = await http.post(URL, content=data, headers=uploader.headers())
            streamed = await http.post(URL, content=chunks(), headers=uploader.headers())
            small = await http.post(URL, content=wav_bytes(1.0), headers=uploader.headers())
    assert "content-length" not in streamed.request.headers
    for resp in (announced, streamed):
        assert resp.status_code == 413, resp.text
        assert resp.json()["error"] == "PayloadTooLarge"
    assert small.status_code == 200
    assert objects(storage) == [small.json()["sha256"]]
    assert spooled(storage) == []


async def _served(app: Any) -> AsyncIterator[int]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.02)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        await task


async def test_interrupted_upload_leaves_nothing(db_url: str, storage: StorageSettings, uploader: Uploader) -> None:
    metrics = Metrics()
    app = create_app(db_url, settings=settings_with(storage), resolver=uploader.resolver, metrics=metrics)
    data = wav_bytes(20.0)  # 320 kB, so the spool file has real content when the client goes away
    async for port in _served(app):
        head = (
            f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: audio/wav\r\n"
            f"Authorization: Bearer {uploader.token()}\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode()
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(head + data[: len(data) // 2])
        for _ in range(250):
            if spooled(storage):
                break
            await asyncio.sleep(0.02)
        assert spooled(storage), "the upload was being spooled"
        sock.close()
        for _ in range(200):
            if metrics.audio_uploads.labels("interrupted")._value.get() >= 1:
                break
            await asyncio.sleep(0.02)
        assert metrics.audio_uploads.labels("interrupted")._value.get() == 1
        assert objects(storage) == []
        assert spooled(storage) == []
        assert await one(db_url, "SELECT count(*) FROM audio_objects") == 0


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def track(n: int, audio_url: str, blob: str | None = None) -> Any:
    rec = track_record(f"Track {n}", audioUrl=audio_url, fileType="wav")
    if blob:
        rec["audioBlob"] = {"$type": "blob", "ref": {"$link": blob}, "mimeType": "audio/wav", "size": 1234}
    return commit(ALICE, TRACK, tid(n), tid(n), rec)


async def test_upload_record_play(
    client: AsyncTestClient[Any], db_url: str, validator: Validator, uploader: Uploader
) -> None:
    data = wav_bytes(2.0)
    up = (await client.post(URL, content=data, headers=uploader.headers())).json()
    await ingest(db_url, validator, [track(1, up["audioUrl"])])

    played = await client.get(f"/audio/{ALICE}/{tid(1)}", follow_redirects=False)
    assert played.status_code == 307, played.text
    assert played.headers["location"] == up["audioUrl"]
    path = urlsplit(played.headers["location"]).path
    view = (await client.get("/xrpc/fm.plyr.getLatestTracks")).json()["tracks"][0]
    assert view["audio"]["source"] == "url"

    part = await client.get(path, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206, part.text
    assert part.content == data[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert part.headers["content-length"] == "1000"
    assert part.headers["content-type"] == "audio/wav"
    assert part.headers["accept-ranges"] == "bytes"
    assert part.headers["etag"] == f'"{up["sha256"]}"'
    assert "immutable" in part.headers["cache-control"]

    tail = await client.get(path, headers={"Range": "bytes=-10"})
    assert (tail.status_code, tail.content) == (206, data[-10:])
    whole = await client.get(path)
    assert (whole.status_code, whole.content) == (200, data)
    head = await client.head(path)
    assert (head.status_code, head.headers["content-length"], head.content) == (200, str(len(data)), b"")
    past = await client.get(path, headers={"Range": f"bytes={len(data)}-"})
    assert past.status_code == 416
    assert past.headers["content-range"] == f"bytes */{len(data)}"
    assert past.json()["error"] == "RangeNotSatisfiable"
    cached = await client.get(path, headers={"If-None-Match": f'"{up["sha256"]}"'})
    assert cached.status_code == 304
    stale = await client.get(path, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert (stale.status_code, stale.content) == (200, data)
    assert (await client.get("/audio-files/" + "0" * 64)).status_code == 404
    assert (await client.get("/audio-files/../../etc/passwd")).status_code == 404


async def test_missing_object_is_flagged_and_plays_from_the_pds(
    db_factory: Any, validator: Validator, storage: StorageSettings, uploader: Uploader
) -> None:
    db_url, plain_url = db_factory(), db_factory()
    late = wav_bytes(1.5)  # uploaded only after the record that points at it
    missing = hashlib.sha256(late).hexdigest()
    blob = "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
    batch = [track(1, f"https://API.plyr.test/audio-files/{missing}", blob), track(2, "https://cdn.example/x.wav")]
    metrics = Metrics()
    async with BatchWriter(db_url, validator=validator, metrics=metrics, own_audio_host="api.plyr.test") as w:
        await w.write(batch[:1])
        await w.write(batch)  # delivered again: still one flag
    # A record folded first by a writer that does not check (the write proxy's) is flagged when its echo arrives.
    echo_url = db_factory()
    await ingest(echo_url, validator, batch)
    async with BatchWriter(echo_url, validator=validator, own_audio_host="api.plyr.test") as w:
        assert (await w.write(batch)).appended == 0
    assert await rows(echo_url, "SELECT rkey, sha256 FROM audio_flags") == [(tid(1), missing)]
    await ingest(plain_url, validator, batch)
    assert await rows(db_url, "SELECT did, rkey, sha256, reason FROM audio_flags") == [
        (ALICE, tid(1), missing, "missing_object")
    ]
    assert metrics.audio_flagged.labels("missing_object")._value.get() == 1
    # The flag is beside the fold: the projections are those of a writer that does not check.
    async with (
        await psycopg_connect(db_url) as a,
        await psycopg_connect(plain_url) as b,
    ):
        assert await state_hash(a) == await state_hash(b)

    uploader.resolver.pds[ALICE] = "https://pds.example"
    app = create_app(db_url, settings=settings_with(storage), resolver=uploader.resolver)
    async with AsyncTestClient(app=app) as client:
        before = await client.get(f"/audio/{ALICE}/{tid(1)}", follow_redirects=False)
        up = await client.post(URL, content=late, headers=uploader.headers())
        after = await client.get(f"/audio/{ALICE}/{tid(1)}", follow_redirects=False)
    assert before.status_code == 307
    assert before.headers["location"].startswith("https://pds.example/xrpc/com.atproto.sync.getBlob?")
    assert blob in before.headers["location"]
    assert up.json()["sha256"] == missing
    assert await rows(db_url, "SELECT * FROM audio_flags") == [], "the upload resolves the flag"
    assert after.headers["location"] == f"https://API.plyr.test/audio-files/{missing}"


async def test_stale_spool_files_are_swept_at_startup(db_url: str, storage: StorageSettings) -> None:
    spool = storage.audio_dir / ".incoming"
    spool.mkdir(parents=True)
    (spool / "upload-dead").write_bytes(b"x" * 100)
    (spool / "upload-live").write_bytes(b"y")
    os.utime(spool / "upload-dead", (1, 1))
    async with AsyncTestClient(app=create_app(db_url, settings=settings_with(storage), resolver=StubResolver())):
        pass
    assert spooled(storage) == ["upload-live"]


async def psycopg_connect(url: str) -> Any:
    import psycopg

    return await psycopg.AsyncConnection.connect(url, autocommit=True)
