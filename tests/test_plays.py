"""teal.fm plays and now-playing statuses: which origins link a play to a track, and the fold rules (rev order,
tombstones, account status, exact counts under redelivery and any batching, rebuild) for the new collections,
through the real writer against a real Postgres; and the Jetstream source asking for them."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

from bench.synth import BASE_US, account, commit, iso, make_did, to_v1
from indexer.atproto.lexicon import Validator
from indexer.events import Event, Item
from indexer.fold.rebuild import rebuild
from indexer.jetstream.parse import parse_v1
from indexer.jetstream.source import JetstreamSource
from tests.helpers import ingest, one, rows, state, tid, track_event, track_uri
from tests.jetstream_server import JetstreamServer

PLAY = "fm.teal.feed.play"
ALPHA_PLAY = "fm.teal.alpha.feed.play"
STATUS = "fm.teal.actor.status"
ALPHA_STATUS = "fm.teal.alpha.actor.status"

ALICE = make_did(1)  # the artist
BOB = make_did(2)
CAROL = make_did(3)
DAVE = make_did(4)


def play_record(origin: str | None, *, n: int = 0, alpha: bool = False, field: str = "originUri") -> dict[str, Any]:
    rec: dict[str, Any] = {
        "$type": ALPHA_PLAY if alpha else PLAY,
        "trackName": f"Track {n}",
        "artists": [{"artistName": "Alice"}],
        "playedTime": iso(BASE_US + n * 1000),
    }
    if origin is not None:
        rec[field] = origin
    return rec


def play(did: str, n: int, origin: str | None, *, rev: int | None = None, alpha: bool = False) -> Event:
    collection = ALPHA_PLAY if alpha else PLAY
    field = "originUrl" if alpha else "originUri"
    record = play_record(origin, n=n, alpha=alpha, field=field)
    return commit(did, collection, tid(n), tid(n if rev is None else rev), record)


def unplay(did: str, n: int, rev: int, *, alpha: bool = False) -> Event:
    return commit(did, ALPHA_PLAY if alpha else PLAY, tid(n), tid(rev), None)


def status_record(origin: str | None, *, time: str, expiry: str | None, alpha: bool = False) -> dict[str, Any]:
    item: dict[str, Any] = {"trackName": "Now", "artists": [{"artistName": "Alice"}]}
    if origin is not None:
        item["originUri"] = origin
    rec: dict[str, Any] = {"$type": ALPHA_STATUS if alpha else STATUS, "time": time, "item": item}
    if expiry is not None:
        rec["expiry"] = expiry
    return rec


async def play_count(db_url: str, track: str) -> int:
    count: int = await one(db_url, "SELECT play_count FROM tracks WHERE uri = %s", track)
    return count


async def exact_play_counts(db_url: str) -> list[tuple[Any, ...]]:
    """Each track's stored play count next to a recount from the plays it has."""
    return await rows(
        db_url,
        "SELECT t.uri, t.play_count, (SELECT count(*) FROM plays p WHERE p.track_uri = t.uri AND p.author_active)"
        " FROM tracks t ORDER BY t.uri",
    )


# -- which origins name a track ---------------------------------------------------------------------------------

T = tid(1)
LINKED = f"at://{ALICE}/fm.plyr.track/{T}"
ORIGINS: list[tuple[str, str | None]] = [
    (LINKED, LINKED),
    (f"https://plyr.fm/track/{ALICE}/{T}", LINKED),
    (f"https://plyr.fm/track/{ALICE}/{T}/?utm=x#t=3", LINKED),
    (f"https://player.example/embed?uri={LINKED}&autoplay=1", LINKED),
    (f"https://player.example/embed?uri={LINKED.replace(':', '%3A').replace('/', '%2F')}", LINKED),
    (f"https://player.example/x/{LINKED}", LINKED),
    ("at://did:web:music.example.com/fm.plyr.track/" + T, "at://did:web:music.example.com/fm.plyr.track/" + T),
    # plyr.fm's own links name a row of its database, not a record: unlinkable, never guessed.
    ("https://plyr.fm/track/1234", None),
    ("https://open.spotify.com/track/4uLU6hMCjMI75M1A2tKUQC", None),
    (f"at://alice.example.com/fm.plyr.track/{T}", None),  # a handle, not a DID
    (f"at://{ALICE}/fm.plyr.like/{T}", None),  # not a track
    (f"at://{ALICE}/fm.plyr.track/{T}x", None),  # not a TID
    (f"at://{ALICE}/fm.plyr.track/notatid", None),
    (f"https://plyr.fm/track/{ALICE}/{T}/more", None),
    (f"https://appview.example/embed/track/{ALICE}/{T}", LINKED),
    (f"https://appview.example/embed/track/{ALICE}/{T}?x=at://{BOB}/fm.plyr.track/{T}", LINKED),
    (f"ftp://plyr.fm/track/{ALICE}/{T}", None),
    ("", None),
    ("x" * 3000 + LINKED, None),  # longer than any URL we read
]


async def test_origin_forms(db_url: str) -> None:
    query = "SELECT o, plyr_track_uri(o) FROM unnest(%s::text[]) WITH ORDINALITY u(o, n) ORDER BY n"
    found = await rows(db_url, query, [o for o, _ in ORIGINS])
    assert found == ORIGINS


async def test_timestamps_in_records_never_fail_a_projection(db_url: str) -> None:
    for value, expected in [
        ('"2026-01-02T03:04:05.678Z"', dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)),
        ('"2026-01-02T03:04:05+02:00"', dt.datetime(2026, 1, 2, 1, 4, 5, tzinfo=dt.UTC)),
        ('"2026-13-40T03:04:05Z"', None),
        ('"0000-01-01T00:00:00Z"', None),
        ('"2026-01-02 03:04:05"', None),
        ("12345", None),
        ("null", None),
    ]:
        assert await one(db_url, "SELECT plyr_timestamptz(%s::jsonb)", value) == expected, value


# -- the fold ----------------------------------------------------------------------------------------------------


async def test_plays_link_count_and_leave_unlinkable_ones_unlinked(db_url: str, validator: Validator) -> None:
    track = track_uri(ALICE, 1)
    await ingest(
        db_url,
        validator,
        [
            track_event(ALICE, 1),
            play(BOB, 10, track),
            play(BOB, 11, f"https://plyr.fm/track/{ALICE}/{tid(1)}"),
            play(CAROL, 12, f"https://plyr.fm/track/{ALICE}/{tid(1)}", alpha=True),  # legacy originUrl
            play(DAVE, 13, "https://plyr.fm/track/1234"),
            play(DAVE, 14, None),
        ],
    )
    assert await play_count(db_url, track) == 3
    found = await rows(db_url, "SELECT did, collection, track_uri FROM plays ORDER BY did, rkey")
    assert found == [
        (BOB, PLAY, track),
        (BOB, PLAY, track),
        (CAROL, ALPHA_PLAY, track),
        (DAVE, PLAY, None),
        (DAVE, PLAY, None),
    ]
    # playedTime is the play's time (never later than its arrival).
    assert await one(db_url, "SELECT played_at = sort_at FROM plays WHERE did = %s", CAROL) is True


async def test_a_play_before_its_track_counts_once_the_track_arrives(db_url: str, validator: Validator) -> None:
    track = track_uri(ALICE, 1)
    await ingest(db_url, validator, [play(BOB, 10, track)], [play(CAROL, 11, track)])
    assert await one(db_url, "SELECT count(*) FROM plays WHERE track_uri = %s", track) == 2
    await ingest(db_url, validator, [track_event(ALICE, 1), play(DAVE, 12, track)])
    assert await play_count(db_url, track) == 3


async def test_rev_order_and_tombstones(db_url: str, validator: Validator) -> None:
    track = track_uri(ALICE, 1)
    other = track_uri(ALICE, 2)
    await ingest(db_url, validator, [track_event(ALICE, 1), track_event(ALICE, 2), play(BOB, 10, track, rev=20)])
    # An older version of the same play (rev 15) arriving late changes nothing.
    await ingest(db_url, validator, [play(BOB, 10, other, rev=15)])
    assert (await play_count(db_url, track), await play_count(db_url, other)) == (1, 0)
    # A newer version moves the play to the other track.
    await ingest(db_url, validator, [play(BOB, 10, other, rev=25)])
    assert (await play_count(db_url, track), await play_count(db_url, other)) == (0, 1)
    # Deleted, it is gone for good: an older create delivered again never brings it back.
    await ingest(db_url, validator, [unplay(BOB, 10, rev=30)], [play(BOB, 10, other, rev=28)])
    assert (await play_count(db_url, track), await play_count(db_url, other)) == (0, 0)
    assert await one(db_url, "SELECT count(*) FROM plays") == 0


async def test_the_two_collections_keep_plays_of_the_same_key_apart(db_url: str, validator: Validator) -> None:
    track = track_uri(ALICE, 1)
    await ingest(db_url, validator, [track_event(ALICE, 1), play(BOB, 10, track), play(BOB, 10, track, alpha=True)])
    assert await play_count(db_url, track) == 2
    await ingest(db_url, validator, [unplay(BOB, 10, rev=11, alpha=True)])
    assert await play_count(db_url, track) == 1
    assert await rows(db_url, "SELECT collection FROM plays") == [(PLAY,)]


async def test_inactive_listeners_leave_the_count_and_come_back(db_url: str, validator: Validator) -> None:
    track = track_uri(ALICE, 1)
    await ingest(db_url, validator, [track_event(ALICE, 1), play(BOB, 10, track), play(CAROL, 11, track)])
    await ingest(db_url, validator, [account(BOB, False, "deactivated", seq=1, micros=BASE_US + 10**6)])
    assert await play_count(db_url, track) == 1
    await ingest(db_url, validator, [account(BOB, True, seq=2, micros=BASE_US + 2 * 10**6)])
    assert await play_count(db_url, track) == 2
    await ingest(db_url, validator, [account(CAROL, False, "deleted", seq=3, micros=BASE_US + 3 * 10**6)])
    assert await play_count(db_url, track) == 1
    assert await one(db_url, "SELECT count(*) FROM plays WHERE did = %s", CAROL) == 0


async def test_an_invalid_play_is_logged_rejected_and_never_projected(db_url: str, validator: Validator) -> None:
    bad = play_record(track_uri(ALICE, 1), n=10)
    del bad["trackName"]
    stats = await ingest(db_url, validator, [track_event(ALICE, 1), commit(BOB, PLAY, tid(10), tid(10), bad)])
    assert stats.rejected == 1
    assert await one(db_url, "SELECT count(*) FROM events WHERE invalid IS NOT NULL") == 1
    assert await one(db_url, "SELECT count(*) FROM plays") == 0


def _workload() -> list[Event]:
    """Tracks, plays of them (some before their track), updates, deletes, unlinkable plays, statuses and an
    account going inactive and back."""
    listeners = [make_did(10 + i) for i in range(6)]
    events: list[Event] = [track_event(ALICE, n) for n in (1, 2, 3)]
    r = random.Random(11)
    for i, who in enumerate(listeners):
        for k in range(5):
            n = 100 + i * 10 + k
            target = track_uri(ALICE, r.choice((1, 2, 3, 4)))  # track 4 never arrives
            events.append(play(who, n, target if k != 4 else "https://plyr.fm/track/77", alpha=k == 3))
        events.append(play(who, 100 + i * 10, track_uri(ALICE, 2), rev=100 + i * 10 + 7))
        events.append(unplay(who, 101 + i * 10, rev=101 + i * 10 + 8))
        time = iso(BASE_US + i * 10**6)
        record = status_record(track_uri(ALICE, 1), time=time, expiry=None, alpha=i % 2 == 1)
        events.append(commit(who, ALPHA_STATUS if i % 2 else STATUS, "self", tid(300 + i), record))
    events.append(account(listeners[0], False, "deactivated", seq=1, micros=BASE_US + 5 * 10**6))
    events.append(account(listeners[0], True, seq=2, micros=BASE_US + 6 * 10**6))
    events.append(account(listeners[1], False, "takendown", seq=3, micros=BASE_US + 7 * 10**6))
    return events


async def test_counts_are_exact_under_redelivery_and_any_batching_and_rebuild(
    db_factory: Any, validator: Validator
) -> None:
    events = _workload()
    reference = db_factory()
    await ingest(reference, validator, events)
    expected = (await state(reference))["state_hash"]
    counts = await exact_play_counts(reference)
    assert all(stored == recount for _, stored, recount in counts)
    assert sum(stored for _, stored, _ in counts) > 0

    r = random.Random(5)
    for _ in range(2):
        # Any order (revs and account event times order what they must), a third delivered twice, cut into
        # random batches.
        shuffled = [*events, *r.sample(events, len(events) // 3)]
        r.shuffle(shuffled)
        batches: list[list[Item]] = []
        while shuffled:
            size = r.randint(1, 12)
            batches.append(list(shuffled[:size]))
            shuffled = shuffled[size:]
        other = db_factory()
        await ingest(other, validator, *batches)
        assert (await state(other))["state_hash"] == expected
        assert await exact_play_counts(other) == counts

    await rebuild(reference)
    assert (await state(reference))["state_hash"] == expected
    assert await exact_play_counts(reference) == counts


# -- now playing -------------------------------------------------------------------------------------------------


async def test_status_expiry_default_and_tombstone(db_url: str, validator: Validator) -> None:
    track = track_uri(ALICE, 1)
    start = "2026-03-01T12:00:00.000Z"
    await ingest(
        db_url,
        validator,
        [
            track_event(ALICE, 1),
            commit(BOB, STATUS, "self", tid(10), status_record(track, time=start, expiry="2026-03-01T12:04:00Z")),
            commit(CAROL, ALPHA_STATUS, "self", tid(11), status_record(None, time=start, expiry=None, alpha=True)),
        ],
    )
    found = await rows(
        db_url, "SELECT did, collection, track_uri, started_at, expires_at FROM actor_status ORDER BY did"
    )
    noon = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    assert found == [
        (BOB, STATUS, track, noon, noon + dt.timedelta(minutes=4)),
        (CAROL, ALPHA_STATUS, None, noon, noon + dt.timedelta(minutes=10)),  # teal.fm's default: 10 minutes
    ]
    later = "2026-03-01T12:05:00Z"
    await ingest(
        db_url,
        validator,
        [commit(BOB, STATUS, "self", tid(12), status_record(None, time=later, expiry=None))],
        [commit(BOB, STATUS, "self", tid(9), status_record(track, time=start, expiry=None))],  # older: ignored
        [commit(CAROL, ALPHA_STATUS, "self", tid(13), None)],
    )
    assert await rows(db_url, "SELECT did, track_uri, started_at FROM actor_status") == [
        (BOB, None, dt.datetime(2026, 3, 1, 12, 5, tzinfo=dt.UTC))
    ]


async def test_status_is_only_under_self(db_url: str, validator: Validator) -> None:
    record = status_record(None, time="2026-03-01T12:00:00Z", expiry=None)
    stats = await ingest(db_url, validator, [commit(BOB, STATUS, tid(10), tid(10), record)])
    assert stats.rejected == 1
    assert await one(db_url, "SELECT count(*) FROM actor_status") == 0


# -- ingest asks for them ----------------------------------------------------------------------------------------


async def test_jetstream_asks_for_and_keeps_plays_and_statuses_only() -> None:
    track = track_uri(ALICE, 1)
    kept = [
        play(BOB, 10, track),
        play(BOB, 11, track, alpha=True),
        commit(BOB, STATUS, "self", tid(12), status_record(track, time=iso(BASE_US), expiry=None)),
        track_event(ALICE, 1),
    ]
    foreign = [
        commit(BOB, "fm.teal.alpha.actor.profile", "self", tid(13), {"$type": "fm.teal.alpha.actor.profile"}),
        commit(BOB, "app.bsky.feed.post", tid(14), tid(14), {"$type": "app.bsky.feed.post", "text": PLAY}),
    ]
    lines = [to_v1(e, BASE_US + i) for i, e in enumerate([*foreign[:1], *kept[:2], foreign[1], *kept[2:]])]
    server = JetstreamServer(lines)
    async with server.running():
        src = JetstreamSource([server.url], start_cursor=None, compress=False, idle_timeout=5.0, min_backoff=0.01)
        got: list[Event] = []
        agen = src.events()
        async for item in agen:
            if isinstance(item, Event):
                got.append(item)
            if len(got) == len(kept):
                break
        await agen.aclose()
    assert [(e.collection, e.rkey) for e in got] == [(e.collection, e.rkey) for e in kept]
    assert server.requests[0]["wantedCollections"] == [
        "fm.plyr.*",
        "app.bsky.actor.profile",
        "fm.teal.actor.status",
        "fm.teal.alpha.actor.status",
        "fm.teal.alpha.feed.play",
        "fm.teal.feed.play",
    ]
    # The parser alone agrees: another teal.fm collection is not ours, broken or not.
    assert parse_v1(b'{"did":"' + BOB.encode() + b'","time_us":1,"kind":"commit","commit":{"collection":'
                    b'"fm.teal.alpha.actor.profile","rkey":', "s") is None  # fmt: skip
