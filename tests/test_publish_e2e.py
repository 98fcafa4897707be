"""An artist publishes a track the way a third-party client would, end to end on real parts: a real PDS and PLC
(loopback), a real S3 API (moto's server, loopback) and the AppView served over HTTP.

1. The client asks its PDS for a service-auth token for us (`com.atproto.server.getServiceAuth`, lxm =
   `fm.plyr.uploadAudio`) and uploads the audio with it; the token is checked against the DID document the PLC
   serves.
2. It writes the `fm.plyr.track` record naming the returned `audioUrl` through the write proxy, with its own
   PDS session token.
3. With no indexer running, the track is listed at once and plays: `/audio/<did>/<rkey>` → our `audioUrl` →
   a presigned URL whose Range request returns exactly the uploaded bytes.
4. After the record is deleted through the proxy, `audit-audio` finds the object orphaned, never dangling.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer

from appview.app import create_app
from indexer.audio.audit import audit
from indexer.audio.store import StorageSettings, open_store
from indexer.settings import Settings
from tests.audio_support import UPLOAD, wav_bytes
from tests.pds.harness import NOW
from tests.pds.server import running_pds, unavailable
from tests.proxy_support import serve_app

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"local PDS unavailable: {unavailable()}")

PUBLIC_HOST = "api.plyr.test"


@pytest.fixture(scope="module")
def storage() -> Iterator[StorageSettings]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    settings = StorageSettings(
        s3_endpoint_url=f"http://{host}:{port}",
        s3_bucket=f"plyr-{uuid.uuid4().hex[:12]}",
        s3_access_key_id="testing",
        s3_secret_access_key="testing",
    )
    boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=settings.s3_bucket)
    try:
        yield settings
    finally:
        server.stop()


def local(url: str) -> str:
    """Our public origin is not resolvable here: a URL on it becomes its path on the served app."""
    parts = urlsplit(url)
    assert parts.netloc == PUBLIC_HOST, url
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def test_upload_publish_play_and_audit(db_url: str, storage: StorageSettings) -> None:
    audio = wav_bytes(3.0)
    async with running_pds() as pds:
        alice = await pds.create_account("alice")
        settings = Settings(
            public_host=PUBLIC_HOST,
            plc_url=pds.plc_url,
            allow_private_hosts=True,  # the PDS listens on loopback
            storage=storage,
        )
        session = {"authorization": f"Bearer {alice.jwt}"}
        app = create_app(db_url, settings=settings)
        async with serve_app(app) as base, httpx.AsyncClient(base_url=base, timeout=30) as api:
            granted = await pds.client.get(
                f"{pds.url}/xrpc/com.atproto.server.getServiceAuth",
                params={"aud": settings.did, "lxm": UPLOAD},
                headers=session,
            )
            assert granted.status_code == 200, granted.text
            token = granted.json()["token"]

            # A session token is the PDS's own, not a service token for us: refused before any byte is stored.
            refused = await api.post(
                f"/xrpc/{UPLOAD}", content=audio, headers={**session, "content-type": "audio/wav"}
            )
            assert refused.status_code == 401, refused.text

            uploaded = await api.post(
                f"/xrpc/{UPLOAD}",
                content=audio,
                headers={"authorization": f"Bearer {token}", "content-type": "audio/wav"},
            )
            assert uploaded.status_code == 200, uploaded.text
            up: dict[str, Any] = uploaded.json()
            assert up["size"] == len(audio) and up["mimeType"] == "audio/wav" and up["duration"] == 3
            assert up["audioUrl"] == f"https://{PUBLIC_HOST}/audio-files/{up['sha256']}"

            record = {
                "$type": "fm.plyr.track",
                "title": "Made here",
                "artist": "Alice",
                "fileType": up["fileType"],
                "audioUrl": up["audioUrl"],
                "duration": up["duration"],
                "createdAt": NOW,
            }
            created = await api.post(
                "/xrpc/com.atproto.repo.createRecord",
                json={"repo": alice.did, "collection": "fm.plyr.track", "record": record},
                headers=session,
            )
            assert created.status_code == 200, created.text
            uri = created.json()["uri"]
            rkey = uri.rsplit("/", 1)[1]

            listed = await api.get("/xrpc/fm.plyr.getActorTracks", params={"actor": alice.did})
            assert [t["uri"] for t in listed.json()["tracks"]] == [uri]

            played = await api.get(f"/audio/{alice.did}/{rkey}")
            assert played.status_code == 307 and played.headers["location"] == up["audioUrl"]
            hop = await api.get(local(played.headers["location"]))
            assert hop.status_code == 307, hop.text
            presigned = hop.headers["location"]
            assert presigned.startswith(f"{storage.s3_endpoint_url}/{storage.s3_bucket}/audio/{up['sha256']}?")
            assert "X-Amz-Signature=" in presigned
            async with httpx.AsyncClient(timeout=30) as http:
                part = await http.get(presigned, headers={"Range": "bytes=100-1099"})
            assert part.status_code == 206
            assert part.content == audio[100:1100]

            async with open_store(storage) as store:
                before = await audit(db_url, store, public_host=PUBLIC_HOST)
            assert before.dangling == [] and before.orphans == []

            deleted = await api.post(
                "/xrpc/com.atproto.repo.deleteRecord",
                json={"repo": alice.did, "collection": "fm.plyr.track", "rkey": rkey},
                headers=session,
            )
            assert deleted.status_code == 200, deleted.text
            gone = await api.get(f"/audio/{alice.did}/{rkey}")
            assert gone.status_code == 404

            async with open_store(storage) as store:
                after = await audit(db_url, store, public_host=PUBLIC_HOST)
            assert after.dangling == []
            assert [o.sha256 for o in after.orphans] == [up["sha256"]]
