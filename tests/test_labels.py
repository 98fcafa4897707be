"""Labels end to end: a labeler on loopback (tests/labeler/labeler.js, labels signed by @atproto/crypto) followed
into a real Postgres by LabelerSource, then read through the API over HTTP.

Skipped when node or the reference packages (installed with the test PDS: tests/pds/install.sh) are absent."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from bench.synth import BASE_US, commit, identity, make_did, make_tid, track_record, uri
from indexer.atproto.identity.did_docs import DidDocuments
from indexer.atproto.lexicon import Validator
from indexer.atproto.netguard import NetGuard
from indexer.labels.source import LabelerSource, source_name
from indexer.settings import Settings
from tests.api_support import StubResolver, app
from tests.helpers import TRACK, ingest, rows
from tests.pds.server import node_modules

HERE = Path(__file__).resolve().parent
ALICE = make_did(1)
BOB = make_did(2)
PAST = "2020-01-01T00:00:00.000Z"


def _unavailable() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    if not (node_modules() / "@atproto" / "crypto").is_dir():
        return f"@atproto/crypto not installed in {node_modules()} (run tests/pds/install.sh)"
    return None


pytestmark = pytest.mark.skipif(_unavailable() is not None, reason=str(_unavailable()))


@dataclass
class Labeler:
    url: str
    did: str
    client: httpx.AsyncClient

    async def emit(self, *labels: dict[str, Any]) -> int:
        resp = await self.client.post(f"{self.url}/admin/emit", json={"labels": list(labels)})
        resp.raise_for_status()
        seq: int = resp.json()["seq"]
        return seq

    async def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = await self.client.post(f"{self.url}{path}", json=body or {})
        resp.raise_for_status()
        result: dict[str, Any] = resp.json()
        return result

    async def cursors(self) -> list[int | None]:
        resp = await self.client.get(f"{self.url}/admin/stats")
        return list(resp.json()["cursors"])


@contextlib.asynccontextmanager
async def running_labeler() -> AsyncIterator[Labeler]:
    env = {**os.environ, "NODE_PATH": str(node_modules())}
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(HERE / "labeler" / "labeler.js"),
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        info = json.loads(line)
        async with httpx.AsyncClient(timeout=10) as client:
            yield Labeler(info["url"], info["did"], client)
    finally:
        proc.terminate()
        await proc.wait()


@contextlib.asynccontextmanager
async def following(db_url: str, labeler: Labeler, **kw: Any) -> AsyncIterator[LabelerSource]:
    async with DidDocuments(allow_private_hosts=True) as docs:
        source = LabelerSource(
            labeler.did,
            db_url,
            docs,
            guard=NetGuard(allow_private=True),
            min_backoff=0.05,
            max_backoff=0.2,
            **kw,
        )
        task = asyncio.create_task(source.run())
        try:
            yield source
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def committed(db_url: str, did: str) -> int | None:
    found = await rows(db_url, "SELECT cursor FROM cursors WHERE source = %s", source_name(did))
    return int(found[0][0]) if found else None


async def wait_for_cursor(db_url: str, did: str, seq: int, exact: bool = False) -> None:
    """Until the labeler's committed cursor reaches `seq` (is `seq`, if `exact`): the database is polled, since
    the source commits on its own connection."""
    async with asyncio.timeout(20):
        while True:
            found = await committed(db_url, did)
            if found == seq or (not exact and (found or -1) >= seq):
                return
            await asyncio.sleep(0.05)


async def current_labels(db_url: str) -> set[tuple[str, str, bool]]:
    return {(u, v, n) for u, v, n in await rows(db_url, "SELECT uri, val, neg FROM labels")}


async def rejections(db_url: str) -> list[tuple[str, str | None]]:
    return [(r, d) for r, d in await rows(db_url, "SELECT reason, did FROM rejections ORDER BY id")]


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def turi(did: str, n: int) -> str:
    return uri(did, TRACK, tid(n))


async def test_subscription_verifies_stores_and_resumes(db_url: str) -> None:
    async with running_labeler() as lab:
        a, b = turi(ALICE, 1), turi(ALICE, 2)
        # Before we subscribe: history is read from seq 0.
        await lab.emit({"uri": a, "val": "porn"}, {"uri": b, "val": "!hide"}, {"uri": ALICE, "val": "spam"})
        bad = await lab.emit(
            {"uri": a, "val": "forged", "forge": True},
            {"uri": a, "val": "other-src", "src": BOB},
            {"uri": a, "val": "unsigned", "unsigned": True},
            {"uri": "not a uri", "val": "x"},
            {"uri": a, "val": "nudity"},
        )
        async with following(db_url, lab, refresh_interval=0.0) as source:
            await wait_for_cursor(db_url, lab.did, bad)
            assert source.accepted == 4
            assert source.rejected == {
                "label_bad_signature": 1,
                "label_src_mismatch": 1,
                "label_unsigned": 1,
                "label_malformed": 1,
            }
            assert await current_labels(db_url) == {
                (a, "porn", False),
                (b, "!hide", False),
                (ALICE, "spam", False),
                (a, "nudity", False),
            }
            assert [r for r, _ in await rejections(db_url)] == [
                "label_bad_signature",
                "label_src_mismatch",
                "label_unsigned",
                "label_malformed",
            ]
            assert (await rejections(db_url))[1][1] == BOB

            # Live: a negation, an expired label, garbage and an #info frame.
            await lab.post("/admin/info", {"name": "Hello", "message": "hi"})
            await lab.post("/admin/raw", {"hex": "ff00"})
            neg = await lab.emit({"uri": a, "val": "nudity", "neg": True}, {"uri": a, "val": "sexual", "exp": PAST})
            await wait_for_cursor(db_url, lab.did, neg)
            labels = await current_labels(db_url)
            assert (a, "nudity", True) in labels and (a, "nudity", False) not in labels
            assert (a, "sexual", False) in labels  # stored; readers ignore it (expired)
            reasons = [r for r, _ in await rejections(db_url)]
            assert reasons.count("label_frame_malformed") == 1

            # Key rotation: the cached key fails, the DID document is read again, the new key verifies.
            fetches = source.docs.fetches
            await lab.post("/admin/rotate")
            rotated = await lab.emit({"uri": a, "val": "graphic-media"})
            await wait_for_cursor(db_url, lab.did, rotated)
            assert (a, "graphic-media", False) in await current_labels(db_url)
            assert source.docs.fetches == fetches + 1
            assert "label_bad_signature" not in reasons[4:]

            # Re-reading the document is rate-limited: a forged label inside the interval costs no fetch.
            source.refresh_interval = 3600.0
            forged = await lab.emit({"uri": a, "val": "forged-again", "forge": True})
            await wait_for_cursor(db_url, lab.did, forged)
            assert source.docs.fetches == fetches + 1
            assert source.rejected["label_bad_signature"] == 2

        # Stopped; a label arrives meanwhile; a new follower resumes from the committed cursor.
        later = await lab.emit({"uri": b, "val": "late"})
        async with following(db_url, lab) as resumed:
            await wait_for_cursor(db_url, lab.did, later)
            assert resumed.accepted == 1 and resumed.rejected == {}
        assert (await lab.cursors())[-1] == forged
        assert (b, "late", False) in await current_labels(db_url)
        assert len(await rejections(db_url)) == 6


async def test_future_cursor_reads_the_history_again(db_url: str) -> None:
    async with running_labeler() as lab:
        seq = await lab.emit({"uri": turi(ALICE, 1), "val": "porn"})
        await rows(db_url, "INSERT INTO cursors (source, cursor) VALUES (%s, 99) RETURNING 1", source_name(lab.did))
        async with following(db_url, lab):
            await wait_for_cursor(db_url, lab.did, seq, exact=True)
        assert (await lab.cursors())[:2] == [99, 0]
        assert (turi(ALICE, 1), "porn", False) in await current_labels(db_url)


# -- reads ------------------------------------------------------------------------------------------------


def _track(n: int, **extra: Any) -> Any:
    rec = track_record(f"Track {n}", micros=BASE_US + n * 1000, **extra)
    return commit(ALICE, TRACK, tid(n), tid(n), rec)


async def _seed(db_url: str, validator: Validator) -> None:
    self_labeled = {"labels": {"$type": "com.atproto.label.defs#selfLabels", "values": [{"val": "nudity"}]}}
    blob = {
        "audioBlob": {
            "$type": "blob",
            "ref": {"$link": "bafkreibme22gw2h7y2h7tg2fhqotaqjucnbc24deqo72b6mkl2egezxhvy"},
            "mimeType": "audio/mpeg",
            "size": 1234,
        }
    }
    await ingest(
        db_url,
        validator,
        [
            identity(ALICE, "alice.test", seq=1, micros=BASE_US),
            *(_track(n, **blob) for n in (1, 2, 3)),
            _track(4, **self_labeled),
        ],
    )


async def test_labels_on_views_headers_and_rules(db_url: str, validator: Validator) -> None:
    await _seed(db_url, validator)
    async with running_labeler() as lab:
        t1, t2, t3 = turi(ALICE, 1), turi(ALICE, 2), turi(ALICE, 3)
        last = await lab.emit(
            {"uri": t1, "val": "porn", "cid": None},
            {"uri": t2, "val": "!hide"},
            {"uri": t3, "val": "!takedown"},
            {"uri": t1, "val": "sexual", "exp": PAST},
            {"uri": ALICE, "val": "spam"},
        )
        async with following(db_url, lab):
            await wait_for_cursor(db_url, lab.did, last)

    other = "did:web:other.example"
    resolver = StubResolver()
    resolver.pds[ALICE] = "https://pds.example"
    settings = Settings(public_host="api.plyr.test", labelers=(lab.did,))
    async with AsyncTestClient(app=app(db_url, resolver, settings)) as client:
        latest = await client.get("/xrpc/fm.plyr.getLatestTracks")
        direct_hidden = await client.get("/xrpc/fm.plyr.getTrack", params={"uri": t2})
        direct_redacted = await client.get("/xrpc/fm.plyr.getTrack", params={"uri": t3})
        no_redact = await client.get(
            "/xrpc/fm.plyr.getTrack", params={"uri": t3}, headers={"atproto-accept-labelers": lab.did}
        )
        someone_else = await client.get(
            "/xrpc/fm.plyr.getLatestTracks", headers={"atproto-accept-labelers": f"{other};redact, junk"}
        )
        search = await client.get("/xrpc/fm.plyr.searchTracks", params={"q": "track"})
        top = await client.get("/xrpc/fm.plyr.getTopTracks")
        actor = await client.get("/xrpc/fm.plyr.getActorTracks", params={"actor": ALICE})
        audio = {n: await client.get(f"/audio/{ALICE}/{tid(n)}", follow_redirects=False) for n in (1, 2, 3)}

    assert latest.status_code == 200, latest.text
    # Default: the configured labelers, with redact.
    assert latest.headers["atproto-content-labelers"] == f"{lab.did};redact"
    assert "atproto-accept-labelers" in latest.headers["vary"].lower()
    views = {t["uri"]: t for t in latest.json()["tracks"]}
    # !hide and a redacted !takedown leave feeds; the rest is shown with its labels.
    assert set(views) == {t1, turi(ALICE, 4)}
    porn = views[t1]["labels"]
    assert [(x["src"], x["val"], x["ver"]) for x in porn] == [(lab.did, "porn", 1)]
    assert set(porn[0]) == {"ver", "src", "uri", "val", "cts", "sig"} and set(porn[0]["sig"]) == {"$bytes"}
    assert views[t1]["author"]["labels"][0]["val"] == "spam"
    # Self-labels: src is the author, the record's URI and CID, no signature.
    assert views[turi(ALICE, 4)]["labels"] == [
        {
            "src": ALICE,
            "uri": turi(ALICE, 4),
            "cid": views[turi(ALICE, 4)]["cid"],
            "val": "nudity",
            "cts": views[turi(ALICE, 4)]["createdAt"],
        }
    ]
    # A direct read shows a !hide track, with its label; a redacted takedown is not found.
    assert direct_hidden.status_code == 200
    assert [x["val"] for x in direct_hidden.json()["track"]["labels"]] == ["!hide"]
    assert direct_redacted.status_code == 404 and direct_redacted.json()["error"] == "NotFound"
    # Without redact, the takedown label is the client's to act on.
    assert no_redact.status_code == 200, no_redact.text
    assert no_redact.headers["atproto-content-labelers"] == lab.did
    assert [x["val"] for x in no_redact.json()["track"]["labels"]] == ["!takedown"]
    # A labeler we do not follow is accepted, and has no labels here.
    assert someone_else.headers["atproto-content-labelers"] == f"{other};redact"
    shown = {t["uri"]: t for t in someone_else.json()["tracks"]}
    assert set(shown) == {t1, t2, t3, turi(ALICE, 4)}
    assert "labels" not in shown[t1] and "labels" not in shown[t1]["author"]
    for listing in (search, top, actor):
        assert listing.status_code == 200, listing.text
        assert {t["uri"] for t in listing.json()["tracks"]} == {t1, turi(ALICE, 4)}
    # Labels never block audio.
    for n in (1, 2, 3):
        assert audio[n].status_code == 307, audio[n].text
        assert audio[n].headers["location"].startswith("https://pds.example/")


def test_accept_labelers_header_parsing() -> None:
    from appview.labels import MAX_LABELERS, requested

    configured = ("did:plc:aaa",)
    assert requested(None, configured).header() == "did:plc:aaa;redact"
    parsed = requested(" did:plc:bbb ; redact ,did:web:x.example,, nonsense;redact, did:plc:bbb", configured)
    assert parsed.dids == ("did:plc:bbb", "did:web:x.example")
    assert parsed.redact == {"did:plc:bbb"}
    assert parsed.header() == "did:plc:bbb;redact, did:web:x.example"
    many = ", ".join(f"did:plc:l{i}" for i in range(50))
    assert len(requested(many, configured).dids) == MAX_LABELERS
