"""fm.plyr.searchTracks: tracks whose title, artist or description match `q`, best match first.

Ranks: 0 exact, 1 prefix, 2 word prefix, 3 substring (of the title or artist), 4 description (a substring of
it), 5 fuzzy (title or artist; only with pg_trgm); within a rank, newest first. The cursor is a keyset over
(rank, sortAt, cid), so paging is as stable as the feeds'. Exact and prefix matches come from the lower(title) /
lower(artist) btrees of migration 0004; word-prefix, substring and fuzzy ones from the trigram indexes of
migration 0002 where pg_trgm exists, description matches from migration 0011's. Without it search keeps the same
ranks minus fuzzy, and finds word-prefix, substring and description matches by scanning."""

from __future__ import annotations

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
from appview.hydrate import RankedRow, Skeleton
from appview.search import MAX_QUERY, after_params, patterns, query_text
from appview.views import TrackPageOutput

NSID = "fm.plyr.searchTracks"
DESCRIPTION_RANK = 4
FUZZY_RANK = 5

# Ranks are fetched one group at a time, best first, each by its own statement with the page's remaining
# LIMIT, so a page is usually served by the first group and never sorts every match of a common word. A
# group's condition excludes the better ranks, which makes the groups disjoint and the order of the walk the
# order of the ranking.
_EXACT = "(lower(title) = %(q)s OR lower(artist) = %(q)s)"
_PREFIX = "(lower(title) LIKE %(prefix)s OR lower(artist) LIKE %(prefix)s)"
_WORD = "(lower(title) ~ %(word)s OR lower(artist) ~ %(word)s)"
_SUBSTRING = "(lower(title) LIKE %(infix)s OR lower(artist) LIKE %(infix)s)"
_DESCRIPTION = "(lower(description) LIKE %(infix)s)"
# Similarity to the whole title (typos: "midnite") or to its best-matching words (one word of a long title).
_FUZZY = "(lower(title) %% %(q)s OR %(q)s <%% lower(title) OR lower(artist) %% %(q)s OR %(q)s <%% lower(artist))"
_KEYSET = "(sort_at, cid) < (%(after)s, %(after_cid)s)"


class Group:
    """Ranks `first`..`last` and the statement that returns their matches, best first, after an optional
    keyset position inside the group."""

    def __init__(self, first: int, last: int, sql: str, ranked_keyset: bool = False) -> None:
        self.first = first
        self.last = last
        self.sql = sql
        self.ranked_keyset = ranked_keyset

    def statement(self, paged: bool) -> str:
        after = ""
        if paged:
            after = (
                f" AND (rank > %(after_rank)s OR (rank = %(after_rank)s AND {_KEYSET}))"
                if self.ranked_keyset
                else f" AND {_KEYSET}"
            )
        return self.sql.format(after=after)


# Index-only on tracks_title_lower_idx, then tracks_artist_lower_idx (the WHERE repeats their predicate). A
# track whose title and artist both match is left to the title branch.
_EXACT_AND_PREFIX = f"""
SELECT * FROM (
  SELECT uri, CASE WHEN {_EXACT} THEN 0 ELSE 1 END AS rank, sort_at, cid FROM tracks
  WHERE author_active AND lower(title) LIKE %(prefix)s
  UNION ALL
  SELECT uri, CASE WHEN lower(artist) = %(q)s THEN 0 ELSE 1 END AS rank, sort_at, cid FROM tracks
  WHERE author_active AND lower(artist) LIKE %(prefix)s AND lower(title) NOT LIKE %(prefix)s
) m
WHERE true{{after}}
ORDER BY rank, sort_at DESC, cid DESC
LIMIT %(limit)s
"""

_WORD_PREFIX = f"""
SELECT uri, 2 AS rank, sort_at, cid FROM tracks
WHERE author_active AND {_WORD} AND NOT {_PREFIX}{{after}}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""


def _materialized(rank: int, candidates: str, exclude: str) -> str:
    """Candidates first (the trigram bitmap, or one sequential scan without pg_trgm), then the exclusions and
    the order. Left to itself the planner walks tracks_sort_idx for these conditions, expecting an early
    stop; when the rank is small or empty that walk visits the whole table in index order, many times
    slower than collecting the candidates."""
    return f"""
WITH c AS MATERIALIZED (
  SELECT uri, title, artist, description, sort_at, cid FROM tracks WHERE author_active AND {candidates}
)
SELECT uri, {rank} AS rank, sort_at, cid FROM c
WHERE {exclude}{{after}}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""


GROUPS = (
    # Exact and prefix matches share one range scan of the lower(title) / lower(artist) btrees (migration
    # 0004): an exact match is the shortest prefix match.
    Group(0, 1, _EXACT_AND_PREFIX, ranked_keyset=True),
    # A word that starts many titles is dense in the newest tracks: walking tracks_sort_idx stops quickly.
    # The planner picks the trigram index instead where the regex is rare.
    Group(2, 2, _WORD_PREFIX),
    Group(3, 3, _materialized(3, _SUBSTRING, f"NOT {_PREFIX} AND NOT {_WORD}")),
    # Liner notes are long and say much: a description match ranks below any match of the title or artist.
    Group(DESCRIPTION_RANK, DESCRIPTION_RANK, _materialized(DESCRIPTION_RANK, _DESCRIPTION, f"NOT {_SUBSTRING}")),
    # Fuzzy matches cost a similarity computation per trigram candidate: looked for last, only with pg_trgm.
    Group(
        FUZZY_RANK,
        FUZZY_RANK,
        _materialized(FUZZY_RANK, _FUZZY, f"NOT {_SUBSTRING} AND (description IS NULL OR NOT {_DESCRIPTION})"),
    ),
)


def skeleton(text: str, position: tuple[int, Position] | None, trigram: bool) -> list[Skeleton]:
    """One walk per rank group from the cursor's on, best first. Each walk's `%(limit)s` is the room left on
    the page when its turn comes (see `ranked_page`)."""
    params: dict[str, Any] = {**patterns(text), **after_params(position)}
    start = 0 if position is None else position[0]
    return [
        Skeleton(group.statement(paged=position is not None and group.first <= start <= group.last), params)
        for group in GROUPS
        if group.last >= start and (trigram or group.first != FUZZY_RANK)
    ]


async def ranked_page(conn: hydrate.Conn, walks: list[Skeleton], limit: int, viewer: str | None) -> list[RankedRow]:
    """The walks' matches, hydrated, until the page is full: a page is usually served by the first group."""
    found: list[RankedRow] = []
    for walk in walks:
        room = Skeleton(walk.sql, {**walk.params, "limit": limit - len(found)})
        found += await hydrate.ranked_rows(conn, room, viewer)
        if len(found) >= limit:
            break
    return found


@get(f"/xrpc/{NSID}", responses=ok(TrackPageOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    q: Annotated[str, QueryParameter(min_length=1, max_length=MAX_QUERY, description="Search text.")],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    walks = skeleton(query_text(q), unpack_ranked(cursor), ctx.trigram)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        rows = await ranked_page(conn, walks, limit, viewer)
        applied = await labels.for_tracks(conn, rows, labelers)
    tracks = presenters.tracks(
        rules.not_label_hidden(rules.visible(rows), applied, labelers.redact, listed=True), ctx, viewer
    )
    labels.attach(tracks, applied)
    last = rows[-1] if len(rows) == limit else None
    next_cursor = pack_ranked(last.rank, last.sort_at, last.sort_cid) if last else None
    body = TrackPageOutput(tracks=tracks, cursor=next_cursor)
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
