"""fm.plyr.searchLists: lists (albums, playlists) whose name matches `q`, best match first.

Ranked as searchTracks ranks tracks: 0 exact, 1 prefix, 2 word prefix, 3 substring, 4 fuzzy (only with
pg_trgm); within a rank, newest first; `listType` keeps one type. The cursor is a keyset over (rank, sortAt,
cid), as searchTracks'. Lists are far fewer than tracks, so one statement ranks every candidate: with pg_trgm
the candidates come from lists_name_trgm_idx (migration 0011), without it from a scan of the lists. Lists of
inactive authors are not shown, nor those a label keeps out of listings (appview/rules.py), as in
searchTracks."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import DEFAULT_LIMIT, Cursor, Limit, Position, ok, pack_ranked, unpack_ranked, viewer_of
from appview.hydrate import Row, Skeleton
from appview.search import MAX_QUERY, after_params, matches, patterns, query_text, rank_of
from appview.views import ListsOutput

NSID = "fm.plyr.searchLists"

SKELETON = """
SELECT uri, rank, sort_at, cid AS sort_cid FROM (
  SELECT uri, sort_at, cid, {rank} AS rank FROM lists
  WHERE author_active AND name IS NOT NULL{type} AND {match}
) m
WHERE true{after}
ORDER BY rank, sort_at DESC, cid DESC
LIMIT %(limit)s
"""
BY_TYPE = " AND list_type = %(list_type)s"
KEYSET = " AND (rank > %(after_rank)s OR (rank = %(after_rank)s AND (sort_at, cid) < (%(after)s, %(after_cid)s)))"

ListType = Annotated[str | None, QueryParameter(name="listType", max_length=64, description="Only lists of this type.")]


class ListHit(Row, frozen=True):
    uri: str
    rank: int
    sort_at: dt.datetime
    sort_cid: str


def skeleton(
    text: str, list_type: str | None, position: tuple[int, Position] | None, limit: int, trigram: bool
) -> Skeleton:
    params: dict[str, Any] = {**patterns(text), **after_params(position), "list_type": list_type, "limit": limit}
    sql = SKELETON.format(
        rank=rank_of("lower(name)"),
        match=matches("lower(name)", trigram),
        type=BY_TYPE if list_type else "",
        after=KEYSET if position else "",
    )
    return Skeleton(sql, params)


@get(f"/xrpc/{NSID}", responses=ok(ListsOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    q: Annotated[str, QueryParameter(min_length=1, max_length=MAX_QUERY, description="Search text.")],
    list_type: ListType = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    text = query_text(q)
    walk = skeleton(text, list_type, unpack_ranked(cursor), limit, ctx.trigram)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        hits = await hydrate.fetch(conn, ListHit, *walk)
        found = await hydrate.lists(conn, [h.uri for h in hits])
        rows = rules.in_order((h.uri for h in hits), found)
        applied = await labels.fetch(conn, [r.uri for r in rows] + [r.did for r in rows], labelers)
    lists = [presenters.list_view(r) for r in rules.not_label_hidden(rows, applied, labelers.redact, listed=True)]
    last = hits[-1] if len(hits) == limit else None
    body = ListsOutput(lists=lists, cursor=pack_ranked(last.rank, last.sort_at, last.sort_cid) if last else None)
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
