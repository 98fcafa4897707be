"""Supporter-gated tracks (`supportGate`): views show the gate and no audio to whoever may not play it, and
`/audio` and `/audio-files` refuse them with a reason, never redirecting anywhere (the PDS blob included).

The supporter check is a fake atprotofans on loopback answering `com.atprotofans.validateSupporter` as the real
service does (`{"valid": bool}`), counting the questions; the CDN and the PDS blob are served by the same
server. Tracks go through the real fold; tokens are signed as a PDS signs them."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import AsyncTestClient

from appview.app import create_app
from appview.audio.gate import ANSWER_TTL, AUDIO_LXM, FAILURE_TTL, VALIDATE, SupporterCheck
from appview.memo import Memo
from bench.synth import BASE_US, commit, make_cid, make_did, make_tid, track_record, uri
from indexer.atproto.lexicon import Validator
from indexer.audio.store import StorageSettings
from indexer.metrics import Metrics
from indexer.settings import ConfigError, Settings
from tests.api_support import Keypair, StubResolver, service_jwt
from tests.audio_support import UPLOAD, wav_bytes
from tests.helpers import TRACK, ingest

ALICE = make_did(1)  # the artist
FAN = make_did(2)  # supports ALICE
STRANGER = make_did(3)  # does not
MALLORY = make_did(4)  # publishes tracks naming ALICE's upload
PLATFORM = make_did(5)
BLOB = make_cid({"audio": "gated"})
GATE = {"type": "any"}
GET_TRACK = "fm.plyr.getTrack"
LATEST = "fm.plyr.getLatestTracks"


def tid(n: int) -> str:
    return make_tid(BASE_US + n * 1000)


class Service:
    """A loopback atprotofans (validateSupporter), CDN (/cdn/...) and PDS (getBlob) in one server."""

    def __init__(self) -> None:
        self.supporters: set[tuple[str, str]] = {(FAN, ALICE)}
        self.mode = "answer"  # answer | error | garbage | slow
        self.asked: list[dict[str, str]] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: bytes, content_type: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == f"/xrpc/{VALIDATE}":
                    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    service.asked.append(params)
                    if service.mode == "slow":
                        time.sleep(1.0)
                    if service.mode == "error":
                        return self._send(500, b'{"error":"InternalServerError"}')
                    if service.mode == "garbage":
                        return self._send(200, b'{"valid":"yes"}')
                    valid = (params.get("supporter"), params.get("subject")) in service.supporters
                    return self._send(200, b'{"valid":true,"profile":{}}' if valid else b'{"valid":false}')
                if parts.path.startswith("/cdn/") or parts.path == "/xrpc/com.atproto.sync.getBlob":
                    return self._send(200, b"audio", "audio/mpeg")
                return self._send(404, b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)


@pytest.fixture
def service() -> Iterator[Service]:
    s = Service()
    s.thread.start()
    try:
        yield s
    finally:
        s.server.shutdown()
        s.server.server_close()


class People:
    """Signing keys for everyone, known to the resolver; ALICE's PDS is the loopback server."""

    def __init__(self, service: Service) -> None:
        self.resolver = StubResolver()
        self.resolver.pds[ALICE] = service.origin
        self.keys = {did: Keypair() for did in (ALICE, FAN, STRANGER, MALLORY)}
        for did, key in self.keys.items():
            self.resolver.keys[did] = key.did_key

    def auth(self, did: str, lxm: str = AUDIO_LXM) -> dict[str, str]:
        return {"Authorization": f"Bearer {service_jwt(self.keys[did], iss=did, lxm=lxm)}"}


@pytest.fixture
def people(service: Service) -> People:
    return People(service)


def settings(service: Service, *, check: bool = True, **kw: Any) -> Settings:
    return Settings(
        public_host="api.plyr.test",
        trusted_audio_origins=(service.origin,),
        supporter_check_url=service.origin if check else None,
        **kw,
    )


def track(n: int, *, gated: bool, audio_url: str | None, blob: bool, did: str = ALICE) -> Any:
    rec = track_record(f"Track {n}")
    rec.pop("audioUrl")
    if audio_url:
        rec["audioUrl"] = audio_url
    if blob:
        rec["audioBlob"] = {"$type": "blob", "ref": {"$link": BLOB}, "mimeType": "audio/mpeg", "size": 1234}
    if gated:
        rec["supportGate"] = GATE
    return commit(did, TRACK, tid(n), tid(n), rec)


async def seed(db_url: str, validator: Validator, service: Service) -> None:
    await ingest(
        db_url,
        validator,
        [
            track(1, gated=True, audio_url=f"{service.origin}/cdn/gated.mp3", blob=True),  # plays from the CDN
            track(2, gated=False, audio_url=f"{service.origin}/cdn/open.mp3", blob=False),
            track(3, gated=True, audio_url="https://untrusted.example/a.mp3", blob=True),  # plays from the blob
        ],
    )


def by_rkey(tracks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["uri"].rsplit("/", 1)[1]: t for t in tracks}


def app(db_url: str, people: People, s: Settings, metrics: Metrics | None = None) -> Any:
    return create_app(db_url, settings=s, resolver=people.resolver, metrics=metrics)


async def test_views_show_the_gate_and_withhold_audio(
    db_url: str, validator: Validator, service: Service, people: People
) -> None:
    await seed(db_url, validator, service)
    gated_uri = uri(ALICE, TRACK, tid(1))
    async with AsyncTestClient(app=app(db_url, people, settings(service))) as client:
        anon = by_rkey((await client.get(f"/xrpc/{LATEST}")).json()["tracks"])
        anon_one = (await client.get(f"/xrpc/{GET_TRACK}", params={"uri": gated_uri})).json()["track"]
        fan_feed = by_rkey((await client.get(f"/xrpc/{LATEST}", headers=people.auth(FAN, LATEST))).json()["tracks"])
        asked_by_feeds = len(service.asked)
        fan_one = await client.get(f"/xrpc/{GET_TRACK}", params={"uri": gated_uri}, headers=people.auth(FAN, GET_TRACK))
        fan_again = await client.get(
            f"/xrpc/{GET_TRACK}", params={"uri": gated_uri}, headers=people.auth(FAN, GET_TRACK)
        )
        stranger_one = await client.get(
            f"/xrpc/{GET_TRACK}", params={"uri": gated_uri}, headers=people.auth(STRANGER, GET_TRACK)
        )
        author_feed = by_rkey(
            (await client.get(f"/xrpc/{LATEST}", headers=people.auth(ALICE, LATEST))).json()["tracks"]
        )
    for view in (anon[tid(1)], anon[tid(3)], anon_one, fan_feed[tid(1)]):
        assert view["supportGate"] == GATE
        assert "audio" not in view
        assert "audioUrl" not in view["record"] and "audioBlob" not in view["record"]
        assert view["record"]["supportGate"] == GATE
        assert view["record"]["title"].startswith("Track")
    assert "untrusted.example" not in str(anon) and BLOB not in str(anon)
    open_track = anon[tid(2)]
    assert "supportGate" not in open_track
    assert open_track["audio"]["url"] == f"https://api.plyr.test/audio/{ALICE}/{tid(2)}"
    assert open_track["record"]["audioUrl"] == f"{service.origin}/cdn/open.mp3"
    assert asked_by_feeds == 0, "feeds never ask the supporter check"

    fan_view = fan_one.json()["track"]
    assert fan_view["audio"]["url"] == f"https://api.plyr.test/audio/{ALICE}/{tid(1)}"
    assert fan_view["record"]["audioUrl"] == f"{service.origin}/cdn/gated.mp3"
    assert fan_view["supportGate"] == GATE
    assert fan_again.json()["track"]["audio"] == fan_view["audio"]
    assert "audio" not in stranger_one.json()["track"]
    assert [(a["supporter"], a["subject"], a["signer"]) for a in service.asked] == [
        (FAN, ALICE, ALICE),
        (STRANGER, ALICE, ALICE),
    ], "one question per viewer and artist; the answer is cached"
    assert author_feed[tid(1)]["audio"]["url"].endswith(f"/audio/{ALICE}/{tid(1)}")
    assert author_feed[tid(3)]["record"]["audioBlob"]["ref"]["$link"] == BLOB
    assert fan_one.headers["cache-control"] == "private, no-cache"


async def test_audio_route_plays_for_author_and_supporters_only(
    db_url: str, validator: Validator, service: Service, people: People
) -> None:
    await seed(db_url, validator, service)
    blob = f"{service.origin}/xrpc/com.atproto.sync.getBlob"
    async with AsyncTestClient(app=app(db_url, people, settings(service))) as client:

        async def play(n: int, who: str | None = None, lxm: str = AUDIO_LXM) -> Any:
            headers = people.auth(who, lxm) if who else {}
            return await client.get(f"/audio/{ALICE}/{tid(n)}", headers=headers, follow_redirects=False)

        anonymous = [await play(1), await play(3)]
        head = await client.head(f"/audio/{ALICE}/{tid(3)}", follow_redirects=False)
        author = [await play(1, ALICE), await play(3, ALICE)]
        fan = [await play(1, FAN), await play(3, FAN)]
        stranger = await play(1, STRANGER)
        wrong_method = await play(1, FAN, lxm=GET_TRACK)
        open_anonymous = await play(2)
        open_with_bad_token = await client.get(
            f"/audio/{ALICE}/{tid(2)}", headers={"Authorization": "Bearer nonsense"}, follow_redirects=False
        )
    for refused in (*anonymous, head):
        assert refused.status_code == 401, refused.text
        assert "location" not in refused.headers
        assert refused.headers["cache-control"] == "private, no-store"
    assert anonymous[0].json()["error"] == "AuthRequired"
    assert AUDIO_LXM in anonymous[0].json()["message"]
    assert author[0].status_code == 307
    assert author[0].headers["location"] == f"{service.origin}/cdn/gated.mp3"
    assert author[1].headers["location"].startswith(blob)
    assert author[0].headers["cache-control"] == "private, no-store"
    assert [r.status_code for r in fan] == [307, 307]
    assert fan[0].headers["location"] == f"{service.origin}/cdn/gated.mp3"
    assert fan[1].headers["location"].startswith(blob)
    assert stranger.status_code == 403
    assert stranger.json()["error"] == "SupporterRequired"
    assert "location" not in stranger.headers
    assert wrong_method.status_code == 401
    assert wrong_method.json()["error"] == "BadJwtLexiconMethod"
    assert open_anonymous.status_code == 307
    assert open_anonymous.headers["cache-control"] == "public, max-age=60"
    assert open_with_bad_token.status_code == 307, "ungated audio never reads the token"
    assert [a["supporter"] for a in service.asked] == [FAN, STRANGER], "the author is never asked about"


async def test_without_a_supporter_check_only_the_author_plays(
    db_url: str, validator: Validator, service: Service, people: People
) -> None:
    await seed(db_url, validator, service)
    gated_uri = uri(ALICE, TRACK, tid(1))
    async with AsyncTestClient(app=app(db_url, people, settings(service, check=False))) as client:
        author = await client.get(f"/audio/{ALICE}/{tid(1)}", headers=people.auth(ALICE), follow_redirects=False)
        fan = await client.get(f"/audio/{ALICE}/{tid(1)}", headers=people.auth(FAN), follow_redirects=False)
        anonymous = await client.get(f"/audio/{ALICE}/{tid(1)}", follow_redirects=False)
        view = await client.get(f"/xrpc/{GET_TRACK}", params={"uri": gated_uri}, headers=people.auth(FAN, GET_TRACK))
    assert author.status_code == 307
    assert fan.status_code == 501
    assert fan.json()["error"] == "SupporterCheckUnavailable"
    assert "operator" in fan.json()["message"]
    assert "location" not in fan.headers
    assert anonymous.status_code == 401
    assert view.status_code == 200
    assert "audio" not in view.json()["track"]
    assert service.asked == []


@pytest.mark.parametrize(("mode", "reason"), [("error", "error_status"), ("garbage", "bad_answer")])
async def test_a_failing_check_fails_closed(
    db_url: str, validator: Validator, service: Service, people: People, mode: str, reason: str
) -> None:
    await seed(db_url, validator, service)
    service.mode = mode
    metrics = Metrics()
    async with AsyncTestClient(app=app(db_url, people, settings(service), metrics)) as client:
        fan = await client.get(f"/audio/{ALICE}/{tid(1)}", headers=people.auth(FAN), follow_redirects=False)
        again = await client.get(f"/audio/{ALICE}/{tid(3)}", headers=people.auth(FAN), follow_redirects=False)
        view = await client.get(
            f"/xrpc/{GET_TRACK}", params={"uri": uri(ALICE, TRACK, tid(1))}, headers=people.auth(FAN, GET_TRACK)
        )
        author = await client.get(f"/audio/{ALICE}/{tid(1)}", headers=people.auth(ALICE), follow_redirects=False)
    for refused in (fan, again):
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "SupporterCheckFailed"
        assert "location" not in refused.headers
    assert "audio" not in view.json()["track"]
    assert author.status_code == 307
    assert len(service.asked) == 1, "a failure is kept briefly: one question, not one per play"
    assert metrics.supporter_checks.labels(reason)._value.get() == 1


async def test_the_configured_signer_is_sent(
    db_url: str, validator: Validator, service: Service, people: People
) -> None:
    await seed(db_url, validator, service)
    async with AsyncTestClient(app=app(db_url, people, settings(service, supporter_signer=PLATFORM))) as client:
        fan = await client.get(f"/audio/{ALICE}/{tid(1)}", headers=people.auth(FAN), follow_redirects=False)
    assert fan.status_code == 307
    assert service.asked == [{"supporter": FAN, "subject": ALICE, "signer": PLATFORM}]


async def test_check_timeouts_unreachable_services_and_caching(service: Service) -> None:
    now = [1000.0]
    memo = Memo(clock=lambda: now[0])
    metrics = Metrics()
    check = SupporterCheck(service.origin, metrics=metrics, timeout=0.2, memo=memo)
    try:
        service.mode = "slow"
        assert await check.supports(FAN, ALICE) == "failed"
        assert metrics.supporter_checks.labels("timeout")._value.get() == 1
        service.mode = "answer"
        assert await check.supports(FAN, ALICE) == "failed", "a failure is kept for FAILURE_TTL"
        now[0] += FAILURE_TTL + 0.1
        assert await check.supports(FAN, ALICE) == "proven"
        assert await check.supports(STRANGER, ALICE) == "not_supporter"
        service.supporters.add((STRANGER, ALICE))
        now[0] += ANSWER_TTL - 1
        assert await check.supports(STRANGER, ALICE) == "not_supporter", "answers are kept for ANSWER_TTL"
        now[0] += 2
        assert await check.supports(STRANGER, ALICE) == "proven", "a new supporter is seen once it expires"
        assert len(service.asked) == 4
        assert await check.proof(None, ALICE, '{"type":"any"}') == "anonymous"
        assert await check.proof(ALICE, ALICE, '{"type":"weird"}') == "author"
        assert await check.proof(FAN, ALICE, '{"type":"weird"}') == "unsupported"
        assert await check.proof(FAN, ALICE, "[1]") == "unsupported"
    finally:
        await check.close()
    dead = SupporterCheck("http://127.0.0.1:9", metrics=metrics, timeout=1.0)
    try:
        assert await dead.supports(FAN, ALICE) == "failed"
        assert metrics.supporter_checks.labels("unreachable")._value.get() == 1
    finally:
        await dead.close()


async def test_uploaded_audio_of_gated_tracks_is_gated_too(
    db_url: str, validator: Validator, service: Service, people: People, tmp_path: Path
) -> None:
    storage = StorageSettings(audio_dir=tmp_path / "audio")
    data = wav_bytes(0.5)
    s = settings(service, storage=storage)
    async with AsyncTestClient(app=app(db_url, people, s)) as client:
        headers = {**people.auth(ALICE, UPLOAD), "Content-Type": "audio/wav"}
        up = (await client.post(f"/xrpc/{UPLOAD}", content=data, headers=headers)).json()
        path = urlsplit(up["audioUrl"]).path

        async def fetch(who: str | None = None) -> Any:
            return await client.get(path, headers=people.auth(who) if who else {}, follow_redirects=False)

        before = await fetch()
        await ingest(db_url, validator, [track(1, gated=True, audio_url=up["audioUrl"], blob=False)])
        # Someone else naming the object in an ungated track of theirs does not open it.
        await ingest(db_url, validator, [track(9, gated=False, audio_url=up["audioUrl"], blob=False, did=MALLORY)])
        anonymous = await fetch()
        played = await client.get(f"/audio/{ALICE}/{tid(1)}", headers=people.auth(FAN), follow_redirects=False)
        fan = await fetch(FAN)
        stranger = await fetch(STRANGER)
        author = await fetch(ALICE)
        view = (await client.get(f"/xrpc/{LATEST}")).json()["tracks"]
        # The uploader publishing the same audio ungated opens it: it plays for anyone through that track.
        await ingest(db_url, validator, [track(2, gated=False, audio_url=up["audioUrl"], blob=False)])
        opened = await fetch()
    assert before.status_code == 200, "not yet named by a gated track of its uploader"
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "AuthRequired"
    assert played.status_code == 307 and played.headers["location"] == up["audioUrl"]
    assert (fan.status_code, fan.content) == (200, data)
    assert fan.headers["cache-control"] == "private, no-store"
    assert stranger.status_code == 403
    assert stranger.json()["error"] == "SupporterRequired"
    assert author.status_code == 200
    gated_view = by_rkey(view)[tid(1)]
    assert "audio" not in gated_view and up["sha256"] not in str(gated_view)
    assert opened.status_code == 200
    assert "immutable" in opened.headers["cache-control"]


def test_settings() -> None:
    s = Settings.from_env(
        {"PLYR_APPVIEW_SUPPORTER_CHECK_URL": "https://atprotofans.com/", "PLYR_APPVIEW_SUPPORTER_SIGNER": PLATFORM}
    )
    assert (s.supporter_check_url, s.supporter_signer) == ("https://atprotofans.com", PLATFORM)
    assert Settings.from_env({}).supporter_check_url is None
    for env in (
        {"PLYR_APPVIEW_SUPPORTER_CHECK_URL": "atprotofans.com"},
        {"PLYR_APPVIEW_SUPPORTER_CHECK_URL": "ftp://atprotofans.com"},
        {"PLYR_APPVIEW_SUPPORTER_SIGNER": "atprotofans.com"},
    ):
        with pytest.raises(ConfigError, match=next(iter(env))):
            Settings.from_env(env)
