"""`fm.teal.actor.status` and the legacy `fm.teal.alpha.actor.status`: what an actor is playing now, projected
into `actor_status` (one row per actor and collection: the record under the key `self`, the only key the
lexicon allows).

`started_at` is the record's `time` (never later than its arrival, as every sort time); `expires_at` its
`expiry` as written, or, without a readable one, 10 minutes after `time`, as teal.fm's lexicon says. Readers
show a status only before it expires (`fm.plyr.getActorStatus`). Its item's origin links it to one of our tracks
by the same rules as a play (indexer/fold/collections/play.py).
"""

from __future__ import annotations

from indexer.fold.collections.play import origin
from indexer.fold.collections.projection import ARRIVAL, SORT_AT, Collection, delete, flip, live, uri

NSID = "fm.teal.actor.status"
ALPHA_NSID = "fm.teal.alpha.actor.status"


def _collection(nsid: str) -> Collection:
    return Collection(
        nsid=nsid,
        project=(
            delete("actor_status", nsid, by_collection=True),
            f"""
    INSERT INTO actor_status (did, collection, rkey, uri, cid, event_id, author_active, track_uri, started_at,
                              expires_at, indexed_at)
    SELECT r.did, r.collection, r.rkey, {uri(nsid)}, e.cid, e.id, a.active,
           plyr_track_uri({origin("(e.record->'item')")}), {SORT_AT},
           coalesce(plyr_timestamptz(e.record->'expiry'),
                    coalesce(e.created_at, {ARRIVAL}) + interval '10 minutes'),
           e.received_at
    {live(nsid)} AND r.rkey = 'self'
    """,
        ),
        flip=flip("actor_status"),
        created_field="time",
    )


COLLECTION = _collection(NSID)
ALPHA_COLLECTION = _collection(ALPHA_NSID)
