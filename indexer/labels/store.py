"""Writes what one labeler frame brought: its accepted labels, its refusals and the labeler's cursor, in one
transaction, so the cursor never moves past a label that is not stored (a crash redelivers the frame, and
storing it again changes nothing).

Per (src, uri, val) the label with the newest `cts` wins (a tie goes to the later delivery): a negation is
stored like any label, with `neg` set, so it hides the label it negates and an older copy of that label
delivered again cannot bring it back. Readers ignore negations and expired labels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import msgspec
import psycopg

from indexer.fold.sql import SAVE_CURSOR
from indexer.labels.label import Label

_UPSERT = """
INSERT INTO labels AS l (src, uri, val, cid, neg, cts, cts_at, exp, exp_at, sig, seq, received_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())
ON CONFLICT (src, uri, val) DO UPDATE SET
  cid = excluded.cid, neg = excluded.neg, cts = excluded.cts, cts_at = excluded.cts_at, exp = excluded.exp,
  exp_at = excluded.exp_at, sig = excluded.sig, seq = excluded.seq, received_at = now()
WHERE l.cts_at <= excluded.cts_at
"""

_REJECT = """
INSERT INTO rejections (source, source_cursor, reason, detail, did, event, dedup)
VALUES (%s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (dedup) DO NOTHING
"""


class Rejected(msgspec.Struct, frozen=True, kw_only=True):
    """A refused label (or frame): kept in `rejections` with its reason."""

    reason: str
    detail: str
    did: str | None
    event: str
    # Its place in the frame: a label refused twice for the same reason at the same place is one rejection.
    position: int


def _digest(*parts: object) -> bytes:
    return hashlib.blake2b("\x00".join(str(p) for p in parts).encode(), digest_size=16).digest()


def _text(value: str) -> str:
    # Postgres text cannot hold NUL; refusal details may quote the network.
    return value.replace("\x00", "\\x00")


async def save_frame(
    conn: psycopg.AsyncConnection[Any],
    source: str,
    seq: int | None,
    labels: Sequence[Label],
    rejected: Sequence[Rejected],
) -> None:
    """One frame, one transaction: the labels, the rejections and (with a `seq`) the cursor."""
    async with conn.transaction(), conn.cursor() as cur:
        if labels:
            await cur.executemany(
                _UPSERT,
                [
                    (lb.src, lb.uri, lb.val, lb.cid, lb.neg, lb.cts, lb.cts_at, lb.exp, lb.exp_at, lb.sig, seq or 0)
                    for lb in labels
                ],
            )
        if rejected:
            await cur.executemany(
                _REJECT,
                [
                    (
                        source,
                        seq,
                        r.reason,
                        _text(r.detail)[:2000],
                        None if r.did is None else _text(r.did)[:2048],
                        _text(r.event),
                        _digest(source, seq, r.position, r.reason, r.event),
                    )
                    for r in rejected
                ],
            )
        if seq is not None:
            await cur.execute(SAVE_CURSOR, {"source": source, "cursor": seq, "event_time": None})


async def committed_cursor(conn: psycopg.AsyncConnection[Any], source: str) -> int | None:
    cur = await conn.execute("SELECT cursor FROM cursors WHERE source = %s", (source,))
    row = await cur.fetchone()
    return None if row is None else int(row[0])
