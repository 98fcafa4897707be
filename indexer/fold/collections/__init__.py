"""The collections the index projects, one module each: its NSID and the SQL that projects it.

Everything that names a collection takes it from here: the fold's statements (indexer/fold/sql.py, in the order
of `COLLECTIONS`), backfill and reconciliation (which collections to list), the audio audit and the read side.
Sources filter on the whole namespace (`indexer.events.COLLECTION_PREFIX`), not on this list: a record of a
collection under it that no lexicon describes enters the log as an invalid event and a rejection, evidence of what
was refused.
"""

from __future__ import annotations

from indexer.fold.collections import comment, like, profile, track
from indexer.fold.collections import list as list_
from indexer.fold.collections.projection import Collection

COLLECTIONS: tuple[Collection, ...] = (
    track.COLLECTION,
    like.COLLECTION,
    comment.COLLECTION,
    list_.COLLECTION,
    profile.COLLECTION,
)
BY_NSID: dict[str, Collection] = {c.nsid: c for c in COLLECTIONS}
NSIDS: tuple[str, ...] = tuple(BY_NSID)

__all__ = ["BY_NSID", "COLLECTIONS", "NSIDS", "Collection"]
