"""`fm.plyr.comment`: a timed comment on a track, projected into `comments`; each comment of an active author
counts toward its subject's `comment_count`."""

from __future__ import annotations

from indexer.fold.collections.projection import SORT_AT, Collection, counted, delete, flip, live, uri

NSID = "fm.plyr.comment"

COLLECTION = Collection(
    nsid=NSID,
    project=(
        counted(delete("comments", NSID), "comments", "-"),
        counted(
            f"""
        INSERT INTO comments AS t (did, rkey, uri, cid, event_id, author_active, subject_uri, subject_cid, text,
                                   timestamp_ms, created_at, indexed_at, sort_at)
        SELECT r.did, r.rkey, {uri(NSID)}, e.cid, e.id, a.active, e.record->'subject'->>'uri',
               e.record->'subject'->>'cid', e.record->>'text', plyr_bigint(e.record->'timestampMs'),
               e.created_at, e.received_at, {SORT_AT}
        {live(NSID)}
        """,
            "comments",
        ),
    ),
    flip=counted(flip("comments"), "comments", "flip"),
    counted=True,
)
