"""The collections the index projects, one module each: its NSID and the SQL that projects it.

Everything that names a collection takes it from here: the fold's statements (indexer/fold/sql.py, in the order
of `COLLECTIONS`), what every source asks for and keeps (`WANTED`: Jetstream's `wantedCollections` /
`collections`, the firehose and CAR filters, backfill and reconciliation), the audio audit and the read side.

`WANTED` is our own namespace whole (`fm.plyr.*`: a record of a collection under it that no lexicon describes
enters the log as an invalid event and a rejection, evidence of what was refused) and, from other apps'
namespaces, exactly the collections projected here (teal.fm's plays and statuses, Bluesky's profiles; their other
records are not ours to store or to reject). Of Bluesky's profiles, only those of actors the index knows enter
the log (bsky_profile.py).

`KNOWN_ONLY` names those collections kept only for actors the index knows (Bluesky's profile, which every
Bluesky account holds). A source does not treat a commit whose only wanted ops are of these collections as ours
unless its DID is known (indexer/sync/known.py): the firehose skips it as foreign, with no signature check and
no DID document lookup. `DISCOVERY` (what a relay is asked which repos hold: `listReposByCollection`, backfill)
and `RECONCILED` (what reconciliation lists and compares with a repo's PDS) leave them out: they would make every
Bluesky account a repo to fetch, and every known repo whose profile predates its first record of ours look
behind its PDS.
"""

from __future__ import annotations

from indexer.events import OWN_NAMESPACE, Wanted
from indexer.fold.collections import bsky_profile, comment, like, play, profile, status, track
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
    bsky_profile.COLLECTION,
)
BY_NSID: dict[str, Collection] = {c.nsid: c for c in COLLECTIONS}
NSIDS: tuple[str, ...] = tuple(BY_NSID)
WANTED = Wanted((OWN_NAMESPACE,), NSIDS)
KNOWN_ONLY: frozenset[str] = frozenset({bsky_profile.NSID})
DISCOVERY: tuple[str, ...] = tuple(n for n in NSIDS if n not in KNOWN_ONLY)
RECONCILED: tuple[str, ...] = DISCOVERY

__all__ = ["BY_NSID", "COLLECTIONS", "DISCOVERY", "KNOWN_ONLY", "NSIDS", "RECONCILED", "WANTED", "Collection"]
