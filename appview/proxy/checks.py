"""Input checks of a proxied write, all made before any network call: an invalid write never reaches the PDS."""

from __future__ import annotations

from appview.http import XrpcError
from appview.proxy.schemas import Record
from indexer.atproto.lexicon import Validator
from indexer.atproto.syntax import is_cid, is_did, is_handle, is_nsid, is_record_key
from indexer.events import OWN_NAMESPACE

# Stands in for the TID the PDS will pick when a create names no rkey: the record is checked against the key
# rule it will be stored under (a `literal:self` collection cannot be written without its literal key).
_GENERATED_RKEY = "2222222222222"

# The same limit as the reference PDS.
MAX_WRITES = 200


def collection(validator: Validator, value: str) -> str:
    if not is_nsid(value) or not value.startswith(OWN_NAMESPACE):
        raise XrpcError("InvalidRequest", f"collection must be an fm.plyr.* NSID, got {value[:100]!r}")
    if value not in validator.collections:
        raise XrpcError("InvalidRequest", f"unknown collection {value!r}: this service writes only known fm.plyr.*")
    return value


def rkey(value: str) -> str:
    if not is_record_key(value):
        raise XrpcError("InvalidRequest", f"invalid rkey {value[:100]!r}")
    return value


def repo_identifier(value: str) -> str:
    """A DID, or a handle (returned lower-cased, for the caller to resolve)."""
    if is_did(value):
        return value
    if is_handle(value):
        return value.lower()
    raise XrpcError("InvalidRequest", f"repo must be a DID or a handle, got {value[:100]!r}")


def record(validator: Validator, coll: str, key: str | None, value: Record) -> Record:
    """The record as the PDS will store it (a missing `$type` is filled in, as the PDS does), or an
    `InvalidRecord` error naming the field and the rule it breaks."""
    kind = value.get("$type")
    if kind is None:
        value = {"$type": coll, **value}
    elif kind != coll:
        raise XrpcError("InvalidRecord", f"$type: must be {coll!r}, got {str(kind)[:100]!r} ($type)")
    invalid = validator.validate(coll, key if key is not None else _GENERATED_RKEY, value)
    if invalid is not None:
        where = invalid.path or "record"
        raise XrpcError("InvalidRecord", f"{invalid.collection}: {where}: {invalid.message} ({invalid.rule})")
    return value


def swap_cid(value: str | None, name: str) -> None:
    if value is not None and not is_cid(value):
        raise XrpcError("InvalidRequest", f"{name} must be a CID, got {value[:100]!r}")
