"""The actors the index knows: DIDs with a record of our own namespace (`fm.plyr.*`, in any state: a deleted
record still makes its author known), as a set a stream source consults per commit.

Collections of `indexer.fold.collections.KNOWN_ONLY` (Bluesky's profile) are ours only for these actors; the fold
decides for good (indexer/fold/collections/bsky_profile.py), but a source that asked the network for every
Bluesky profile must not pay for the rest of Bluesky's commits before the fold drops them: the firehose skips a
commit whose only wanted ops are of those collections and whose DID is not known (no signature check, no DID
document lookup, no repo mark).

Contract of `KnownActors`:
- `load` fills the set from the database; `refresh_if_due` reloads it once `refresh_seconds` passed since the
  last load (repos fetched by backfill, reconciliation or another process become known that way); a failed
  reload keeps the set it had and is tried again after the next interval;
- `learn(did)` adds a DID at once, for a source that sees an op of our namespace from it: a new actor's
  Bluesky profile that follows their first record on the same stream is then kept;
- the set only grows between loads; a load replaces it with the database's view plus what was learnt since the
  previous load began, so a DID learnt from the stream outlives at least one full interval, time enough for
  the writer to commit its record (after which the database knows it);
- a DID the set wrongly lacks costs a Bluesky profile (what `plyr-appview backfill --did` or the actor's next
  profile change repairs), one it wrongly holds costs a fold that drops the profile: the fold stays the judge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import psycopg

from indexer.events import OWN_NAMESPACE
from indexer.fold.collections import KNOWN_ONLY

log = logging.getLogger(__name__)

# The same test as the fold's (bsky_profile._UNKNOWN): any record of our namespace, whatever its state.
_KNOWN = f"SELECT DISTINCT did FROM records WHERE collection LIKE '{OWN_NAMESPACE}%'"  # no parameters: `%` is literal


class KnownActors:
    def __init__(self, conninfo: str | None = None, *, dids: Iterable[str] = (), refresh_seconds: float = 60.0) -> None:
        self._conninfo = conninfo
        self._dids: set[str] = set(dids)
        self._learnt: set[str] = set()
        self.refresh_seconds = refresh_seconds
        self._loaded_at: float | None = None
        self.loads = 0

    def __contains__(self, did: object) -> bool:
        return did in self._dids

    def __len__(self) -> int:
        return len(self._dids)

    def learn(self, did: str) -> None:
        if did not in self._dids:
            self._dids.add(did)
            self._learnt.add(did)

    def keeps(self, did: str | None, collection: str) -> bool:
        """Whether an op of `collection` (a wanted one) in `did`'s repo is ours to decode."""
        return collection not in KNOWN_ONLY or (did is not None and did in self._dids)

    async def load(self) -> None:
        """Replace the set with the database's view, plus what was learnt since the previous load began. Raises
        what psycopg raises."""
        if self._conninfo is None:
            return
        previous, self._learnt = self._learnt, set()
        self._loaded_at = time.monotonic()
        try:
            async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as conn:
                cur = await conn.execute(_KNOWN)
                found = {str(did) for (did,) in await cur.fetchall()}
        except BaseException:
            self._learnt |= previous
            raise
        # `self._learnt` now holds what was learnt while the query ran; it stays for the next load too.
        self._dids = found | previous | self._learnt
        self.loads += 1

    async def refresh_if_due(self) -> None:
        if self._conninfo is None:
            return
        now = time.monotonic()
        if self._loaded_at is not None and now - self._loaded_at < self.refresh_seconds:
            return
        try:
            await self.load()
        except (psycopg.Error, OSError) as e:
            # The stream goes on with the set it has; the next interval tries again.
            self._loaded_at = now
            log.warning("known actors not reloaded", extra={"error": str(e)[:300], "known": len(self._dids)})
