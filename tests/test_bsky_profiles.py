"""Bluesky identity in views: the `app.bsky.actor.profile` of actors the index knows (and of no one else) gives
their display name and avatar, through the real fold, over HTTP, live and after a rebuild."""

from __future__ import annotations

from typing import Any

import httpx
import psycopg
from litestar.testing import AsyncTestClient

from bench.synth import BASE_US, commit, identity, make_cid, make_did
from indexer.atproto.lexicon import Validator
from indexer.events import Checkpoint, Event
from indexer.firehose.frames import Control, decode_frame
from indexer.firehose.source import FirehoseSource
from indexer.fold.collections import DISCOVERY, RECONCILED, WANTED
from indexer.fold.rebuild import rebuild
from indexer.status import state_hash
from indexer.sync.backfill import SyncMetrics
from indexer.sync.known import KnownActors
from indexer.sync.reconcile import Reconciler
from tests.api_support import app
from tests.helpers import PROFILE, ingest, one, rows, tid, track_event, track_rec, track_uri
from tests.test_firehose_source import PlcStub, RecordingMarker
from tests.test_firehose_support import TRACK_RECORD, FakeRepo, Op

BSKY = "app.bsky.actor.profile"
ALICE, BOB, CAROL = (make_did(n) for n in range(41, 44))


def bsky(name: str | None, avatar_seed: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {"$type": BSKY}
    if name is not None:
        record["displayName"] = name
    if avatar_seed is not None:
        record["avatar"] = {
            "$type": "blob",
            "ref": {"$link": make_cid({"img": avatar_seed})},
            "mimeType": "image/jpeg",
            "size": 1234,
        }
    return record


def avatar_url(did: str, seed: str) -> str:
    return f"https://cdn.bsky.app/img/avatar/plain/{did}/{make_cid({'img': seed})}@jpeg"


async def _hash(db_url: str) -> str:
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        return await state_hash(conn)


async def _views(db_url: str, did: str) -> tuple[dict[str, Any], dict[str, Any]]:
    async with AsyncTestClient(app=app(db_url)) as client:
        profile = await client.get("/xrpc/fm.plyr.getActorProfile", params={"actor": did})
        track = await client.get("/xrpc/fm.plyr.getTrack", params={"uri": track_uri(did, 1)})
    assert profile.status_code == 200, profile.text
    assert track.status_code == 200, track.text
    body = track.json()
    return profile.json(), body.get("track", body)["author"]


def test_sources_ask_for_bluesky_profiles_but_never_discover_repos_by_them() -> None:
    assert WANTED(BSKY) and BSKY in WANTED.patterns
    assert not WANTED("app.bsky.feed.post")
    assert BSKY not in DISCOVERY and "fm.plyr.track" in DISCOVERY
    assert BSKY not in RECONCILED and "fm.plyr.track" in RECONCILED


PROFILE_PATH = f"{BSKY}/self"
TRACK_PATH = "fm.plyr.track/3mptbyplj5d2a"
R1, R2, R3, R4, R5 = "3mptbypluud2a", "3mptbypluud3a", "3mptbypluud4a", "3mptbypluud5a", "3mptbypluud6a"


def test_frame_filter_keeps_profiles_of_known_actors_only() -> None:
    known, stranger = FakeRepo(ALICE), FakeRepo(CAROL)
    actors = KnownActors(dids=[ALICE])
    verified: list[str] = []

    def verify(did: str, _: dict[str, Any]) -> None:
        verified.append(did)

    def decode(frame: bytes) -> list[Any]:
        return decode_frame(frame, source="s", verify=verify, checkpoint=True, keep=actors.keeps)

    theirs = stranger.commit_frame([Op("update", PROFILE_PATH, bsky("Carol"))], seq=5)
    assert decode(theirs) == [Checkpoint(source="s", cursor=5)]
    # Without the predicate the same frame is ours: the filter is what skips it.
    assert [type(i) for i in decode_frame(theirs, source="s")] == [Event]
    ours = known.commit_frame([Op("update", PROFILE_PATH, bsky("Alice"))], seq=6)
    (event,) = decode(ours)
    assert isinstance(event, Event) and event.did == ALICE and event.record == bsky("Alice")
    # A stranger's first record of our namespace brings their profile of the same commit with it.
    both = stranger.commit_frame([Op("create", TRACK_PATH, TRACK_RECORD), Op("update", PROFILE_PATH, bsky("C"))])
    assert sorted(i.collection for i in decode(both)) == [BSKY, "fm.plyr.track"]
    assert verified == [ALICE, CAROL]
    # A `tooBig` commit asks for a resync only when it concerns an actor we know.
    big = {"tooBig": True, "blocks": b""}
    assert decode(stranger.commit_frame([Op("update", PROFILE_PATH, bsky("C"))], seq=7, body=big)) == [
        Checkpoint(source="s", cursor=7)
    ]
    (control,) = decode(known.commit_frame([Op("update", PROFILE_PATH, bsky("A"))], seq=8, body=big))
    assert isinstance(control, Control) and control.kind == "too_big" and control.did == ALICE


async def test_firehose_source_treats_strangers_profiles_as_foreign_and_learns_new_actors() -> None:
    plc, marker = PlcStub(), RecordingMarker()
    alice, carol = FakeRepo(ALICE), FakeRepo(CAROL)
    plc.docs[ALICE], plc.docs[CAROL] = alice.did_doc, carol.did_doc
    async with plc.documents() as docs:
        source = FirehoseSource("firehose:ws://127.0.0.1:1", docs=docs, marker=marker, known=KnownActors(dids=[ALICE]))
        # A stranger's profile: no DID document fetched, no signature checked, no mark; the cursor moves on.
        first = await source.handle(carol.commit_frame([Op("create", PROFILE_PATH, bsky("Carol"))], seq=1, rev=R1))
        assert first == [Checkpoint(source=source.source, cursor=1)]
        # Its rev still counts in the repo's chain (as any other app's commit): the next one follows it, no gap.
        after = carol.commit_frame([Op("update", PROFILE_PATH, bsky("Carol 2"))], seq=2, rev=R2, body={"since": R1})
        assert await source.handle(after) == [Checkpoint(source=source.source, cursor=2)]
        assert plc.requests == [] and marker.marks == []
        # A known actor's profile is checked and kept.
        kept = await source.handle(alice.commit_frame([Op("create", PROFILE_PATH, bsky("Alice"))], seq=3, rev=R1))
        assert [(type(i), i.did) for i in kept] == [(Event, ALICE)] and plc.requests == [ALICE]
        # Carol's first track makes her known at once: her next profile change is ours.
        track = await source.handle(
            carol.commit_frame([Op("create", TRACK_PATH, TRACK_RECORD)], seq=4, rev=R3, body={"since": R2})
        )
        assert [i.collection for i in track] == ["fm.plyr.track"]
        assert source.known is not None and CAROL in source.known
        again = carol.commit_frame([Op("update", PROFILE_PATH, bsky("Carol 3"))], seq=5, rev=R4, body={"since": R3})
        assert [(type(i), i.collection) for i in await source.handle(again)] == [(Event, BSKY)]
        assert plc.requests == [ALICE, CAROL] and marker.marks == []


async def test_known_actors_load_from_the_index_and_survive_a_failed_reload(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track_event(ALICE, 1), commit(BOB, "fm.teal.alpha.feed.play", tid(2), tid(2), {})])
    actors = KnownActors(db_url, refresh_seconds=3600)
    await actors.refresh_if_due()
    assert ALICE in actors and BOB not in actors and actors.loads == 1
    assert actors.keeps(BOB, "fm.teal.alpha.feed.play") and not actors.keeps(BOB, BSKY)
    actors.learn(CAROL)
    await actors.refresh_if_due()  # not due yet
    assert actors.loads == 1 and CAROL in actors
    # A DID learnt from the stream outlives the next reload (its record may not be committed yet), not two.
    await ingest(db_url, validator, [track_event(BOB, 3)])
    await actors.load()
    assert ALICE in actors and BOB in actors and CAROL in actors
    await actors.load()
    assert ALICE in actors and BOB in actors and CAROL not in actors and actors.loads == 3
    down = KnownActors("postgresql://plyr@127.0.0.1:1/none", dids=[ALICE], refresh_seconds=0)
    await down.refresh_if_due()
    assert ALICE in down and down.loads == 0


class _Docs:
    async def pds(self, did: str) -> str:
        return "https://pds.test"


class _Backfiller:
    def __init__(self) -> None:
        self.metrics = SyncMetrics()
        self.fetched: list[list[str]] = []

    async def run_pending(self, dids: list[str] | None = None) -> Any:
        self.fetched.append(list(dids or []))
        return type("Stats", (), {"repos": len(dids or []), "failed": 0})()


async def test_reconcile_ignores_bluesky_profiles(db_url: str, validator: Validator) -> None:
    await ingest(db_url, validator, [track_event(ALICE, 1)])
    cid = await one(db_url, "SELECT e.cid FROM records r JOIN events e ON e.id = r.event_id WHERE r.did = %s", ALICE)
    asked: list[str] = []
    pds_state = {"cid": cid, "rev": "3zzzzzzzzzzza"}

    def pds(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("getLatestCommit"):
            return httpx.Response(200, json={"rev": pds_state["rev"], "cid": "x"})
        collection = request.url.params["collection"]
        asked.append(collection)
        records: list[dict[str, Any]] = []
        if collection == "fm.plyr.track":
            records = [{"uri": f"at://{ALICE}/{collection}/{tid(1)}", "cid": pds_state["cid"], "value": {}}]
        elif collection == BSKY:  # the log has never held it
            records = [{"uri": f"at://{ALICE}/{BSKY}/self", "cid": make_cid({"b": 1}), "value": bsky("A")}]
        return httpx.Response(200, json={"records": records})

    backfiller = _Backfiller()
    async with httpx.AsyncClient(transport=httpx.MockTransport(pds)) as client:
        reconciler = Reconciler(db_url, backfiller, _Docs(), client=client)  # type: ignore[arg-type]
        quiet = await reconciler.run_once([ALICE])
        assert (quiet.confirmed, quiet.behind) == (1, 0) and backfiller.fetched == []
        assert BSKY not in asked and "fm.plyr.track" in asked
        # The comparison still sees a record of ours the log lacks.
        pds_state.update(cid=make_cid({"other": 1}), rev="3zzzzzzzzzzzb")
        behind = await reconciler.run_once([ALICE])
        assert behind.behind == 1 and backfiller.fetched == [[ALICE]]


async def test_only_known_actors_profiles_enter_the_log(db_url: str, validator: Validator) -> None:
    stats = await ingest(
        db_url,
        validator,
        # CAROL is not known here: her profile (valid or not) is neither logged nor kept as a rejection.
        [commit(CAROL, BSKY, "self", tid(1), bsky("Carol", "c"))],
        [commit(CAROL, BSKY, "self", tid(2), bsky("x" * 700))],
        # ALICE's profile comes in the same batch as her first track: she is known.
        [commit(ALICE, BSKY, "self", tid(3), bsky("Alice B", "a1")), track_event(ALICE, 1)],
        # BOB's arrives after his track, in another batch.
        [identity(BOB, "bob.test", seq=1, micros=BASE_US)],
        [track_event(BOB, 1)],
        [commit(BOB, BSKY, "self", tid(4), bsky("Bob B"))],
    )
    assert stats.ignored == 2 and stats.rejected == 0 and stats.duplicates == 0
    assert await rows(db_url, "SELECT did FROM events WHERE collection = %s ORDER BY did", BSKY) == sorted(
        [(ALICE,), (BOB,)]
    )
    assert await one(db_url, "SELECT count(*) FROM rejections WHERE did = %s", CAROL) == 0
    assert await one(db_url, "SELECT count(*) FROM bsky_profiles") == 2

    profile, author = await _views(db_url, ALICE)
    assert profile["displayName"] == "Alice B" and profile["avatar"] == avatar_url(ALICE, "a1")
    assert author["displayName"] == "Alice B" and author["avatar"] == avatar_url(ALICE, "a1")
    profile, author = await _views(db_url, BOB)
    assert profile["displayName"] == author["displayName"] == "Bob B"
    assert "avatar" not in profile and "avatar" not in author

    # The fm.plyr profile's avatar wins over Bluesky's; the Bluesky display name stays (ours has none).
    plyr = {"$type": PROFILE, "avatar": "https://img.example/alice.png", "createdAt": "2026-01-01T00:00:00Z"}
    await ingest(db_url, validator, [commit(ALICE, PROFILE, "self", tid(5), plyr)])
    profile, author = await _views(db_url, ALICE)
    assert profile["avatar"] == author["avatar"] == "https://img.example/alice.png"
    assert profile["displayName"] == author["displayName"] == "Alice B"

    # An update and a delete of the Bluesky profile take effect.
    await ingest(
        db_url,
        validator,
        [commit(ALICE, BSKY, "self", tid(6), bsky("Alice C", "a2"), operation="update")],
        [commit(BOB, BSKY, "self", tid(7), None)],
    )
    profile, author = await _views(db_url, ALICE)
    assert profile["displayName"] == author["displayName"] == "Alice C"
    profile, author = await _views(db_url, BOB)
    assert "displayName" not in profile and "displayName" not in author
    assert await rows(db_url, "SELECT did, display_name, avatar_cid FROM bsky_profiles") == [
        (ALICE, "Alice C", make_cid({"img": "a2"}))
    ]

    # The log holds only known actors' profiles: a rebuild gives the same state.
    before = await _hash(db_url)
    await rebuild(db_url)
    assert await _hash(db_url) == before
    assert await one(db_url, "SELECT display_name FROM bsky_profiles WHERE did = %s", ALICE) == "Alice C"


async def test_featured_artists_and_search_show_the_bluesky_identity(db_url: str, validator: Validator) -> None:
    featuring = {**track_rec(2), "features": [{"did": ALICE, "handle": "stale.example"}]}
    await ingest(
        db_url,
        validator,
        [identity(ALICE, "alice.test", seq=1, micros=BASE_US), identity(BOB, "bob.test", seq=2, micros=BASE_US)],
        [track_event(ALICE, 1), commit(ALICE, BSKY, "self", tid(3), bsky("Alice B", "a1"))],
        [commit(BOB, "fm.plyr.track", tid(2), tid(2), featuring)],
    )
    async with AsyncTestClient(app=app(db_url)) as client:
        track = await client.get("/xrpc/fm.plyr.getTrack", params={"uri": track_uri(BOB, 2)})
        found = await client.get("/xrpc/fm.plyr.searchActors", params={"q": "alice.test"})
    assert track.status_code == 200 and found.status_code == 200, (track.text, found.text)
    (feature,) = track.json()["track"]["features"]
    assert feature == {
        "did": ALICE,
        "handle": "alice.test",
        "displayName": "Alice B",
        "avatar": avatar_url(ALICE, "a1"),
    }
    # The exact handle match first (with pg_trgm, bob.test follows it as a fuzzy match).
    actor = found.json()["actors"][0]
    assert actor["did"] == ALICE and actor["displayName"] == "Alice B" and actor["avatar"] == avatar_url(ALICE, "a1")
