"""Service-auth refusals, as a matrix over a read method and the upload: every bad token gets a 401 with its own
error name and a message; a good one goes through once and only once."""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from appview.app import create_app
from appview.auth import MAX_LIFETIME_SECONDS, ReplayCache, ServiceAuth
from bench.synth import BASE_US, commit, make_did, make_tid, track_record, uri
from indexer.atproto.lexicon import Validator
from indexer.audio.store import StorageSettings
from tests.api_support import SERVICE_DID, Keypair, StubResolver, service_jwt
from tests.audio_support import UPLOAD, settings_with, wav_bytes
from tests.helpers import TRACK, ingest

VIEWER = make_did(61)
ALICE = make_did(62)
T1 = make_tid(BASE_US + 10)
TRACK_URI = uri(ALICE, TRACK, T1)
GET_TRACK = "fm.plyr.getTrack"
WAV = wav_bytes(1.0)


class Call:
    """One XRPC method as a client calls it, with an Authorization header."""

    def __init__(self, nsid: str) -> None:
        self.nsid = nsid

    async def __call__(self, client: AsyncTestClient[Any], authorization: str | None) -> Any:
        headers = {} if authorization is None else {"Authorization": authorization}
        if self.nsid == UPLOAD:
            return await client.post(f"/xrpc/{UPLOAD}", content=WAV, headers={**headers, "Content-Type": "audio/wav"})
        return await client.get(f"/xrpc/{self.nsid}", params={"uri": TRACK_URI}, headers=headers)


@pytest.fixture(params=[GET_TRACK, UPLOAD])
def call(request: pytest.FixtureRequest) -> Call:
    return Call(request.param)


@pytest.fixture
def key() -> Keypair:
    return Keypair()


@pytest.fixture
async def client(
    db_url: str, validator: Validator, tmp_path: Path, key: Keypair
) -> AsyncIterator[AsyncTestClient[Any]]:
    await ingest(db_url, validator, [commit(ALICE, TRACK, T1, T1, track_record("Matrix"))])
    resolver = StubResolver()
    resolver.keys[VIEWER] = key.did_key
    settings = settings_with(StorageSettings(audio_dir=tmp_path / "audio"))
    async with AsyncTestClient(app=create_app(db_url, settings=settings, resolver=resolver)) as c:
        yield c


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(payload: dict[str, Any], alg: str = "none") -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(payload).encode())}."


Token = Callable[[Keypair, str], str]
NOW = int(time.time())


def _jwt(iss: str = VIEWER, **kw: Any) -> Token:
    return lambda key, nsid: service_jwt(key, iss=iss, **{"lxm": nsid, **kw})


CASES: list[Any] = [
    pytest.param(lambda key, nsid: service_jwt(Keypair(), iss=VIEWER, lxm=nsid), "BadJwtSignature", id="forged"),
    pytest.param(_jwt(iss=make_did(99)), "BadJwtSignature", id="unknown-issuer"),
    pytest.param(
        lambda key, nsid: service_jwt(key, iss=VIEWER, lxm=nsid)[:-3] + "AAA",
        "BadJwtSignature",
        id="tampered-signature",
    ),
    pytest.param(
        lambda key, nsid: _unsigned({"iss": VIEWER, "aud": SERVICE_DID, "lxm": nsid, "exp": int(time.time()) + 60}),
        "BadJwtSignature",
        id="alg-none",
    ),
    pytest.param(_jwt(exp_in=-60), "JwtExpired", id="expired"),
    pytest.param(_jwt(exp_in=2 * MAX_LIFETIME_SECONDS), "BadJwt", id="lifetime-too-long"),
    pytest.param(
        lambda key, nsid: service_jwt(key, iss=VIEWER, lxm=nsid, nbf=int(time.time()) + 120),
        "JwtNotYetValid",
        id="nbf-in-future",
    ),
    pytest.param(
        lambda key, nsid: service_jwt(key, iss=VIEWER, lxm=nsid, iat=int(time.time()) + 3600),
        "JwtNotYetValid",
        id="iat-far-in-future",
    ),
    pytest.param(_jwt(iat="yesterday"), "BadJwt", id="iat-not-a-number"),
    pytest.param(_jwt(nbf=1.5), "BadJwt", id="nbf-not-an-integer"),
    pytest.param(_jwt(jti=12345), "BadJwt", id="jti-not-a-string"),
    pytest.param(_jwt(aud="did:web:someone-else.test"), "BadJwtAudience", id="wrong-audience"),
    pytest.param(_jwt(aud=None), "BadJwtAudience", id="no-audience"),
    pytest.param(
        lambda key, nsid: service_jwt(key, iss=VIEWER, lxm="fm.plyr.getStats"), "BadJwtLexiconMethod", id="wrong-lxm"
    ),
    pytest.param(lambda key, nsid: service_jwt(key, iss=VIEWER, lxm=None), "BadJwtLexiconMethod", id="no-lxm"),
    pytest.param(
        lambda key, nsid: service_jwt(key, iss=VIEWER, lxm=GET_TRACK if nsid == UPLOAD else UPLOAD),
        "BadJwtLexiconMethod",
        id="other-methods-lxm",
    ),
    pytest.param(_jwt(iss="alice.test"), "BadJwt", id="issuer-not-a-did"),
    pytest.param(lambda key, nsid: "not.a.jwt", "BadJwt", id="garbage"),
]


@pytest.mark.parametrize(("make", "error"), CASES)
async def test_bad_tokens_are_refused(
    client: AsyncTestClient[Any], call: Call, key: Keypair, make: Token, error: str
) -> None:
    resp = await call(client, f"Bearer {make(key, call.nsid)}")
    assert resp.status_code == 401, resp.text
    body = resp.json()
    assert body["error"] == error, body
    assert isinstance(body["message"], str) and body["message"]


async def test_a_token_is_good_once(client: AsyncTestClient[Any], call: Call, key: Keypair) -> None:
    jti = secrets.token_hex(16)
    token = service_jwt(key, iss=VIEWER, lxm=call.nsid, jti=jti)
    first = await call(client, f"Bearer {token}")
    assert first.status_code == 200, first.text
    again = await call(client, f"Bearer {token}")
    assert again.status_code == 401
    assert again.json()["error"] == "JwtReplayed"
    # A fresh signature over the same jti is the same token replayed.
    resigned = await call(client, f"Bearer {service_jwt(key, iss=VIEWER, lxm=call.nsid, jti=jti, exp_in=30)}")
    assert resigned.json()["error"] == "JwtReplayed"
    # Another jti from the same viewer is a new request.
    other = await call(client, f"Bearer {service_jwt(key, iss=VIEWER, lxm=call.nsid, jti=secrets.token_hex(16))}")
    assert other.status_code == 200, other.text


async def test_refused_tokens_do_not_burn_a_jti(client: AsyncTestClient[Any], call: Call, key: Keypair) -> None:
    jti = secrets.token_hex(16)
    forged = service_jwt(Keypair(), iss=VIEWER, lxm=call.nsid, jti=jti)
    assert (await call(client, f"Bearer {forged}")).json()["error"] == "BadJwtSignature"
    real = await call(client, f"Bearer {service_jwt(key, iss=VIEWER, lxm=call.nsid, jti=jti)}")
    assert real.status_code == 200, real.text


async def test_small_clock_skew_is_tolerated(client: AsyncTestClient[Any], call: Call, key: Keypair) -> None:
    now = int(time.time())
    token = service_jwt(key, iss=VIEWER, lxm=call.nsid, iat=now + 3, nbf=now + 3)
    resp = await call(client, f"Bearer {token}")
    assert resp.status_code == 200, resp.text


async def test_anonymous_upload_is_refused_but_anonymous_read_is_not(client: AsyncTestClient[Any], call: Call) -> None:
    resp = await call(client, None)
    if call.nsid == UPLOAD:
        assert resp.status_code == 401 and resp.json()["error"] == "AuthRequired"
    else:
        assert resp.status_code == 200


def test_replay_cache_forgets_at_expiry_and_stays_bounded() -> None:
    clock = [1000.0]
    cache = ReplayCache(max_entries=3, clock=lambda: clock[0])
    assert cache.first_use(("a", "1"), 1010)
    assert not cache.first_use(("a", "1"), 1010)
    assert cache.first_use(("b", "1"), 1010)  # the jti is per issuer
    clock[0] = 1011
    assert cache.first_use(("a", "1"), 1070)  # its first use has expired: a new token can carry it
    assert len(cache) == 1
    for i in range(10):
        assert cache.first_use(("c", str(i)), 1100 + i)
    assert len(cache) == 3
    # The survivors are the ones expiring last.
    assert not cache.first_use(("c", "9"), 1109)
    assert cache.first_use(("c", "0"), 1100)


async def test_replay_is_judged_on_the_services_clock() -> None:
    key = Keypair()
    resolver = StubResolver()
    resolver.keys[VIEWER] = key.did_key
    token = service_jwt(key, iss=VIEWER, lxm=GET_TRACK, jti="j1", exp_in=60)
    auth = ServiceAuth(SERVICE_DID, resolver)  # type: ignore[arg-type]
    assert await auth.viewer(f"Bearer {token}", GET_TRACK) == VIEWER
    with pytest.raises(Exception, match="already used"):
        await auth.viewer(f"Bearer {token}", GET_TRACK)
