"""What the batch writer reports: every item counted once, in the one of appended, duplicates, rejected, ignored
and checkpoints that says what became of it, whatever the batches and whatever was already stored."""

from __future__ import annotations

from bench.synth import BASE_US, commit, identity, make_did, make_tid, track_record
from indexer.atproto.lexicon import Validator
from indexer.events import Checkpoint, Event, Item, Malformed
from indexer.fold.writer import WriteStats
from tests.helpers import TRACK, ingest, one

ALICE = make_did(1)
BOB = make_did(2)


def _track(n: int, title: str = "a song", *, rev: int | None = None) -> Event:
    return commit(
        ALICE, TRACK, make_tid(BASE_US + n), make_tid(BASE_US + (n if rev is None else rev)), track_record(title)
    )


def _fields(stats: WriteStats) -> dict[str, int]:
    return {
        "items": stats.items,
        "appended": stats.appended,
        "duplicates": stats.duplicates,
        "rejected": stats.rejected,
        "ignored": stats.ignored,
        "checkpoints": stats.checkpoints,
    }


def _adds_up(stats: WriteStats) -> bool:
    parts = stats.appended + stats.duplicates + stats.rejected + stats.ignored + stats.checkpoints
    return stats.items == parts and stats.rejected == stats.by_reason.total()


async def test_each_item_is_counted_once_across_batches(db_url: str, validator: Validator) -> None:
    invalid = _track(9, "")  # below minLength: logged for its rev, and a rejection
    other = commit(ALICE, "app.bsky.feed.post", make_tid(BASE_US), make_tid(BASE_US), {"text": "hi"})
    handle = identity(BOB, "bob.example.com", seq=1, micros=BASE_US)
    broken = Malformed(reason="invalid_json", detail="cut short", raw='{"kind":"commit","commit":{"collection":"fm.')
    first: list[Item] = [
        _track(1),
        _track(2),
        _track(1),
        handle,
        invalid,
        other,
        broken,
        Checkpoint(source="s", cursor=5),
    ]
    stats = await ingest(db_url, validator, first, [_track(2), handle, invalid, _track(3)])
    assert _fields(stats) == {
        "items": 12,
        "appended": 4,  # tracks 1, 2, 3 and the identity event
        "duplicates": 3,  # track 1 in its own batch, then track 2 and the identity event in the next one
        "rejected": 3,  # the invalid record twice (counted per delivery, stored once), the broken line
        "ignored": 1,
        "checkpoints": 1,
    }
    assert stats.by_reason == {"invalid_record": 2, "invalid_json": 1}
    assert _adds_up(stats)
    assert await one(db_url, "SELECT count(*) FROM events") == 5  # with the invalid record
    assert await one(db_url, "SELECT count(*) FROM rejections") == 2


async def test_a_valid_and_an_invalid_version_under_one_dedup_key_are_told_apart(
    db_url: str, validator: Validator
) -> None:
    # Same did, collection, rkey, rev and operation: one dedup key, whichever record the event carries. The one
    # delivered first enters the log; the other is a duplicate if valid and a rejection if not, in one batch as
    # across batches.
    valid, invalid = _track(1), _track(1, "")
    assert _fields(await ingest(db_url, validator, [valid, invalid])) == {
        "items": 2,
        "appended": 1,
        "duplicates": 0,
        "rejected": 1,
        "ignored": 0,
        "checkpoints": 0,
    }
    valid, invalid = _track(2), _track(2, "")
    stats = await ingest(db_url, validator, [invalid, valid], [valid, invalid])
    assert _fields(stats) == {
        "items": 4,
        "appended": 0,
        "duplicates": 2,
        "rejected": 2,
        "ignored": 0,
        "checkpoints": 0,
    }
    assert _adds_up(stats)
    assert await one(db_url, "SELECT count(*) FROM events") == 2
    assert await one(db_url, "SELECT count(*) FROM events WHERE invalid IS NOT NULL") == 1
