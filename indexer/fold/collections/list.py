"""`fm.plyr.list`: a list of tracks (album, playlist, ...), projected into `lists` and its items, in record
order, into `list_items` (whose rows have no author status of their own: they are read through their list)."""

from __future__ import annotations

from indexer.fold.collections.projection import SORT_AT, Collection, delete, flip, live, uri

NSID = "fm.plyr.list"

_ITEMS = ", jsonb_array_elements(e.record->'items') WITH ORDINALITY AS i(item, ord)"

COLLECTION = Collection(
    nsid=NSID,
    project=(
        delete("lists", NSID),
        delete("list_items", NSID),
        f"""
    INSERT INTO lists (did, rkey, uri, cid, event_id, author_active, name, list_type, item_count, created_at,
                       indexed_at, sort_at)
    SELECT r.did, r.rkey, {uri(NSID)}, e.cid, e.id, a.active, e.record->>'name', e.record->>'listType',
           jsonb_array_length(e.record->'items'), e.created_at, e.received_at, {SORT_AT}
    {live(NSID)}
    """,
        f"""
    INSERT INTO list_items (did, rkey, position, subject_uri, subject_cid)
    SELECT r.did, r.rkey, (i.ord - 1)::int, i.item->'subject'->>'uri', i.item->'subject'->>'cid'
    {live(NSID, _ITEMS)}
    """,
    ),
    flip=flip("lists"),
)
