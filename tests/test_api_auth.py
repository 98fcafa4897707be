"""Service auth: tokens a PDS would mint for a proxied call, accepted or refused with a reason; and the
did:web document a PDS reads to find us."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from atproto_crypto.consts import P256_JWT_ALG, SECP256K1_JWT_ALG
from litestar.testing import AsyncTestClient

from bench.synth import BASE_US, commit, like_record, make_cid, make_did, make_tid, track_record, uri
from indexer.atproto.lexicon import Validator
from indexer.settings import Settings
from tests.api_support import SERVICE_DID, Keypair, StubResolver, app, service_jwt
from tests.helpers import LIKE, TRACK, ingest

ALICE = make_did(1)
VIEWER = make_did(2)
TRACK_REC = track_record("Signal")
T1 = make_tid(BASE_US + 1000)
TRACK_URI = uri(ALICE, TRACK, T1)
LIKE_URI = uri(VIEWER, LIKE, make_tid(BASE_US + 2000))
GET_TRACK = "fm.plyr.getTrack"


async def seed(db_url: str, validator: Validator) -> None:
    await ingest(
        db_url,
        validator,
        [
            commit(ALICE, TRACK, T1, T1, TRACK_REC),
            commit(
                VIEWER,
                LIKE,
                make_tid(BASE_US + 2000),
                make_tid(BASE_US + 2000),
                like_record(TRACK_URI, make_cid(TRACK_REC)),
            ),
        ],
    )


async def get_track(db_url: str, resolver: StubResolver, token: str | None, scheme: str = "Bearer") -> Any:
    headers = {} if token is None else {"Authorization": f"{scheme} {token}"}
    async with AsyncTestClient(app=app(db_url, resolver)) as client:
        return await client.get("/xrpc/fm.plyr.getTrack", params={"uri": TRACK_URI}, headers=headers)


@pytest.mark.parametrize("alg", [SECP256K1_JWT_ALG, P256_JWT_ALG])
async def test_valid_token_adds_viewer_state(db_url: str, validator: Validator, alg: str) -> None:
    await seed(db_url, validator)
    key = Keypair(alg)
    resolver = StubResolver()
    resolver.keys[VIEWER] = key.did_key
    resp = await get_track(db_url, resolver, service_jwt(key, iss=VIEWER, lxm=GET_TRACK))
    assert resp.status_code == 200, resp.text
    assert resp.json()["track"]["viewer"] == {"like": LIKE_URI}
    assert resp.headers["cache-control"] == "private, no-cache"


async def test_viewer_without_like_and_service_audience(db_url: str, validator: Validator) -> None:
    await seed(db_url, validator)
    other = make_did(3)
    key = Keypair()
    resolver = StubResolver()
    resolver.keys[other] = key.did_key
    # A PDS may address the token to our DID with the service fragment.
    token = service_jwt(key, iss=other, lxm=GET_TRACK, aud=f"{SERVICE_DID}#fm_plyr_appview")
    resp = await get_track(db_url, resolver, token)
    assert resp.status_code == 200, resp.text
    assert resp.json()["track"]["viewer"] == {}


async def test_anonymous_has_no_viewer_block(db_url: str, validator: Validator) -> None:
    await seed(db_url, validator)
    resolver = StubResolver()
    resp = await get_track(db_url, resolver, None)
    assert resp.status_code == 200
    assert "viewer" not in resp.json()["track"]
    assert resolver.key_lookups == 0


def _refusals() -> list[Any]:
    """Each refused token, minted when its test runs (one minted at collection could expire before the test)."""
    return [
        pytest.param(
            lambda key, _: service_jwt(key, iss=VIEWER, lxm=GET_TRACK, exp_in=-120), "JwtExpired", id="expired"
        ),
        pytest.param(
            lambda key, _: service_jwt(key, iss=VIEWER, lxm=GET_TRACK, aud="did:web:someone-else.test"),
            "BadJwtAudience",
            id="wrong-audience",
        ),
        pytest.param(
            lambda key, _: service_jwt(key, iss=VIEWER, lxm="fm.plyr.getStats"), "BadJwtLexiconMethod", id="wrong-lxm"
        ),
        pytest.param(lambda key, _: service_jwt(key, iss=VIEWER, lxm=None), "BadJwtLexiconMethod", id="missing-lxm"),
        pytest.param(
            lambda _, stranger: service_jwt(stranger, iss=VIEWER, lxm=GET_TRACK), "BadJwtSignature", id="bad-signature"
        ),
        pytest.param(
            lambda key, _: service_jwt(key, iss=make_did(9), lxm=GET_TRACK), "BadJwtSignature", id="unknown-issuer"
        ),
        pytest.param(lambda key, _: service_jwt(key, iss="alice.test", lxm=GET_TRACK), "BadJwt", id="issuer-not-a-did"),
        pytest.param(lambda key, _: "not.a.jwt", "BadJwt", id="malformed"),
        pytest.param(
            lambda key, _: service_jwt(key, iss=VIEWER, lxm=GET_TRACK) + "x", "BadJwtSignature", id="tampered"
        ),
    ]


@pytest.mark.parametrize(("mint", "error"), _refusals())
async def test_invalid_tokens_are_refused(
    db_url: str, validator: Validator, mint: Callable[[Keypair, Keypair], str], error: str
) -> None:
    await seed(db_url, validator)
    key, stranger = Keypair(), Keypair()
    resolver = StubResolver()
    resolver.keys[VIEWER] = key.did_key
    resp = await get_track(db_url, resolver, mint(key, stranger))
    assert resp.status_code == 401, resp.text
    assert resp.json()["error"] == error
    assert resp.json()["message"]


async def test_non_bearer_scheme_is_refused(db_url: str, validator: Validator) -> None:
    await seed(db_url, validator)
    resp = await get_track(db_url, StubResolver(), "dXNlcjpwYXNz", scheme="Basic")
    assert resp.status_code == 401
    assert resp.json()["error"] == "AuthMissing"


async def test_did_document_names_our_service(db_url: str) -> None:
    settings = Settings.from_env({"PLYR_APPVIEW_PUBLIC_HOST": "music.example.com"})
    async with AsyncTestClient(app=app(db_url, settings=settings)) as client:
        doc = (await client.get("/.well-known/did.json")).json()
    assert doc["id"] == "did:web:music.example.com"
    assert doc["service"] == [
        {"id": "#fm_plyr_appview", "type": "FmPlyrAppView", "serviceEndpoint": "https://music.example.com"}
    ]


def test_settings_from_env() -> None:
    s = Settings.from_env(
        {
            "PLYR_APPVIEW_PUBLIC_HOST": "localhost:8080",
            "PLYR_APPVIEW_TRUSTED_AUDIO_ORIGINS": "https://cdn.example.com/, https://b.example",
        }
    )
    assert s.did == "did:web:localhost%3A8080"
    assert s.trusted_audio_origins == ("https://cdn.example.com", "https://b.example")
    assert Settings.from_env({"PLYR_APPVIEW_DID": "did:plc:abc"}).did == "did:plc:abc"
    assert Settings.from_env({}).did == "did:web:localhost"


@pytest.mark.parametrize(
    ("nsid", "params"),
    [
        ("fm.plyr.getLatestTracks", {}),
        ("fm.plyr.getActorTracks", {"actor": ALICE}),
        ("fm.plyr.searchTracks", {"q": "signal"}),
    ],
)
async def test_pages_carry_the_viewer_like(db_url: str, validator: Validator, nsid: str, params: Any) -> None:
    await seed(db_url, validator)
    key = Keypair()
    other = make_did(3)
    resolver = StubResolver()
    resolver.keys[VIEWER] = key.did_key
    resolver.keys[other] = key.did_key
    async with AsyncTestClient(app=app(db_url, resolver)) as client:
        liked, not_liked, anonymous = [
            await client.get(f"/xrpc/{nsid}", params=params, headers=headers)
            for headers in (
                {"Authorization": f"Bearer {service_jwt(key, iss=VIEWER, lxm=nsid)}"},
                {"Authorization": f"Bearer {service_jwt(key, iss=other, lxm=nsid)}"},
                {},
            )
        ]
    assert [t["viewer"] for t in liked.json()["tracks"]] == [{"like": LIKE_URI}]
    assert [t["viewer"] for t in not_liked.json()["tracks"]] == [{}]
    assert ["viewer" in t for t in anonymous.json()["tracks"]] == [False]
