"""The official clients reach the AppView through a real PDS, as applications do.

A PDS (`@atproto/pds`, with its PLC directory, on loopback) and the AppView (uvicorn, in this process) at
`PLYR_APPVIEW_PUBLIC_URL=http://localhost:<port>`: a plain-http origin, which the PDS reaches because it resolves
a did:web on `localhost` over http. A client logged in at the PDS sends `atproto-proxy: <our DID>#fm_plyr_appview`;
the PDS reads our DID document, calls its service endpoint with a service-auth token it mints (`aud` = our DID,
`lxm` = the method), and the AppView answers as that viewer. Clients: `@atproto/api`'s AtpAgent.withProxy
(tests/pds/clients.js, which also checks every output against our lexicons) and the Python `atproto` SDK's
`with_proxy`. Checked: getTrack, getActorTracks and getLatestTracks carry `viewer.like` for the account that
liked the track and for nobody else; uploadAudio through the PDS stores the audio and returns an `audioUrl` under
our public URL, which plays; anonymous calls straight to the AppView carry no `viewer`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from atproto_client.models.dot_dict import DotDict
from litestar import Litestar

from appview.app import create_app
from indexer.audio.store import StorageSettings
from indexer.settings import Settings
from tests.audio_support import mp3_bytes
from tests.pds.harness import NOW
from tests.pds.server import HERE, Account, Pds, node_modules, running_pds, unavailable

ROOT = HERE.parents[1]
LEXICONS = sorted(str(p) for p in (ROOT / "lexicons" / "fm" / "plyr").rglob("*.json"))


def _clients_unavailable() -> str | None:
    if (why := unavailable()) is not None:
        return why
    if not (node_modules() / "@atproto" / "api").is_dir():
        return f"@atproto/api not installed in {node_modules()} (run tests/pds/install.sh)"
    return None


pytestmark = pytest.mark.skipif(_clients_unavailable() is not None, reason=f"{_clients_unavailable()}")

TRACK = "fm.plyr.track"
LIKE = "fm.plyr.like"
SERVICE = "fm_plyr_appview"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def serve_on(app: Litestar, port: int) -> AsyncIterator[None]:
    """The app on `localhost:<port>`: the name the PDS resolves our did:web with, on both loopback families when
    the machine has them (Node may try `::1` first)."""
    families = [socket.AF_INET, socket.AF_INET6] if socket.has_ipv6 else [socket.AF_INET]
    sockets: list[socket.socket] = []
    for family, address in zip(families, ("127.0.0.1", "::1"), strict=False):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((address, port))
        except OSError:
            sock.close()
            if family == socket.AF_INET:
                raise
            continue
        sockets.append(sock)
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    task = asyncio.create_task(server.serve(sockets=sockets))
    try:
        for _ in range(500):
            if server.started:
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
        for sock in sockets:
            sock.close()


async def node_calls(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Run tests/pds/clients.js with `plan` (without blocking the loop the AppView runs on)."""
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(HERE / "clients.js"),
        env={**os.environ, "NODE_PATH": str(node_modules())},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(proc.communicate(json.dumps(plan).encode()), 120)
    assert proc.returncode == 0, stderr.decode(errors="replace")[-3000:]
    results: list[dict[str, Any]] = json.loads(stdout)
    return results


def liked(view: dict[str, Any]) -> str | None:
    like = (view.get("viewer") or {}).get("like")
    return like if isinstance(like, str) else None


async def proxy_write(client: httpx.AsyncClient, account: Account, collection: str, record: dict[str, Any]) -> Any:
    """A record written through our write proxy: stored by the PDS and indexed at once."""
    body = {"repo": account.did, "collection": collection, "record": {"$type": collection, **record}}
    resp = await client.post(
        "/xrpc/com.atproto.repo.createRecord", json=body, headers={"authorization": f"Bearer {account.jwt}"}
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


async def python_sdk(pds: Pds, account: Account | None, did: str, base: str) -> Any:
    from atproto import AsyncClient

    if account is None:
        return AsyncClient(base_url=base)
    client = AsyncClient(base_url=pds.url)
    await client.login(account.handle, f"{account.handle.split('.')[0]}-password", fetch_bsky_profile=False)
    return client.with_proxy(SERVICE, did)


async def test_official_clients_through_the_pds(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    public = f"http://localhost:{port}"
    async with running_pds() as pds:
        settings = Settings(
            public_url=public,
            plc_url=pds.plc_url,
            allow_private_hosts=True,
            proxy_timeout=10.0,
            storage=StorageSettings(audio_dir=tmp_path / "audio"),
        )
        did = settings.did
        assert did == f"did:web:localhost%3A{port}"
        alice = await pds.create_account("alice")
        bob = await pds.create_account("bob")
        carol = await pds.create_account("carol")
        app = create_app(db_url, settings=settings)
        async with serve_on(app, port), httpx.AsyncClient(base_url=public, timeout=30) as direct:
            doc = (await direct.get("/.well-known/did.json")).json()
            assert doc["id"] == did
            assert doc["service"] == [{"id": f"#{SERVICE}", "type": "FmPlyrAppView", "serviceEndpoint": public}]

            def plan(account: Account | None, calls: list[dict[str, Any]]) -> dict[str, Any]:
                creds = (
                    None
                    if account is None
                    else {"identifier": account.handle, "password": f"{account.handle.split('.')[0]}-password"}
                )
                return {"pds": pds.url, "appview": public, "did": did, "lexicons": LEXICONS, "account": creds,
                        "calls": calls}  # fmt: skip

            # uploadAudio through the PDS, by the official JS client: the audio lands here and its URL is ours.
            audio = mp3_bytes(40)
            [upload] = await node_calls(
                plan(
                    alice,
                    [{"method": "fm.plyr.uploadAudio", "body_base64": base64.b64encode(audio).decode(),
                      "encoding": "audio/mpeg"}],
                )
            )  # fmt: skip
            assert upload["ok"], upload
            audio_url = upload["data"]["audioUrl"]
            assert audio_url.startswith(f"{public}/audio-files/"), audio_url
            fetched = await direct.get(audio_url.removeprefix(public))
            assert fetched.status_code == 200 and fetched.content == audio

            # A track using it, and bob's like of it, written through our proxy (indexed at once).
            track = await proxy_write(
                direct,
                alice,
                TRACK,
                {"title": "Through the PDS", "artist": "Alice", "fileType": "mp3", "audioUrl": audio_url,
                 "createdAt": NOW},
            )  # fmt: skip
            like = await proxy_write(
                direct, bob, LIKE, {"subject": {"uri": track["uri"], "cid": track["cid"]}, "createdAt": NOW}
            )
            # The track plays from our own origin: the record's audioUrl is recognised as ours.
            played = await direct.get(f"/audio/{alice.did}/{track['uri'].rsplit('/', 1)[1]}")
            assert played.status_code == 307 and played.headers["location"] == audio_url, played.headers

            reads = [
                {"method": "fm.plyr.getTrack", "params": {"uri": track["uri"]}},
                {"method": "fm.plyr.getActorTracks", "params": {"actor": alice.did}},
                {"method": "fm.plyr.getLatestTracks", "params": {}},
            ]

            def views(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
                for r in results:
                    assert r["ok"], r
                got, actor, latest = (r["data"] for r in results)
                assert [t["uri"] for t in actor["tracks"]] == [track["uri"]]
                assert [t["uri"] for t in latest["tracks"]] == [track["uri"]]
                return [got["track"], actor["tracks"][0], latest["tracks"][0]]

            # @atproto/api through the PDS: bob sees his like, carol sees none, and both are viewers.
            for view in views(await node_calls(plan(bob, reads))):
                assert liked(view) == like["uri"], view
                assert view["likeCount"] == 1
            for view in views(await node_calls(plan(carol, reads))):
                assert "viewer" in view and liked(view) is None, view
            # anonymous, straight to the AppView: no viewer at all
            for view in views(await node_calls(plan(None, reads))):
                assert "viewer" not in view, view

            # The Python SDK, the same calls.
            async def sdk_reads(account: Account | None) -> list[dict[str, Any]]:
                client = await python_sdk(pds, account, did, public)
                out = []
                for call in reads:
                    params = DotDict(call["params"]) if call["params"] else None
                    resp = await client.invoke_query(call["method"], params=params)
                    assert resp.success, resp
                    out.append({"ok": True, "data": resp.content if isinstance(resp.content, dict) else {}})
                return views(out)

            for view in await sdk_reads(bob):
                assert liked(view) == like["uri"], view
            for view in await sdk_reads(carol):
                assert "viewer" in view and liked(view) is None, view
            for view in await sdk_reads(None):
                assert "viewer" not in view, view

            # uploadAudio through the PDS by the Python SDK.
            sdk = await python_sdk(pds, carol, did, public)
            other = mp3_bytes(41)
            resp = await sdk.invoke_procedure("fm.plyr.uploadAudio", data=other, input_encoding="audio/mpeg")
            assert resp.success and isinstance(resp.content, dict), resp
            assert resp.content["audioUrl"].startswith(f"{public}/audio-files/"), resp.content
            assert (await direct.get(resp.content["audioUrl"].removeprefix(public))).content == other

            # An upload without a session is refused by the AppView itself (no service token).
            [anon] = await node_calls(
                plan(None, [{"method": "fm.plyr.uploadAudio", "body_base64": base64.b64encode(audio).decode(),
                             "encoding": "audio/mpeg"}])
            )  # fmt: skip
            assert not anon["ok"] and anon["status"] == 401, anon
