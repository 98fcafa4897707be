"""fm.plyr.getActorLists: an actor's lists (albums, playlists, ...), newest first."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import (
    DEFAULT_LIMIT,
    Actor,
    Cursor,
    Limit,
    Position,
    actor_ref,
    next_cursor,
    ok,
    unpack,
    viewer_of,
)
from appview.hydrate import Entry, Skeleton
from appview.views import ListsOutput

NSID = "fm.plyr.getActorLists"

# lists_did_sort_idx, backwards.
SKELETON = f"""
SELECT {hydrate.columns(Entry)} FROM lists
WHERE did = %(did)s AND author_active{{type}}{{after}}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""
BY_TYPE = " AND list_type = %(list_type)s"

ListType = Annotated[str | None, QueryParameter(name="listType", max_length=64, description="Only lists of this type.")]


def skeleton(did: str, list_type: str | None, position: Position | None, limit: int) -> Skeleton:
    after, params = hydrate.keyset(position)
    sql = SKELETON.format(type=BY_TYPE if list_type else "", after=after)
    return Skeleton(sql, {**params, "did": did, "list_type": list_type, "limit": limit})


@get(f"/xrpc/{NSID}", responses=ok(ListsOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    actor: Actor,
    list_type: ListType = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    position = unpack(cursor)
    named = actor_ref(actor)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        author = rules.checked_actor(await hydrate.named_actor(conn, named), named)
        entries = await hydrate.fetch(conn, Entry, *skeleton(author.did, list_type, position, limit))
        found = await hydrate.lists(conn, [e.uri for e in entries])
        applied = await labels.fetch(conn, [*(e.uri for e in entries), author.did], labelers)
    rows = rules.not_label_hidden(
        rules.in_order((e.uri for e in entries), found), applied, labelers.redact, listed=True
    )
    lists = [presenters.list_view(row) for row in rows]
    labels.attach(lists, applied)
    body = ListsOutput(lists=lists, cursor=next_cursor(entries, limit))
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
