"""CAR blocks, CID checks, the repo MST, and the atproto data model rendered as Jetstream-style JSON.

libipld's `decode_car` hands back decoded blocks, not their bytes, and it decodes a CID link to the same
Python `bytes` as a byte string. Two consequences shape this module:

* A block is checked against its CID by re-encoding the decoded value with `encode_dag_cbor` and hashing
  that: what the check proves is that the value we index is the one the CID names. atproto requires
  canonical DAG-CBOR, for which the re-encoding is byte-identical (every block of the reference corpus
  round-trips exactly). libipld does accept some non-canonical forms (over-long integer heads, 32-bit
  floats); such a block fails the check even if its bytes hash correctly, a false rejection that a
  conforming PDS never triggers.
* Whether a `bytes` value is a link or a byte string is decided the way libipld's encoder decides it (a
  value that parses as a CID is written as tag 42). Rendering and hashing therefore always agree: a byte
  string that happens to parse as a CID re-encodes as a link, fails the hash check and is rejected, rather
  than being silently rendered as a link.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import libipld
import msgspec

from indexer.events import Malformed

# Repo blocks are CIDv1, dag-cbor codec, sha2-256 multihash (atproto repository spec); comparing this
# 4-byte prefix is what `decode_cid` would tell us, without building a dict per block.
DAG_CBOR_SHA256_PREFIX = bytes((0x01, 0x71, 0x12, 0x20))
MAX_RECORD_BYTES = 1024 * 1024  # atproto data model limit for one record, in CBOR
MAX_MST_DEPTH = 64  # fanout is ~16, so ten million records make a tree about 6 levels deep

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_CBOR_TAG_42 = 0xD8


class CarError(Exception):
    """A CAR or MST problem. `reason` is a short code suitable for `Malformed.reason`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RecordError(ValueError):
    """A record that does not fit the atproto data model."""


Blocks = Mapping[bytes, Any]


def cid_str(cid: bytes) -> str:
    return libipld.encode_cid(cid)


def block_digest_ok(cid: bytes, block: Any) -> int:
    """Size of the block's canonical encoding if `cid` names it, else -1."""
    if len(cid) != 36 or cid[:4] != DAG_CBOR_SHA256_PREFIX:
        return -1
    encoded = libipld.encode_dag_cbor(block)
    if hashlib.sha256(encoded).digest() != cid[4:]:
        return -1
    return len(encoded)


def commit_digest_ok(car: bytes, cid: bytes, block: Any) -> bool:
    """Whether the signed commit block `block` is the one `cid` names.

    A commit carries its signature as a 64-byte string, and about one signature in 1,200 happens to parse as a
    CID: re-encoded, it would be written as a link and the block would fail its own hash, a false rejection of
    a valid commit. So when re-encoding does not match, the block's bytes as they stand in the CAR are hashed
    instead. (Only the commit gets this second look: it is decoded field by field, never rendered, while a
    record's byte string that parses as a CID must still be refused rather than rendered as a link.)"""
    if block_digest_ok(cid, block) >= 0:
        return True
    raw = raw_block(car, cid)
    return raw is not None and cid[:4] == DAG_CBOR_SHA256_PREFIX and hashlib.sha256(raw).digest() == cid[4:]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def raw_block(car: bytes, cid: bytes) -> bytes | None:
    """The bytes of the block `cid` as they stand in the CAR (v1: a varint-prefixed header, then sections of
    varint length, CID, block), or None if it is not there or the CAR does not parse."""
    try:
        header_len, pos = _varint(car, 0)
        pos += header_len
        while pos < len(car):
            section_len, start = _varint(car, pos)
            end = start + section_len
            if section_len <= 0 or end > len(car):
                return None
            if car[start : start + 2] == b"\x12\x20":  # CIDv0: a bare sha2-256 multihash
                cid_end = start + 34
            else:
                _, at = _varint(car, start)  # version
                _, at = _varint(car, at)  # codec
                _, at = _varint(car, at)  # multihash code
                digest_len, at = _varint(car, at)
                cid_end = at + digest_len
            if cid_end > end:
                return None
            if car[start:cid_end] == cid:
                return car[cid_end:end]
            pos = end
    except ValueError:
        return None
    return None


def check_block(blocks: Blocks, cid: bytes, verified: set[bytes] | None = None) -> Any:
    """Return the decoded block for `cid`, raising CarError if it is absent or its CID does not match."""
    block = blocks.get(cid)
    if block is None:
        raise CarError("missing_block", f"block {describe_cid(cid)} is not in the CAR")
    if verified is not None and cid in verified:
        return block
    if block_digest_ok(cid, block) < 0:
        raise CarError("cid_mismatch", f"block content does not hash to {describe_cid(cid)}")
    if verified is not None:
        verified.add(cid)
    return block


def describe_cid(cid: Any) -> str:
    """A CID for error messages: its string form, or a hex excerpt when it is not a valid CID."""
    if isinstance(cid, bytes):
        try:
            return cid_str(cid)
        except ValueError:
            return "0x" + cid.hex()[:80]
    return repr(cid)[:80]


# --- data model -> JSON ---------------------------------------------------------------------------------


def is_link(value: bytes) -> bool:
    # Mirrors libipld's encoder (cheap shape test first, then ask the encoder itself), so a value rendered
    # as a link is exactly a value whose hash was computed as a link.
    n = len(value)
    if n < 4:
        return False
    if value[0] != 0x01 and not (n == 34 and value[0] == 0x12 and value[1] == 0x20):
        return False
    return libipld.encode_dag_cbor(value)[0] == _CBOR_TAG_42


def _link_json(value: bytes) -> dict[str, str]:
    try:
        return {"$link": libipld.encode_cid(value)}
    except ValueError as e:
        raise RecordError(f"invalid CID link: {e}") from None


def _blob_json(obj: dict[str, Any]) -> dict[str, Any]:
    # Jetstream (indigo's data model) re-renders blobs from their four defined fields, in this order,
    # dropping anything else.
    ref = obj.get("ref")
    if type(ref) is bytes and is_link(ref):
        ref_json = _link_json(ref)
    else:
        raise RecordError("blob 'ref' is not a CID link")
    mime = obj.get("mimeType")
    if type(mime) is not str:
        raise RecordError("blob 'mimeType' missing or not a string")
    size = obj.get("size")
    if type(size) is float and size.is_integer():
        size = int(size)
    if type(size) is not int or size < 0 or size > _INT64_MAX:
        raise RecordError("blob 'size' missing or not a non-negative integer")
    return {"$type": "blob", "ref": ref_json, "mimeType": mime, "size": size}


def _map_json(obj: dict[str, Any]) -> Any:
    if "$link" in obj or "$bytes" in obj:
        return _reserved_json(obj)
    if "$type" in obj:
        t = obj["$type"]
        if type(t) is not str or not t:
            raise RecordError("$type must be a non-empty string")
        if t == "blob":
            return _blob_json(obj)
    # Sorted keys: Go's encoding/json orders map keys this way, so output lines match Jetstream's bytes.
    # Strings dominate records; handling them inline avoids a call per value.
    out: dict[str, Any] = {}
    for k in sorted(obj):
        v = obj[k]
        out[k] = v if type(v) is str else to_json(v)
    return out


def _reserved_json(obj: dict[str, Any]) -> dict[str, str]:
    # A map spelled like the JSON encodings of links and bytes would be indistinguishable from them once
    # rendered, so it must actually be one.
    key = "$link" if "$link" in obj else "$bytes"
    v = obj[key]
    if len(obj) != 1 or type(v) is not str:
        raise RecordError(f"{key} object must have a single string field")
    try:
        if key == "$link":
            libipld.decode_cid(v)
        else:
            base64.b64decode(v + "=" * (-len(v) % 4), validate=True)
    except (ValueError, binascii.Error):
        raise RecordError(f"{key} object does not hold a valid value") from None
    return {key: v}


def to_json(value: Any) -> Any:
    """Render one decoded DAG-CBOR value in the atproto JSON form Jetstream emits."""
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is dict:
        return _map_json(value)
    if t is int:
        if value < _INT64_MIN or value > _INT64_MAX:
            raise RecordError("integer outside the signed 64-bit range")
        return value
    if t is list:
        return [v if type(v) is str else to_json(v) for v in value]
    if t is bytes:
        if is_link(value):
            return _link_json(value)
        return {"$bytes": base64.b64encode(value).decode("ascii").rstrip("=")}
    if t is float:
        # The data model has no floats; Jetstream accepts integral ones as integers and refuses the rest.
        if value.is_integer() and _INT64_MIN <= value <= _INT64_MAX:
            return int(value)
        raise RecordError("non-integer number")
    raise RecordError(f"unsupported value type {t.__name__}")


def record_to_json(record: Any) -> dict[str, Any]:
    """Render a decoded record; raises RecordError if it is not an object or breaks the data model."""
    if type(record) is not dict:
        raise RecordError("record is not an object")
    try:
        out = _map_json(record)
    except RecursionError:
        raise RecordError("record nested too deeply") from None
    if type(out) is not dict or "$link" in out or "$bytes" in out:
        raise RecordError("record is not an object")
    return out


# --- MST ------------------------------------------------------------------------------------------


def _node_parts(node: Any, cid: bytes) -> tuple[bytes | None, list[Any]]:
    if type(node) is not dict:
        raise CarError("invalid_mst", f"MST node {describe_cid(cid)} is not a map")
    left = node.get("l")
    entries = node.get("e")
    if (left is not None and type(left) is not bytes) or type(entries) is not list:
        raise CarError("invalid_mst", f"MST node {describe_cid(cid)} has a bad 'l' or 'e'")
    return left, entries


def _entry_parts(entry: Any, prev: bytes, cid: bytes) -> tuple[bytes, bytes, bytes | None]:
    if type(entry) is not dict:
        raise CarError("invalid_mst", f"MST entry in {describe_cid(cid)} is not a map")
    p = entry.get("p")
    k = entry.get("k")
    v = entry.get("v")
    t = entry.get("t")
    if (
        type(p) is not int
        or not 0 <= p <= len(prev)
        or type(k) is not bytes
        or type(v) is not bytes
        or (t is not None and type(t) is not bytes)
    ):
        raise CarError("invalid_mst", f"MST entry in {describe_cid(cid)} has bad fields")
    key = prev[:p] + k
    if key <= prev and prev:
        raise CarError("invalid_mst", f"MST node {describe_cid(cid)} keys are not strictly increasing")
    return key, v, t


class Lookup(NamedTuple):
    found: bool
    value: bytes | None
    complete: bool  # False: a node on the path is not in the CAR, so absence is not proven


def mst_lookup(blocks: Blocks, root: bytes, key: bytes, verified: set[bytes]) -> Lookup:
    """Find `key` in the MST rooted at `root`, checking each node's CID on the way down.

    A node missing from the CAR does not raise: the result says the path could not be shown in full, and
    the caller decides what that means for its op. Entries are read without the walk's full validation:
    every node is bound to the signed root by its hash, so a malformed one can only make the lookup fail,
    never prove a record the signer did not commit."""
    cid: Any = root
    for _ in range(MAX_MST_DEPTH):
        if cid is None:
            return Lookup(False, None, True)
        if type(cid) is not bytes:
            raise CarError("invalid_mst", "MST subtree link is not a CID")
        node = blocks.get(cid)
        if node is None:
            return Lookup(False, None, False)
        if cid not in verified:
            if block_digest_ok(cid, node) < 0:
                raise CarError("cid_mismatch", f"MST node does not hash to {describe_cid(cid)}")
            verified.add(cid)
        try:
            nxt = node["l"]
            ekey = b""
            for entry in node["e"]:
                ekey = ekey[: entry["p"]] + entry["k"]
                if key < ekey:
                    break
                if key == ekey:
                    value = entry["v"]
                    return Lookup(True, value if type(value) is bytes else None, True)
                nxt = entry["t"]
        except (TypeError, KeyError, IndexError):
            raise CarError("invalid_mst", f"MST node {describe_cid(cid)} is malformed") from None
        cid = nxt
    raise CarError("invalid_mst", f"MST deeper than {MAX_MST_DEPTH} levels")


def mst_walk(blocks: Blocks, root: bytes, verified: set[bytes] | None = None) -> Iterator[tuple[bytes, bytes]]:
    """Yield `(key, value_cid)` for every leaf in key order; raises CarError on missing or bad nodes."""
    # An explicit stack keeps hostile depth from turning into Python recursion.
    stack: list[Iterator[tuple[bool, bytes, bytes]]] = []
    last = b""

    def node_items(cid: bytes) -> Iterator[tuple[bool, bytes, bytes]]:
        node = check_block(blocks, cid, verified)
        left, entries = _node_parts(node, cid)
        if left is not None:
            yield (True, left, b"")
        prev = b""
        for entry in entries:
            key, value, subtree = _entry_parts(entry, prev, cid)
            prev = key
            yield (False, key, value)
            if subtree is not None:
                yield (True, subtree, b"")

    stack.append(node_items(root))
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
            continue
        is_subtree, a, b = item
        if is_subtree:
            if len(stack) >= MAX_MST_DEPTH:
                raise CarError("invalid_mst", f"MST deeper than {MAX_MST_DEPTH} levels")
            stack.append(node_items(a))
            continue
        if a <= last and last:
            raise CarError("invalid_mst", "MST keys are not in strictly increasing order")
        last = a
        yield a, b


def split_key(key: bytes) -> tuple[str, str]:
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        raise CarError("invalid_mst", "MST key is not UTF-8") from None
    collection, sep, rkey = text.partition("/")
    if not sep or not collection or not rkey or "/" in rkey:
        raise CarError("invalid_mst", f"MST key {text[:300]!r} is not collection/rkey")
    return collection, rkey


# --- repo CAR (getRepo) ---------------------------------------------------------------------------


class RepoCommit(msgspec.Struct, frozen=True, kw_only=True):
    """The signed commit at the root of a repo CAR. CIDs are in their string form."""

    cid: str
    did: str
    version: int
    data: str
    rev: str
    prev: str | None
    sig: bytes
    # The decoded commit object, as signed: what `verify.verify_commit` takes.
    raw: dict[str, Any]


class RepoRecord(NamedTuple):
    collection: str
    rkey: str
    cid: str
    # The record in Jetstream's JSON form, or a Malformed when the block does not fit the data model (the
    # walk goes on: one bad record must not hide the rest of the repo).
    record: dict[str, Any] | Malformed


class RepoCar:
    """A `com.atproto.sync.getRepo` CAR: its commit, and its records found by walking the MST.

    Every block's CID is checked when the CAR is read; a block the MST points to but the CAR lacks raises
    CarError("missing_block") while iterating `records()`."""

    def __init__(self, root: bytes, commit: RepoCommit, blocks: dict[bytes, Any], data_cid: bytes) -> None:
        self.root = root
        self.commit = commit
        self._blocks = blocks
        self._data_cid = data_cid
        # Every block was hashed when the CAR was read; the walk need not hash them again.
        self._verified = set(blocks)

    def __len__(self) -> int:
        return len(self._blocks)

    def records(self, want: Callable[[str], bool] | None = None) -> Iterator[RepoRecord]:
        """Yield every record (or those whose collection passes `want`) in MST key order."""
        for key, value in mst_walk(self._blocks, self._data_cid, self._verified):
            collection, rkey = split_key(key)
            if want is not None and not want(collection):
                continue
            cid = cid_str(value)
            block = self._blocks.get(value)
            if block is None:
                raise CarError("missing_block", f"record {collection}/{rkey} ({cid}) is not in the CAR")
            try:
                rec: dict[str, Any] | Malformed = record_to_json(block)
            except RecordError as e:
                rec = Malformed(reason="invalid_record", detail=f"{collection}/{rkey}: {e}", did=self.commit.did)
            yield RepoRecord(collection, rkey, cid, rec)


def read_repo_car(data: bytes) -> RepoCar:
    """Parse a repo CAR, check every block against its CID and read the signed commit.

    Raises CarError with reason "invalid_car", "missing_block", "cid_mismatch" or "invalid_commit"."""
    try:
        header, blocks = libipld.decode_car(data)
    except (ValueError, RecursionError, TypeError) as e:
        raise CarError("invalid_car", str(e)) from None
    roots = header.get("roots") if type(header) is dict else None
    if type(roots) is not list or not roots or type(roots[0]) is not bytes:
        raise CarError("invalid_car", "CAR header has no root")
    root: bytes = roots[0]
    for cid, block in blocks.items():
        if block_digest_ok(cid, block) < 0 and not (cid == root and commit_digest_ok(data, cid, block)):
            raise CarError("cid_mismatch", f"block content does not hash to {describe_cid(cid)}")
    commit_obj = blocks.get(root)
    if commit_obj is None:
        raise CarError("missing_block", f"commit block {describe_cid(root)} is not in the CAR")
    commit = parse_commit(commit_obj, cid_str(root))
    data_cid: bytes = commit_obj["data"]
    if data_cid not in blocks:
        raise CarError("missing_block", f"MST root {commit.data} is not in the CAR")
    return RepoCar(root, commit, blocks, data_cid)


def parse_commit(obj: Any, cid: str) -> RepoCommit:
    if type(obj) is not dict:
        raise CarError("invalid_commit", "commit block is not a map")
    did = obj.get("did")
    version = obj.get("version")
    data = obj.get("data")
    rev = obj.get("rev")
    prev = obj.get("prev")
    sig = obj.get("sig")
    if type(did) is not str or not did.startswith("did:"):
        raise CarError("invalid_commit", "commit 'did' missing or not a DID")
    if type(version) is not int or version not in (2, 3):
        raise CarError("invalid_commit", f"unsupported commit version {version!r}")
    if type(data) is not bytes or not is_link(data):
        raise CarError("invalid_commit", "commit 'data' is not a CID link")
    if type(rev) is not str:
        raise CarError("invalid_commit", "commit 'rev' missing")
    if prev is not None and (type(prev) is not bytes or not is_link(prev)):
        raise CarError("invalid_commit", "commit 'prev' is not a CID link")
    if type(sig) is not bytes:
        raise CarError("invalid_commit", "commit 'sig' missing")
    try:
        data_s = cid_str(data)
        prev_s = cid_str(prev) if prev is not None else None
    except ValueError as e:
        raise CarError("invalid_commit", f"bad CID in commit: {e}") from None
    return RepoCommit(cid=cid, did=did, version=version, data=data_s, rev=rev, prev=prev_s, sig=sig, raw=obj)
