"""List hydration and presentation, shared by getList and getActorLists."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from appview.hydrate import Conn, iso
from appview.views import INVALID_HANDLE, ActorView, ListView

LIST = "fm.plyr.list"

_LISTS = f"""
SELECT l.uri, l.cid, l.did, l.author_active, l.name, l.list_type, l.item_count,
       {iso("coalesce(l.created_at, l.indexed_at)")}, {iso("l.indexed_at")}, e.record::text, a.handle, p.avatar
FROM lists l
JOIN events e ON e.id = l.event_id
LEFT JOIN actors a ON a.did = l.did
LEFT JOIN profiles p ON p.did = l.did
WHERE l.uri = ANY(%s)
"""


class ListRow:
    __slots__ = ("author_active", "row")

    def __init__(self, row: tuple[Any, ...]) -> None:
        self.row = row
        self.author_active = bool(row[3])


async def lists_by_uri(conn: Conn, uris: Sequence[str]) -> dict[str, ListRow]:
    if not uris:
        return {}
    cur = await conn.execute(_LISTS, (list(dict.fromkeys(uris)),))
    return {str(r[0]): ListRow(r) for r in await cur.fetchall()}


def list_view(found: ListRow) -> ListView:
    uri, cid, did, _, name, list_type, item_count, created_at, indexed_at, record, handle, avatar = found.row
    return ListView(
        uri=uri,
        cid=cid,
        author=ActorView(did=did, handle=handle or INVALID_HANDLE, avatar=avatar),
        name=name,
        list_type=list_type,
        item_count=item_count,
        created_at=created_at,
        indexed_at=indexed_at,
        record=msgspec.Raw(record.encode()),  # type: ignore[arg-type]
    )
