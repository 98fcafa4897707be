"""Replay, rebuild and crash-resume, through the real command line against a real Postgres."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import psycopg
import pytest
import zstandard

from bench.synth import BASE_US, commit, identity, make_did, make_tid, to_v1, track_record, workload
from indexer.capture.files import iter_capture
from indexer.capture.replay import ReadCounts, replay_items
from indexer.events import Checkpoint, Event, Item

REFERENCE = Path(os.environ.get("PLYR_REFERENCE_DIR") or Path(__file__).resolve().parents[2] / "shared" / "reference")
ENV = {**os.environ, "PLYR_APPVIEW_RESOLVE_IDENTITIES": "0", "PLYR_APPVIEW_LOG_LEVEL": "WARNING"}


def write_capture(path: Path, n: int, seed: int = 7) -> None:
    with path.open("wb") as raw, zstandard.ZstdCompressor().stream_writer(raw) as out:
        for obj in workload(n, seed=seed):
            out.write(msgspec.json.encode(obj) + b"\n")


def cli(db_url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "appview.cli", "--database-url", db_url, *args],
        env=ENV,
        capture_output=True,
        text=True,
        check=check,
        timeout=600,
    )


COUNT_DRIFT = """
SELECT count(*) FROM tracks t
WHERE like_count <> (SELECT count(*) FROM likes l WHERE l.subject_uri = t.uri AND l.author_active)
   OR comment_count <> (SELECT count(*) FROM comments c WHERE c.subject_uri = t.uri AND c.author_active)
"""


def count_drift(db_url: str) -> int:
    """Tracks whose stored counts differ from a full recount (the fold maintains them by deltas)."""
    with psycopg.connect(db_url) as conn:
        row = conn.execute(COUNT_DRIFT).fetchone()
    assert row is not None
    return int(row[0])


def status(db_url: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(cli(db_url, "status", "--json").stdout)
    return result


def test_replay_twice_equals_once_and_rebuild_equals_incremental(tmp_path: Path, db_factory: object) -> None:
    assert callable(db_factory)
    capture = tmp_path / "capture.jsonl.zst"
    write_capture(capture, 6000)
    db = db_factory()

    first = json.loads(cli(db, "replay", str(capture), "--no-progress", "--batch-size", "700").stdout)
    assert first["appended"] > 5000
    assert first["rejections"].get("invalid_record", 0) > 0
    once = status(db)
    counts = once["counts"]
    assert isinstance(counts, dict)
    assert counts["tracks"] > 0 and counts["likes"] > 0 and counts["lists"] > 0
    assert count_drift(db) == 0
    with psycopg.connect(db) as conn:
        liked = conn.execute("SELECT count(*) FROM tracks WHERE like_count > 0").fetchone()
    assert liked is not None and liked[0] > 100

    # A finished replay resumes at the end: nothing to do.
    again = json.loads(cli(db, "replay", str(capture), "--no-progress").stdout)
    assert again["items"] == 0
    # Forced from the start, everything is a duplicate: nothing changes.
    forced = json.loads(cli(db, "replay", str(capture), "--no-progress", "--from-start").stdout)
    assert forced["appended"] == 0
    twice = status(db)
    assert twice["state_hash"] == once["state_hash"]
    assert twice["rejections"] == once["rejections"]
    assert twice["log"] == once["log"]

    # The same log folded in different batch sizes: same state.
    other = db_factory()
    cli(other, "replay", str(capture), "--no-progress", "--batch-size", "97")
    assert status(other)["state_hash"] == once["state_hash"]

    rebuilt = json.loads(cli(db, "rebuild", "--no-progress", "--batch-size", "1000").stdout)
    assert rebuilt["events"] == once["log"]["events"]  # type: ignore[index]
    assert rebuilt["state_hash_before"] == rebuilt["state_hash_after"] == once["state_hash"]
    after = status(db)
    assert after["state_hash"] == once["state_hash"]
    assert after["counts"] == once["counts"]


def _cursor(db_url: str) -> int | None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT max(cursor) FROM cursors WHERE source LIKE 'replay:%'").fetchone()
    return None if row is None or row[0] is None else int(row[0])


def test_kill_mid_replay_and_resume_equals_uninterrupted(tmp_path: Path, db_factory: object) -> None:
    assert callable(db_factory)
    capture = tmp_path / "capture.jsonl.zst"
    n = 30_000
    write_capture(capture, n, seed=11)
    reference = db_factory()
    cli(reference, "replay", str(capture), "--no-progress")
    expected = status(reference)

    db = db_factory()
    kills = 0
    for _ in range(3):
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "appview.cli",
                "--database-url",
                db,
                "replay",
                str(capture),
                "--no-progress",
                "--batch-size",
                "500",
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        before = _cursor(db) or -1
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            now = _cursor(db)
            if now is not None and now > before + 2000:
                break
            time.sleep(0.05)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 1
    killed_at = _cursor(db)
    assert killed_at is not None and killed_at < n - 1
    cli(db, "replay", str(capture), "--no-progress")
    final = status(db)
    assert final["state_hash"] == expected["state_hash"]
    assert final["log"] == expected["log"]
    assert final["rejections"] == expected["rejections"]
    assert count_drift(db) == 0


def test_garbage_lines_are_rejected_with_reasons_and_ingest_goes_on(tmp_path: Path, db_factory: object) -> None:
    assert callable(db_factory)
    good = [msgspec.json.encode(obj) for obj in workload(50, seed=3)]
    bad = [
        b"{not json",
        b"[1, 2, 3]",
        b'{"did": "did:plc:x", "time_us": 1, "kind": "commit"}',
        b'{"did": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "time_us": 2, "kind": "commit", "commit": {"rev": "nope",'
        b' "operation": "create", "collection": "fm.plyr.track", "rkey": "3lrnqk7qs2222", "record": {}, "cid": "x"}}',
        b'{"did": "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa", "time_us": 3, "kind": "mystery"}',
        b"\xff\xfe\x00garbage",
    ]
    clean = tmp_path / "clean.jsonl"
    clean.write_bytes(b"\n".join(good) + b"\n")
    reference = db_factory()
    cli(reference, "replay", str(clean), "--no-progress")
    expected = status(reference)
    capture = tmp_path / "mixed.jsonl"
    capture.write_bytes(b"\n".join(good[:25] + bad + good[25:]) + b"\n")
    db = db_factory()
    result = json.loads(cli(db, "replay", str(capture), "--no-progress").stdout)
    baseline = expected["rejections"]["total"]  # type: ignore[index]
    assert result["rejected"] == baseline + len(bad)
    assert {"invalid_json", "not_object", "missing_field", "invalid_rev", "unknown_kind"} <= set(result["rejections"])
    s = status(db)
    assert s["rejections"]["total"] == baseline + len(bad)  # type: ignore[index]
    # Everything valid around the garbage was indexed.
    assert s["state_hash"] == expected["state_hash"]


def _line(ev: Event, n: int) -> bytes:
    return msgspec.json.encode(to_v1(ev, BASE_US + n))


def _cut(line: bytes, after: bytes) -> bytes:
    return line[: line.index(after) + len(after)]


def _mixed_capture() -> tuple[list[bytes], dict[str, object]]:
    """A capture with every kind of line a summary tells apart, and the summary its first replay must print."""
    alice, bob = make_did(1), make_did(2)
    tids = [make_tid(BASE_US + i) for i in range(3)]
    tracks = [commit(alice, "fm.plyr.track", t, t, track_record(f"t{i}")) for i, t in enumerate(tids)]
    rkey = make_tid(BASE_US + 10)
    invalid = commit(alice, "fm.plyr.track", rkey, rkey, track_record(""))  # below minLength
    handle = identity(bob, "bob.example.com", seq=5, micros=BASE_US)
    like_rkey = make_tid(BASE_US + 20)
    subject = {"uri": f"at://{alice}/fm.plyr.track/{tracks[0].rkey}", "cid": tracks[0].cid}
    foreign = commit(
        bob, "app.bsky.feed.like", like_rkey, like_rkey, {"$type": "app.bsky.feed.like", "subject": subject}
    )
    foreign_bad = {**to_v1(foreign, BASE_US), "commit": {**to_v1(foreign, BASE_US)["commit"], "rev": 5}}
    unread = _line(commit(bob, "fm.plyr.track", rkey, rkey, track_record("cut short")), 30)
    early = _line(foreign, 11)[:120]
    assert b'"kind":"commit"' in early and b"collection" not in early
    lines = [
        *(_line(t, i) for i, t in enumerate(tracks)),
        _line(handle, 3),
        _line(tracks[0], 4),  # a duplicate
        _line(handle, 5),  # a duplicate identity event
        _line(invalid, 6),
        _line(invalid, 7),  # refused again: counted again, stored once
        unread[: unread.index(b"cut short")],  # ours, truncated
        b'{"did":"' + alice.encode() + b'","time_us":1750000000000008,"kind":"commit"}',  # no commit body
        b"{not json",
        early,  # cut before it names its collection: whose it was cannot be told, so it is rejected
        b"",  # blank: not an item
        _line(foreign, 9),  # another app's
        _cut(_line(foreign, 10), b"fm.plyr.track/"),  # another app's, truncated where it mentions our namespace
        msgspec.json.encode(foreign_bad),  # another app's, broken
        _cut(_line(foreign, 11), b'"collection":"app.bsky.f'),  # another app's, cut inside its collection
    ]
    expected = {
        "items": 16,
        "appended": 4,
        "duplicates": 2,
        "rejected": 6,
        "ignored": 4,
        "rejections": {"invalid_json": 3, "invalid_record": 2, "missing_field": 1},
    }
    return lines, expected


@pytest.mark.parametrize("batch_size", [1000, 3])
def test_summary_counts_every_line_once_and_the_counts_add_up(
    tmp_path: Path, db_factory: object, batch_size: int
) -> None:
    assert callable(db_factory)
    lines, expected = _mixed_capture()
    capture = tmp_path / "mixed.jsonl"
    capture.write_bytes(b"\n".join(lines) + b"\n")
    db = db_factory()

    first = json.loads(cli(db, "replay", str(capture), "--no-progress", "--batch-size", str(batch_size)).stdout)
    assert first["source"].startswith("replay:mixed.jsonl:") and first["start"] == 0
    assert {k: first[k] for k in expected} == expected
    assert first["items"] == first["appended"] + first["duplicates"] + first["rejected"] + first["ignored"]
    assert sum(first["rejections"].values()) == first["rejected"]
    once = status(db)
    # Stored once each: 4 valid events and the invalid record (logged for its rev); 5 distinct rejections.
    assert once["log"]["events"] == 5  # type: ignore[index]
    assert once["rejections"] == {
        "total": 5,
        "by_reason": {"invalid_json": 3, "invalid_record": 1, "missing_field": 1},
    }

    # Finished, up to its last line (another app's): nothing is read again.
    resumed = json.loads(cli(db, "replay", str(capture), "--no-progress").stdout)
    assert resumed["start"] == len(lines) and resumed["items"] == 0
    # Everything again: the valid events are all duplicates now, the refusals are counted again, nothing changes.
    again = json.loads(cli(db, "replay", str(capture), "--no-progress", "--from-start").stdout)
    assert {k: again[k] for k in expected} == {**expected, "appended": 0, "duplicates": 6}
    twice = status(db)
    assert [twice[k] for k in ("state_hash", "counts", "log", "rejections")] == [
        once[k] for k in ("state_hash", "counts", "log", "rejections")
    ]


def test_replay_items_count_what_holds_nothing_of_ours(tmp_path: Path) -> None:
    """The lines (or frames) kept from the writer are counted, so the summary can account for them."""
    lines, _ = _mixed_capture()
    capture = tmp_path / "mixed.jsonl"
    capture.write_bytes(b"\n".join(lines) + b"\n")

    async def read(path: Path, start: int = 0) -> tuple[list[Item], ReadCounts]:
        counts = ReadCounts()
        items = [item async for item in replay_items(path, "r", start, counts=counts)]
        return items, counts

    items, counts = asyncio.run(read(capture))
    assert counts.ignored == 4
    # Each line of ours is one item; the trailing lines of another app only move the cursor to the end.
    *ours, last = items
    assert len(ours) == 12 and not any(isinstance(i, Checkpoint) for i in ours)
    assert last == Checkpoint(source="r", cursor=len(lines) - 1)
    # From a later position, only what follows is read.
    items, counts = asyncio.run(read(capture, start=15))
    assert counts.ignored == 2 and items == [Checkpoint(source="r", cursor=len(lines) - 1)]

    # A frame capture: each frame either yields items (all at its own position) or is counted as ignored.
    frames = REFERENCE / "corpus" / "frames.bin.zst"
    total = sum(1 for _ in iter_capture(frames))
    items, counts = asyncio.run(read(frames))
    positions = {i.cursor for i in items if not isinstance(i, Checkpoint)}
    assert counts.ignored > 0 and counts.ignored + len(positions) == total
