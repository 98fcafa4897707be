"""`replay --bulk` (indexer/capture/bulk.py): the capture appended to the log without folding, then one rebuild.
It must leave what the live replay leaves (log, rejections, report, state hash), from an empty index or on top of
one; a bulk append stopped before its rebuild leaves the log's unfolded tail marked, the index untouched, and is
finished by the next bulk replay, which keeps the Bluesky profiles of authors known only through that tail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import pytest

from appview.cli.commands.index import index
from bench.synth import BASE_US, commit, make_did, make_tid, to_v1, track_record
from indexer.atproto.lexicon import Validator
from indexer.capture.bulk import Share
from indexer.capture.replay import replay_items, replay_source
from indexer.events import Item
from indexer.fold.rebuild import rebuild
from indexer.fold.writer import BatchWriter
from indexer.metrics import Metrics
from indexer.settings import Settings
from indexer.status import status as read_status
from tests.test_replay import cli, write_capture

_REPORT = ("items", "appended", "duplicates", "rejected", "ignored", "rejections")


def status(db: str) -> dict[str, Any]:
    return asyncio.run(read_status(db))


def _report(result: dict[str, object]) -> dict[str, object]:
    return {k: result[k] for k in _REPORT}


def test_bulk_replay_leaves_what_the_live_replay_leaves(tmp_path: Path, db_factory: object) -> None:
    assert callable(db_factory)
    first, second = tmp_path / "first.jsonl.zst", tmp_path / "second.jsonl.zst"
    write_capture(first, 2500, seed=3)
    write_capture(second, 3000, seed=4)
    live, bulk = db_factory(), db_factory()

    # From an empty index.
    expected = json.loads(cli(live, "replay", str(first), "--no-progress", "--batch-size", "400").stdout)
    got = json.loads(cli(bulk, "replay", str(first), "--no-progress", "--batch-size", "400", "--bulk").stdout)
    assert _report(got) == _report(expected) and got["appended"] > 2000
    assert got["rebuilt"] == status(bulk)["log"]["events"]
    once = status(live)
    assert status(bulk)["state_hash"] == once["state_hash"]

    # On top of an index: the rebuild folds the whole log, the old events and the new.
    expected = json.loads(cli(live, "replay", str(second), "--no-progress").stdout)
    got = json.loads(cli(bulk, "replay", str(second), "--no-progress", "--bulk", "--workers", "3").stdout)
    assert _report(got) == _report(expected)
    want, have = status(live), status(bulk)
    assert want["state_hash"] != once["state_hash"]
    for key in ("state_hash", "counts", "log", "rejections"):
        assert have[key] == want[key], key
    assert have["unfolded"] is None
    # Each share keeps its own position: the first capture's two, the second's three.
    assert sorted(name.rsplit(":", 1)[1] for name in have["cursors"]) == ["1/2", "1/3", "2/2", "2/3", "3/3"]

    # Done: a bulk replay of the same file again reads nothing and rebuilds nothing, with another number of
    # shares too (the three before have all passed the end).
    again = json.loads(cli(bulk, "replay", str(second), "--no-progress", "--bulk").stdout)
    assert again["items"] == 0 and again["rebuilt"] is None
    # Forced from the start, every event is a duplicate: the log gains no tail, nothing is rebuilt.
    forced = json.loads(
        cli(bulk, "replay", str(second), "--no-progress", "--bulk", "--from-start", "--workers", "1").stdout
    )
    assert forced["appended"] == 0 and forced["duplicates"] > 0 and forced["rebuilt"] is None


def _profile_capture(path: Path) -> None:
    """Two authors' first tracks (at lines 0 and 25), then, in later batches, their Bluesky profiles; and the
    profile of a DID with nothing of ours, which is not kept."""
    first, second, stranger = make_did(1), make_did(2), make_did(3)
    lines = []
    for i in range(40):
        did = {0: first, 25: second}.get(i, make_did(100 + i))
        lines.append(to_v1(commit(did, "fm.plyr.track", make_tid(i), make_tid(i), track_record(f"t{i}")), BASE_US + i))
    for n, did in enumerate((first, second, stranger)):
        profile = {"$type": "app.bsky.actor.profile", "displayName": f"Name {n}"}
        lines.append(to_v1(commit(did, "app.bsky.actor.profile", "self", make_tid(50 + n), profile), BASE_US + 50 + n))
    path.write_bytes(b"".join(msgspec.json.encode(line) + b"\n" for line in lines))


async def _append_only(db: str, capture: Path, validator: Validator, *, lines: int) -> None:
    """What a bulk replay killed before its rebuild leaves: its first `lines` appended, cursor saved, unfolded."""
    source = replay_source(capture)
    items = [item async for item in replay_items(capture, source)][:lines]

    async def some() -> AsyncIterator[Item]:
        for item in items:
            yield item

    async with BatchWriter(db, validator=validator, batch_size=5, fold=False) as writer:
        await writer.run(some())


@pytest.mark.parametrize("finish_with", ["replay --bulk", "rebuild in place"])
def test_a_stopped_bulk_replay_is_marked_and_finished_later(
    tmp_path: Path, db_factory: object, validator: Validator, finish_with: str
) -> None:
    assert callable(db_factory)
    capture = tmp_path / "profiles.jsonl"
    _profile_capture(capture)
    live, bulk = db_factory(), db_factory()
    expected = json.loads(cli(live, "replay", str(capture), "--no-progress", "--batch-size", "5").stdout)
    assert expected["ignored"] == 1  # the stranger's profile
    empty = status(bulk)

    asyncio.run(_append_only(bulk, capture, validator, lines=20))
    stopped = status(bulk)
    assert stopped["state_hash"] == empty["state_hash"]  # the index does not show the tail
    assert stopped["unfolded"]["events"] == stopped["log"]["events"] == 20
    assert "plyr-appview rebuild" in cli(bulk, "status").stdout

    if finish_with == "replay --bulk":
        # Resumes at line 20. The first author is known only through the tail, the second through an earlier batch
        # of this run: both profiles are kept.
        resume = ("replay", str(capture), "--no-progress", "--batch-size", "5", "--bulk", "--workers", "1")
        got = json.loads(cli(bulk, *resume).stdout)
        assert got["start"] == 20 and got["ignored"] == 1 and got["rebuilt"] == expected["appended"]
    else:
        asyncio.run(rebuild(bulk, online=False))
        assert status(bulk)["unfolded"] is None
        cli(bulk, "replay", str(capture), "--no-progress", "--batch-size", "5", "--bulk")
    want, have = status(live), status(bulk)
    for key in ("state_hash", "counts", "log", "rejections"):
        assert have[key] == want[key], key
    assert have["unfolded"] is None


async def test_the_indexer_warns_of_an_unfolded_tail_and_ingests_on(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO unfolded_log (after_id) VALUES (0)")
    settings = Settings(resolve_identities=False, reconcile_minutes=0, database_url=db_url)
    with caplog.at_level(logging.WARNING, logger="plyr_appview"):
        # A source nobody listens on: the indexer keeps retrying it, as it would a Jetstream that is down.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(index(settings, db_url, Metrics(), ["ws://127.0.0.1:9"]), 1.5)
    warned = [r for r in caplog.records if "bulk replay appended" in r.getMessage()]
    assert len(warned) == 1 and "plyr-appview rebuild" in warned[0].getMessage()


def test_a_share_is_found_again_by_the_name_of_its_position() -> None:
    source = "replay:cap_1%.jsonl:0123abcd"
    for of in (1, 2, 3, 4):
        for i in range(of):
            assert Share.named(Share(i, of).source(source), source) == Share(i, of)
    for name in ("replay:other:0123abcd", f"{source}:0/2", f"{source}:3/2", f"{source}:1/1", f"{source}:1/2x"):
        assert Share.named(name, source) is None
    # Every line is in exactly one share, and a repo's lines all in the same one.
    lines = [msgspec.json.encode({"did": make_did(i % 7), "n": i}) for i in range(60)] + [b"not json", b"{}"]
    shares = [Share(i, 3) for i in range(3)]
    assert all(sum(share.holds(line) for share in shares) == 1 for line in lines)
    assert len({next(s.index for s in shares if s.holds(line)) for line in lines[:60:7]}) == 1
