"""Keyset cursors. A page ends at a (sortAt, cid) position and the next page starts strictly after it, so
rows inserted while a client pages never cause a duplicate or a skipped row among those already there.

Wire format: `<sortAt as epoch microseconds>__<cid>` (microseconds: timestamptz precision, so the position
is exact). A ranked listing (search) prefixes its rank: `<rank>__<sortAt>__<cid>`.
"""

from __future__ import annotations

import datetime as dt
import re

from appview.errors import XrpcError

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_ONE_US = dt.timedelta(microseconds=1)
# CIDs are multibase strings: base32 lower ("b..."), base58btc ("z...") or legacy CIDv0 ("Qm...").
_CID = re.compile(r"[A-Za-z0-9]{8,128}")
_INT = re.compile(r"-?[0-9]{1,19}")


class Position:
    __slots__ = ("cid", "sort_at")

    def __init__(self, sort_at: dt.datetime, cid: str) -> None:
        self.sort_at = sort_at
        self.cid = cid


def to_micros(at: dt.datetime) -> int:
    return (at - EPOCH) // _ONE_US


def pack(sort_at: dt.datetime, cid: str) -> str:
    return f"{to_micros(sort_at)}__{cid}"


def pack_ranked(rank: int, sort_at: dt.datetime, cid: str) -> str:
    return f"{rank}__{pack(sort_at, cid)}"


def _bad(cursor: str) -> XrpcError:
    return XrpcError("InvalidRequest", f"malformed cursor: {cursor[:64]!r}")


def _micros(text: str, cursor: str) -> dt.datetime:
    if not _INT.fullmatch(text):
        raise _bad(cursor)
    try:
        return EPOCH + dt.timedelta(microseconds=int(text))
    except OverflowError as exc:
        raise _bad(cursor) from exc


def unpack(cursor: str | None) -> Position | None:
    if cursor is None or cursor == "":
        return None
    sort_at, sep, cid = cursor.partition("__")
    if not sep or not _CID.fullmatch(cid):
        raise _bad(cursor)
    return Position(_micros(sort_at, cursor), cid)


def unpack_ranked(cursor: str | None) -> tuple[int, Position] | None:
    if cursor is None or cursor == "":
        return None
    rank, sep, rest = cursor.partition("__")
    if not sep or not rank.isdigit() or len(rank) > 2:
        raise _bad(cursor)
    position = unpack(rest)
    assert position is not None
    return int(rank), position


def unpack_int(cursor: str | None) -> tuple[int, str] | None:
    """`<integer>__<cid>` positions that sort on an integer (e.g. a comment's playback time)."""
    if cursor is None or cursor == "":
        return None
    value, sep, cid = cursor.partition("__")
    if not sep or not _INT.fullmatch(value) or not _CID.fullmatch(cid):
        raise _bad(cursor)
    number = int(value)
    if not -(2**63) <= number < 2**63:
        raise _bad(cursor)
    return number, cid
