"""End to end against a real PDS (`@atproto/pds` with a local PLC directory, all on loopback).

Two accounts write fm.plyr tracks, likes, lists and comments (creates, updates, deletes). Three independent
paths must then agree on the state hash:
(a) `index --source firehose:ws://...` following the PDS firehose live, signatures checked against the PLC;
(b) `backfill --pds ...` from scratch (getRepo CARs);
(c) the PDS's firehose frames captured, `convert`ed to Jetstream v1 JSON lines, and `replay`ed.

Handles: identities are not verified over the network here (`PLYR_APPVIEW_RESOLVE_IDENTITIES=0`). Paths (a)
and (c) see the PDS's `#identity` events; (b) takes the handle the DID document claims (alsoKnownAs) from the
local PLC, which is the handle the PDS registered. All three must end with the same handles, so the state
hashes are compared as they are, identities included.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any

import libipld
import pytest
import zstandard

from indexer.atproto.identity.did_docs import DidDocuments
from indexer.events import Event, Malformed
from indexer.firehose.source import FirehoseSource
from tests.pds.harness import ENV, NOW, cli, scalar
from tests.pds.server import Pds, frame_seq, running_pds, unavailable
from tests.test_firehose_support import cid_of, make_car, make_frame

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"local PDS unavailable: {unavailable()}")


async def write_history(pds: Pds) -> dict[str, Any]:
    alice = await pds.create_account("alice")
    bob = await pds.create_account("bob")
    track = {"artist": "Alice", "fileType": "mp3", "audioUrl": "https://cdn.example/a.mp3", "createdAt": NOW}
    t1 = await pds.create(alice, "fm.plyr.track", {**track, "title": "First take"})
    t2 = await pds.create(alice, "fm.plyr.track", {**track, "title": "Second"})
    rkey1 = t1["uri"].rsplit("/", 1)[1]
    rkey2 = t2["uri"].rsplit("/", 1)[1]
    t1 = await pds.put(alice, "fm.plyr.track", rkey1, {**track, "title": "First, remastered"})
    ref1 = {"uri": t1["uri"], "cid": t1["cid"]}
    await pds.create(
        alice, "fm.plyr.list", {"name": "Best of", "listType": "album", "items": [{"subject": ref1}], "createdAt": NOW}
    )
    await pds.create(bob, "fm.plyr.like", {"subject": ref1, "createdAt": NOW})
    await pds.create(bob, "fm.plyr.like", {"subject": {"uri": t2["uri"], "cid": t2["cid"]}, "createdAt": NOW})
    comment = {"subject": ref1, "timestampMs": 1200, "createdAt": NOW}
    await pds.create(bob, "fm.plyr.comment", {**comment, "text": "lovely"})
    gone = await pds.create(bob, "fm.plyr.comment", {**comment, "text": "typo"})
    await pds.delete(bob, "fm.plyr.comment", gone["uri"].rsplit("/", 1)[1])
    await pds.delete(alice, "fm.plyr.track", rkey2)
    return {"alice": alice, "bob": bob, "track_uri": t1["uri"]}


async def wait_for_cursor(db: str, source: str, seq: int, proc: asyncio.subprocess.Process) -> None:
    for _ in range(600):
        if proc.returncode is not None:
            raise AssertionError(f"indexer exited with {proc.returncode}")
        got = await scalar(db, "SELECT cursor FROM cursors WHERE source = %s", source)
        if got == seq:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"cursor {seq} of {source} not reached (at {got})")


def tamper_signature(frame: bytes) -> bytes:
    """The same commit frame with one bit of the commit signature flipped, CIDs recomputed so that only the
    signature is wrong."""
    header, body = libipld.decode_dag_cbor_multi(frame)
    _, blocks = libipld.decode_car(body["blocks"])
    commit = dict(blocks[body["commit"]])
    sig = bytearray(commit["sig"])
    sig[7] ^= 0x01
    commit["sig"] = bytes(sig)
    encoded = libipld.encode_dag_cbor(commit)
    cid = cid_of(encoded)
    rest = [(c, libipld.encode_dag_cbor(b)) for c, b in blocks.items() if c != body["commit"]]
    return make_frame(header, {**body, "commit": cid, "blocks": make_car([cid], [(cid, encoded), *rest])})


def has_plyr_op(frame: bytes) -> bool:
    header, body = libipld.decode_dag_cbor_multi(frame)
    return header.get("t") == "#commit" and any(op["path"].startswith("fm.plyr.") for op in body.get("ops", []))


async def test_firehose_backfill_and_jetstream_replay_agree(tmp_path: Path, db_factory: Any) -> None:
    async with running_pds() as pds:
        env = {**ENV, "PLC_URL": pds.plc_url}
        live = db_factory()
        source = f"firehose:127.0.0.1:{pds.port}"
        proc = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "appview.cli", "--database-url", live, "index"],
            *["--source", f"firehose:ws://127.0.0.1:{pds.port}"],
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        logs: list[str] = []
        connected = asyncio.Event()

        async def read_logs() -> None:
            assert proc.stderr is not None
            async for line in proc.stderr:
                logs.append(line.decode(errors="replace"))
                if "firehose connected" in logs[-1]:
                    connected.set()

        reader = asyncio.create_task(read_logs())
        try:
            await asyncio.wait_for(connected.wait(), 60)
            history = await write_history(pds)
            frames = await pds.frames(0)
            last_seq = max(s for f in frames if (s := frame_seq(f)) is not None)
            await wait_for_cursor(live, source, last_seq, proc)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0, "".join(logs[-20:])
            await reader
        alice, bob = history["alice"], history["bob"]

        a = cli(env, "--database-url", live, "status", "--json")
        assert a["rejections"]["total"] == 0, a["rejections"]  # the PDS's real signatures verify
        assert a["counts"]["tracks"] == 1 and a["counts"]["lists"] == 1 and a["counts"]["comments"] == 1
        assert a["counts"]["actors"] == 2
        title = "SELECT title FROM tracks WHERE uri = %s"
        assert await scalar(live, title, history["track_uri"]) == "First, remastered"
        handles = "SELECT string_agg(handle, ',' ORDER BY handle) FROM actors"
        assert await scalar(live, handles) == "alice.test,bob.test"

        # (b) backfill from scratch
        filled = db_factory()
        result = cli(env, "--database-url", filled, "backfill", "--pds", pds.url, "--no-progress")
        assert result["listed"] == 2 and result["repos"] == 2 and result["failed"] == 0, result
        b = cli(env, "--database-url", filled, "status", "--json")
        assert b["counts"] == a["counts"]
        assert b["state_hash"] == a["state_hash"]
        # A second run has nothing left to do: progress is per repo.
        again = cli(env, "--database-url", filled, "backfill", "--pds", pds.url, "--no-progress")
        assert again["repos"] == 0 and again["listed"] == 2

        # (c) the captured frames as Jetstream v1 lines, replayed
        capture = tmp_path / "pds.frames.zst"
        capture.write_bytes(
            zstandard.ZstdCompressor().compress(b"".join(len(f).to_bytes(4, "little") + f for f in frames))
        )
        lines = tmp_path / "pds.jsonl"
        converted = cli(env, "convert", str(capture), str(lines))
        assert converted["malformed"] == {}
        replayed = db_factory()
        cli(env, "--database-url", replayed, "replay", str(lines), "--no-progress")
        c = cli(env, "--database-url", replayed, "status", "--json")
        assert c["state_hash"] == a["state_hash"]

        # Signatures: the real frames verify against the local PLC; the same frame with a flipped signature
        # bit is refused.
        async with DidDocuments(pds.plc_url) as docs:
            src = FirehoseSource(f"firehose:ws://127.0.0.1:{pds.port}", docs=docs)
            plyr = [f for f in frames if has_plyr_op(f)]
            assert len(plyr) == 10  # one commit per write above
            good = await src.handle(plyr[0])
            assert [type(i) for i in good] == [Event]
            src.last_seq = None  # the tampered copy carries the same seq
            bad = await src.handle(tamper_signature(plyr[0]))
            assert len(bad) == 1 and isinstance(bad[0], Malformed)
            assert bad[0].reason == "invalid_signature"
            assert {alice.did, bob.did} >= {bad[0].did}


async def test_reconcile_repairs_a_repo_whose_events_were_dropped(db_factory: Any) -> None:
    async with running_pds() as pds:
        env = {**ENV, "PLC_URL": pds.plc_url}
        db = db_factory()
        carol = await pds.create_account("carol")
        track = {"artist": "Carol", "fileType": "flac", "createdAt": NOW}
        first = await pds.create(carol, "fm.plyr.track", {**track, "title": "One"})
        cli(env, "--database-url", db, "backfill", "--did", carol.did, "--no-progress")
        # Unrelated commits move the repo's rev without touching fm.plyr: confirmed, not refetched.
        await pds.create(carol, "app.example.note", {"text": "hi", "createdAt": NOW})
        quiet = cli(env, "--database-url", db, "reconcile")
        assert quiet["checked"] == 1 and quiet["confirmed"] == 1 and quiet["behind"] == 0, quiet
        again = cli(env, "--database-url", db, "reconcile")
        assert again["current"] == 1, again

        # Events the stream never delivered: a new track and the deletion of the first one.
        await pds.create(carol, "fm.plyr.track", {**track, "title": "Two"})
        await pds.delete(carol, "fm.plyr.track", first["uri"].rsplit("/", 1)[1])
        found = cli(env, "--database-url", db, "reconcile")
        assert found["behind"] == 1 and found["resynced"] == 1, found
        titles = await scalar(db, "SELECT string_agg(title, ',') FROM tracks")
        assert titles == "Two"
        assert await scalar(db, "SELECT reason FROM repo_sync WHERE did = %s", carol.did) == "behind"
