"""`plyr-appview audit-audio` over the local backend: dangling references, orphaned objects, and a cleanup that
never deletes a referenced object (including one referenced after the listing, caught by the re-check)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.synth import BASE_US, commit, make_did, make_tid, track_record
from indexer.atproto.lexicon import Validator
from indexer.audio.audit import _delete_orphan, audit, parse_duration
from indexer.audio.store import audio_key
from indexer.audio.store.local import LocalAudioStore
from tests.audio_support import wav_bytes
from tests.helpers import TRACK, ingest, one, rows_exec

ALICE = make_did(1)
HOST = "api.plyr.test"
OURS = f"https://{HOST}/audio-files/"
DAY = 86400


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def track(n: int, url: str) -> object:
    return commit(ALICE, TRACK, tid(n), tid(n), track_record(f"T{n}", audioUrl=url))


async def put(store: LocalAudioStore, tmp: Path, tone: int, *, age: float = 0.0) -> str:
    data = wav_bytes(0.5, tone=tone)
    sha = hashlib.sha256(data).hexdigest()
    src = tmp / f"{tone}.wav"
    src.write_bytes(data)
    await store.put_file(audio_key(sha), src, content_type="audio/wav")
    stamp = time.time() - age
    os.utime(store.root / audio_key(sha), (stamp, stamp))
    return sha


async def record_row(db_url: str, sha: str, age_seconds: int) -> None:
    await rows_exec(
        db_url,
        "INSERT INTO audio_objects (sha256, size, mime_type, file_type, duration, uploaded_by, created_at, uploaded_at)"
        f" VALUES ('{sha}', 1, 'audio/wav', 'wav', 1, 'did:plc:x', now() - interval '{age_seconds} seconds',"
        f" now() - interval '{age_seconds} seconds')",
    )


@pytest.fixture
def store(tmp_path: Path) -> LocalAudioStore:
    return LocalAudioStore(tmp_path / "audio")


async def test_audit_lists_and_deletes_only_old_orphans(
    db_url: str, validator: Validator, store: LocalAudioStore, tmp_path: Path
) -> None:
    live = await put(store, tmp_path, 200, age=30 * DAY)
    foreign = await put(store, tmp_path, 300, age=30 * DAY)  # referenced by path from another host
    old_orphan = await put(store, tmp_path, 400, age=30 * DAY)
    new_orphan = await put(store, tmp_path, 500)
    reuploaded = await put(store, tmp_path, 600, age=30 * DAY)  # old object, uploaded again just now
    missing = hashlib.sha256(b"never stored").hexdigest()
    for sha in (live, foreign, old_orphan):
        await record_row(db_url, sha, 30 * DAY)
    await record_row(db_url, reuploaded, 60)
    await record_row(db_url, missing, 30 * DAY)
    await ingest(
        db_url,
        validator,
        [
            track(1, OURS + live),
            track(2, f"https://mirror.example/audio-files/{foreign}"),
            track(3, OURS + missing),
            track(4, "https://cdn.example/a.mp3"),
        ],
    )
    report = await audit(db_url, store, HOST, delete_older_than=7 * DAY)
    assert [(d.uri.rsplit("/", 1)[1], d.sha256) for d in report.dangling] == [(tid(3), missing)]
    assert {o.sha256 for o in report.orphans} == {old_orphan, new_orphan, reuploaded}
    assert report.unstored == [missing]
    assert report.deleted == [old_orphan]
    assert report.spared == {new_orphan: "recent", reuploaded: "recent"}
    left = {o.key async for o in store.list()}
    assert left == {audio_key(s) for s in (live, foreign, new_orphan, reuploaded)}
    assert await one(db_url, "SELECT count(*) FROM audio_objects WHERE sha256 = %s", old_orphan) == 0


async def test_cleanup_rechecks_references_before_deleting(
    db_url: str, validator: Validator, store: LocalAudioStore, tmp_path: Path
) -> None:
    sha = await put(store, tmp_path, 700, age=30 * DAY)
    report = await audit(db_url, store, HOST)
    assert [o.sha256 for o in report.orphans] == [sha]
    # A record arrives between the listing and the deletion: the object stays.
    await ingest(db_url, validator, [track(1, OURS + sha)])
    import psycopg

    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        why = await _delete_orphan(conn, store, sha, time.time() - 30 * DAY, 7 * DAY)
    assert why == "referenced"
    assert await store.exists(audio_key(sha))
    # Even with no grace at all, a referenced object is never an orphan.
    swept = await audit(db_url, store, HOST, delete_older_than=0)
    assert swept.orphans == [] and swept.deleted == []
    assert await store.exists(audio_key(sha))


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90", "90s", "15m", "12h", "7d", "2w")] == [90, 90, 900, 43200, 604800, 1209600]
    with pytest.raises(ValueError):
        parse_duration("soon")


async def test_cli_prints_json(db_url: str, validator: Validator, store: LocalAudioStore, tmp_path: Path) -> None:
    orphan = await put(store, tmp_path, 800, age=30 * DAY)
    missing = hashlib.sha256(b"absent").hexdigest()
    await ingest(db_url, validator, [track(1, OURS + missing)])
    env = {**os.environ, "PLYR_APPVIEW_AUDIO_DIR": str(store.root), "PLYR_APPVIEW_PUBLIC_HOST": HOST}
    env.pop("S3_BUCKET", None)
    cmd = [sys.executable, "-m", "appview.cli", "--database-url", db_url, "audit-audio"]
    refused = await asyncio.to_thread(
        subprocess.run, [*cmd, "--delete-orphans"], env=env, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode != 0 and "--older-than" in refused.stderr
    done = await asyncio.to_thread(
        subprocess.run,
        [*cmd, "--delete-orphans", "--older-than", "7d"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [d["sha256"] for d in out["dangling"]] == [missing]
    assert [o["sha256"] for o in out["orphans"]] == [orphan]
    assert out["deleted"] == [orphan]
    assert not await store.exists(audio_key(orphan))


def test_which_urls_are_ours() -> None:
    from indexer.audio.refs import own_sha256

    sha = "ab" * 32
    assert own_sha256(f"https://api.plyr.test/audio-files/{sha}", HOST) == sha
    assert own_sha256(f"https://API.plyr.test:443/audio-files/{sha.upper()}", HOST) == sha
    assert own_sha256(f"https://api.plyr.test/audio-files/{sha}?download=1", HOST) == sha
    for other in (
        f"http://api.plyr.test/audio-files/{sha}",  # we only ever hand out https
        f"https://mirror.example/audio-files/{sha}",
        f"https://api.plyr.test.evil.example/audio-files/{sha}",
        f"https://api.plyr.test/audio-files/{sha}.mp3",
        f"https://api.plyr.test/audio-files/{sha[:-1]}",
        f"https://api.plyr.test/audio/{sha}",
        "https://[::1/audio-files/x",
        None,
    ):
        assert own_sha256(other, HOST) is None, other
