"""`fm.plyr.track`: a track, projected into `tracks`, and the DIDs it features into `track_features` (one row
per distinct `features[].did`, with the track's sort position: getActorTracks' featured walk).

A track (re)projected in a batch is recorded in `fold_new_tracks`: its like and comment counts are then counted
in full rather than moved by deltas (see `APPLY_COUNTS` in indexer/fold/sql.py).
"""

from __future__ import annotations

from indexer.fold.collections.projection import SORT_AT, Collection, delete, flip, live, projected, uri

NSID = "fm.plyr.track"

# After the tracks: exactly the changed tracks that were projected, so the same rules decide both. Only DIDs
# (the lexicon's canonical identifier), never the handle snapshots; a DID named twice is one row. The test on
# `features` alone lets a rebuild, which reads every track, keep only the log events that name some.
_FEATURES = f"""
    INSERT INTO track_features (did, rkey, feature_did, cid, sort_at)
    SELECT DISTINCT t.did, t.rkey, f.item->>'did', t.cid, t.sort_at{projected("tracks", NSID)}
    JOIN events e ON e.id = t.event_id
    CROSS JOIN LATERAL jsonb_array_elements(
      CASE WHEN jsonb_typeof(e.record->'features') = 'array' THEN e.record->'features' ELSE '[]'::jsonb END
    ) AS f(item)
    WHERE jsonb_typeof(e.record->'features') = 'array'
      AND jsonb_typeof(f.item) = 'object' AND f.item->>'did' LIKE 'did:%'
    """

COLLECTION = Collection(
    nsid=NSID,
    project=(
        delete("tracks", NSID),
        delete("track_features", NSID),
        f"""
    WITH ins AS (
        INSERT INTO tracks (did, rkey, uri, cid, event_id, author_active, title, artist, album, duration,
                            file_type, audio_url, audio_blob_cid, audio_blob_mime, image_url, description,
                            created_at, indexed_at, sort_at)
        SELECT r.did, r.rkey, {uri(NSID)}, e.cid, e.id, a.active, e.record->>'title', e.record->>'artist',
               e.record->>'album', plyr_bigint(e.record->'duration'), e.record->>'fileType',
               e.record->>'audioUrl',
               coalesce(e.record->'audioBlob'->'ref'->>'$link', e.record->'audioBlob'->>'cid'),
               e.record->'audioBlob'->>'mimeType', e.record->>'imageUrl', e.record->>'description',
               e.created_at, e.received_at, {SORT_AT}
        {live(NSID)}
        RETURNING uri
    )
    INSERT INTO fold_new_tracks (uri) SELECT uri FROM ins
    """,
        _FEATURES,
    ),
    flip=flip("tracks"),
)
