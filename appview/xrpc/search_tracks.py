"""fm.plyr.searchTracks: tracks whose title, artist or description match `q`, best match first.

Ranks: 0 exact, 1 prefix, 2 word prefix, 3 substring (of the title or artist), 4 description (a substring of
it), 5 fuzzy (title or artist; only with pg_trgm); within a rank, newest first. The cursor is a keyset over
(rank, sortAt, cid), so paging is as stable as the feeds'. Exact and prefix matches come from the lower(title) /
lower(artist) btrees of migration 0004; word-prefix, substring and fuzzy ones from the trigram indexes of
migration 0002 where pg_trgm exists, description matches from migration 0011's. Without it search keeps the same
ranks minus fuzzy, and finds word-prefix, substring and description matches by one scan. A rank whose matches
are common enough to fill the page among the newest tracks is served by reading those alone (`_probed`), so the
cost of a common query does not grow with the index."""

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
_RANKED_KEYSET = f"(rank > %(after_rank)s OR (rank = %(after_rank)s AND {_KEYSET}))"

# Each rank's condition, and what excludes the better ranks from it. A word-prefix match is a substring match
# too, so ranks 2-4 are the substring matches of the title, artist or description that are not prefix matches.
WORD_RANK = 2
SUBSTRING_RANK = 3
DESCRIPTION_RANK = 4
FUZZY_RANK = 5
_MATCH = {WORD_RANK: _WORD, SUBSTRING_RANK: _SUBSTRING, DESCRIPTION_RANK: _DESCRIPTION, FUZZY_RANK: _FUZZY}
_NOT_BETTER = {
    WORD_RANK: f"NOT {_PREFIX}",
    SUBSTRING_RANK: f"NOT {_PREFIX} AND NOT {_WORD}",
    DESCRIPTION_RANK: f"NOT {_SUBSTRING}",
    FUZZY_RANK: f"NOT {_SUBSTRING} AND (description IS NULL OR NOT {_DESCRIPTION})",
}

# How many of the newest tracks a probe reads per row the page still needs (see `_probed`): a rank whose matches
# are at least a quarter of the newest tracks is served by the probe. Larger probes catch sparser matches but cost
# more when they fall short (measured: bench/search_bench.py).
PROBE_ROWS_PER_RESULT = 4

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


def _probed(rank: int, after: str, collect: str) -> str:
    """A group of ranks from `rank` on: first the newest `%(probe)s` tracks (after the keyset `after`, if any),
    walked down tracks_sort_idx, and those of them that match at `rank`; and only when those do not fill the
    page, every match of the group (`collect`). A match that is common (a word that starts many titles; a query
    most titles are similar to) is found among the newest few tracks, and a probe that fills the page is
    exactly the page: every newer match of the rank was among the tracks it read. Reading a bounded number of
    tracks costs a fraction of a millisecond whatever the size of the index; collecting every candidate of a
    common match costs a pass over most of it. The condition on the probe's count is evaluated once, before
    the collecting branch runs (a one-time filter), so that branch costs nothing when the probe fills the page."""
    return f"""
WITH newest AS (
  SELECT uri, {rank} AS rank, sort_at, cid FROM (
    SELECT uri, title, artist, description, sort_at, cid FROM tracks
    WHERE author_active{after}
    ORDER BY sort_at DESC, cid DESC
    LIMIT %(probe)s
  ) n
  WHERE {_MATCH[rank]} AND {_NOT_BETTER[rank]}
  ORDER BY sort_at DESC, cid DESC
  LIMIT %(limit)s
)
SELECT * FROM newest WHERE (SELECT count(*) FROM newest) = %(limit)s
UNION ALL
SELECT * FROM ({collect}) rest WHERE (SELECT count(*) FROM newest) < %(limit)s
"""


# Ranks 2-4 from one set of candidates: the substring matches of title, artist or description (their trigram
# indexes, migrations 0002 and 0011, where pg_trgm exists; otherwise one sequential scan, not one per rank).
# Materialized: left to itself the planner walks tracks_sort_idx for these conditions, expecting an early
# stop; when the ranks are small or empty that walk visits the whole table in index order, many times slower
# than collecting the candidates.
_SUBSTRINGS = f"""
WITH c AS MATERIALIZED (
  SELECT uri, title, artist, description, sort_at, cid FROM tracks
  WHERE author_active AND ({_SUBSTRING} OR {_DESCRIPTION})
)
SELECT * FROM (
  SELECT uri, CASE WHEN {_MATCH[WORD_RANK]} THEN {WORD_RANK} WHEN {_MATCH[SUBSTRING_RANK]} THEN {SUBSTRING_RANK}
    ELSE {DESCRIPTION_RANK} END AS rank, sort_at, cid
  FROM c WHERE NOT {_PREFIX}
) m
WHERE rank >= %(from_rank)s{{after}}
ORDER BY rank, sort_at DESC, cid DESC
LIMIT %(limit)s
"""

# Fuzzy matches cost a similarity computation per trigram candidate: looked for last, only with pg_trgm.
_FUZZY_ALL = f"""
WITH c AS MATERIALIZED (
  SELECT uri, title, artist, description, sort_at, cid FROM tracks WHERE author_active AND {_FUZZY}
)
SELECT uri, {FUZZY_RANK} AS rank, sort_at, cid FROM c
WHERE {_NOT_BETTER[FUZZY_RANK]}{{after}}
ORDER BY sort_at DESC, cid DESC
LIMIT %(limit)s
"""


def skeleton(text: str, position: tuple[int, Position] | None, trigram: bool) -> list[Skeleton]:
    """The walks from the cursor's rank on, best first. Each statement's `%(limit)s` is the room left on the
    page when its turn comes, and a probe's `%(probe)s` is proportional to it (see `ranked_page`)."""
    params: dict[str, Any] = {**patterns(text), **after_params(position)}
    start = 0 if position is None else position[0]

    def after(first: int, last: int, ranked: bool) -> str:
        if position is None or not first <= start <= last:
            return ""
        return f" AND {_RANKED_KEYSET if ranked else _KEYSET}"

    walks: list[Skeleton] = []
    if start <= 1:
        walks.append(Skeleton(_EXACT_AND_PREFIX.format(after=after(0, 1, True)), params))
    if start <= DESCRIPTION_RANK:
        first = max(start, WORD_RANK)
        collect = _SUBSTRINGS.format(after=after(first, DESCRIPTION_RANK, True))
        walks.append(Skeleton(_probed(first, after(first, first, False), collect), {**params, "from_rank": first}))
    if trigram:
        fuzzy = after(FUZZY_RANK, FUZZY_RANK, False)
        walks.append(Skeleton(_probed(FUZZY_RANK, fuzzy, _FUZZY_ALL.format(after=fuzzy)), params))
    return walks


async def ranked_page(conn: hydrate.Conn, walks: list[Skeleton], limit: int, viewer: str | None) -> list[RankedRow]:
    """The walks' matches, hydrated, until the page is full: a page is usually served by the first walk."""
    found: list[RankedRow] = []
    for walk in walks:
        room = limit - len(found)
        params = {**walk.params, "limit": room, "probe": room * PROBE_ROWS_PER_RESULT}
        found += await hydrate.ranked_rows(conn, Skeleton(walk.sql, params), viewer)
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
