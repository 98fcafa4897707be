"""A `#commit` body turned into Events: one per op whose collection is wanted.

Nothing below the op filter runs for a commit with no wanted op; that is where the decoder's speed comes
from. For wanted ops:

* always: the rev is a TID, the repo a DID, each op path `collection/rkey` with a valid NSID and record key;
  the CAR slice decodes and holds the commit block named by `commit`, whose `did`/`rev` agree with the frame;
  a create/update's record block is present, hashes to the op's CID, and fits the atproto data model;
* with a `verify` hook, the whole chain from signature to op: the commit block hashes to `commit`, its
  signature verifies, and each op is proven against the commit's MST (a create/update's path holds the op's
  CID; a deleted path is absent), every node on the way checked against its CID. Without a signature check
  these proofs would add nothing against a relay that forges records, since it could forge a matching tree
  too, so they are not paid for.

A problem that taints the whole commit yields one Malformed for the frame; a problem with one op yields a
Malformed for that op and the other ops still become Events (as Jetstream does).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import libipld

from indexer.atproto.repo.car import (
    MAX_RECORD_BYTES,
    CarError,
    RecordError,
    block_digest_ok,
    cid_str,
    commit_digest_ok,
    describe_cid,
    mst_lookup,
    record_to_json,
)
from indexer.atproto.syntax import is_did, is_nsid, is_record_key, is_tid
from indexer.events import Event, Malformed, Operation, parse_time_us

# (did, commit object) -> None if the signature is good, else a reason.
CommitVerifier = Callable[[str, dict[str, Any]], str | None]
# (repo DID or None, wanted collection) -> whether that op is ours in that repo (`KnownActors.keeps`). A commit
# none of whose wanted ops is kept is foreign: nothing below the op filter runs for it.
OpKeeper = Callable[[str | None, str], bool]

# A rejected frame is kept (base64) for diagnosis only up to this size, so a flood of junk stays cheap.
MAX_RAW_KEPT = 64 * 1024

_ACTIONS: dict[str, Operation] = {"create": "create", "update": "update", "delete": "delete"}


def malformed(
    data: bytes, source: str, reason: str, detail: str, did: str | None = None, cursor: int | None = None
) -> Malformed:
    raw = base64.b64encode(data).decode("ascii") if len(data) <= MAX_RAW_KEPT else None
    return Malformed(reason=reason, detail=detail, source=source, raw=raw, did=did, cursor=cursor)


def commit_items(
    body: dict[str, Any],
    data: bytes,
    *,
    source: str,
    want: Callable[[str], bool],
    verify: CommitVerifier | None,
    keep: OpKeeper | None = None,
) -> list[Event | Malformed]:
    ops = body.get("ops")
    if type(ops) is not list:
        return [_frame_bad(body, data, source, "missing_field", "commit without an 'ops' list")]
    wanted: list[tuple[dict[str, Any], str, str, str]] = []
    for op in ops:
        if type(op) is not dict or type(path := op.get("path")) is not str:
            return [_frame_bad(body, data, source, "invalid_op", "commit op is not a map with a string 'path'")]
        collection, _, rkey = path.partition("/")
        if want(collection):
            wanted.append((op, path, collection, rkey))
    if not wanted:
        return []
    if keep is not None:
        repo = body.get("repo")
        did = repo if type(repo) is str else None
        # One kept op makes the whole commit ours, as the fold keeps a Bluesky profile that comes with its
        # author's first record of our namespace.
        if not any(keep(did, collection) for _, _, collection, _ in wanted):
            return []
    return _wanted_items(body, data, wanted, source, verify)


def _frame_bad(body: dict[str, Any], data: bytes, source: str, reason: str, detail: str) -> Malformed:
    seq = body.get("seq")
    repo = body.get("repo")
    did = repo if type(repo) is str else None
    return malformed(data, source, reason, detail, did, seq if type(seq) is int else None)


def _wanted_items(
    body: dict[str, Any],
    data: bytes,
    wanted: list[tuple[dict[str, Any], str, str, str]],
    source: str,
    verify: CommitVerifier | None,
) -> list[Event | Malformed]:
    def bad(reason: str, detail: str) -> list[Event | Malformed]:
        return [_frame_bad(body, data, source, reason, detail)]

    cursor = body.get("seq")
    did = body.get("repo")
    rev = body.get("rev")
    if type(cursor) is not int:
        return bad("missing_field", "commit without an integer 'seq'")
    if type(did) is not str or not is_did(did):
        return bad("invalid_field", f"commit 'repo' is not a DID: {str(did)[:200]!r}")
    if type(rev) is not str or not is_tid(rev):
        return bad("invalid_rev", f"commit rev is not a TID: {str(rev)[:64]!r}")
    time = body.get("time")
    if type(time) is not str:
        time = None
    time_us = parse_time_us(time)

    blocks_raw = body.get("blocks")
    commit_cid = body.get("commit")
    if type(blocks_raw) is not bytes or type(commit_cid) is not bytes:
        return bad("missing_field", "commit without 'blocks' bytes or 'commit' CID")
    try:
        _, blocks = libipld.decode_car(blocks_raw)
    except (ValueError, RecursionError, TypeError, OverflowError) as e:
        return bad("invalid_car", f"blocks do not decode as a CAR: {e}")

    commit_obj = blocks.get(commit_cid)
    if commit_obj is None:
        return bad("missing_commit_block", f"commit block {describe_cid(commit_cid)} is not in the CAR")
    if type(commit_obj) is not dict:
        return bad("invalid_commit", "commit block is not a map")
    if commit_obj.get("did") != did or commit_obj.get("rev") != rev:
        return bad("commit_mismatch", "signed commit's did/rev differ from the frame's repo/rev")

    # The chain signature -> commit -> MST -> op CID is only worth walking when its first link is checked:
    # without a signature check, a relay that forges a record can forge a consistent tree just as easily.
    verified: set[bytes] | None = None
    data_root: bytes = b""
    if verify is not None:
        verified = set()
        if not commit_digest_ok(blocks_raw, commit_cid, commit_obj):
            return bad("cid_mismatch", f"commit block does not hash to {describe_cid(commit_cid)}")
        verified.add(commit_cid)
        root = commit_obj.get("data")
        if type(root) is not bytes:
            return bad("invalid_commit", "commit block has no 'data' link")
        data_root = root
        try:
            reason = verify(did, commit_obj)
        except Exception as e:
            # The verifier is the caller's code (key cache, resolver); whatever it throws, the frame is not
            # verified and the stream must go on.
            return bad("verify_error", f"{type(e).__name__}: {e}")
        if reason is not None:
            return bad("invalid_signature", reason)

    out: list[Event | Malformed] = []
    for op, path, collection, rkey in wanted:
        action = _ACTIONS.get(op.get("action"))  # type: ignore[arg-type]  # non-str keys just miss
        problem: tuple[str, str] | None = None
        record: dict[str, Any] | None = None
        cid: str | None = None
        if action is None:
            problem = ("invalid_op", f"unknown action {str(op.get('action'))[:64]!r}")
        elif not is_nsid(collection) or not is_record_key(rkey):
            problem = ("invalid_path", "not collection/rkey with a valid NSID and record key")
        elif action == "delete":
            if verified is not None:
                problem = _prove_delete(blocks, data_root, path, verified)
        elif type(op_cid := op.get("cid")) is not bytes:
            problem = ("missing_cid", f"{action} op without a record CID")
        else:
            if verified is not None:
                problem = _prove_write(blocks, data_root, path, op_cid, verified)
            if problem is None:
                try:
                    record = _record(blocks, op_cid)
                    cid = cid_str(op_cid)
                except _OpProblem as e:
                    problem = (e.reason, e.detail)
        if problem is not None:
            reason, detail = problem
            out.append(malformed(data, source, reason, f"{path[:600]}: {detail}", did, cursor))
            continue
        out.append(
            Event(
                kind="commit",
                did=did,
                source=source,
                cursor=cursor,
                time_us=time_us,
                time=time,
                operation=action,
                collection=collection,
                rkey=rkey,
                rev=rev,
                cid=cid,
                record=record,
            )
        )
    return out


class _OpProblem(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def _record(blocks: dict[bytes, Any], op_cid: bytes) -> dict[str, Any]:
    block = blocks.get(op_cid)
    if block is None:
        raise _OpProblem("missing_block", f"record block {describe_cid(op_cid)} is not in the CAR")
    size = block_digest_ok(op_cid, block)
    if size < 0:
        raise _OpProblem("cid_mismatch", f"record block does not hash to {describe_cid(op_cid)}")
    if size > MAX_RECORD_BYTES:
        raise _OpProblem("record_too_large", f"record is {size} bytes")
    try:
        return record_to_json(block)
    except RecordError as e:
        raise _OpProblem("invalid_record", str(e)) from None


def _prove_write(
    blocks: dict[bytes, Any], root: bytes, path: str, op_cid: bytes, verified: set[bytes]
) -> tuple[str, str] | None:
    try:
        found = mst_lookup(blocks, root, path.encode(), verified)
    except CarError as e:
        return (e.reason, e.detail)
    if not found.complete:
        return ("mst_incomplete", "the CAR lacks MST nodes on this path")
    if found.value != op_cid:
        return ("mst_mismatch", "the signed tree holds a different record at this path")
    return None


def _prove_delete(blocks: dict[bytes, Any], root: bytes, path: str, verified: set[bytes]) -> tuple[str, str] | None:
    try:
        found = mst_lookup(blocks, root, path.encode(), verified)
    except CarError as e:
        return (e.reason, e.detail)
    if found.found:
        return ("mst_mismatch", "deleted path is still in the signed tree")
    # Sync 1.1 requires the nodes needed to invert each op, which include the deleted key's path; without
    # them a relay could pass off a delete of a record that still exists.
    if not found.complete:
        return ("mst_incomplete", "the CAR lacks MST nodes on this path")
    return None
