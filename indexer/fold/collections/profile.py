"""`fm.plyr.actor.profile`: an actor's profile, projected into `profiles` (one row per actor: the record under
the key `self`, the only key its lexicon allows)."""

from __future__ import annotations

from indexer.fold.collections.projection import Collection, flip, live

NSID = "fm.plyr.actor.profile"

# What an actor view shows as the display name: a string only, at most actorView.displayName's 640 characters.
DISPLAY_NAME = "CASE WHEN jsonb_typeof(e.record->'displayName') = 'string' THEN left(e.record->>'displayName', 640) END"

COLLECTION = Collection(
    nsid=NSID,
    project=(
        "DELETE FROM profiles t USING fold_changed c"
        f" WHERE c.collection = '{NSID}' AND t.did = c.did AND c.rkey = 'self'",
        f"""
    INSERT INTO profiles (did, cid, event_id, author_active, bio, avatar, display_name, created_at, indexed_at)
    SELECT r.did, e.cid, e.id, a.active, e.record->>'bio', e.record->>'avatar', {DISPLAY_NAME}, e.created_at,
           e.received_at
    {live(NSID)} AND r.rkey = 'self'
    """,
    ),
    flip=flip("profiles"),
)
