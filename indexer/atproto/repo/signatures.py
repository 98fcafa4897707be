"""Repo commit signatures, checked against the `#atproto` key of the committer's DID document.

The signed bytes are the DAG-CBOR encoding of the commit object without its `sig` field; the signature is a
64-byte compact (r, s) ECDSA signature over their SHA-256, low-S only (the `atproto` SDK's crypto enforces
that). Keys are multikeys: secp256k1 (`zQ3s...`) or P-256 (`zDn...`), parsed and checked with the `atproto`
SDK's crypto helpers.
"""

from __future__ import annotations

import functools
from typing import Any

import libipld
from atproto_crypto.algs import ALGORITHM_TO_CLASS
from atproto_crypto.did import get_did_key, parse_did_key


class SigningKeyError(ValueError):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def parse_signing_key(did_doc: dict[str, Any]) -> str:
    """The DID document's atproto signing key as a `did:key:` string.

    Raises SigningKeyError("no_signing_key" | "unsupported_key", ...)."""
    if not isinstance(did_doc, dict):
        raise SigningKeyError("no_signing_key", "DID document is not an object")
    did = did_doc.get("id")
    methods = did_doc.get("verificationMethod")
    if not isinstance(did, str) or not isinstance(methods, list):
        raise SigningKeyError("no_signing_key", "DID document lacks 'id' or 'verificationMethod'")
    for method in methods:
        if not isinstance(method, dict):
            continue
        method_id = method.get("id")
        # The id may be absolute ("did:plc:x#atproto") or relative to the document ("#atproto").
        if method_id not in ("#atproto", f"{did}#atproto"):
            continue
        key_type = method.get("type")
        multibase = method.get("publicKeyMultibase")
        if not isinstance(key_type, str) or not isinstance(multibase, str) or not multibase.startswith("z"):
            raise SigningKeyError("unsupported_key", "#atproto method lacks a base58btc publicKeyMultibase")
        try:
            did_key: str | None = get_did_key(key_type, multibase)
            if did_key is None:
                raise SigningKeyError("unsupported_key", f"verification method type {key_type!r}")
            parse_did_key(did_key)  # rejects unknown curves and malformed points now, not at verify time
        except SigningKeyError:
            raise
        except Exception as e:
            raise SigningKeyError("unsupported_key", f"cannot parse #atproto key: {e}") from None
        return did_key
    raise SigningKeyError("no_signing_key", f"no #atproto verification method in {did}")


def unsigned_commit_bytes(commit: dict[str, Any]) -> bytes:
    return libipld.encode_dag_cbor({k: v for k, v in commit.items() if k != "sig"})


def verify_commit(commit: dict[str, Any], did_doc: dict[str, Any]) -> str | None:
    """None if `commit` is signed by the DID document's atproto key, else a short reason:
    "invalid_commit", "did_mismatch", "no_signing_key", "unsupported_key" or "bad_signature"."""
    if not isinstance(commit, dict):
        return "invalid_commit"
    sig = commit.get("sig")
    did = commit.get("did")
    if not isinstance(sig, bytes) or not isinstance(did, str):
        return "invalid_commit"
    if not isinstance(did_doc, dict) or did_doc.get("id") != did:
        return "did_mismatch"
    try:
        did_key = parse_signing_key(did_doc)
    except SigningKeyError as e:
        return e.reason
    return verify_commit_with_key(commit, did_key)


@functools.lru_cache(maxsize=100_000)
def _public_key(did_key: str) -> tuple[Any, bytes]:
    # What `atproto_crypto.verify.verify_signature` does on every call (base58 decode, point decompression)
    # costs about a fifth of a secp256k1 verify; a key signs many commits, so do it once per key.
    parsed = parse_did_key(did_key)
    alg_class = ALGORITHM_TO_CLASS.get(parsed.jwt_alg)
    if alg_class is None:
        raise SigningKeyError("unsupported_key", f"no verifier for {parsed.jwt_alg}")
    return alg_class(), parsed.key_bytes


def verify_commit_with_key(commit: dict[str, Any], did_key: str) -> str | None:
    """As `verify_commit`, with the key already resolved (callers cache `parse_signing_key`)."""
    sig = commit.get("sig")
    if not isinstance(sig, bytes):
        return "invalid_commit"
    if len(sig) != 64:
        return "bad_signature"
    try:
        alg, key_bytes = _public_key(did_key)
    except SigningKeyError as e:
        return e.reason
    except Exception:
        return "unsupported_key"
    try:
        ok = alg.verify_signature(key_bytes, unsigned_commit_bytes(commit), sig)
    except Exception:
        # Malformed points or parameters surface as assorted exceptions from the crypto layer; for a caller
        # they all mean the same thing.
        return "bad_signature"
    return None if ok else "bad_signature"
