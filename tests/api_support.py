"""Support for the API tests: an app wired to a stub identity resolver, and service-auth tokens signed with
local keys, exactly as a PDS would sign them."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from atproto_crypto.consts import P256_JWT_ALG, SECP256K1_JWT_ALG
from atproto_crypto.did import format_did_key
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from litestar import Litestar

from appview.app import create_app
from indexer.settings import Settings

SERVICE_DID = "did:web:api.plyr.test"
SETTINGS = Settings(public_host="api.plyr.test")

_CURVES: dict[str, tuple[ec.EllipticCurve, str, int]] = {
    SECP256K1_JWT_ALG: (
        ec.SECP256K1(),
        "ES256K",
        0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141,
    ),
    P256_JWT_ALG: (
        ec.SECP256R1(),
        "ES256",
        0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    ),
}


class Keypair:
    def __init__(self, alg: str = SECP256K1_JWT_ALG) -> None:
        curve, self.jwt_alg, self._order = _CURVES[alg]
        self._key = ec.generate_private_key(curve)
        public = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.did_key = format_did_key(alg, public)

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(hashes.SHA256())))
        # atproto accepts only the low-S form of an ECDSA signature.
        s = min(s, self._order - s)
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def service_jwt(
    key: Keypair,
    *,
    iss: str,
    lxm: str | None,
    aud: str = SERVICE_DID,
    exp_in: int = 60,
    **extra: Any,
) -> str:
    now = int(time.time())
    payload: dict[str, Any] = {"iss": iss, "aud": aud, "exp": now + exp_in, "iat": now, **extra}
    if lxm is not None:
        payload["lxm"] = lxm
    header = {"alg": key.jwt_alg, "typ": "JWT"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


class StubResolver:
    """DID documents from a dict: did -> (signing did:key, PDS endpoint)."""

    def __init__(self) -> None:
        self.keys: dict[str, str] = {}
        self.pds: dict[str, str] = {}
        self.key_lookups = 0

    async def signing_key(self, did: str, *, fresh: bool = False) -> str | None:
        self.key_lookups += 1
        return self.keys.get(did)

    async def pds_endpoint(self, did: str) -> str | None:
        return self.pds.get(did)


def app(db_url: str, resolver: StubResolver | None = None, settings: Settings = SETTINGS) -> Litestar:
    return create_app(db_url, settings=settings, resolver=resolver or StubResolver())
