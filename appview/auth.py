"""Service auth: a PDS proxying a client's call (`atproto-proxy`) signs a short-lived JWT as the user, with
`iss` = the user's DID, `aud` = our DID and `lxm` = the method called. A valid token makes the request a
viewer's request (`viewer` fields); an invalid one is refused outright rather than served anonymously, so a
client with a broken setup finds out.

A token is good once: its `(iss, jti)` is recorded until it expires, and a second use is refused (`JwtReplayed`).
The API records them in Postgres (`SharedReplayCache`, table `service_auth_jtis`), so a token replayed to another
replica is refused there too; one `INSERT ... ON CONFLICT` per token decides. Only verified tokens are recorded,
so forged ones can neither fill the table nor spend someone's jti. `ReplayCache` keeps them in the process
instead, for a ServiceAuth used on its own.

The check also settles the request's rate limit (appview/ratelimit.py): a verified token charges its DID, a
refused one the client address."""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable
from typing import Literal, get_args

from atproto_server.auth.jwt import get_jwt_payload, parse_jwt, verify_jwt_async
from atproto_server.exceptions import (
    TokenDecodeError,
    TokenExpiredSignatureError,
    TokenImmatureSignatureError,
    TokenInvalidIssuedAtError,
    TokenInvalidSignatureError,
)
from psycopg_pool import AsyncConnectionPool

from appview import ratelimit
from appview.http import XrpcError
from indexer.atproto.identity.resolver import IdentityResolver
from indexer.atproto.syntax import is_did

SERVICE_ID = "fm_plyr_appview"
# Tokens a PDS issues for itself, never for a service: accepting them would let a stolen session token act
# here.
_FOREIGN_TYPES = frozenset({"at+jwt", "refresh+jwt", "dpop+jwt"})


# A PDS signs service tokens for at most an hour (`getServiceAuth` refuses a later `exp`; proxied calls get 60 s).
# A longer-lived token did not come from one, and would outlive any replay protection worth having.
MAX_LIFETIME_SECONDS = 3600
REPLAY_CACHE_ENTRIES = 100_000


# Every error a service-auth token can be refused with (401); the API docs list them for each method.
TokenError = Literal[
    "AuthMissing",
    "BadJwt",
    "BadJwtType",
    "BadJwtAudience",
    "BadJwtLexiconMethod",
    "BadJwtSignature",
    "JwtExpired",
    "JwtNotYetValid",
    "JwtReplayed",
]
TOKEN_ERRORS: tuple[TokenError, ...] = get_args(TokenError)


def _refuse(error: TokenError, message: str) -> XrpcError:
    return XrpcError(error, message, status=401)


class ReplayCache:
    """`(issuer, jti)` of tokens already accepted, each kept until its `exp` (plus leeway), at most
    `max_entries` of them; when full the entry closest to expiry goes first.

    It lives in one process: replicas do not share it (the API uses `SharedReplayCache`)."""

    def __init__(self, max_entries: int = REPLAY_CACHE_ENTRIES, *, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []

    def __len__(self) -> int:
        return len(self._expiry)

    def _drop(self) -> None:
        _, key = heapq.heappop(self._heap)
        self._expiry.pop(key, None)

    def first_use(self, key: tuple[str, str], expires_at: float) -> bool:
        """Record `key`; False if it was already recorded and has not expired. No await inside: the check and
        the record are one step for the event loop."""
        now = self._clock()
        while self._heap and self._heap[0][0] < now:
            self._drop()
        if key in self._expiry:
            return False
        while len(self._expiry) >= self.max_entries and self._heap:
            self._drop()
        self._expiry[key] = expires_at
        heapq.heappush(self._heap, (expires_at, key))
        return True


_FIRST_USE = """
INSERT INTO service_auth_jtis AS j (issuer, jti, expires_at) VALUES (%s, %s, to_timestamp(%s))
ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE j.expires_at < to_timestamp(%s)
RETURNING 1
"""


class SharedReplayCache:
    """`(issuer, jti)` of tokens already accepted, in Postgres (`pool` must reach the primary), each kept until its
    `exp` (plus leeway): every replica on the database sees every other's. A row whose token has expired but that
    `prune` has not deleted yet does not count: a new token may carry the jti again, as with `ReplayCache`."""

    def __init__(self, pool: AsyncConnectionPool, *, clock: Callable[[], float] = time.time) -> None:
        self._pool = pool
        self._clock = clock

    async def first_use(self, key: tuple[str, str], expires_at: float) -> bool:
        """Record `key`; False if it was already recorded and has not expired. One statement decides, so two
        replicas receiving the same token at once cannot both accept it."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(_FIRST_USE, (key[0], key[1], expires_at, self._clock()))
            return await cur.fetchone() is not None

    async def prune(self) -> int:
        """Delete the ids of expired tokens; the number deleted."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM service_auth_jtis WHERE expires_at < to_timestamp(%s)", (self._clock(),)
            )
            return cur.rowcount


class ServiceAuth:
    def __init__(
        self,
        own_did: str,
        resolver: IdentityResolver,
        *,
        leeway: int = 5,
        replay_cache: ReplayCache | SharedReplayCache | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.own_did = own_did
        self._audiences = frozenset({own_did, f"{own_did}#{SERVICE_ID}"})
        self._resolver = resolver
        self._leeway = leeway
        self._clock = clock
        self.replays: ReplayCache | SharedReplayCache = replay_cache or ReplayCache(clock=clock)

    async def viewer(self, authorization: str | None, nsid: str) -> str | None:
        """The viewer's DID, None for an anonymous request; raises a 401 XrpcError for a bad token, and a 429
        when the client (the DID, or for a bad token the address) is over its rate limit."""
        if authorization is None:
            return None
        try:
            issuer = await self._verify(authorization, nsid)
        except XrpcError:
            await ratelimit.charge_refused()
            raise
        await ratelimit.charge_verified(issuer)
        return issuer

    async def _first_use(self, key: tuple[str, str], expires_at: float) -> bool:
        if isinstance(self.replays, ReplayCache):
            return self.replays.first_use(key, expires_at)
        return await self.replays.first_use(key, expires_at)

    async def _verify(self, authorization: str, nsid: str) -> str:
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _refuse("AuthMissing", "expected 'Authorization: Bearer <service JWT>'")
        try:
            _, _, header, _ = parse_jwt(token)
            payload = get_jwt_payload(token)
        except (TokenDecodeError, ValueError, TypeError) as exc:
            raise _refuse("BadJwt", f"malformed token: {exc}") from exc
        if header.get("typ") in _FOREIGN_TYPES:
            raise _refuse("BadJwtType", "not a service auth token")
        now = self._clock()
        if type(payload.exp) is not int:
            raise _refuse("BadJwt", "token has no integer expiry (exp)")
        if payload.exp <= now - self._leeway:
            raise _refuse("JwtExpired", "token has expired")
        if payload.exp > now + MAX_LIFETIME_SECONDS + self._leeway:
            raise _refuse("BadJwt", f"token expires more than {MAX_LIFETIME_SECONDS} s from now")
        for claim in ("nbf", "iat"):
            value = getattr(payload, claim, None)
            if value is None:
                continue
            if type(value) is not int:
                raise _refuse("BadJwt", f"token claim {claim} must be an integer")
            if value > now + self._leeway:
                raise _refuse("JwtNotYetValid", f"token is not valid yet ({claim} is in the future)")
        jti = getattr(payload, "jti", None)
        if jti is not None and (type(jti) is not str or not 0 < len(jti) <= 256):
            raise _refuse("BadJwt", "token id (jti) must be a short string")
        if payload.aud not in self._audiences:
            raise _refuse("BadJwtAudience", f"token audience must be {self.own_did}")
        lxm = getattr(payload, "lxm", None)
        if lxm != nsid:
            raise _refuse("BadJwtLexiconMethod", f"token is for {lxm!r}, not {nsid}")
        issuer = (payload.iss or "").split("#", 1)[0]
        if not is_did(issuer):
            raise _refuse("BadJwt", "token issuer must be a DID")

        async def key(iss: str, fresh: bool) -> str:
            found = await self._resolver.signing_key(issuer, fresh=fresh)
            if found is None:
                raise TokenInvalidSignatureError("issuer has no signing key")
            return found

        try:
            await verify_jwt_async(token, key, leeway=self._leeway)
        except TokenExpiredSignatureError as exc:
            raise _refuse("JwtExpired", "token has expired") from exc
        except TokenImmatureSignatureError as exc:
            raise _refuse("JwtNotYetValid", "token is not valid yet (iat is in the future)") from exc
        except TokenInvalidIssuedAtError as exc:
            raise _refuse("BadJwt", "token claim iat must be an integer") from exc
        except TokenInvalidSignatureError as exc:
            raise _refuse("BadJwtSignature", "token signature does not verify against the issuer's key") from exc
        except TokenDecodeError as exc:
            raise _refuse("BadJwt", f"malformed token: {exc}") from exc
        # Only a verified token takes a slot, so forged tokens cannot fill the cache or burn someone's jti.
        if jti is not None and not await self._first_use((issuer, jti), payload.exp + self._leeway):
            raise _refuse("JwtReplayed", "token was already used (same jti); a PDS mints one per request")
        return issuer
