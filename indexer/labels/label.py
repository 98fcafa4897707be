"""One label as a labeler sends it, checked, and its signature.

A label (`com.atproto.label.defs#label`, version 1) is a map: `ver` (1), `src` (the labeler's DID), `uri` (an
at-uri, or a DID for an account-level label), optional `cid` (the record version it applies to), `val` (at
most 128 bytes), optional `neg` (true: removes an earlier label of the same src, uri and val), `cts` (creation
time), optional `exp` (expiry time) and `sig`. The signature is a 64-byte compact ECDSA signature (low-S, the
same rules as repo commits: indexer.atproto.repo.signatures) over the DAG-CBOR encoding of the label without
`sig`, made with the key of the labeler's DID document whose id is `#atproto_label` (secp256k1 or P-256).

`parse_label` never raises on hostile input: it returns a `Label` or a `Refusal` (reason + detail).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any, Final

import libipld
import msgspec
from atproto_crypto.did import get_did_key, parse_did_key

from indexer.atproto.repo.signatures import verify_commit_with_key
from indexer.atproto.syntax import is_at_uri, is_cid, is_datetime, is_did
from indexer.events import parse_datetime

VERSION: Final = 1
MAX_VAL_BYTES: Final = 128
# An at-uri or DID subject longer than this is not one our index could hold anyway.
MAX_URI_CHARS: Final = 8192
_FIELDS: Final = frozenset({"ver", "src", "uri", "cid", "val", "neg", "cts", "exp", "sig"})


class Label(msgspec.Struct, frozen=True, kw_only=True):
    src: str
    uri: str
    val: str
    cid: str | None
    neg: bool
    cts: str
    cts_at: dt.datetime
    exp: str | None
    exp_at: dt.datetime | None
    sig: bytes
    # The map as received: what the signature covers.
    raw: dict[str, Any]


class Refusal(msgspec.Struct, frozen=True):
    reason: str
    detail: str


def parse_label(value: object) -> Label | Refusal:
    """A label of a `#labels` frame, or why it is refused (`label_malformed`, `label_unsigned`)."""
    if type(value) is not dict:
        return Refusal("label_malformed", f"label is a {type(value).__name__}, not a map")
    unknown = set(value) - _FIELDS
    if unknown:
        # The signature would cover fields we cannot show: a client could not check what we pass on.
        return Refusal("label_malformed", f"unknown fields {sorted(map(str, unknown))[:5]}")
    ver = value.get("ver")
    if type(ver) is not int or ver != VERSION:
        return Refusal("label_malformed", f"ver is {ver!r}, not {VERSION}")
    src, uri, val, cts = value.get("src"), value.get("uri"), value.get("val"), value.get("cts")
    if type(src) is not str or not is_did(src):
        return Refusal("label_malformed", "src is not a DID")
    if type(uri) is not str or len(uri) > MAX_URI_CHARS or not (is_did(uri) or (is_at_uri(uri) and "\x00" not in uri)):
        return Refusal("label_malformed", "uri is not an at-uri or a DID")
    if type(val) is not str or not val or len(val.encode()) > MAX_VAL_BYTES or "\x00" in val:
        return Refusal("label_malformed", f"val is not a string of 1 to {MAX_VAL_BYTES} bytes")
    cid = value.get("cid")
    if cid is not None and (type(cid) is not str or not is_cid(cid)):
        return Refusal("label_malformed", "cid is not a CID")
    neg = value.get("neg", False)
    if type(neg) is not bool:
        return Refusal("label_malformed", "neg is not a boolean")
    cts_at = parse_datetime(cts) if type(cts) is str and is_datetime(cts) else None
    if cts_at is None:
        return Refusal("label_malformed", "cts is not a datetime")
    exp = value.get("exp")
    exp_at = parse_datetime(exp) if type(exp) is str and is_datetime(exp) else None
    if exp is not None and exp_at is None:
        return Refusal("label_malformed", "exp is not a datetime")
    sig = value.get("sig")
    if sig is None:
        return Refusal("label_unsigned", "label has no sig")
    if type(sig) is not bytes:
        return Refusal("label_malformed", "sig is not bytes")
    assert type(cts) is str
    return Label(
        src=src,
        uri=uri,
        val=val,
        cid=cid,
        neg=neg,
        cts=cts,
        cts_at=cts_at,
        exp=exp if type(exp) is str else None,
        exp_at=exp_at,
        sig=sig,
        raw=value,
    )


def signing_bytes(label: dict[str, Any]) -> bytes:
    """What a labeler signs: the DAG-CBOR encoding of the label without `sig`."""
    return libipld.encode_dag_cbor({k: v for k, v in label.items() if k != "sig"})


def verify_label(label: Label, did_key: str) -> bool:
    """Whether `label` is signed by `did_key` (a `did:key:` string)."""
    # A label is signed exactly as a commit is: same encoding rule, same curves, same low-S requirement.
    return verify_commit_with_key(label.raw, did_key) is None


def label_key(doc: dict[str, Any]) -> str | None:
    """The DID document's `#atproto_label` verification key as a `did:key:` string, or None (absent or
    unusable)."""
    did = doc.get("id")
    methods = doc.get("verificationMethod")
    if not isinstance(methods, list):
        return None
    for method in methods:
        if not isinstance(method, dict) or method.get("id") not in ("#atproto_label", f"{did}#atproto_label"):
            continue
        key_type, multibase = method.get("type"), method.get("publicKeyMultibase")
        if not isinstance(key_type, str) or not isinstance(multibase, str) or not multibase.startswith("z"):
            return None
        try:
            did_key: str | None = get_did_key(key_type, multibase)
            if did_key is None:
                return None
            parse_did_key(did_key)
        except Exception:
            return None
        return did_key
    return None


def labeler_endpoint(doc: dict[str, Any]) -> str | None:
    """The `#atproto_labeler` service endpoint (http or https, no trailing slash), or None."""
    services = doc.get("service")
    if not isinstance(services, list):
        return None
    did = doc.get("id")
    for service in services:
        if not isinstance(service, dict) or service.get("id") not in ("#atproto_labeler", f"{did}#atproto_labeler"):
            continue
        endpoint = service.get("serviceEndpoint")
        if isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")) and len(endpoint) < 2048:
            return endpoint.rstrip("/")
    return None


def evidence(value: object) -> str:
    """A received label (or anything else a frame held) as JSON text for `rejections.event`; bytes as
    `{"$bytes": base64}`, as the data model writes them in JSON."""

    def default(obj: object) -> object:
        if isinstance(obj, bytes):
            return {"$bytes": base64.b64encode(obj).decode().rstrip("=")}
        return repr(obj)

    try:
        return json.dumps(value, default=default, ensure_ascii=True)[:20_000]
    except (TypeError, ValueError):
        return repr(value)[:20_000].replace("\x00", "\\x00")
