"""The write proxy against a real PDS (`@atproto/pds` with its PLC directory, on loopback).

Writes go through the AppView (served over HTTP in this process), which finds the PDS in the DID document the
local PLC serves. With no indexer running, the reads show each write at once; then the PDS firehose is indexed
and the echo of every proxied commit must change nothing: same events, same state hash. Also: an invalid record
never reaches the PDS, credentials are the caller's (none → the PDS's 401 comes back), and a DID whose document
points to a loopback or link-local address is refused unless private hosts are allowed.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import httpx
import pytest

from appview.app import create_app
from indexer.settings import Settings
from indexer.status import status
from tests.helpers import rows, rows_exec
from tests.pds.harness import ENV, NOW, scalar
from tests.pds.plc import RotationKey, set_pds_endpoint
from tests.pds.server import Account, Pds, frame_seq, running_pds, unavailable
from tests.proxy_support import serve_app

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"local PDS unavailable: {unavailable()}")

TRACK = "fm.plyr.track"
LIKE = "fm.plyr.like"
BASE_TRACK = {"artist": "Alice", "fileType": "mp3", "audioUrl": "https://cdn.example/a.mp3", "createdAt": NOW}


async def index_firehose(pds: Pds, db: str, env: dict[str, str]) -> None:
    """Run `index` on the PDS firehose until it has committed the PDS's latest seq, then stop it."""
    frames = await pds.frames(0, idle=1.0)
    last = max(s for f in frames if (s := frame_seq(f)) is not None)
    source = f"firehose:127.0.0.1:{pds.port}"
    # Without a committed cursor the firehose starts live; from 0 it replays the PDS's whole history.
    await rows_exec(
        db,
        f"INSERT INTO cursors (source, cursor, updated_at) VALUES ('{source}', 0, now()) ON CONFLICT DO NOTHING",
    )
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "appview.cli", "--database-url", db, "index"],
        *["--source", f"firehose:ws://127.0.0.1:{pds.port}"],
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    logs: list[bytes] = []

    async def drain() -> None:
        assert proc.stderr is not None
        async for line in proc.stderr:
            logs.append(line)

    reader = asyncio.create_task(drain())
    try:
        for _ in range(600):
            if proc.returncode is not None:
                raise AssertionError(f"indexer exited with {proc.returncode}: {b''.join(logs[-20:])!r}")
            if await scalar(db, "SELECT cursor FROM cursors WHERE source = %s", source) == last:
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError(f"cursor {last} not reached: {b''.join(logs[-20:]).decode(errors='replace')}")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 30)
        await reader
    assert proc.returncode == 0, b"".join(logs[-20:]).decode(errors="replace")


def app_settings(pds: Pds, *, allow_private: bool) -> Settings:
    return Settings(
        public_host="api.plyr.test", plc_url=pds.plc_url, allow_private_hosts=allow_private, proxy_timeout=10.0
    )


async def xrpc(client: httpx.AsyncClient, method: str, body: dict[str, Any], account: Account | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {account.jwt}"} if account is not None else {}
    return await client.post(f"/xrpc/com.atproto.repo.{method}", json=body, headers=headers)


async def pds_titles(pds: Pds, account: Account) -> list[str]:
    resp = await pds.client.get(
        f"{pds.url}/xrpc/com.atproto.repo.listRecords", params={"repo": account.did, "collection": TRACK}
    )
    resp.raise_for_status()
    return sorted(r["value"]["title"] for r in resp.json()["records"])


async def snapshot(db: str) -> tuple[list[tuple[Any, ...]], str]:
    events = await rows(db, "SELECT id, did, kind, operation, collection, rkey, rev, cid FROM events ORDER BY id")
    return events, (await status(db))["state_hash"]


async def test_writes_through_the_proxy(db_factory: Any) -> None:
    db_url = db_factory()
    async with running_pds() as pds:
        env = {**ENV, "PLC_URL": pds.plc_url, "PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS": "1"}
        alice = await pds.create_account("alice")
        # The account's own events first, so that what the echo run sees later is the echo alone.
        await index_firehose(pds, db_url, env)
        before_writes = await rows(db_url, "SELECT count(*) FROM events WHERE kind = 'commit'")
        assert before_writes == [(0,)]

        app = create_app(db_url, settings=app_settings(pds, allow_private=True))
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:

            async def track(uri: str) -> httpx.Response:
                return await client.get("/xrpc/fm.plyr.getTrack", params={"uri": uri})

            # create → visible at once
            resp = await xrpc(
                client,
                "createRecord",
                {"repo": alice.did, "collection": TRACK, "record": {**BASE_TRACK, "title": "First take"}},
                alice,
            )
            assert resp.status_code == 200, resp.text
            first = resp.json()
            got = await track(first["uri"])
            assert got.status_code == 200, got.text
            assert got.json()["track"]["title"] == "First take" and got.json()["track"]["cid"] == first["cid"]

            # update (putRecord of an existing record)
            rkey = first["uri"].rsplit("/", 1)[1]
            put = {"repo": alice.did, "collection": TRACK, "rkey": rkey, "record": {**BASE_TRACK, "title": "Remaster"}}
            resp = await xrpc(client, "putRecord", put, alice)
            assert resp.status_code == 200, resp.text
            assert (await track(first["uri"])).json()["track"]["title"] == "Remaster"
            # the same put again: the PDS writes nothing (no commit), and neither do we
            resp = await xrpc(client, "putRecord", put, alice)
            assert resp.status_code == 200 and "commit" not in resp.json(), resp.text

            # putRecord of a record that does not exist yet: a create
            fresh = {**put, "rkey": "3m2aaaaaaaaa2", "record": {**BASE_TRACK, "title": "Put-created"}}
            resp = await xrpc(client, "putRecord", fresh, alice)
            assert resp.status_code == 200, resp.text
            put_created = resp.json()

            # putRecord of a record the PDS has but the index has not seen yet (written directly): an update
            direct = await pds.create(alice, TRACK, {**BASE_TRACK, "title": "Direct"})
            direct_put = {**put, "rkey": direct["uri"].rsplit("/", 1)[1], "record": {**BASE_TRACK, "title": "Edited"}}
            resp = await xrpc(client, "putRecord", direct_put, alice)
            assert resp.status_code == 200, resp.text
            assert (await track(direct["uri"])).json()["track"]["title"] == "Edited"

            # applyWrites: a create, an update and a like in one commit
            writes = {
                "repo": alice.did,
                "writes": [
                    {"$type": "com.atproto.repo.applyWrites#create", "collection": TRACK,
                     "value": {**BASE_TRACK, "title": "Batch"}},
                    {"$type": "com.atproto.repo.applyWrites#update", "collection": TRACK, "rkey": rkey,
                     "value": {**BASE_TRACK, "title": "Final"}},
                    {"$type": "com.atproto.repo.applyWrites#create", "collection": LIKE,
                     "value": {"subject": {"uri": put_created["uri"], "cid": put_created["cid"]}, "createdAt": NOW}},
                ],
            }  # fmt: skip
            resp = await xrpc(client, "applyWrites", writes, alice)
            assert resp.status_code == 200, resp.text
            batch_uri = resp.json()["results"][0]["uri"]
            assert (await track(first["uri"])).json()["track"]["title"] == "Final"
            assert (await track(batch_uri)).json()["track"]["title"] == "Batch"
            assert (await track(put_created["uri"])).json()["track"]["likeCount"] == 1

            # delete
            batch_rkey = batch_uri.rsplit("/", 1)[1]
            resp = await xrpc(
                client, "deleteRecord", {"repo": alice.did, "collection": TRACK, "rkey": batch_rkey}, alice
            )
            assert resp.status_code == 200, resp.text
            assert (await track(batch_uri)).status_code == 404
            listed = await client.get("/xrpc/fm.plyr.getActorTracks", params={"actor": alice.did})
            assert sorted(t["title"] for t in listed.json()["tracks"]) == ["Edited", "Final", "Put-created"]

            # a blob, streamed to the PDS of the token's DID, then used by a record
            resp = await client.post(
                "/xrpc/com.atproto.repo.uploadBlob",
                content=b"ID3" + bytes(4096),
                headers={"authorization": f"Bearer {alice.jwt}", "content-type": "audio/mpeg"},
            )
            assert resp.status_code == 200, resp.text
            blob = resp.json()["blob"]
            assert blob["size"] == 4099 and blob["mimeType"] == "audio/mpeg"
            with_blob = {**BASE_TRACK, "title": "Blob", "audioBlob": blob}
            resp = await xrpc(
                client, "createRecord", {"repo": alice.did, "collection": TRACK, "record": with_blob}, alice
            )
            assert resp.status_code == 200, resp.text

            # invalid: refused with the field and the rule, and the PDS never sees it
            bad = {"repo": alice.did, "collection": TRACK, "record": {**BASE_TRACK, "title": "x" * 300}}
            resp = await xrpc(client, "createRecord", bad, alice)
            assert resp.status_code == 400 and resp.json()["error"] == "InvalidRecord"
            assert "title" in resp.json()["message"] and "maxLength" in resp.json()["message"]
            # not ours: refused before the PDS
            post = {"repo": alice.did, "collection": "app.bsky.feed.post", "record": {"text": "hi", "createdAt": NOW}}
            resp = await xrpc(client, "createRecord", post, alice)
            assert resp.status_code == 400 and resp.json()["error"] == "InvalidRequest"
            # no credentials: the PDS says 401 and that is what the client gets
            anon = {"repo": alice.did, "collection": TRACK, "record": {**BASE_TRACK, "title": "Anon"}}
            resp = await xrpc(client, "createRecord", anon, None)
            assert resp.status_code == 401 and resp.json()["error"] == "AuthMissing", resp.text
            # a PDS 4xx passes through: a record swap that does not match
            swap = {**put, "record": {**BASE_TRACK, "title": "Swapped"}, "swapRecord": put_created["cid"]}
            resp = await xrpc(client, "putRecord", swap, alice)
            assert resp.status_code == 400 and resp.json()["error"] == "InvalidSwap", resp.text

        assert await pds_titles(pds, alice) == ["Blob", "Edited", "Final", "Put-created"]
        proxied, proxied_hash = await snapshot(db_url)
        assert await rows(db_url, "SELECT count(*) FROM events WHERE source = 'proxy'") == [(9,)]
        update = "SELECT operation FROM events WHERE source = 'proxy' AND rkey = %s"
        assert await rows(db_url, update, direct["uri"].rsplit("/", 1)[1]) == [("update",)]
        assert await rows(db_url, "SELECT count(*) FROM rejections") == [(0,)]

        # The firehose echo of all of it changes nothing. The one new event is the direct write the proxy never
        # saw (its create, older than the proxied update, so the state stays the same).
        await index_firehose(pds, db_url, env)
        echoed, echoed_hash = await snapshot(db_url)
        assert echoed_hash == proxied_hash
        assert echoed[: len(proxied)] == proxied
        direct_rkey = direct["uri"].rsplit("/", 1)[1]
        assert [(e[2], e[3], e[5]) for e in echoed[len(proxied) :]] == [("commit", "create", direct_rkey)]

        # An index built from the firehose alone agrees with the one the proxy built.
        alone = db_factory()
        await index_firehose(pds, alone, env)
        assert (await status(alone))["state_hash"] == proxied_hash


async def test_private_pds_is_refused(db_url: str) -> None:
    async with running_pds() as pds:
        key = RotationKey()
        alice = await pds.create_account("alice")
        bob = await pds.create_account("bob", recovery_key=key.did_key)
        await set_pds_endpoint(pds.client, pds.plc_url, bob.did, key, "http://169.254.169.254")
        app = create_app(db_url, settings=app_settings(pds, allow_private=False))
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
            for account, words in ((alice, "loopback"), (bob, "link local")):
                body = {"repo": account.did, "collection": TRACK, "record": {**BASE_TRACK, "title": "Nope"}}
                resp = await xrpc(client, "createRecord", body, account)
                assert resp.status_code == 400, resp.text
                assert resp.json()["error"] == "InvalidRequest" and words in resp.json()["message"], resp.text
        assert await pds_titles(pds, alice) == []
        assert await rows(db_url, "SELECT count(*) FROM events") == [(0,)]
