"""fm.plyr.getActivity: what is happening on the network, newest first: new tracks, likes, comments and lists.

Skeleton: one statement merges four walks, each down its own (sort_at, cid) index (tracks_sort_idx,
likes_sort_idx, comments_sort_idx, lists_sort_idx; migration 0013) and limited to the page, so a page reads at
most four pages of index entries whatever the size of the network. The items share one keyset position,
(sortAt, cid), the cursor of every feed (appview/http.py): a CID is the hash of a record, and records of two
collections never hash alike.

Hiding (appview/rules.py): an item of an account that is not active is not walked; a like or comment of a track
that is not shown is not walked either (the EXISTS keeps pages full). After hydration, an item is left out when
its record, its author, its subject track or that track's author carries a label the request applies that hides
it from listings (`!hide`, or a redacting `!takedown` / `!suspend`), exactly as getLatestTracks and searchTracks
hide tracks. Operator takedowns never reach here: the fold removes them from the projections."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import DEFAULT_LIMIT, Cursor, Limit, Position, next_cursor, ok, unpack, viewer_of
from appview.hydrate import Row, Skeleton
from appview.views import ActivityItemView, ActivityOutput, ActorView, LabelView, ListView, TrackView

NSID = "fm.plyr.getActivity"

# A like or comment is walked only while its track is shown (tracks.uri is unique: one index probe per row).
_SUBJECT_SHOWN = "EXISTS (SELECT 1 FROM tracks t WHERE t.uri = x.subject_uri AND t.author_active)"

_COLUMNS = "uri, did, subject_uri, sort_at, cid"
_WALKS = (
    "SELECT 'track' AS kind, uri, did, uri AS subject_uri, sort_at, cid FROM tracks x WHERE author_active",
    f"SELECT 'like', {_COLUMNS} FROM likes x WHERE author_active AND {_SUBJECT_SHOWN}",
    f"SELECT 'comment', {_COLUMNS} FROM comments x WHERE author_active AND {_SUBJECT_SHOWN}",
    "SELECT 'list', uri, did, NULL::text, sort_at, cid FROM lists x WHERE author_active",
)

SKELETON = (
    "SELECT kind, uri, did, subject_uri, sort_at, cid AS sort_cid FROM (\n"
    + "\nUNION ALL\n".join(f"({walk}{{after}} ORDER BY sort_at DESC, cid DESC LIMIT %(limit)s)" for walk in _WALKS)
    + "\n) a\nORDER BY sort_at DESC, cid DESC\nLIMIT %(limit)s"
)


class ActivityEntry(Row, frozen=True):
    """One item of the skeleton: what happened (`uri`, by `did`), the track it is about (the track itself, or
    the liked / commented track; None for a list) and its keyset position."""

    kind: str
    uri: str
    did: str
    subject_uri: str | None
    sort_at: dt.datetime
    sort_cid: str

    SQL: ClassVar[Mapping[str, str]] = {"sort_cid": "cid"}


def skeleton(position: Position | None, limit: int) -> Skeleton:
    after, params = hydrate.keyset(position)
    return Skeleton(SKELETON.format(after=after), {**params, "limit": limit})


def iso(at: dt.datetime) -> str:
    """A sort time in the lexicon's datetime format, as the views write times (UTC, milliseconds)."""
    utc = at.astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _with_labels(actor: ActorView, applied: Mapping[str, Sequence[LabelView]]) -> ActorView:
    on_account = applied.get(actor.did)
    if on_account and not actor.labels:
        actor.labels = list(on_account)
    return actor


@get(f"/xrpc/{NSID}", responses=ok(ActivityOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    walk = skeleton(unpack(cursor), limit)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        entries = await hydrate.fetch(conn, ActivityEntry, *walk)
        by_kind: dict[str, list[ActivityEntry]] = {}
        for e in entries:
            by_kind.setdefault(e.kind, []).append(e)
        track_rows = await hydrate.tracks(conn, [e.subject_uri for e in entries if e.subject_uri], viewer)
        list_rows = await hydrate.lists(conn, [e.uri for e in by_kind.get("list", ())])
        comment_rows = await hydrate.comments(conn, [e.uri for e in by_kind.get("comment", ())])
        authors = await hydrate.actors(conn, (e.did for e in entries if e.kind in ("like", "comment")))
        subjects = [s for e in entries for s in (e.uri, e.did)] + [
            s for t in track_rows.values() for s in (t.uri, t.did)
        ]
        applied = await labels.fetch(conn, subjects, labelers)

    def hidden(uri: str, did: str) -> bool:
        return rules.label_hidden(uri, did, applied, labelers.redact, listed=True)

    shown_tracks = [t for t in rules.visible(track_rows.values()) if not hidden(t.uri, t.did)]
    track_views = {t.uri: t for t in presenters.tracks(shown_tracks, ctx, viewer)}
    labels.attach(track_views.values(), applied)

    items: list[ActivityItemView] = []
    for e in entries:
        if hidden(e.uri, e.did):
            continue
        track: TrackView | None = track_views.get(e.subject_uri) if e.subject_uri else None
        if e.kind == "track" and track is not None:
            items.append(
                ActivityItemView(
                    kind="track", uri=e.uri, cid=e.sort_cid, actor=track.author, created_at=iso(e.sort_at), track=track
                )
            )
        elif e.kind == "list" and rules.in_order([e.uri], list_rows):
            view: ListView = presenters.list_view(list_rows[e.uri])
            items.append(
                ActivityItemView(
                    kind="list",
                    uri=e.uri,
                    cid=e.sort_cid,
                    actor=_with_labels(view.author, applied),
                    created_at=iso(e.sort_at),
                    list=view,
                )
            )
        elif e.kind in ("like", "comment") and track is not None and rules.visible_actor(author := authors.get(e.did)):
            actor = _with_labels(presenters.actor_of(author), applied)
            comment = None
            if e.kind == "comment":
                row = comment_rows.get(e.uri)
                if row is None:
                    continue
                comment = presenters.comment(row, author)
                comment.author = actor
            items.append(
                ActivityItemView(
                    kind="like" if e.kind == "like" else "comment",
                    uri=e.uri,
                    cid=e.sort_cid,
                    actor=actor,
                    created_at=iso(e.sort_at),
                    track=track,
                    comment=comment,
                )
            )
    body = ActivityOutput(items=items, cursor=next_cursor(entries, limit))
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
