"""A raw relay frame capture rewritten as Jetstream v1 JSON lines (all collections).

Output follows production Jetstream v1: events in relay order (frame by frame, ops in commit order), one
line each, `{"did","time_us","kind",...}` with the `commit` / `identity` / `account` object Jetstream
builds; record maps with sorted keys and Go's HTML-safe string escaping, so lines match Jetstream's byte for
byte apart from `time_us`. `#sync`, `#info` and error frames are not v1 events and are only counted; ops
Jetstream would drop (missing or mismatched blocks, records outside the data model) are dropped and counted
too.

`time_us` is Jetstream's own clock at emission, which a capture does not have: here it is the relay's `time`
for the event, in microseconds, nudged forward where needed so it strictly increases through the file and
still works as a cursor.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import msgspec
import zstandard

from indexer.capture.files import CaptureError, iter_capture
from indexer.events import Event, Malformed
from indexer.firehose.frames import Control, decode_frame

# Go's encoding/json escapes these inside strings; they can only occur inside strings, so a plain
# translation of the encoded text is exact.
_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"})


class ConvertStats(msgspec.Struct, kw_only=True):
    frames: int = 0
    events: int = 0
    # "create", "update", "delete", "identity", "account"
    kinds: dict[str, int] = msgspec.field(default_factory=dict)
    malformed: dict[str, int] = msgspec.field(default_factory=dict)  # by reason
    control: dict[str, int] = msgspec.field(default_factory=dict)  # by Control.kind
    capture_error: str | None = None


def _all_collections(_: str) -> bool:
    return True


def v1_event(ev: Event, time_us: int) -> dict[str, Any]:
    """The Jetstream v1 object for one Event, keys in Jetstream's order."""
    if ev.kind == "commit":
        commit: dict[str, Any] = {
            "rev": ev.rev,
            "operation": ev.operation,
            "collection": ev.collection,
            "rkey": ev.rkey,
        }
        if ev.operation != "delete":
            commit["record"] = ev.record
            commit["cid"] = ev.cid
        return {"did": ev.did, "time_us": time_us, "kind": "commit", "commit": commit}
    if ev.kind == "identity":
        identity: dict[str, Any] = {"did": ev.did}
        if ev.handle is not None:
            identity["handle"] = ev.handle
        identity["seq"] = ev.seq
        identity["time"] = ev.time
        return {"did": ev.did, "time_us": time_us, "kind": "identity", "identity": identity}
    account: dict[str, Any] = {"active": ev.active, "did": ev.did, "seq": ev.seq}
    if ev.status is not None:
        account["status"] = ev.status
    account["time"] = ev.time
    return {"did": ev.did, "time_us": time_us, "kind": "account", "account": account}


def v1_line(ev: Event, time_us: int) -> str:
    text = json.dumps(v1_event(ev, time_us), ensure_ascii=False, separators=(",", ":"))
    return text.translate(_GO_ESCAPES)


@contextlib.contextmanager
def _text_output(fd: int, *, compress: bool) -> Iterator[TextIO]:
    """UTF-8 text onto `fd`, zstd-compressed (as `capture` writes `.zst` files) when `compress`."""
    with os.fdopen(fd, "wb") as raw:
        if not compress:
            with io.TextIOWrapper(raw, encoding="utf-8", newline="\n") as text:
                yield text
            return
        with (
            zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=False) as packed,
            io.TextIOWrapper(packed, encoding="utf-8", newline="\n") as text,
        ):
            yield text


def convert(in_path: str | Path, out_path: str | Path) -> ConvertStats:
    """Convert the frame capture at `in_path` (zstd-compressed or not) to Jetstream v1 JSON lines at `out_path`
    (replaced atomically).

    The capture is read strictly: a truncated or corrupt capture still yields every whole frame before the
    damage, and the damage (its cause and offset) is reported in `capture_error`."""
    stats = ConvertStats()
    kinds: Counter[str] = Counter()
    malformed: Counter[str] = Counter()
    control: Counter[str] = Counter()
    source = f"replay:{Path(in_path).name}"
    out_path = Path(out_path)
    last_us = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", dir=out_path.parent or ".")
    try:
        # mkstemp makes the file private (0600); the output is an ordinary file, made with the usual umask.
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with _text_output(fd, compress=out_path.suffix == ".zst") as out:
            try:
                for _, frame in iter_capture(in_path, strict=True, kind="frames"):
                    stats.frames += 1
                    for item in decode_frame(frame, source=source, want=_all_collections):
                        if isinstance(item, Event):
                            t = item.time_us if item.time_us is not None and item.time_us > last_us else last_us + 1
                            last_us = t
                            out.write(v1_line(item, t))
                            out.write("\n")
                            stats.events += 1
                            kinds[item.operation if item.kind == "commit" and item.operation else item.kind] += 1
                        elif isinstance(item, Malformed):
                            malformed[item.reason] += 1
                        elif isinstance(item, Control):
                            control[item.kind] += 1
            except CaptureError as e:
                stats.capture_error = str(e)
        os.replace(tmp_name, out_path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    stats.kinds = dict(kinds)
    stats.malformed = dict(malformed)
    stats.control = dict(control)
    return stats
