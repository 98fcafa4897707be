"""`plyr-appview replay FILE --bulk`: the capture appended to the log without folding, then one set-based rebuild.
This module holds its parts; the command wires them (appview/cli/commands/replay.py), the append runs in shares
(indexer/capture/replay.py `append_in_shares`).

Why: the live fold costs Postgres some 50 µs an event, a dozen index insertions on one backend, while the
set-based rebuild derives the whole index from the log several times faster on two connections
(docs/benchmarks.md). When the capture is large next to the log (an index filled from a capture, a long
catch-up), appending and then rebuilding is faster than folding batch by batch; when the log is much larger
than the capture, the rebuild's pass over all of it costs more than it saves.

Contract:
- the append writes what the live path writes for the same capture: the same log rows (the same `Preparer`,
  the same dedup keys), rejections, cursors and report, and the same rule for Bluesky profiles (kept only for
  authors with a record of our namespace, which the log's unfolded tail counts too: `unfolded_dids`);
- once `finish` returns, the index is the one the live fold builds from the same log (the same state hash): it is
  a rebuild's, and a rebuild equals the live fold;
- every append transaction that adds to the log also marks the log's unfolded tail (`unfolded_log`, migration
  0017) and the rebuild clears the mark as it installs its result: a replay killed in between leaves the mark,
  `status` reports it, the API serves the index as it was before the replay, and the next `rebuild` or bulk
  replay (which resumes at its cursor) folds the tail;
- live writers keep folding their own events during the append and wait for the rebuild only, as they do for any
  rebuild. The limit that follows: a Bluesky profile a live writer receives while the tail is unfolded is kept
  only if its author is known to the folded index (`records`), not through the tail.

The append runs in shares, one process and one connection each (`--workers`, as many as the rebuild's): a
share holds the lines of a Jetstream capture whose DID falls in it (`Share`, a CRC-32 of the DID), reads the
whole file and parses only those, and keeps its own position (`Share.source`), so a killed replay resumes share
by share. Every event of a repo is in one share, in the file's order, which is all the fold's rules compare
(revs per record, event times and sequence numbers per DID; the log's ids only break ties within a DID). A
frame capture is read by one share: its DIDs are deep in each frame's CBOR.

Tracks whose audioUrl names audio stored here are checked after the rebuild (the check joins the projected
tracks), from the list the writer gathered (`BatchWriter.unchecked_audio`, one tuple per such track); a replay
killed before that leaves them to `plyr-appview audit-audio`.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgspec
import psycopg

from indexer.audio import refs as audio_refs
from indexer.fold import sql

log = logging.getLogger(__name__)

# Tracks checked per statement after the rebuild.
_CHECK_CHUNK = 10_000


@dataclass(frozen=True)
class Share:
    """Share `index` of `of`: the Jetstream lines whose DID's CRC-32 is `index` modulo `of`. A line whose DID cannot
    be read (not JSON, no DID) is in share 0; it is a rejection or nothing, and orders no repo's events."""

    index: int = 0
    of: int = 1

    def holds(self, line: bytes) -> bool:
        if self.of == 1:
            return True
        return self.of_line(line) == self.index

    def of_line(self, line: bytes) -> int:
        did = _did(line)
        return 0 if did is None else zlib.crc32(did.encode()) % self.of

    def source(self, source: str) -> str:
        """The name this share's position is kept under: the replay's own with one share, suffixed with more."""
        return source if self.of == 1 else f"{source}:{self.index + 1}/{self.of}"

    @classmethod
    def named(cls, name: str, source: str) -> Share | None:
        """The share whose position of a replay of `source` is kept under `name` (`source` itself: the one share
        of a plain replay), or None for another name."""
        if name == source:
            return cls()
        suffix = _SUFFIX.fullmatch(name.removeprefix(source)) if name.startswith(source) else None
        if suffix is None or not 1 <= int(suffix[1]) <= int(suffix[2]) or int(suffix[2]) < 2:
            return None
        return cls(int(suffix[1]) - 1, int(suffix[2]))


_SUFFIX = re.compile(r":(\d+)/(\d+)")


class _Envelope(msgspec.Struct):
    did: Any = None


_envelope = msgspec.json.Decoder(type=_Envelope)


def _did(line: bytes) -> str | None:
    try:
        did = _envelope.decode(line).did
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None
    return did if isinstance(did, str) else None


@dataclass(frozen=True)
class Unfolded:
    """The log's unfolded tail: the events after `after_id`, left unfolded since `since`."""

    after_id: int
    since: dt.datetime


async def unfolded(conninfo: str) -> Unfolded | None:
    """The log's unfolded tail, or None when the index reflects the whole log."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        row = await (await conn.execute(sql.UNFOLDED)).fetchone()
    if row is None:
        return None
    after_id, since = row
    assert isinstance(after_id, int) and isinstance(since, dt.datetime)
    return Unfolded(after_id, since)


async def check_audio(conninfo: str, unchecked: Iterable[audio_refs.OwnAudio]) -> int:
    """Flag the tracks among `unchecked` whose audio, named as stored here, is not (after the rebuild: the
    check joins the projected tracks); returns how many were flagged."""
    own = sorted(set(unchecked))
    flagged: list[tuple[str, str, str]] = []
    if not own:
        return 0
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        for start in range(0, len(own), _CHECK_CHUNK):
            async with conn.transaction(), conn.cursor() as cur:
                flagged += await audio_refs.flag_missing(cur, own[start : start + _CHECK_CHUNK])
    if flagged:
        did, rkey, sha256 = flagged[0]
        log.warning(
            "tracks point at uploaded audio that is not stored",
            extra={"count": len(flagged), "sample_did": did, "sample_rkey": rkey, "sample_sha256": sha256},
        )
    return len(flagged)
