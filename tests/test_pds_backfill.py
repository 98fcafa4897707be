"""Backfill against the local PDS when things go wrong: a killed run, a relay's listing, a repo that fails.

Each test starts its own PDS + PLC (about a second): `backfill --pds` lists every account the PDS hosts, so a
shared PDS would let one test's accounts leak into another's counts. Stand-ins for what the PDS cannot play (a
relay, a PDS answering 500, a PLC that stalls) are loopback servers in this process (tests/pds/stub.py), so
the CLI runs as a subprocess awaited without blocking the event loop (`acli`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.pds.harness import CLI, ENV, NOW, acli, fetch_rows, scalar
from tests.pds.plc import RotationKey, set_pds_endpoint
from tests.pds.server import Account, Pds, running_pds, unavailable
from tests.pds.stub import Request, Response, stub_server

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"local PDS unavailable: {unavailable()}")

LIST_REPOS_BY_COLLECTION = "/xrpc/com.atproto.sync.listReposByCollection"
TRACK = {"artist": "Someone", "fileType": "mp3", "audioUrl": "https://cdn.example/t.mp3", "createdAt": NOW}


async def add_tracks(pds: Pds, account: Account, n: int) -> list[dict[str, Any]]:
    return [await pds.create(account, "fm.plyr.track", {**TRACK, "title": f"{account.handle} #{i}"}) for i in range(n)]


def ref(created: dict[str, Any]) -> dict[str, str]:
    return {"uri": created["uri"], "cid": created["cid"]}


async def tracks_by_did(db: str) -> dict[str, int]:
    return {str(did): int(n) for did, n in await fetch_rows(db, "SELECT did, count(*) FROM tracks GROUP BY did")}


async def sync_rows(db: str) -> dict[str, dict[str, Any]]:
    rows = await fetch_rows(db, "SELECT did, reason, synced_at, attempts, last_error FROM repo_sync")
    return {
        str(did): {"reason": reason, "synced_at": synced_at, "attempts": attempts, "last_error": last_error}
        for did, reason, synced_at, attempts, last_error in rows
    }


async def test_killed_backfill_resumes_with_the_repos_it_had_not_finished(tmp_path: Path, db_factory: Any) -> None:
    async with running_pds() as pds:
        accounts = [await pds.create_account(f"fill{i}") for i in range(5)]
        for i, account in enumerate(accounts):
            made = await add_tracks(pds, account, 1 + i % 3)
            await pds.create(accounts[-1 - i], "fm.plyr.like", {"subject": ref(made[0]), "createdAt": NOW})
        expected = {a.did: 1 + i % 3 for i, a in enumerate(accounts)}

        # Each repo's DID document is fetched once, right before its getRepo: a PLC stand-in that answers the
        # first two and never the third leaves the run (one repo at a time) stuck inside its third repo after
        # committing two, a deterministic point to kill it at.
        finish_before_kill = 2
        stall = asyncio.Event()

        async def stalling_plc(req: Request) -> Response:
            if len(plc.requests) > finish_before_kill:
                await stall.wait()
            resp = await pds.client.get(pds.plc_url + req.path)
            return Response(status=resp.status_code, body=resp.content)

        db = db_factory()
        async with stub_server(stalling_plc) as plc:
            log_path = tmp_path / "killed.log"
            with log_path.open("wb") as log:
                proc = await asyncio.create_subprocess_exec(
                    *CLI,
                    *("--database-url", db, "backfill", "--pds", pds.url, "--concurrency", "1", "--no-progress"),
                    env={**ENV, "PLC_URL": plc.url},
                    stdout=log,
                    stderr=log,
                )
                try:
                    for _ in range(600):
                        assert proc.returncode is None, log_path.read_text()[-3000:]
                        synced = await scalar(db, "SELECT count(*) FROM repo_sync WHERE synced_at IS NOT NULL")
                        if synced == finish_before_kill and len(plc.requests) == finish_before_kill + 1:
                            break
                        await asyncio.sleep(0.05)
                    else:
                        raise AssertionError(f"backfill never reached its third repo: {log_path.read_text()[-3000:]}")
                finally:
                    if proc.returncode is None:
                        proc.kill()
                    await proc.wait()

        before = await sync_rows(db)
        assert set(before) == set(expected)  # the listing was recorded whole before any fetch
        done = {did: row["synced_at"] for did, row in before.items() if row["synced_at"] is not None}
        assert len(done) == finish_before_kill
        in_flight = [did for did, row in before.items() if row["synced_at"] is None and row["attempts"] == 1]
        assert len(in_flight) == 1, before  # started, never finished
        assert await tracks_by_did(db) == {did: expected[did] for did in done}

        env = {**ENV, "PLC_URL": pds.plc_url}
        resumed = await acli(env, "--database-url", db, "backfill", "--pds", pds.url, "--no-progress")
        assert resumed["listed"] == len(accounts), resumed
        assert resumed["repos"] == len(accounts) - finish_before_kill and resumed["failed"] == 0, resumed
        after = await sync_rows(db)
        # The repos finished before the kill were not fetched again.
        assert {did: after[did]["synced_at"] for did in done} == done
        assert all(row["synced_at"] is not None and row["attempts"] == 0 for row in after.values()), after
        assert await tracks_by_did(db) == expected

        fresh = db_factory()
        whole = await acli(env, "--database-url", fresh, "backfill", "--pds", pds.url, "--no-progress")
        assert whole["repos"] == len(accounts) and whole["failed"] == 0, whole
        resumed_state = await acli(env, "--database-url", db, "status", "--json")
        whole_state = await acli(env, "--database-url", fresh, "status", "--json")
        assert resumed_state["counts"] == whole_state["counts"]
        assert resumed_state["counts"]["tracks"] == sum(expected.values())
        assert resumed_state["counts"]["likes"] == len(accounts)
        assert resumed_state["state_hash"] == whole_state["state_hash"]


async def test_relay_listing_is_paged_and_every_listed_repo_is_indexed(db_factory: Any) -> None:
    async with running_pds() as pds:
        accounts = [await pds.create_account(f"relay{i}") for i in range(5)]
        made = {a.did: await add_tracks(pds, a, 1) for a in accounts}
        for a in accounts[1::2]:
            await pds.create(a, "fm.plyr.like", {"subject": ref(made[accounts[0].did][0]), "createdAt": NOW})
        # On the PDS but not in the relay's listing: the listing, not the PDS, decides what is fetched.
        unlisted = await pds.create_account("unlisted")
        await add_tracks(pds, unlisted, 1)

        listing = {
            "fm.plyr.track": [a.did for a in accounts],
            "fm.plyr.like": [a.did for a in accounts[1::2]],
        }
        page_size = 2

        async def relay(req: Request) -> Response:
            if req.path != LIST_REPOS_BY_COLLECTION:
                return Response.json({"error": "MethodNotImplemented"}, 404)
            dids = listing.get(req.query["collection"], [])
            start = int(req.query.get("cursor", "0"))
            body: dict[str, Any] = {"repos": [{"did": d} for d in dids[start : start + page_size]]}
            if start + page_size < len(dids):
                body["cursor"] = str(start + page_size)
            return Response.json(body)

        db = db_factory()
        async with stub_server(relay) as stub:
            env = {**ENV, "PLC_URL": pds.plc_url}
            result = await acli(env, "--database-url", db, "backfill", "--relay", stub.url, "--no-progress")

        assert result["listed"] == len(accounts) and result["repos"] == len(accounts), result
        assert result["failed"] == 0, result
        assert {r.path for r in stub.requests} == {LIST_REPOS_BY_COLLECTION}  # repos come from the PDS
        track_pages = [r.query.get("cursor") for r in stub.requests if r.query["collection"] == "fm.plyr.track"]
        assert track_pages == [None, "2", "4"]
        like_pages = [r.query.get("cursor") for r in stub.requests if r.query["collection"] == "fm.plyr.like"]
        assert like_pages == [None]
        rows = await sync_rows(db)
        assert set(rows) == {a.did for a in accounts}
        assert all(row["synced_at"] is not None and row["last_error"] is None for row in rows.values()), rows
        assert await tracks_by_did(db) == {a.did: 1 for a in accounts}
        assert await scalar(db, "SELECT count(*) FROM likes") == len(accounts[1::2])


async def test_a_repo_whose_pds_fails_stays_pending_with_its_error_until_resync_fetches_it(db_factory: Any) -> None:
    async with running_pds() as pds:
        good = [await pds.create_account(f"good{i}") for i in range(2)]
        for a in good:
            await add_tracks(pds, a, 2)
        key = RotationKey()
        moved = await pds.create_account("moved", recovery_key=key.did_key)
        await add_tracks(pds, moved, 3)
        home = (await pds.client.get(f"{pds.plc_url}/{moved.did}")).json()["service"][0]["serviceEndpoint"]

        async def broken_pds(req: Request) -> Response:
            return Response.json({"error": "InternalServerError", "message": "disk on fire"}, 500)

        db = db_factory()
        env = {**ENV, "PLC_URL": pds.plc_url}
        async with stub_server(broken_pds) as broken:
            # The DID still resolves, through the local PLC, but to a host that cannot serve its repo.
            await set_pds_endpoint(pds.client, pds.plc_url, moved.did, key, broken.url)
            result = await acli(env, "--database-url", db, "backfill", "--pds", pds.url, "--no-progress", exit_status=1)
            assert result["listed"] == 3 and result["repos"] == 2, result
            assert result["failed"] == 1 and result["failures"] == {"http_500": 1}, result

            rows = await sync_rows(db)
            assert rows[moved.did]["synced_at"] is None and rows[moved.did]["attempts"] == 1
            assert rows[moved.did]["last_error"].startswith("http_500: getRepo " + moved.did)
            assert "disk on fire" in rows[moved.did]["last_error"]
            for a in good:
                assert rows[a.did]["synced_at"] is not None and rows[a.did]["last_error"] is None
            assert await tracks_by_did(db) == {a.did: 2 for a in good}

            retried = await acli(env, "--database-url", db, "resync", "--no-progress", exit_status=1)
            assert retried["repos"] == 0 and retried["failed"] == 1, retried
            assert (await sync_rows(db))[moved.did]["attempts"] == 2
            asked = [r.query.get("did") for r in broken.requests if r.path == "/xrpc/com.atproto.sync.getRepo"]
            assert asked == [moved.did, moved.did]

        # Back home: the next resync fetches it and clears the error; the good repos are not fetched again.
        await set_pds_endpoint(pds.client, pds.plc_url, moved.did, key, home)
        healed = await acli(env, "--database-url", db, "resync", "--no-progress")
        assert healed["repos"] == 1 and healed["failed"] == 0 and healed["records"] == 3, healed
        row = (await sync_rows(db))[moved.did]
        assert row["synced_at"] is not None and row["attempts"] == 0 and row["last_error"] is None
        assert await tracks_by_did(db) == {**{a.did: 2 for a in good}, moved.did: 3}
        idle = await acli(env, "--database-url", db, "resync", "--no-progress")
        assert idle["repos"] == 0 and idle["failed"] == 0, idle


async def test_a_did_document_pointing_at_a_private_address_is_never_fetched(db_factory: Any) -> None:
    """The PDS a DID document names is anyone's choice: without PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS, backfill
    refuses loopback and private hosts before connecting, counts the repo as failed with the reason, and goes
    on. The listing itself comes from the host the operator named, which is not second-guessed."""
    async with running_pds() as pds:
        plain = await pds.create_account("plain")
        await add_tracks(pds, plain, 1)
        key = RotationKey()
        moved = await pds.create_account("moved", recovery_key=key.did_key)
        await add_tracks(pds, moved, 1)

        async def should_not_be_asked(req: Request) -> Response:
            return Response.json({"error": "InternalServerError", "message": "reached"}, 500)

        db = db_factory()
        env = {k: v for k, v in ENV.items() if k != "PLYR_APPVIEW_ALLOW_PRIVATE_HOSTS"} | {"PLC_URL": pds.plc_url}
        async with stub_server(should_not_be_asked) as internal:
            await set_pds_endpoint(pds.client, pds.plc_url, moved.did, key, internal.url)
            result = await acli(env, "--database-url", db, "backfill", "--pds", pds.url, "--no-progress", exit_status=1)
            assert result["listed"] == 2 and result["repos"] == 0, result
            assert result["failures"] == {"forbidden_host": 2}, result
            assert internal.requests == []
        rows = await sync_rows(db)
        for did in (plain.did, moved.did):
            assert rows[did]["synced_at"] is None
            assert rows[did]["last_error"].startswith("forbidden_host: getRepo " + did)
            assert "loopback" in rows[did]["last_error"]
        assert await tracks_by_did(db) == {}
