"""Signed PLC operations against the local PLC directory, so a test can move an account's PDS endpoint.

An account created with a `recoveryKey` (ours) lists that key among its rotation keys; an update signed with
it is accepted by the PLC like one from the PDS. Operations are DAG-CBOR, signed (ECDSA secp256k1, SHA-256,
compact low-S r||s) without their `sig`, and chained by the CID of the previous operation.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import httpx
import libipld
from atproto_crypto.consts import SECP256K1_JWT_ALG
from atproto_crypto.did import format_did_key
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.hashes import SHA256

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
# CIDv1, dag-cbor, sha2-256, 32 bytes.
DAG_CBOR_SHA256_PREFIX = bytes([0x01, 0x71, 0x12, 0x20])


class RotationKey:
    def __init__(self) -> None:
        self._key = ec.generate_private_key(ec.SECP256K1())

    @property
    def did_key(self) -> str:
        point = self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        did_key: str = format_did_key(SECP256K1_JWT_ALG, point)
        return did_key

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self._key.sign(data, ec.ECDSA(SHA256())))
        # The PLC refuses the high-S twin of a signature (malleability).
        if s > SECP256K1_ORDER // 2:
            s = SECP256K1_ORDER - s
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def op_cid(op: dict[str, Any]) -> str:
    digest = hashlib.sha256(libipld.encode_dag_cbor(op)).digest()
    return "b" + base64.b32encode(DAG_CBOR_SHA256_PREFIX + digest).decode().lower().rstrip("=")


async def set_pds_endpoint(client: httpx.AsyncClient, plc_url: str, did: str, key: RotationKey, endpoint: str) -> None:
    """Point `did`'s `#atproto_pds` service at `endpoint` with an operation signed by `key`."""
    resp = await client.get(f"{plc_url}/{did}/log/last")
    resp.raise_for_status()
    last: dict[str, Any] = resp.json()
    op = {k: v for k, v in last.items() if k != "sig"}
    op["services"] = {**op["services"], "atproto_pds": {"type": "AtprotoPersonalDataServer", "endpoint": endpoint}}
    op["prev"] = op_cid(last)
    sig = key.sign(libipld.encode_dag_cbor(op))
    op["sig"] = base64.urlsafe_b64encode(sig).decode().rstrip("=")
    resp = await client.post(f"{plc_url}/{did}", json=op)
    if resp.status_code != 200:
        raise AssertionError(f"PLC refused the update of {did}: {resp.status_code} {resp.text}")
