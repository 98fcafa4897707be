"""The live firehose source: a loopback subscribeRepos server, signature checks against a DID document
service, bad input of every kind counted and survived, cursors, reconnects and repo marks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import libipld
import pytest
from websockets.asyncio.server import ServerConnection, serve

from indexer.atproto.identity.did_docs import DidDocuments, did_web_url, handle_of, pds_endpoint
from indexer.atproto.lexicon import Validator
from indexer.events import Checkpoint, Event, Malformed
from indexer.firehose.source import FirehoseError, FirehoseSource, parse_firehose_url
from indexer.fold.writer import BatchWriter
from indexer.sync.marks import RepoMarker
from tests.helpers import rows
from tests.test_firehose_support import FakeRepo, Key, Op, make_frame

DID_A = "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa"
DID_B = "did:plc:bbbbbbbbbbbbbbbbbbbbbbbb"
TRACK = {"$type": "fm.plyr.track", "artist": "A", "fileType": "mp3", "createdAt": "2026-07-04T14:38:06.240Z"}
R1, R2, R3, R4 = "3mptbypluud2a", "3mptbypluud3a", "3mptbypluud4a", "3mptbypluud5a"


def track(title: str) -> dict[str, Any]:
    return {**TRACK, "title": title}


class PlcStub:
    """DID documents served through an httpx mock transport (no sockets at all)."""

    def __init__(self) -> None:
        self.docs: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []

    def client(self) -> httpx.AsyncClient:
        def handler(request: httpx.Request) -> httpx.Response:
            did = request.url.path.lstrip("/")
            self.requests.append(did)
            doc = self.docs.get(did)
            return httpx.Response(200, json=doc) if doc is not None else httpx.Response(404)

        return httpx.AsyncClient(transport=httpx.MockTransport(handler))

    def documents(self) -> DidDocuments:
        return DidDocuments("https://plc.test", client=self.client())


class RecordingMarker:
    def __init__(self) -> None:
        self.marks: list[tuple[str, str]] = []

    async def mark(self, did: str, reason: str) -> None:
        self.marks.append((did, reason))

    async def mark_known(self, reason: str) -> int:
        self.marks.append(("*", reason))
        return 1


class FirehoseServer:
    """Serves a fixed list of frames after the requested cursor. The first connection is closed after
    `close_after` frames (a dropped socket); later ones stay open once everything is sent."""

    def __init__(self, frames: list[bytes], close_after: int | None = None) -> None:
        self.frames = frames
        self.close_after = close_after
        self.cursors: list[int | None] = []
        self.port = 0

    @staticmethod
    def seq(frame: bytes) -> int | None:
        with contextlib.suppress(Exception):
            _, body = libipld.decode_dag_cbor_multi(frame)
            seq = body.get("seq")
            return seq if isinstance(seq, int) else None
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        query = parse_qs(urlsplit(ws.request.path).query)
        cursor = int(query["cursor"][0]) if "cursor" in query else None
        first = not self.cursors
        self.cursors.append(cursor)
        sent = 0
        for frame in self.frames:
            seq = self.seq(frame)
            if cursor is not None and (seq is None or seq <= cursor):
                continue
            await ws.send(frame)
            sent += 1
            if first and sent == self.close_after:
                return
        with contextlib.suppress(Exception):
            await ws.wait_closed()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[FirehoseServer]:
        async with serve(self._handler, "127.0.0.1", 0, max_size=None) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            yield self
            server.close()


async def wait_until(check: Callable[[], Any], within: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


def test_firehose_urls() -> None:
    assert parse_firehose_url("firehose:wss://relay.example") == (
        "wss://relay.example/xrpc/com.atproto.sync.subscribeRepos",
        "relay.example",
    )
    assert parse_firehose_url("firehose:http://127.0.0.1:2583")[0] == (
        "ws://127.0.0.1:2583/xrpc/com.atproto.sync.subscribeRepos"
    )
    assert FirehoseSource("firehose:relay.example:444").source == "firehose:relay.example:444"
    with pytest.raises(FirehoseError):
        parse_firehose_url("firehose:wss://relay.example/elsewhere")
    with pytest.raises(FirehoseError):
        parse_firehose_url("firehose:ftp://relay.example")


def test_did_document_helpers() -> None:
    assert did_web_url("did:web:example.com") == "https://example.com/.well-known/did.json"
    assert did_web_url("did:web:localhost%3A8080:u:alice") == "http://localhost:8080/u/alice/did.json"
    doc = {
        "id": DID_A,
        "alsoKnownAs": ["at://alice.test"],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer", "serviceEndpoint": "https://p/"}],
    }
    assert pds_endpoint(doc) == "https://p"
    assert handle_of(doc) == "alice.test"
    assert pds_endpoint({"id": DID_A, "service": [{"id": "#other", "serviceEndpoint": "https://x"}]}) is None


async def test_live_stream_counts_bad_input_and_goes_on(db_url: str, validator: Validator) -> None:
    plc = PlcStub()
    repo = FakeRepo(DID_A)
    plc.docs[DID_A] = repo.did_doc
    impostor = FakeRepo(DID_A)  # same DID, a key the DID document does not name
    path1, path2, path3 = "fm.plyr.track/3mptbyplj5d2a", "fm.plyr.track/3mptbyplj5d3a", "fm.plyr.track/3mptbyplj5d4a"
    good = repo.commit_frame([Op("create", path1, track("one"))], seq=1, rev=R1)
    big = make_frame({"op": 1, "t": "#commit"}, {"seq": 6, "pad": b"x" * 100_000})
    frames = [
        good,
        good[:-25],  # truncated
        b"\xff\x00 not cbor at all",
        repo.commit_frame([Op("create", path2, track("two"))], seq=4, rev=R2, swap={path2: track("forged")}),
        repo.commit_frame([Op("create", path2, track("two"))], seq=5, rev=R2, omit=[path2]),
        big,
        impostor.commit_frame([Op("create", path2, track("impostor"))], seq=7, rev=R2),
        make_frame({"op": 1, "t": "#brandNew"}, {"seq": 8, "did": DID_A}),
        make_frame(
            {"op": 1, "t": "#sync"},
            {"seq": 9, "did": DID_B, "rev": R1, "blocks": b"\x00", "time": "2026-07-04T14:38:07.517Z"},
        ),
        # Rev chain: the last rev seen for A is R1, this commit says it follows R2: something was dropped.
        repo.commit_frame(
            [Op("create", path2, track("two"))], seq=10, rev=R3, tree={path1: track("one")}, body={"since": R2}
        ),
        repo.commit_frame(
            [Op("create", path3, track("three"))],
            seq=11,
            rev=R4,
            tree={path1: track("one"), path2: track("two")},
            body={"since": R3},
        ),
    ]
    async with FirehoseServer(frames, close_after=5).running() as server, plc.documents() as docs:
        source = FirehoseSource(
            f"firehose:ws://127.0.0.1:{server.port}",
            docs=docs,
            marker=RepoMarker(db_url),
            max_frame_bytes=64 * 1024,
            min_backoff=0.01,
            max_backoff=0.05,
        )
        async with BatchWriter(db_url, validator=validator, batch_seconds=0.05) as writer:
            task = asyncio.create_task(writer.run(source.events()))
            try:

                async def done() -> bool:
                    got = await rows(db_url, "SELECT cursor FROM cursors WHERE source = %s", source.source)
                    return got == [(11,)]

                await wait_until(done)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        assert source.marker is not None
        await source.marker.aclose()  # type: ignore[attr-defined]

    # Dropped after five frames, the source came back from the last seq it had seen (seq 4; 5 was sent but
    # the frames without a seq in between carried none).
    assert server.cursors[0] is None
    assert server.cursors[1] in (4, 5)
    reasons = dict(await rows(db_url, "SELECT reason, count(*) FROM rejections GROUP BY reason"))
    assert reasons == {
        "truncated_frame": 1,
        "invalid_cbor": 1,
        "cid_mismatch": 1,
        "missing_block": 1,
        "frame_too_large": 1,
        "invalid_signature": 1,
        "unknown_frame_type": 1,
    }
    titles = await rows(db_url, "SELECT title FROM tracks ORDER BY rkey")
    assert titles == [("one",), ("two",), ("three",)]
    marks = dict(await rows(db_url, "SELECT did, reason FROM repo_sync"))
    assert marks == {DID_B: "sync", DID_A: "rev_gap"}
    # One document fetch for A: the failed signature refetched it once (rate-limited after that).
    assert plc.requests.count(DID_A) == 2


async def test_key_rotation_refetches_the_document_once() -> None:
    plc = PlcStub()
    repo = FakeRepo(DID_A)
    plc.docs[DID_A] = repo.did_doc
    async with plc.documents() as docs:
        source = FirehoseSource("firehose:ws://127.0.0.1:1", docs=docs)
        path = "fm.plyr.track/3mptbyplj5d2a"
        first = await source.handle(repo.commit_frame([Op("create", path, track("a"))], seq=1, rev=R1))
        assert [type(i) for i in first] == [Event]
        repo.key = Key("p256")  # rotated: the PLC now names the new key
        plc.docs[DID_A] = repo.did_doc
        second = await source.handle(repo.commit_frame([Op("update", path, track("b"))], seq=2, rev=R2))
        assert [type(i) for i in second] == [Event]
        assert plc.requests == [DID_A, DID_A]
        # Frames from a key the document does not name are refused; the document was refetched moments ago,
        # so forged frames cannot buy more fetches.
        forged = FakeRepo(DID_A).commit_frame([Op("update", path, track("c"))], seq=3, rev=R3)
        third = await source.handle(forged)
        assert len(third) == 1 and isinstance(third[0], Malformed) and third[0].reason == "invalid_signature"
        fourth = await source.handle(FakeRepo(DID_A).commit_frame([Op("delete", path)], seq=4, rev=R4))
        assert isinstance(fourth[0], Malformed) and fourth[0].reason == "invalid_signature"
        assert plc.requests == [DID_A, DID_A]


async def test_unresolvable_identity_is_a_rejection_and_a_mark() -> None:
    plc = PlcStub()  # knows no DID
    marker = RecordingMarker()
    async with plc.documents() as docs:
        source = FirehoseSource("firehose:ws://127.0.0.1:1", docs=docs, marker=marker)
        items = await source.handle(
            FakeRepo(DID_A).commit_frame([Op("create", "fm.plyr.track/3mptbyplj5d2a", track("a"))], seq=3)
        )
    assert len(items) == 1 and isinstance(items[0], Malformed)
    assert items[0].reason == "identity_unavailable" and items[0].cursor == 3
    assert marker.marks == [(DID_A, "identity_unavailable")]


async def test_controls_mark_repos_and_move_the_cursor() -> None:
    marker = RecordingMarker()
    source = FirehoseSource("firehose:ws://127.0.0.1:1", marker=marker)
    info = make_frame({"op": 1, "t": "#info"}, {"name": "OutdatedCursor", "message": "too old"})
    assert await source.handle(info) == []
    assert marker.marks == [("*", "outdated_cursor")]
    repo = FakeRepo(DID_A)
    unrelated = repo.commit_frame([Op("create", "app.bsky.feed.post/3mptbyplj5d2a", {"text": "x"})], seq=20, rev=R1)
    assert await source.handle(unrelated) == [Checkpoint(source=source.source, cursor=20)]
    # Commits of other collections count in the chain too: this one follows R1, no gap.
    chained = repo.commit_frame([Op("create", "app.bsky.feed.post/3mptbyplj5d3a", {"t": 1})], seq=21, rev=R2)
    chained_body = libipld.decode_dag_cbor_multi(chained)[1]
    chained = make_frame({"op": 1, "t": "#commit"}, {**chained_body, "since": R1})
    await source.handle(chained)
    assert marker.marks == [("*", "outdated_cursor")]
    # A re-delivered frame (seq already seen) is dropped whole.
    assert await source.handle(unrelated) == []
    too_big = make_frame(
        {"op": 1, "t": "#commit"},
        {"seq": 22, "repo": DID_B, "rev": R3, "tooBig": True, "ops": [], "time": "2026-07-04T14:38:07.517Z"},
    )
    assert await source.handle(too_big) == [Checkpoint(source=source.source, cursor=22)]
    assert marker.marks[-1] == (DID_B, "too_big")
    assert source.last_seq == 22
