"""fm.plyr.getList: a list with its items in record order; an item's `track` is absent when the subject is
gone, hidden or not a track."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate
from appview.context import AppContext
from appview.errors import XrpcError
from appview.views import ListItemView, ListOutput
from appview.xrpc.common import AtUri, ok, respond, split_at_uri, viewer_of
from appview.xrpc.lists import LIST, list_view, lists_by_uri

NSID = "fm.plyr.getList"

ITEMS = "SELECT subject_uri FROM list_items WHERE did = %s AND rkey = %s ORDER BY position"


@get(f"/xrpc/{NSID}", responses=ok(ListOutput), operation_id=NSID)
async def handler(request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], uri: AtUri) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    did, rkey = split_at_uri(uri, LIST)
    async with ctx.pool.connection() as conn:
        found = (await lists_by_uri(conn, [uri])).get(uri)
        if found is None or not found.author_active:
            raise XrpcError("NotFound", f"list not found: {uri}", status=404)
        cur = await conn.execute(ITEMS, (did, rkey))
        subjects = [str(r[0]) for r in await cur.fetchall()]
        tracks = await present_tracks_by_uri(conn, subjects, viewer, ctx)
    view = list_view(found)
    view.items = [ListItemView(uri=s, track=tracks.get(s)) for s in subjects]
    return respond(request, ListOutput(list=view), viewer=viewer, max_age=ctx.settings.cache_max_age)


async def present_tracks_by_uri(
    conn: hydrate.Conn, subjects: list[str], viewer: str | None, ctx: AppContext
) -> dict[str, Any]:
    uris = list(dict.fromkeys(s for s in subjects if s.startswith("at://") and "/fm.plyr.track/" in s))
    views = await hydrate.present_tracks(
        conn, uris, viewer=viewer, audio_base=ctx.audio_base, trusted=ctx.audio.trusted
    )
    return {v.uri: v for v in views}
