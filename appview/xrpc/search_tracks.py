"""fm.plyr.searchTracks: tracks whose title or artist match `q`, best match first.

Ranks: 0 exact, 1 prefix, 2 word prefix, 3 substring, 4 fuzzy (only with pg_trgm); within a rank, newest
first. The cursor is a keyset over (rank, sortAt, cid), so paging is as stable as the feeds'. With pg_trgm
the substring and fuzzy conditions are served by the trigram indexes of migration 0002; without it, search
still works with the same ranks minus fuzzy, by scanning."""

from __future__ import annotations

import re
from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter

from appview import cursor as keyset
from appview.context import AppContext
from appview.errors import XrpcError
from appview.hydrate import present_tracks
from appview.views import TrackPageOutput
from appview.xrpc.common import DEFAULT_LIMIT, Cursor, Limit, ok, respond, viewer_of

NSID = "fm.plyr.searchTracks"
MAX_QUERY = 256
FUZZY_RANK = 4

_RANK = """
CASE
  WHEN lower(title) = %(q)s OR lower(artist) = %(q)s THEN 0
  WHEN lower(title) LIKE %(prefix)s OR lower(artist) LIKE %(prefix)s THEN 1
  WHEN lower(title) ~ %(word)s OR lower(artist) ~ %(word)s THEN 2
  ELSE 3
END
"""
# Exact, prefix and word-prefix matches are all substrings, so the substring test finds ranks 0-3.
_SUBSTRING = "(lower(title) LIKE %(infix)s OR lower(artist) LIKE %(infix)s)"
# Similarity to the whole title (typos: "midnite") or to its best-matching words (one word of a long title).
_FUZZY = "(lower(title) %% %(q)s OR %(q)s <%% lower(title) OR lower(artist) %% %(q)s OR %(q)s <%% lower(artist))"

MATCHED = f"""
SELECT uri, rank, sort_at, cid FROM (
  SELECT uri, sort_at, cid, {_RANK} AS rank FROM tracks
  WHERE author_active AND {_SUBSTRING}
) s
WHERE true{{after}}
ORDER BY rank, sort_at DESC, cid DESC
LIMIT %(limit)s
"""
AFTER = " AND (rank > %(after_rank)s OR (rank = %(after_rank)s AND (sort_at, cid) < (%(after)s, %(after_cid)s)))"

# Fuzzy matches come after every other rank and cost a similarity computation per candidate, so they are
# looked for only when the other ranks did not fill the page.
FUZZY = f"""
SELECT uri, {FUZZY_RANK} AS rank, sort_at, cid FROM tracks
WHERE author_active AND {_FUZZY} AND NOT {_SUBSTRING}{{after}}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""
FUZZY_AFTER = " AND (sort_at, cid) < (%(after)s, %(after_cid)s)"


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _regex_escape(text: str) -> str:
    # In a Postgres ARE a backslash before any non-alphanumeric character makes it literal.
    return re.sub(r"([^0-9A-Za-z\s])", r"\\\1", text)


def statement(paged: bool) -> str:
    return MATCHED.format(after=AFTER if paged else "")


def fuzzy_statement(paged: bool) -> str:
    return FUZZY.format(after=FUZZY_AFTER if paged else "")


@get(f"/xrpc/{NSID}", responses=ok(TrackPageOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    q: Annotated[str, QueryParameter(min_length=1, max_length=MAX_QUERY, description="Search text.")],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    text = " ".join(q.lower().split())
    if not text or "\x00" in text:
        raise XrpcError("InvalidRequest", "q must contain some text")
    position = keyset.unpack_ranked(cursor)
    params: dict[str, Any] = {
        "q": text,
        "prefix": _like_escape(text) + "%",
        "infix": "%" + _like_escape(text) + "%",
        "word": r"\m" + _regex_escape(text),
        "limit": limit,
    }
    if position is not None:
        rank, at = position
        params.update(after_rank=rank, after=at.sort_at, after_cid=at.cid)
    async with ctx.pool.connection() as conn:
        skeleton: list[tuple[Any, ...]] = []
        if position is None or position[0] < FUZZY_RANK:
            cur = await conn.execute(statement(position is not None), params)
            skeleton = list(await cur.fetchall())
        if ctx.trigram and len(skeleton) < limit:
            in_fuzzy = position is not None and position[0] >= FUZZY_RANK
            cur = await conn.execute(fuzzy_statement(in_fuzzy), {**params, "limit": limit - len(skeleton)})
            skeleton += await cur.fetchall()
        views = await present_tracks(
            conn, [r[0] for r in skeleton], viewer=viewer, audio_base=ctx.audio_base, trusted=ctx.audio.trusted
        )
    last = skeleton[-1] if len(skeleton) == limit else None
    next_cursor = keyset.pack_ranked(last[1], last[2], last[3]) if last else None
    body = TrackPageOutput(tracks=views, cursor=next_cursor)
    return respond(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age)
