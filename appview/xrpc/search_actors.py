"""fm.plyr.searchActors: actors whose handle, profile display name or artist name matches `q`, best first.

An actor matches on any of: their verified handle; the `displayName` of their `fm.plyr.actor.profile` record
(a string the record may carry beyond its lexicon's fields); the `artist` name on any of their shown tracks.
Their rank is their best match's, ranked as searchTracks ranks tracks: 0 exact, 1 prefix, 2 word prefix,
3 substring, 4 fuzzy (only with pg_trgm). Within a rank the actor with the newest shown track comes first
(actors without tracks last). The cursor is a keyset over (rank, newest track time, a digest of the DID),
`<rank>__<epoch microseconds>__<digest>`.

One statement collects the candidates and ranks them: with pg_trgm from the trigram indexes on handles
(migration 0011) and artist names (0002), without it by scanning; display names are read from the profiles'
records (one per actor). Inactive actors are never found; a label that keeps an account out of listings
keeps it out of the results (appview/rules.py), as in searchTracks. `displayName` and `avatar` in a result are
those of every actor view (appview/hydrate.py: the fm.plyr profile's, else the Bluesky profile's), the display
name else the artist name on their newest track. A Bluesky display name is shown, never searched."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import (
    DEFAULT_LIMIT,
    Cursor,
    Limit,
    Position,
    ok,
    pack_ranked,
    unpack_ranked,
    viewer_of,
)
from appview.hydrate import Row, Skeleton
from appview.search import MAX_QUERY, after_params, matches, patterns, query_text, rank_of
from appview.views import ActorsOutput

NSID = "fm.plyr.searchActors"
# actorView.displayName's maxLength.
DISPLAY_NAME_CHARS = 640


SKELETON = f"""
WITH m AS (
  SELECT did, {{handle_rank}} AS rank FROM actors
  WHERE active AND NOT taken_down AND handle IS NOT NULL AND {{handle_match}}
  UNION ALL
  SELECT did, {{name_rank}} FROM profiles
  WHERE author_active AND display_name IS NOT NULL AND {{name_match}}
  UNION ALL
  SELECT did, {{artist_rank}} FROM tracks WHERE author_active AND {{artist_match}}
), hits AS (
  SELECT b.did, b.rank,
    coalesce((SELECT max(t.sort_at) FROM tracks t WHERE t.did = b.did AND t.author_active),
             'epoch'::timestamptz) AS sort_at,
    md5(b.did) AS cid
  FROM (SELECT did, min(rank) AS rank FROM m GROUP BY did) b
  JOIN actors a ON a.did = b.did
  WHERE a.active AND NOT a.taken_down
)
SELECT h.did, a.handle, {hydrate.AVATAR} AS avatar,
  left(coalesce(
    {hydrate.DISPLAY_NAME},
    (SELECT t.artist FROM tracks t WHERE t.did = h.did AND t.author_active ORDER BY t.sort_at DESC, t.cid DESC LIMIT 1)
  ), {DISPLAY_NAME_CHARS}) AS display_name,
  h.rank, h.sort_at, h.cid AS sort_cid
FROM hits h
JOIN actors a ON a.did = h.did
{hydrate.identity_joins("h.did")}
WHERE true{{after}}
ORDER BY h.rank, h.sort_at DESC, h.cid DESC
LIMIT %(limit)s
"""
KEYSET = (
    " AND (h.rank > %(after_rank)s OR (h.rank = %(after_rank)s AND (h.sort_at, h.cid) < (%(after)s, %(after_cid)s)))"
)


class ActorHit(Row, frozen=True):
    did: str
    handle: str | None
    avatar: str | None
    display_name: str | None
    rank: int
    sort_at: dt.datetime
    sort_cid: str


def skeleton(text: str, position: tuple[int, Position] | None, limit: int, trigram: bool) -> Skeleton:
    params: dict[str, Any] = {**patterns(text), **after_params(position), "limit": limit}
    parts = {"handle": "handle", "name": "lower(display_name)", "artist": "lower(artist)"}
    sql = SKELETON.format(
        **{f"{k}_rank": rank_of(v) for k, v in parts.items()},
        **{f"{k}_match": matches(v, trigram) for k, v in parts.items()},
        after=KEYSET if position else "",
    )
    return Skeleton(sql, params)


@get(f"/xrpc/{NSID}", responses=ok(ActorsOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    q: Annotated[str, QueryParameter(min_length=1, max_length=MAX_QUERY, description="Search text.")],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    walk = skeleton(query_text(q), unpack_ranked(cursor), limit, ctx.trigram)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        hits = await hydrate.fetch(conn, ActorHit, *walk)
        applied = await labels.fetch(conn, [h.did for h in hits], labelers)
    actors = []
    for hit in hits:
        if rules.label_hidden(hit.did, hit.did, applied, labelers.redact, listed=True):
            continue
        view = presenters.actor(hit.did, hit.handle, hit.avatar, hit.display_name)
        view.labels = list(applied.get(hit.did, ())) or None
        actors.append(view)
    last = hits[-1] if len(hits) == limit else None
    body = ActorsOutput(actors=actors, cursor=pack_ranked(last.rank, last.sort_at, last.sort_cid) if last else None)
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
