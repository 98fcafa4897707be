"""`fm.plyr.like`: a like of a track, projected into `likes`; each like of an active author counts toward its
subject's `like_count`."""

from __future__ import annotations

from indexer.fold.collections.projection import SORT_AT, Collection, counted, delete, flip, live, uri

NSID = "fm.plyr.like"

COLLECTION = Collection(
    nsid=NSID,
    project=(
        counted(delete("likes", NSID), "likes", "-"),
        counted(
            f"""
        INSERT INTO likes AS t (did, rkey, uri, cid, event_id, author_active, subject_uri, subject_cid, created_at,
                                indexed_at, sort_at)
        SELECT r.did, r.rkey, {uri(NSID)}, e.cid, e.id, a.active, e.record->'subject'->>'uri',
               e.record->'subject'->>'cid', e.created_at, e.received_at, {SORT_AT}
        {live(NSID)}
        """,
            "likes",
        ),
    ),
    flip=counted(flip("likes"), "likes", "flip"),
    counted=True,
)
