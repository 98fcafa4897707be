"""`app.bsky.actor.profile`: an actor's Bluesky identity (display name and avatar), projected into
`bsky_profiles` (one row per actor: the record under the key `self`, the only key its lexicon allows).

Only actors the index already knows: the fold drops, before the log append (`KNOWN_ONLY`, run by
indexer/fold/apply.py), every Bluesky profile of a DID that has no record of our own namespace (`fm.plyr.*`),
neither in `records` nor in the same batch, and counts it as ignored. So the log never holds the profiles of the
rest of Bluesky, and a rebuild, a function of the log, gives the same rows. The limit that follows: an actor
whose last Bluesky profile change came before their first `fm.plyr.*` record has no Bluesky identity here until
they change it again or their repo is backfilled (`plyr-appview backfill --did`, or a reconciliation that finds
the repo behind: both fetch the whole repo and fold its records of our namespace before its Bluesky profile).

Read side (appview/hydrate.py): the fm.plyr profile's values win; the avatar of a Bluesky blob is served by
Bluesky's CDN, `https://cdn.bsky.app/img/avatar/plain/<did>/<cid>@jpeg`, the URL Bluesky's own AppView gives.
"""

from __future__ import annotations

from indexer.events import OWN_NAMESPACE
from indexer.fold.collections.projection import Collection, delete, flip, live

NSID = "app.bsky.actor.profile"

# Run on `batch_in` (and `rejections_in`) before the log append: out go the Bluesky profiles of DIDs unknown to
# the index. A known DID has a record of our namespace in `records` (any state: a deleted record still makes its
# author known) or among the batch's rows. RETURNING lets the caller count what went. (Run without parameters:
# `%` is literal.)
_UNKNOWN = f"""
  x.collection = '{NSID}'
  AND NOT EXISTS (SELECT 1 FROM records r WHERE r.did = x.did AND r.collection LIKE '{OWN_NAMESPACE}%')
  AND NOT EXISTS (SELECT 1 FROM batch_in b WHERE b.did = x.did AND b.collection LIKE '{OWN_NAMESPACE}%')
"""
DROP_UNKNOWN_EVENTS = f"DELETE FROM batch_in x WHERE {_UNKNOWN} RETURNING x.invalid IS NULL"
DROP_UNKNOWN_REJECTIONS = f"DELETE FROM rejections_in x WHERE {_UNKNOWN} RETURNING x.reason"

# A bulk replay appends to the log without folding (indexer/capture/bulk.py), so `records` does not know the
# authors of its events yet: its connection keeps them in `unfolded_dids` (the DIDs with an event of our
# namespace in the log's unfolded tail, seeded from the log when it connects, added to by each append), and the
# same rule reads both. The set grows with the distinct authors of the replay: a text per DID.
CREATE_UNFOLDED_DIDS = "CREATE TEMP TABLE IF NOT EXISTS unfolded_dids (did text PRIMARY KEY)"
SEED_UNFOLDED_DIDS = f"""
INSERT INTO unfolded_dids (did)
SELECT DISTINCT e.did FROM events e
WHERE e.id > (SELECT after_id FROM unfolded_log) AND e.collection LIKE '{OWN_NAMESPACE}%'
ON CONFLICT (did) DO NOTHING
"""
ADD_UNFOLDED_DIDS = f"""
INSERT INTO unfolded_dids (did)
SELECT DISTINCT did FROM batch_in WHERE collection LIKE '{OWN_NAMESPACE}%'
ON CONFLICT (did) DO NOTHING
"""
_UNKNOWN_UNFOLDED = f"{_UNKNOWN}  AND NOT EXISTS (SELECT 1 FROM unfolded_dids u WHERE u.did = x.did)"
DROP_UNKNOWN_EVENTS_UNFOLDED = f"DELETE FROM batch_in x WHERE {_UNKNOWN_UNFOLDED} RETURNING x.invalid IS NULL"
DROP_UNKNOWN_REJECTIONS_UNFOLDED = f"DELETE FROM rejections_in x WHERE {_UNKNOWN_UNFOLDED} RETURNING x.reason"

# The avatar blob's CID and type (a legacy blob `{"cid": ..., "mimeType": ...}` is read too). The CID becomes
# part of a URL the read side builds, so only a base32 CIDv1 (what the lexicon's blob check accepts) is kept.
_AVATAR_CID = """(SELECT x.cid FROM (SELECT CASE WHEN jsonb_typeof(e.record->'avatar') = 'object'
  THEN coalesce(e.record->'avatar'->'ref'->>'$link', e.record->'avatar'->>'cid') END AS cid) x
  WHERE x.cid ~ '^b[a-z2-7]{8,200}$')"""

COLLECTION = Collection(
    nsid=NSID,
    project=(
        delete("bsky_profiles", NSID),
        f"""
    INSERT INTO bsky_profiles (did, rkey, cid, event_id, author_active, display_name, avatar_cid, avatar_mime,
                               indexed_at)
    SELECT r.did, r.rkey, e.cid, e.id, a.active,
           CASE WHEN jsonb_typeof(e.record->'displayName') = 'string'
                THEN nullif(btrim(e.record->>'displayName'), '') END,
           {_AVATAR_CID}, left(e.record->'avatar'->>'mimeType', 100), e.received_at
    {live(NSID)} AND r.rkey = 'self'
    """,
    ),
    flip=flip("bsky_profiles"),
)
