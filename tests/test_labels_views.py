"""Labels beyond track views, over HTTP with the real app and fold: on lists and their items, on comments, on
profiles; redacting and hiding rules there. Labels are put in the `labels` table as the labeler subscription
stores them (indexer/labels/store.py; its verification is tested in tests/test_labels.py)."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from bench.synth import comment_record, commit, identity, list_record, make_cid, make_did, uri
from indexer.atproto.lexicon import Validator
from indexer.settings import Settings
from tests.api_support import app
from tests.helpers import COMMENT, LIST, ingest, rows_exec, tid, track_event, track_rec, track_uri

ALICE, BOB, CAROL = (make_did(n) for n in range(1, 4))
LABELER = "did:plc:labeler00000000000000000"
SETTINGS = Settings(public_host="api.plyr.test", labelers=(LABELER,)).without_rate_limits()
PLAYLIST = uri(CAROL, LIST, tid(30))
COMMENT_URI = uri(BOB, COMMENT, tid(20))


async def label(db_url: str, subject: str, val: str) -> None:
    await rows_exec(
        db_url,
        "INSERT INTO labels (src, uri, val, cts, cts_at, sig, seq) VALUES"
        f" ('{LABELER}', '{subject}', '{val}', '2026-11-30T00:00:00.000Z', now(), '\\x00', 1)",
    )


async def seed(db_url: str, validator: Validator) -> None:
    items = [(track_uri(ALICE, n), make_cid(track_rec(n))) for n in (1, 2)]
    await ingest(
        db_url,
        validator,
        [
            identity(BOB, "bob.test", seq=1, micros=0),
            track_event(ALICE, 1),
            track_event(ALICE, 2),
            commit(CAROL, LIST, tid(30), tid(30), list_record(items)),
            commit(BOB, COMMENT, tid(20), tid(20), comment_record(items[0][0], items[0][1], "hi")),
        ],
    )


def vals(view: dict[str, Any]) -> list[str]:
    return [lab["val"] for lab in view.get("labels", ())]


async def test_lists_comments_and_profiles_carry_labels_and_follow_the_rules(db_url: str, validator: Validator) -> None:
    await seed(db_url, validator)
    await label(db_url, PLAYLIST, "porn")
    await label(db_url, COMMENT_URI, "graphic-media")
    await label(db_url, BOB, "spam")
    await label(db_url, track_uri(ALICE, 2), "!hide")
    async with AsyncTestClient(app=app(db_url, settings=SETTINGS)) as c:
        got = await c.get("/xrpc/fm.plyr.getList", params={"uri": PLAYLIST})
        assert got.headers["atproto-content-labelers"] == f"{LABELER};redact"
        the_list = got.json()["list"]
        assert vals(the_list) == ["porn"]
        # A list is a listing: the hidden track is not an item's track.
        assert [i.get("track", {}).get("uri") for i in the_list["items"]] == [track_uri(ALICE, 1), None]

        lists = (await c.get("/xrpc/fm.plyr.getActorLists", params={"actor": CAROL})).json()["lists"]
        assert [vals(x) for x in lists] == [["porn"]]

        (comment,) = (await c.get("/xrpc/fm.plyr.getComments", params={"uri": track_uri(ALICE, 1)})).json()["comments"]
        assert vals(comment) == ["graphic-media"] and vals(comment["author"]) == ["spam"]

        profile = (await c.get("/xrpc/fm.plyr.getActorProfile", params={"actor": "bob.test"})).json()
        assert vals(profile) == ["spam"]

        # Without redact, a takedown label is shown, not applied; with it, the subject is gone.
        await label(db_url, BOB, "!takedown")
        await label(db_url, PLAYLIST, "!takedown")
        shown = {"atproto-accept-labelers": LABELER}
        profile = (await c.get("/xrpc/fm.plyr.getActorProfile", params={"actor": BOB}, headers=shown)).json()
        assert sorted(vals(profile)) == ["!takedown", "spam"]
        gone = await c.get("/xrpc/fm.plyr.getActorProfile", params={"actor": BOB})
        assert gone.status_code == 400 and gone.json()["error"] == "AccountTakedown"
        assert (await c.get("/xrpc/fm.plyr.getList", params={"uri": PLAYLIST})).status_code == 404
        assert (await c.get("/xrpc/fm.plyr.getActorLists", params={"actor": CAROL})).json()["lists"] == []
        comments = await c.get("/xrpc/fm.plyr.getComments", params={"uri": track_uri(ALICE, 1)})
        assert comments.json()["comments"] == []  # its author is taken down by the labeler
        # Another labeler chosen: none of these labels apply.
        other = {"atproto-accept-labelers": "did:plc:someoneelse000000000000"}
        assert (
            "labels" not in (await c.get("/xrpc/fm.plyr.getActorProfile", params={"actor": BOB}, headers=other)).json()
        )
