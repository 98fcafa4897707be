"""`fm.plyr.actor.profile`: an actor's profile, projected into `profiles` (one row per actor: the record under
the key `self`, the only key its lexicon allows)."""

from __future__ import annotations

from indexer.fold.collections.projection import Collection, flip, live

NSID = "fm.plyr.actor.profile"

COLLECTION = Collection(
    nsid=NSID,
    project=(
        "DELETE FROM profiles t USING fold_changed c"
        f" WHERE c.collection = '{NSID}' AND t.did = c.did AND c.rkey = 'self'",
        f"""
    INSERT INTO profiles (did, cid, event_id, author_active, bio, avatar, created_at, indexed_at)
    SELECT r.did, e.cid, e.id, a.active, e.record->>'bio', e.record->>'avatar', e.created_at, e.received_at
    {live(NSID)} AND r.rkey = 'self'
    """,
    ),
    flip=flip("profiles"),
)
