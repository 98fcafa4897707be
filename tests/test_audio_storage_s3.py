"""The S3 backend against a real S3 API: moto's threaded server on loopback (one per module). moto does not
check presigned signatures, so signing is tested on its own against AWS's published SigV4 example."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
import botocore.auth
import httpx
import pytest
from litestar.testing import AsyncTestClient
from moto.server import ThreadedMotoServer

from appview.app import create_app
from bench.synth import BASE_US, commit, make_did, make_tid, track_record
from indexer.atproto.lexicon import Validator
from indexer.audio.audit import audit
from indexer.audio.store import StorageSettings, audio_key
from indexer.audio.store.s3 import S3AudioStore
from tests.audio_support import UPLOAD, Uploader, settings_with, wav_bytes, wav_header
from tests.helpers import TRACK, ingest, one

ALICE = make_did(1)
URL = f"/xrpc/{UPLOAD}"
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def storage(moto_endpoint: str) -> StorageSettings:
    bucket = f"plyr-{uuid.uuid4().hex[:12]}"
    settings = StorageSettings(
        s3_endpoint_url=moto_endpoint,
        s3_bucket=bucket,
        s3_region="us-east-1",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
        part_size=5 * MiB,
    )
    client(settings).create_bucket(Bucket=bucket)
    return settings


def client(settings: StorageSettings) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id=settings.s3_access_key_id,
        aws_secret_access_key=settings.s3_secret_access_key,
    )


def keys(settings: StorageSettings) -> list[str]:
    listed = client(settings).list_objects_v2(Bucket=settings.s3_bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def pending_multipart(settings: StorageSettings) -> list[Any]:
    return list(client(settings).list_multipart_uploads(Bucket=settings.s3_bucket).get("Uploads", []))


@pytest.fixture
def uploader() -> Uploader:
    return Uploader()


@pytest.fixture
async def api(db_url: str, storage: StorageSettings, uploader: Uploader) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(db_url, settings=settings_with(storage), resolver=uploader.resolver)
    async with AsyncTestClient(app=app) as c:
        yield c


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


async def test_upload_record_play(
    api: AsyncTestClient[Any], db_url: str, validator: Validator, storage: StorageSettings, uploader: Uploader
) -> None:
    data = wav_bytes(2.0)
    sha = hashlib.sha256(data).hexdigest()
    first = await api.post(URL, content=data, headers=uploader.headers())
    again = await api.post(URL, content=data, headers=uploader.headers())
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["sha256"] == sha
    assert keys(storage) == [audio_key(sha)]
    head = client(storage).head_object(Bucket=storage.s3_bucket, Key=audio_key(sha))
    assert head["ContentType"] == "audio/wav"
    assert head["ContentLength"] == len(data)

    await ingest(
        db_url, validator, [commit(ALICE, TRACK, tid(1), tid(1), track_record("T", audioUrl=first.json()["audioUrl"]))]
    )
    played = await api.get(f"/audio/{ALICE}/{tid(1)}", follow_redirects=False)
    assert played.status_code == 307
    assert played.headers["location"] == first.json()["audioUrl"]
    hop = await api.get(urlsplit(played.headers["location"]).path, follow_redirects=False)
    assert hop.status_code == 307, hop.text
    presigned = hop.headers["location"]
    assert presigned.startswith(f"{storage.s3_endpoint_url}/{storage.s3_bucket}/audio/{sha}?")
    assert "X-Amz-Signature=" in presigned and "X-Amz-Expires=3600" in presigned
    async with httpx.AsyncClient() as http:
        whole = await http.get(presigned)
        part = await http.get(presigned, headers={"Range": "bytes=10-19"})
    assert (whole.status_code, whole.content) == (200, data)
    assert (part.status_code, part.content) == (206, data[10:20])


async def test_public_url_is_used_when_configured(db_url: str, storage: StorageSettings, uploader: Uploader) -> None:
    import msgspec

    public = msgspec.structs.replace(storage, s3_public_url="https://audio.plyr.test")
    async with AsyncTestClient(app=create_app(db_url, settings=settings_with(public), resolver=uploader.resolver)) as c:
        up = (await c.post(URL, content=wav_bytes(1.0), headers=uploader.headers())).json()
        hop = await c.get(f"/audio-files/{up['sha256']}", follow_redirects=False)
    assert hop.status_code == 307
    assert hop.headers["location"] == f"https://audio.plyr.test/audio/{up['sha256']}"


async def test_large_file_goes_multipart(tmp_path: Path, storage: StorageSettings) -> None:
    # 12 MiB of PCM: three 5 MiB parts.
    path = tmp_path / "big.wav"
    body = bytes(range(256)) * (12 * MiB // 256)
    path.write_bytes(wav_header(len(body)) + body)
    key = audio_key(hashlib.sha256(path.read_bytes()).hexdigest())
    async with S3AudioStore.open(storage) as store:
        assert await store.put_file(key, path, content_type="audio/wav") is True
        assert await store.put_file(key, path, content_type="audio/wav") is False  # already there
        assert await store.exists(key)
    got = client(storage).get_object(Bucket=storage.s3_bucket, Key=key)
    assert got["Body"].read() == path.read_bytes()
    assert got["ETag"].strip('"').endswith("-3"), "a multipart object of three parts"
    assert pending_multipart(storage) == []


async def test_interrupted_multipart_upload_is_aborted(tmp_path: Path, storage: StorageSettings) -> None:
    path = tmp_path / "big.wav"
    body = bytes(40 * MiB)
    path.write_bytes(wav_header(len(body)) + body)
    key = audio_key("a" * 64)
    async with S3AudioStore.open(storage) as store:
        task = asyncio.create_task(store.put_file(key, path, content_type="audio/wav"))
        for _ in range(500):
            if pending_multipart(storage):
                break
            await asyncio.sleep(0.01)
        assert pending_multipart(storage), "the multipart upload had started"
        (upload,) = pending_multipart(storage)
        for _ in range(500):
            listed = client(storage).list_parts(Bucket=storage.s3_bucket, Key=key, UploadId=upload["UploadId"])
            if listed.get("Parts"):
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not await store.exists(key)
    assert pending_multipart(storage) == []
    assert keys(storage) == []


async def test_audit_and_cleanup_on_s3(
    db_url: str, validator: Validator, storage: StorageSettings, tmp_path: Path
) -> None:
    kept, orphan = tmp_path / "kept.wav", tmp_path / "orphan.wav"
    kept.write_bytes(wav_bytes(1.0, tone=300))
    orphan.write_bytes(wav_bytes(1.0, tone=500))
    kept_sha = hashlib.sha256(kept.read_bytes()).hexdigest()
    orphan_sha = hashlib.sha256(orphan.read_bytes()).hexdigest()
    missing_sha = hashlib.sha256(b"gone").hexdigest()
    url = "https://api.plyr.test/audio-files/"
    await ingest(
        db_url,
        validator,
        [
            commit(ALICE, TRACK, tid(1), tid(1), track_record("Kept", audioUrl=url + kept_sha)),
            commit(ALICE, TRACK, tid(2), tid(2), track_record("Gone", audioUrl=url + missing_sha)),
        ],
    )
    async with S3AudioStore.open(storage) as store:
        for path in (kept, orphan):
            await store.put_file(
                audio_key(hashlib.sha256(path.read_bytes()).hexdigest()), path, content_type="audio/wav"
            )
        # The objects were just written: a clock an hour ahead makes them old enough to collect.
        report = await audit(db_url, store, "api.plyr.test")
        assert [d.sha256 for d in report.dangling] == [missing_sha]
        assert [o.sha256 for o in report.orphans] == [orphan_sha]
        assert report.objects == 2 and report.referenced_objects == 1
        young = await audit(db_url, store, "api.plyr.test", delete_older_than=3600)
        assert young.deleted == [] and young.spared == {orphan_sha: "recent"}
        swept = await audit(db_url, store, "api.plyr.test", delete_older_than=0)
        assert swept.deleted == [orphan_sha]
    assert keys(storage) == [audio_key(kept_sha)]
    assert await one(db_url, "SELECT count(*) FROM audio_objects") == 0


async def test_presigned_url_matches_the_aws_sigv4_example(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS's documented presigned GET (S3 API reference, "Authenticating Requests: Using Query Parameters"),
    reproduced through the store's own signing path with the clock fixed at 2013-05-24T00:00:00Z."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: dt.datetime(2013, 5, 24, 0, 0, 0))
    settings = StorageSettings(
        s3_bucket="examplebucket",
        s3_region="us-east-1",
        s3_access_key_id="AKIAIOSFODNN7EXAMPLE",
        s3_secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        url_ttl=86400,
    )
    async with S3AudioStore.open(settings) as store:
        url = await store.url("test.txt")
    assert url == (
        "https://examplebucket.s3.amazonaws.com/test.txt"
        "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
        "&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
        "&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    )
