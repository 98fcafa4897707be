"""The read side's parts on their own: every statement fills its row type column by column (names match the
fields, so positional rows cannot shift), the rules, and the cursor wire formats."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from appview import hydrate, rules
from appview.http import ActorRef, XrpcError, pack, pack_int, pack_ranked, unpack, unpack_int, unpack_ranked
from appview.hydrate import NamedActorRow, Row, TrackRow
from bench.synth import (
    BASE_US,
    comment_record,
    commit,
    identity,
    like_record,
    list_record,
    make_cid,
    make_did,
    make_tid,
    profile_record,
    track_record,
    uri,
)
from indexer.atproto.lexicon import Validator
from tests.api_support import Keypair, StubResolver, app, service_jwt
from tests.helpers import COMMENT, LIKE, LIST, PROFILE, TRACK, ingest
from tests.test_plays import STATUS, status_record

ALICE, BOB = make_did(1), make_did(2)


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def _iso(seconds_from_now: int) -> str:
    at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds_from_now)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _all_row_types() -> set[type[Row]]:
    found: set[type[Row]] = set()
    todo: list[type[Row]] = [Row]
    while todo:
        for sub in todo.pop().__subclasses__():
            found.add(sub)
            todo.append(sub)
    return found


async def test_every_statement_selects_its_row_types_fields_in_order(
    db_url: str, validator: Validator, monkeypatch: pytest.MonkeyPatch
) -> None:
    filled: set[type[Row]] = set()

    def checked_args_row(row: type[Row]) -> Callable[[Any], Callable[[Any], Row]]:
        def factory(cursor: Any) -> Callable[[Any], Row]:
            names = tuple(c.name for c in cursor.description or ())
            assert names == row.__struct_fields__, row
            filled.add(row)
            return lambda values: row(*values)

        return factory

    monkeypatch.setattr(hydrate, "args_row", checked_args_row)
    rec = track_record("Midnight City", micros=BASE_US + 1000, album="Night")
    track_uri = uri(ALICE, TRACK, tid(1))
    list_uri = uri(ALICE, LIST, tid(4))
    await ingest(
        db_url,
        validator,
        [
            identity(ALICE, "alice.test", seq=1, micros=BASE_US),
            commit(ALICE, TRACK, tid(1), tid(1), rec),
            commit(ALICE, PROFILE, "self", tid(2), profile_record("bio")),
            commit(BOB, LIKE, tid(3), tid(3), like_record(track_uri, make_cid(rec))),
            commit(ALICE, LIST, tid(4), tid(4), list_record([(track_uri, make_cid(rec))])),
            commit(BOB, COMMENT, tid(5), tid(5), comment_record(track_uri, make_cid(rec), "nice", ms=1000)),
            # Playing Alice's track now (teal.fm status), for an hour.
            commit(ALICE, STATUS, "self", tid(6), status_record(track_uri, time=_iso(0), expiry=_iso(3600))),
        ],
    )
    key = Keypair()
    resolver = StubResolver()
    resolver.keys[BOB] = key.did_key
    calls = [
        ("getTrack", {"uri": track_uri}),
        ("getTracks", {"uris": [track_uri]}),
        ("getLatestTracks", {}),
        ("getActorTracks", {"actor": ALICE}),
        ("getActorTracks", {"actor": "alice.test"}),
        ("getActorProfile", {"actor": ALICE}),
        ("getLikes", {"uri": track_uri}),
        ("getActorLikes", {"actor": BOB}),
        ("getList", {"uri": list_uri}),
        ("getActorLists", {"actor": ALICE}),
        ("getComments", {"uri": track_uri}),
        ("searchTracks", {"q": "midnight"}),
        ("searchTracks", {"q": "city"}),
        ("searchActors", {"q": "alice"}),
        ("searchLists", {"q": "list"}),
        ("getActorAlbums", {"actor": ALICE}),
        ("getAlbum", {"actor": ALICE, "name": "Night"}),
        ("getTopTracks", {}),
        ("getStats", {}),
        ("getActivity", {}),
        ("getActorStatus", {"actor": ALICE}),
    ]
    async with AsyncTestClient(app=app(db_url, resolver)) as client:
        for name, params in calls:
            nsid = f"fm.plyr.{name}"
            for viewer in (False, True):
                headers = {"Authorization": f"Bearer {service_jwt(key, iss=BOB, lxm=nsid)}"} if viewer else {}
                resp = await client.get(f"/xrpc/{nsid}", params=params, headers=headers)
                assert resp.status_code == 200, (name, resp.text)
    assert filled == _all_row_types()


def _track(**fields: Any) -> TrackRow:
    base: dict[str, Any] = {name: None for name in TrackRow.__struct_fields__}
    base.update(uri="at://u", did=ALICE, author_active=True, audio_url=None, audio_blob_cid=None)
    base.update(fields)
    return TrackRow(**base)


def test_audio_source() -> None:
    trusted = ("https://cdn.example",)
    assert rules.audio_source(_track(audio_url="https://cdn.example/a.mp3"), trusted) == "url"
    assert rules.audio_source(_track(audio_url="https://elsewhere.example/a.mp3"), trusted) == "url"
    assert rules.audio_source(_track(audio_url="https://CDN.example:443/a.mp3", audio_blob_cid="b"), trusted) == "url"
    assert rules.audio_source(_track(audio_url="https://elsewhere.example/a.mp3", audio_blob_cid="b"), trusted) == (
        "blob"
    )
    assert rules.audio_source(_track(audio_blob_cid="b"), trusted) == "blob"


def test_tracks_in_order_drops_missing_and_hidden() -> None:
    found = {"a": _track(uri="a"), "b": _track(uri="b", author_active=False), "c": _track(uri="c")}
    assert [t.uri for t in rules.in_order(["c", "x", "b", "a"], found)] == ["c", "a"]


def test_checked_actor_says_why() -> None:
    ref = ActorRef("handle", "bob.test", "Bob.Test")
    with pytest.raises(XrpcError) as missing:
        rules.checked_actor(None, ref)
    assert (missing.value.status, missing.value.message) == (404, "actor not found: Bob.Test")
    for status, error in (("takendown", "AccountTakedown"), ("deactivated", "AccountDeactivated")):
        with pytest.raises(XrpcError) as hidden:
            rules.checked_actor(NamedActorRow(BOB, "bob.test", False, None, None, status), ref)
        assert (hidden.value.status, hidden.value.error) == (400, error)
    active = NamedActorRow(BOB, "bob.test", True, None, None, "active")
    assert rules.checked_actor(active, ref) is active


def test_cursor_formats_round_trip() -> None:
    at = dt.datetime(2025, 6, 15, 15, 6, 40, 123456, tzinfo=dt.UTC)
    cid = "bafyreiabcdefgh"
    assert pack(at, cid) == f"1750000000123456__{cid}"
    position = unpack(pack(at, cid))
    assert position is not None and (position.sort_at, position.cid) == (at, cid)
    assert unpack_ranked(pack_ranked(3, at, cid)) == (3, position)
    assert unpack_int(pack_int(-5, cid)) == (-5, cid)
    assert unpack(None) is None and unpack("") is None


@pytest.mark.parametrize(
    "cursor",
    ["garbage", "123__", "x__bafyreiabcdefgh", "99999999999999999999__bafyreiabcdefgh", "1__bafy!"],
)
def test_malformed_cursors_are_invalid_requests(cursor: str) -> None:
    for parse in (unpack, unpack_int):
        with pytest.raises(XrpcError) as bad:
            parse(cursor)
        assert (bad.value.error, bad.value.status) == ("InvalidRequest", 400)
    with pytest.raises(XrpcError):
        unpack_ranked(f"1__{cursor}")
