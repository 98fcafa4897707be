"""`fm.plyr.track`: a track, projected into `tracks`.

A track (re)projected in a batch is recorded in `fold_new_tracks`: its like and comment counts are then counted
in full rather than moved by deltas (see `APPLY_COUNTS` in indexer/fold/sql.py).
"""

from __future__ import annotations

from indexer.fold.collections.projection import SORT_AT, Collection, delete, flip, live, uri

NSID = "fm.plyr.track"

COLLECTION = Collection(
    nsid=NSID,
    project=(
        delete("tracks", NSID),
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
    ),
    flip=flip("tracks"),
)
