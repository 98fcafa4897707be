"""fm.plyr.getActivity over HTTP, on data folded by the real writer: new tracks, likes, comments and lists merged
newest first, keyset pages that neither repeat nor skip, and the hiding rules (inactive accounts, hidden
subject tracks, labels)."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from bench.synth import (
    BASE_US,
    account,
    comment_record,
    commit,
    identity,
    like_record,
    list_record,
    make_cid,
    make_did,
    make_tid,
    track_record,
    uri,
)
from indexer.atproto.lexicon import Validator
from indexer.settings import Settings
from tests.api_support import app
from tests.helpers import COMMENT, LIKE, LIST, TRACK, ingest, rows_exec

ALICE, BOB, CAROL = make_did(1), make_did(2), make_did(3)
LABELER = "did:plc:labelerlabelerlabeler00"
PATH = "/xrpc/fm.plyr.getActivity"


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def at(n: int) -> int:
    """Creation time of event n: higher n is newer."""
    return BASE_US + n * 1000


class Net:
    """Records created at increasing times, remembering their URIs."""

    def __init__(self) -> None:
        self.n = 0
        self.cids: dict[str, str] = {}

    def _commit(self, did: str, collection: str, record: dict[str, Any]) -> tuple[Any, str]:
        self.n += 1
        key = tid(self.n)
        u = uri(did, collection, key)
        self.cids[u] = make_cid(record)
        return commit(did, collection, key, key, record), u

    def track(self, did: str, title: str) -> tuple[Any, str]:
        return self._commit(did, TRACK, track_record(title, micros=at(self.n + 1)))

    def like(self, did: str, track: str) -> tuple[Any, str]:
        return self._commit(did, LIKE, like_record(track, self.cids[track], micros=at(self.n + 1)))

    def comment(self, did: str, track: str, text: str) -> tuple[Any, str]:
        return self._commit(did, COMMENT, comment_record(track, self.cids[track], text, ms=10, micros=at(self.n + 1)))

    def list(self, did: str, tracks: list[str], list_type: str = "playlist") -> tuple[Any, str]:
        record = list_record([(t, self.cids[t]) for t in tracks], name="mix", micros=at(self.n + 1))
        record["listType"] = list_type
        return self._commit(did, LIST, record)


async def _scenario(db_url: str, validator: Validator) -> tuple[Net, dict[str, str]]:
    net = Net()
    events = [
        identity(ALICE, "alice.test", seq=1, micros=BASE_US),
        identity(BOB, "bob.test", seq=2, micros=BASE_US),
        identity(CAROL, "carol.test", seq=3, micros=BASE_US),
    ]
    named: dict[str, str] = {}
    for name, (event, u) in (
        ("t1", net.track(ALICE, "First")),
        ("t2", net.track(BOB, "Second")),
    ):
        events.append(event)
        named[name] = u
    for name, (event, u) in (
        ("like", net.like(BOB, named["t1"])),
        ("comment", net.comment(CAROL, named["t1"], "lovely bridge")),
        ("list", net.list(ALICE, [named["t1"], named["t2"]])),
        ("like2", net.like(ALICE, named["t2"])),
    ):
        events.append(event)
        named[name] = u
    await ingest(db_url, validator, events)
    return net, named


async def _all(client: AsyncTestClient[Any], limit: int, **headers: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(100):
        resp = await client.get(
            PATH, params={"limit": limit, **({"cursor": cursor} if cursor else {})}, headers=headers
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items += body["items"]
        cursor = body.get("cursor")
        if cursor is None:
            return items
    raise AssertionError("pagination did not end")


async def test_activity_merges_kinds_newest_first(db_url: str, validator: Validator) -> None:
    _, named = await _scenario(db_url, validator)
    async with AsyncTestClient(app=app(db_url)) as client:
        resp = await client.get(PATH)
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert [(i["kind"], i["uri"]) for i in items] == [
        ("like", named["like2"]),
        ("list", named["list"]),
        ("comment", named["comment"]),
        ("like", named["like"]),
        ("track", named["t2"]),
        ("track", named["t1"]),
    ]
    assert "cursor" not in resp.json()
    times = [i["createdAt"] for i in items]
    assert times == sorted(times, reverse=True)
    by_uri = {i["uri"]: i for i in items}
    like = by_uri[named["like"]]
    assert like["actor"] == {"did": BOB, "handle": "bob.test"}
    assert like["track"]["uri"] == named["t1"]
    assert like["track"]["author"]["handle"] == "alice.test"
    assert like["createdAt"] == "2025-06-15T15:06:40.003Z"
    assert "list" not in like and "comment" not in like
    comment = by_uri[named["comment"]]
    assert comment["actor"]["handle"] == "carol.test"
    assert comment["comment"]["text"] == "lovely bridge"
    assert comment["comment"]["author"] == comment["actor"]
    assert comment["track"]["uri"] == named["t1"]
    listed = by_uri[named["list"]]
    assert listed["actor"]["handle"] == "alice.test"
    assert listed["list"]["uri"] == named["list"]
    assert listed["list"]["itemCount"] == 2
    assert "items" not in listed["list"] and "track" not in listed
    track = by_uri[named["t2"]]
    assert track["actor"] == {"did": BOB, "handle": "bob.test"}
    assert track["track"]["title"] == "Second"
    assert track["cid"] == track["track"]["cid"]


async def test_activity_pages_neither_repeat_nor_skip(db_url: str, validator: Validator) -> None:
    net, _ = await _scenario(db_url, validator)
    async with AsyncTestClient(app=app(db_url)) as client:
        whole = [i["uri"] for i in (await client.get(PATH, params={"limit": 100})).json()["items"]]
        for limit in (1, 2, 4):
            paged = [i["uri"] for i in await _all(client, limit)]
            assert paged == whole, limit
        # Rows arriving while a client pages: newer ones and backdated ones do not disturb the walk.
        first = (await client.get(PATH, params={"limit": 3})).json()
        newer, _ = net.track(CAROL, "Late")
        await ingest(db_url, validator, [newer])
        rest = await client.get(PATH, params={"limit": 100, "cursor": first["cursor"]})
        bad = await client.get(PATH, params={"cursor": "not-a-cursor"})
    assert len(whole) == 6
    assert [i["uri"] for i in first["items"] + rest.json()["items"]] == whole
    assert bad.status_code == 400 and bad.json()["error"] == "InvalidRequest"


async def test_activity_hides_inactive_accounts_and_their_subjects(db_url: str, validator: Validator) -> None:
    _, named = await _scenario(db_url, validator)
    # ALICE leaves: her track, her list, her like, and the like and comment of her track all go.
    await ingest(db_url, validator, [account(ALICE, False, "deactivated", seq=10, micros=at(50))])
    async with AsyncTestClient(app=app(db_url)) as client:
        gone = [i["uri"] for i in await _all(client, 2)]
    assert gone == [named["t2"]]

    await ingest(db_url, validator, [account(ALICE, True, seq=11, micros=at(51))])
    # A deleted track takes its likes and comments with it.
    await ingest(db_url, validator, [commit(ALICE, TRACK, tid(1), make_tid(at(60)), None)])
    async with AsyncTestClient(app=app(db_url)) as client:
        back = [i["uri"] for i in await _all(client, 100)]
    assert back == [named["like2"], named["list"], named["t2"]]


async def _label(db_url: str, subject: str, val: str) -> None:
    await rows_exec(
        db_url,
        "INSERT INTO labels (src, uri, val, cts, cts_at, sig, seq)"
        f" VALUES ('{LABELER}', '{subject}', '{val}', '2025-06-15T00:00:00.000Z', now(), '\\x00', 1)",
    )


async def test_activity_applies_hiding_labels(db_url: str, validator: Validator) -> None:
    _, named = await _scenario(db_url, validator)
    await _label(db_url, named["t1"], "!hide")
    await _label(db_url, ALICE, "spam")
    settings = Settings(public_host="api.plyr.test", labelers=(LABELER,))
    async with AsyncTestClient(app=app(db_url, settings=settings)) as client:
        hidden = await client.get(PATH)
        unlabeled = await client.get(PATH, headers={"atproto-accept-labelers": "did:plc:someoneelse"})
    # !hide on t1: the track and the like and comment of it leave the feed; the list of it stays.
    assert [i["uri"] for i in hidden.json()["items"]] == [named["like2"], named["list"], named["t2"]]
    assert hidden.headers["atproto-content-labelers"] == f"{LABELER};redact"
    # An account label is shown on the actor, and hides nothing.
    assert [lab["val"] for lab in hidden.json()["items"][0]["actor"]["labels"]] == ["spam"]
    # Without that labeler nothing is hidden, and ALICE's account label is not shown either.
    items = unlabeled.json()["items"]
    assert len(items) == 6
    assert all("labels" not in i["actor"] for i in items)

    await _label(db_url, BOB, "!hide")
    async with AsyncTestClient(app=app(db_url, settings=settings)) as client:
        items = (await client.get(PATH)).json()["items"]
    # BOB hidden: his track, his like; ALICE's like of BOB's track goes with the track.
    assert [i["uri"] for i in items] == [named["list"]]
