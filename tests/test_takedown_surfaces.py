"""Takedowns across every surface, over HTTP with the real app and fold: views, feeds, search, top tracks, stats,
list items, comments, actor routes, audio, the write proxy, uploads; the admin XRPC routes and their
credentials; the `takedown` command."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from appview.app import create_app
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
    track_record,
    uri,
)
from indexer.atproto.lexicon import Validator
from indexer.audio.store import StorageSettings
from indexer.settings import Secret, Settings
from tests.api_support import StubResolver
from tests.audio_support import Uploader, wav_bytes
from tests.helpers import COMMENT, LIKE, LIST, TRACK, ingest, state
from tests.proxy_support import StubPds, serve_app
from tests.test_proxy_upstream import created

ALICE, BOB, CAROL = (make_did(n) for n in range(1, 4))
PASSWORD = "correct horse battery staple"
ADMIN = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
UPDATE = "/xrpc/com.atproto.admin.updateSubjectStatus"
GET_STATUS = "/xrpc/com.atproto.admin.getSubjectStatus"


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


def rec(n: int, **extra: Any) -> dict[str, Any]:
    return track_record(f"Song {n}", micros=BASE_US + n * 1000, **extra)


def turi(did: str, n: int) -> str:
    return uri(did, TRACK, tid(n))


def settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {
        "public_host": "api.plyr.test",
        "admin_password": Secret(PASSWORD),
        "storage": StorageSettings(audio_dir=tmp_path / "audio"),
        "allow_private_hosts": True,
    }
    return Settings(**{**base, **kw})


async def seed(db_url: str, validator: Validator) -> None:
    t1, c3 = rec(1), make_cid(rec(3))
    await ingest(
        db_url,
        validator,
        [
            identity(ALICE, "alice.test", seq=1, micros=BASE_US),
            identity(BOB, "bob.test", seq=2, micros=BASE_US),
            commit(ALICE, TRACK, tid(1), tid(1), t1),
            commit(ALICE, TRACK, tid(2), tid(2), rec(2)),
            commit(BOB, TRACK, tid(3), tid(3), rec(3)),
            commit(BOB, LIKE, tid(10), tid(10), like_record(turi(ALICE, 1), make_cid(t1))),
            commit(CAROL, LIKE, tid(11), tid(11), like_record(turi(ALICE, 1), make_cid(t1))),
            commit(BOB, COMMENT, tid(20), tid(20), comment_record(turi(ALICE, 1), make_cid(t1), "nice")),
            commit(CAROL, LIST, tid(30), tid(30), list_record([(turi(ALICE, 1), make_cid(t1)), (turi(BOB, 3), c3)])),
        ],
    )


async def admin(client: Any, subject: dict[str, Any], applied: bool, ref: str | None = None) -> dict[str, Any]:
    takedown: dict[str, Any] = {"applied": applied} if ref is None else {"applied": applied, "ref": ref}
    resp = await client.post(UPDATE, json={"subject": subject, "takedown": takedown}, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def repo(did: str) -> dict[str, str]:
    return {"$type": "com.atproto.admin.defs#repoRef", "did": did}


def record(at_uri: str) -> dict[str, str]:
    return {"$type": "com.atproto.repo.strongRef", "uri": at_uri, "cid": make_cid(rec(1))}


async def surfaces(client: Any) -> dict[str, Any]:
    """What a reader sees of the seeded data, surface by surface."""

    async def get(path: str, **params: Any) -> Any:
        resp = await client.get(f"/xrpc/fm.plyr.{path}", params=params)
        return resp.json() if resp.status_code == 200 else resp.json()["error"]

    def uris(page: Any, key: str = "tracks") -> list[str] | str:
        return page if isinstance(page, str) else sorted(t["uri"] for t in page[key])

    track1 = await get("getTrack", uri=turi(ALICE, 1))
    counts = track1 if isinstance(track1, str) else (track1["track"]["likeCount"], track1["track"]["commentCount"])
    alist = await get("getList", uri=uri(CAROL, LIST, tid(30)))
    stats = await get("getStats")
    return {
        "getTrack": counts,
        "latest": uris(await get("getLatestTracks")),
        "search": uris(await get("searchTracks", q="Song")),
        "top": uris(await get("getTopTracks")),
        "stats": (stats["tracks"], stats["likes"]),
        "actorTracks": uris(await get("getActorTracks", actor=BOB)),
        "profile": await get("getActorProfile", actor="bob.test"),
        "list": alist if isinstance(alist, str) else [i.get("track", {}).get("uri") for i in alist["list"]["items"]],
        "comments": uris(await get("getComments", uri=turi(ALICE, 1)), "comments"),
        "likes": _likers(await get("getLikes", uri=turi(ALICE, 1))),
    }


def _likers(page: Any) -> list[str] | str:
    return page if isinstance(page, str) else sorted(like["actor"]["did"] for like in page["likes"])


async def test_record_and_account_takedowns_on_every_surface(
    db_url: str, validator: Validator, tmp_path: Path
) -> None:
    await seed(db_url, validator)
    before = await state(db_url)
    async with AsyncTestClient(app=create_app(db_url, settings=settings(tmp_path), resolver=StubResolver())) as c:
        shown = await surfaces(c)
        assert shown["getTrack"] == (2, 1)
        assert len(shown["latest"]) == 3 and len(shown["search"]) == 3
        assert shown["stats"] == (3, 2)
        assert shown["list"] == [turi(ALICE, 1), turi(BOB, 3)]

        out = await admin(c, record(turi(ALICE, 1)), True, "claim 118")
        assert out["takedown"] == {"applied": True, "ref": "claim 118"}
        down = await surfaces(c)
        assert down["getTrack"] == "NotFound"
        assert turi(ALICE, 1) not in down["latest"] and turi(ALICE, 1) not in down["search"]
        assert turi(ALICE, 1) not in down["top"]
        assert down["comments"] == "NotFound" and down["likes"] == "NotFound"
        assert down["list"] == [None, turi(BOB, 3)] or down["list"] == [turi(BOB, 3)]
        assert (await c.get(f"/audio/{ALICE}/{tid(1)}")).status_code == 404

        await admin(c, repo(BOB), True)
        down = await surfaces(c)
        assert down["actorTracks"] == "AccountTakedown" and down["profile"] == "AccountTakedown"
        assert all(not u.startswith(f"at://{BOB}") for u in down["latest"])

        await admin(c, record(turi(ALICE, 1)), False)
        back = await surfaces(c)
        assert back["getTrack"] == (1, 0)  # Bob's like and comment are still down with him
        await admin(c, repo(BOB), False)
        assert await surfaces(c) == shown
        status = await c.get(GET_STATUS, params={"did": BOB}, headers=ADMIN)
        assert status.json() == {"subject": repo(BOB), "takedown": {"applied": False}}
    assert (await state(db_url))["state_hash"] == before["state_hash"]


async def test_audio_objects_uploads_and_proxied_writes(db_url: str, validator: Validator, tmp_path: Path) -> None:
    uploader = Uploader(ALICE)
    pds = StubPds(created)
    uploader.resolver.pds[ALICE] = pds.url
    app = create_app(db_url, settings=settings(tmp_path), resolver=uploader.resolver)
    try:
        async with serve_app(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as c:
            data = wav_bytes(1.0)
            sha = hashlib.sha256(data).hexdigest()
            up = await c.post("/xrpc/fm.plyr.uploadAudio", content=data, headers=uploader.headers("audio/x-wav"))
            assert up.status_code == 200, up.text
            assert (await c.get(f"/audio-files/{sha}")).status_code == 200

            blob = {"$type": "com.atproto.admin.defs#repoBlobRef", "did": ALICE, "cid": _raw_cid(sha)}
            assert (await admin(c, blob, True))["takedown"]["applied"] is True
            gone = await c.get(f"/audio-files/{sha}")
            assert gone.status_code == 410 and gone.json()["error"] == "TakenDown"
            await admin(c, blob, False)
            assert (await c.get(f"/audio-files/{sha}")).status_code == 200

            await admin(c, repo(ALICE), True)
            refused = await c.post("/xrpc/fm.plyr.uploadAudio", content=data, headers=uploader.headers("audio/x-wav"))
            assert refused.status_code == 403 and refused.json()["error"] == "AccountTakedown"
            write = {"repo": ALICE, "collection": TRACK, "record": rec(9)}
            proxied = await c.post("/xrpc/com.atproto.repo.createRecord", json=write, headers={"authorization": "x"})
            assert proxied.status_code == 403 and proxied.json()["error"] == "AccountTakedown"
            assert pds.posts() == []  # refused before the PDS was contacted
            await admin(c, repo(ALICE), False)
            proxied = await c.post("/xrpc/com.atproto.repo.createRecord", json=write, headers={"authorization": "x"})
            assert proxied.status_code == 200, proxied.text
    finally:
        pds.close()


def _raw_cid(sha256: str) -> str:
    raw = bytes([0x01, 0x55, 0x12, 0x20]) + bytes.fromhex(sha256)
    return "b" + base64.b32encode(raw).decode().lower().rstrip("=")


@pytest.mark.parametrize(
    ("password", "headers", "words"),
    [
        (None, ADMIN, "PLYR_APPVIEW_ADMIN_PASSWORD is not set"),
        (PASSWORD, {}, "admin credentials required"),
        (PASSWORD, {"Authorization": "Basic " + base64.b64encode(b"admin:wrong").decode()}, "admin credentials"),
        (PASSWORD, {"Authorization": "Basic !!!"}, "admin credentials"),
        (PASSWORD, {"Authorization": f"Bearer {PASSWORD}"}, "admin credentials"),
    ],
)
async def test_admin_routes_refuse_without_the_operator_password(
    db_url: str, tmp_path: Path, password: str | None, headers: dict[str, str], words: str
) -> None:
    s = settings(tmp_path, admin_password=None if password is None else Secret(password))
    async with AsyncTestClient(app=create_app(db_url, settings=s, resolver=StubResolver())) as c:
        body = {"subject": repo(ALICE), "takedown": {"applied": True}}
        for resp in (
            await c.post(UPDATE, json=body, headers=headers),
            await c.get(GET_STATUS, params={"did": ALICE}, headers=headers),
        ):
            assert resp.status_code == 401
            assert resp.json()["error"] == "AuthRequired" and words in resp.json()["message"]
            assert resp.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "subject",
    [
        {"$type": "com.atproto.admin.defs#repoRef", "did": "alice"},
        {"$type": "com.atproto.repo.strongRef", "uri": f"at://{ALICE}/app.bsky.feed.post/x", "cid": "b"},
        {"$type": "com.atproto.admin.defs#repoBlobRef", "did": ALICE, "cid": "bafyreinotacid"},
        {"$type": "com.atproto.admin.defs#nothing", "did": ALICE},
    ],
)
async def test_admin_subjects_are_checked(db_url: str, tmp_path: Path, subject: dict[str, Any]) -> None:
    async with AsyncTestClient(app=create_app(db_url, settings=settings(tmp_path), resolver=StubResolver())) as c:
        resp = await c.post(UPDATE, json={"subject": subject, "takedown": {"applied": True}}, headers=ADMIN)
        assert resp.status_code == 400 and resp.json()["error"] == "InvalidRequest", resp.text


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "PLYR_APPVIEW_LOG_FORMAT": "json"}
    return subprocess.run(
        [sys.executable, "-m", "appview.cli", "takedown", *args], env=env, capture_output=True, text=True, timeout=120
    )


async def test_takedown_command(db_url: str, validator: Validator) -> None:
    await seed(db_url, validator)
    done = _cli(db_url, "bob.test", "--reason", "report 7")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "subject": BOB,
        "kind": "account",
        "taken_down": True,
        "changed": True,
        "reason": "report 7",
    }
    again = json.loads(_cli(db_url, BOB).stdout)
    assert again["changed"] is False
    assert json.loads(_cli(db_url, turi(ALICE, 2)).stdout)["changed"] is True
    listed = json.loads(_cli(db_url, "--list").stdout)["takedowns"]
    assert {t["subject"] for t in listed} == {BOB, turi(ALICE, 2)}
    assert json.loads(_cli(db_url, "--undo", BOB).stdout)["taken_down"] is False
    assert {t["subject"] for t in json.loads(_cli(db_url, "--list").stdout)["takedowns"]} == {turi(ALICE, 2)}
    assert len(json.loads(_cli(db_url, "--list", "--all").stdout)["takedowns"]) == 2

    for args, words in [
        (("nobody.test",), "knows no account with the handle"),
        (("at://bob.test/fm.plyr.track/x",), "not a DID"),
        (("sha256:12",), "not a DID, an at:// record URI"),
        ((), "name what to take down"),
        (("--list", BOB), "--list takes no subject"),
        (("--undo", BOB, "--reason", "x"), "--reason goes with a takedown"),
    ]:
        bad = _cli(db_url, *args)
        assert bad.returncode == 2, (args, bad.stderr)
        assert bad.stdout == "" and words in bad.stderr and "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr
