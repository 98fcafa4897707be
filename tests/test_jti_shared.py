"""Service-auth token ids are shared by every app instance on one database: a token accepted by one replica is
refused as a replay by another, forged tokens take no slot there either, and expired ids are pruned."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from litestar.testing import AsyncTestClient
from psycopg_pool import AsyncConnectionPool

from appview.app import create_app
from appview.auth import SharedReplayCache
from bench.synth import make_did
from tests.api_support import SETTINGS, Keypair, StubResolver, service_jwt
from tests.helpers import rows

VIEWER = make_did(71)
NSID = "fm.plyr.getLatestTracks"


def _resolver(key: Keypair) -> StubResolver:
    resolver = StubResolver()
    resolver.keys[VIEWER] = key.did_key
    return resolver


async def _get(client: AsyncTestClient[Any], token: str) -> Any:
    return await client.get(f"/xrpc/{NSID}", headers={"Authorization": f"Bearer {token}"})


async def test_a_token_replayed_to_another_instance_is_refused(db_url: str) -> None:
    key = Keypair()
    first = create_app(db_url, settings=SETTINGS, resolver=_resolver(key))
    second = create_app(db_url, settings=SETTINGS, resolver=_resolver(key))
    async with AsyncTestClient(app=first) as one, AsyncTestClient(app=second) as two:
        jti = secrets.token_hex(16)
        # A forged token carrying the jti, at either instance, takes no slot.
        forged = service_jwt(Keypair(), iss=VIEWER, lxm=NSID, jti=jti)
        assert (await _get(two, forged)).json()["error"] == "BadJwtSignature"
        token = service_jwt(key, iss=VIEWER, lxm=NSID, jti=jti)
        accepted = await _get(one, token)
        assert accepted.status_code == 200, accepted.text
        for instance in (two, one):
            replayed = await _get(instance, token)
            assert replayed.status_code == 401 and replayed.json()["error"] == "JwtReplayed"
        # Another jti of the same viewer is a new request, at either instance.
        fresh = await _get(two, service_jwt(key, iss=VIEWER, lxm=NSID, jti=secrets.token_hex(16)))
        assert fresh.status_code == 200, fresh.text
    assert await rows(db_url, "SELECT issuer, count(*) FROM service_auth_jtis GROUP BY issuer") == [(VIEWER, 2)]


async def test_concurrent_first_uses_accept_exactly_one(db_url: str) -> None:
    async with AsyncConnectionPool(db_url, min_size=1, max_size=8, kwargs={"autocommit": True}) as pool:
        caches = [SharedReplayCache(pool) for _ in range(8)]
        expires = time.time() + 60
        results = await asyncio.gather(*(cache.first_use((VIEWER, "same"), expires) for cache in caches))
    assert sorted(results) == [False] * 7 + [True]


async def test_an_expired_id_may_be_used_again_and_is_pruned(db_url: str) -> None:
    now = [1_000_000.0]
    async with AsyncConnectionPool(db_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as pool:
        cache = SharedReplayCache(pool, clock=lambda: now[0])
        assert await cache.first_use((VIEWER, "j"), now[0] + 60)
        assert not await cache.first_use((VIEWER, "j"), now[0] + 60)
        assert await cache.first_use(("did:plc:other", "j"), now[0] + 60)  # a jti is per issuer
        now[0] += 61
        # Expired but not yet pruned: no longer a replay.
        assert await cache.first_use((VIEWER, "j"), now[0] + 60)
        assert await cache.prune() == 1  # the other issuer's expired id; VIEWER's was renewed
        assert await rows(db_url, "SELECT issuer FROM service_auth_jtis") == [(VIEWER,)]
        assert not await cache.first_use((VIEWER, "j"), now[0] + 60)
