"""The collections the index projects, one module each: its NSID and the SQL that projects it.

Everything that names a collection takes it from here: the fold's statements (indexer/fold/sql.py, in the order
of `COLLECTIONS`), what every source asks for and keeps (`WANTED`: Jetstream's `wantedCollections` /
`collections`, the firehose and CAR filters, backfill and reconciliation), the audio audit and the read side.

`WANTED` is our own namespace whole (`fm.plyr.*`: a record of a collection under it that no lexicon describes
enters the log as an invalid event and a rejection, evidence of what was refused) and, from other apps'
namespaces, exactly the collections projected here (teal.fm's plays and statuses; its other records are not ours
to store or to reject).
"""

from __future__ import annotations

from indexer.events import OWN_NAMESPACE, Wanted
from indexer.fold.collections import comment, like, play, profile, status, track
from indexer.fold.collections import list as list_
from indexer.fold.collections.projection import Collection

COLLECTIONS: tuple[Collection, ...] = (
    track.COLLECTION,
    like.COLLECTION,
    comment.COLLECTION,
    list_.COLLECTION,
    profile.COLLECTION,
    play.COLLECTION,
    play.ALPHA_COLLECTION,
    status.COLLECTION,
    status.ALPHA_COLLECTION,
)
BY_NSID: dict[str, Collection] = {c.nsid: c for c in COLLECTIONS}
NSIDS: tuple[str, ...] = tuple(BY_NSID)
WANTED = Wanted((OWN_NAMESPACE,), NSIDS)

__all__ = ["BY_NSID", "COLLECTIONS", "NSIDS", "WANTED", "Collection"]
