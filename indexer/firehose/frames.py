"""Raw `com.atproto.sync.subscribeRepos` frames: header + body -> Events, Malformed, or Control items.

A websocket message is two concatenated DAG-CBOR objects, a header `{op, t}` and a body. `op == 1` is a
message whose body type is `t`; `op == -1` an error frame (`{error, message}`) after which the relay closes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import libipld
import msgspec

from indexer.atproto.syntax import is_did
from indexer.events import Checkpoint, Event, Malformed, parse_time_us
from indexer.firehose.commit import CommitVerifier, OpKeeper, commit_items, malformed
from indexer.fold.collections import WANTED

DEFAULT_MAX_FRAME_BYTES = 5 * 1024 * 1024

ControlKind = Literal["sync", "info", "error", "too_big", "unknown"]


class Control(msgspec.Struct, kw_only=True):
    """A frame the caller acts on rather than indexes.

    * `sync`: the repo's state was reset to the commit in `blocks` (a CAR); resync `did` at `rev`.
    * `too_big`: a legacy commit whose ops were not all sent; resync `did` from its PDS.
    * `info`: relay notice, e.g. `name="OutdatedCursor"`; carries no cursor.
    * `error`: error frame (`name` is the error code); the relay closes the stream after it.
    * `unknown`: a message type this decoder does not know (`name` is its `t`).

    `cursor` is the relay seq when the frame has one: the caller may advance past it once acted upon."""

    kind: ControlKind
    source: str = ""
    cursor: int | None = None
    did: str | None = None
    rev: str | None = None
    blocks: bytes | None = None
    time: str | None = None
    name: str | None = None
    message: str | None = None


Decoded = Event | Malformed | Control | Checkpoint


def decode_frame(
    data: bytes,
    *,
    source: str,
    want: Callable[[str], bool] = WANTED,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    verify: CommitVerifier | None = None,
    checkpoint: bool = False,
    keep: OpKeeper | None = None,
) -> list[Decoded]:
    """Decode one relay frame. Never raises: anything unusable comes back as a Malformed.

    `want(collection)` selects commit ops; a commit with no wanted op costs only the CBOR decode of the
    frame. `verify(did, commit)`, if given, checks the signature of commits that have wanted ops (see
    `verify.verify_commit_with_key`) and turns on the proof of each op against the signed MST; a non-None
    reason makes the frame Malformed("invalid_signature"). With `checkpoint`, a commit frame that yields
    nothing returns `[Checkpoint(cursor=seq)]` instead of `[]`, so a live consumer can move its cursor
    through long runs of other collections' traffic. `keep(did, collection)`, if given, narrows `want` per repo
    (`indexer.sync.known.KnownActors.keeps`): a commit, or a `tooBig` commit, none of whose wanted ops is kept is
    foreign like one without wanted ops."""
    try:
        if len(data) > max_frame_bytes:
            return [
                Malformed(
                    reason="frame_too_large",
                    detail=f"{len(data)} bytes exceeds the {max_frame_bytes}-byte limit",
                    source=source,
                )
            ]
        try:
            parts = libipld.decode_dag_cbor_multi(data)
        except (ValueError, RecursionError, TypeError, OverflowError) as e:
            msg = str(e)
            # libipld's wording is the only signal that the data ended early rather than went wrong.
            truncated = "end of data" in msg or "exceeds remaining data" in msg
            return [malformed(data, source, "truncated_frame" if truncated else "invalid_cbor", msg[:500])]
        if len(parts) != 2:
            if len(parts) < 2:
                detail = f"frame holds {len(parts)} CBOR object(s), expected header and body"
                return [malformed(data, source, "truncated_frame", detail)]
            return [malformed(data, source, "invalid_frame", f"frame holds {len(parts)} CBOR objects, expected 2")]
        header, body = parts
        if type(header) is not dict or type(body) is not dict:
            return [malformed(data, source, "invalid_frame", "frame header or body is not a map")]
        op = header.get("op")
        t = header.get("t")
        if t == "#commit" and op == 1 and type(op) is int:
            items: list[Decoded] = []
            if body.get("tooBig") is True:
                items.extend(_too_big(body, source, want, keep))
            else:
                items.extend(commit_items(body, data, source=source, want=want, verify=verify, keep=keep))
            if not items and checkpoint and type(seq := body.get("seq")) is int:
                items.append(Checkpoint(source=source, cursor=seq))
            return items
        if op == -1 and type(op) is int:
            return _error_frame(body, source)
        if op != 1 or type(op) is not int or type(t) is not str:
            return [malformed(data, source, "invalid_header", f"unexpected header {_short(header)}")]

        def bad(reason: str, detail: str, did: str | None = None, cursor: int | None = None) -> list[Decoded]:
            return [malformed(data, source, reason, detail, did, cursor)]

        if t == "#identity":
            return _identity(body, source, bad)
        if t == "#account":
            return _account(body, source, bad)
        if t == "#sync":
            return _sync(body, source, bad)
        if t == "#info":
            name = body.get("name")
            message = body.get("message")
            if type(name) is not str or (message is not None and type(message) is not str):
                return bad("invalid_field", "#info without a string 'name'")
            return [Control(kind="info", source=source, name=name, message=message)]
        seq = body.get("seq")
        did = body.get("did", body.get("repo"))
        return [
            Control(
                kind="unknown",
                source=source,
                name=t[:200],
                cursor=seq if type(seq) is int else None,
                did=did if type(did) is str else None,
            )
        ]
    except Exception as e:
        # Input is attacker-controlled; a decoder bug must cost one frame, not the consumer.
        return [malformed(data, source, "decode_error", f"{type(e).__name__}: {str(e)[:300]}")]


BadFn = Callable[..., list[Decoded]]


def _short(value: Any) -> str:
    return repr(value)[:200]


def _error_frame(body: dict[str, Any], source: str) -> list[Decoded]:
    error = body.get("error")
    message = body.get("message")
    return [
        Control(
            kind="error",
            source=source,
            name=error if type(error) is str else None,
            message=message if type(message) is str else None,
        )
    ]


def _too_big(body: dict[str, Any], source: str, want: Callable[[str], bool], keep: OpKeeper | None) -> list[Decoded]:
    ops = body.get("ops")
    repo = body.get("repo")
    if type(ops) is list and ops:
        paths = [op.get("path") for op in ops if type(op) is dict]
        collections = [p.partition("/")[0] for p in paths if type(p) is str]
        wanted = [c for c in collections if want(c)]
        if not wanted:
            return []
        if keep is not None and not any(keep(repo if type(repo) is str else None, c) for c in wanted):
            return []
    seq = body.get("seq")
    rev = body.get("rev")
    time = body.get("time")
    return [
        Control(
            kind="too_big",
            source=source,
            cursor=seq if type(seq) is int else None,
            did=repo if type(repo) is str else None,
            rev=rev if type(rev) is str else None,
            time=time if type(time) is str else None,
        )
    ]


def _common(body: dict[str, Any], kind: str, bad: BadFn) -> tuple[str, int, str] | list[Decoded]:
    did = body.get("did")
    seq = body.get("seq")
    time = body.get("time")
    if type(seq) is not int:
        return bad("missing_field", f"{kind} without an integer 'seq'", did=did if type(did) is str else None)
    if type(did) is not str or not is_did(did):
        return bad("invalid_field", f"{kind} 'did' is not a DID: {_short(did)}", cursor=seq)
    if type(time) is not str:
        return bad("missing_field", f"{kind} without a 'time'", did=did, cursor=seq)
    return did, seq, time


def _identity(body: dict[str, Any], source: str, bad: BadFn) -> list[Decoded]:
    common = _common(body, "#identity", bad)
    if isinstance(common, list):
        return common
    did, seq, time = common
    handle = body.get("handle")
    if handle is not None and type(handle) is not str:
        return bad("invalid_field", "#identity 'handle' is not a string", did=did, cursor=seq)
    return [_event("identity", source, did, seq, time, handle=handle)]


def _account(body: dict[str, Any], source: str, bad: BadFn) -> list[Decoded]:
    common = _common(body, "#account", bad)
    if isinstance(common, list):
        return common
    did, seq, time = common
    active = body.get("active")
    status = body.get("status")
    if type(active) is not bool:
        return bad("missing_field", "#account without a boolean 'active'", did=did, cursor=seq)
    if status is not None and type(status) is not str:
        return bad("invalid_field", "#account 'status' is not a string", did=did, cursor=seq)
    return [_event("account", source, did, seq, time, active=active, status=status)]


def _event(
    kind: Literal["identity", "account"],
    source: str,
    did: str,
    seq: int,
    time: str,
    *,
    handle: str | None = None,
    active: bool | None = None,
    status: str | None = None,
) -> Event:
    """An #identity or #account Event: the relay seq is its cursor and its `time` orders it."""
    return Event(
        kind=kind,
        did=did,
        source=source,
        cursor=seq,
        time_us=parse_time_us(time),
        seq=seq,
        time=time,
        handle=handle,
        active=active,
        status=status,
    )


def _sync(body: dict[str, Any], source: str, bad: BadFn) -> list[Decoded]:
    common = _common(body, "#sync", bad)
    if isinstance(common, list):
        return common
    did, seq, time = common
    rev = body.get("rev")
    blocks = body.get("blocks")
    if type(rev) is not str or type(blocks) is not bytes:
        return bad("missing_field", "#sync without 'rev' and 'blocks'", did=did, cursor=seq)
    return [Control(kind="sync", source=source, cursor=seq, did=did, rev=rev, blocks=blocks, time=time)]
