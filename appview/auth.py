"""Service auth: a PDS proxying a client's call (`atproto-proxy`) signs a short-lived JWT as the user, with
`iss` = the user's DID, `aud` = our DID and `lxm` = the method called. A valid token makes the request a
viewer's request (`viewer` fields); an invalid one is refused outright rather than served anonymously, so a
client with a broken setup finds out."""

from __future__ import annotations

import time

from atproto_server.auth.jwt import get_jwt_payload, parse_jwt, verify_jwt_async
from atproto_server.exceptions import (
    TokenDecodeError,
    TokenExpiredSignatureError,
    TokenImmatureSignatureError,
    TokenInvalidSignatureError,
)

from appview.errors import XrpcError
from appview.identity import IdentityResolver
from indexer.lexicon.formats import is_did

SERVICE_ID = "fm_plyr_appview"
# Tokens a PDS issues for itself, never for a service: accepting them would let a stolen session token act
# here.
_FOREIGN_TYPES = frozenset({"at+jwt", "refresh+jwt", "dpop+jwt"})


def _refuse(error: str, message: str) -> XrpcError:
    return XrpcError(error, message, status=401)


class ServiceAuth:
    def __init__(self, own_did: str, resolver: IdentityResolver, *, leeway: int = 5) -> None:
        self.own_did = own_did
        self._audiences = frozenset({own_did, f"{own_did}#{SERVICE_ID}"})
        self._resolver = resolver
        self._leeway = leeway

    async def viewer(self, authorization: str | None, nsid: str) -> str | None:
        """The viewer's DID, None for an anonymous request; raises a 401 XrpcError for a bad token."""
        if authorization is None:
            return None
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
        if not isinstance(payload.exp, int):
            raise _refuse("BadJwt", "token has no expiry (exp)")
        if payload.exp <= time.time() - self._leeway:
            raise _refuse("JwtExpired", "token has expired")
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
            raise _refuse("BadJwt", "token issued in the future") from exc
        except TokenInvalidSignatureError as exc:
            raise _refuse("BadJwtSignature", "token signature does not verify against the issuer's key") from exc
        except TokenDecodeError as exc:
            raise _refuse("BadJwt", f"malformed token: {exc}") from exc
        return issuer
