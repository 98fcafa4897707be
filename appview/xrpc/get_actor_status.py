"""fm.plyr.getActorStatus: what an actor is playing now, from their teal.fm status (`fm.teal.actor.status`, or the
legacy `fm.teal.alpha.actor.status`; indexer/fold/collections/status.py).

A status is shown from its `time` until its `expiry` (10 minutes after `time` when it names none); an expired
status is no status. Of an actor's two collections the one that started last wins. `track` is the track its
item's origin names (the forms of indexer/fold/collections/play.py) when we have it and may show it; an item
that names none of our tracks is still shown, with no `track`: it is counted among the unlinkable, never guessed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, ClassVar

import msgspec
from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import Actor, actor_ref, ok, viewer_of
from appview.hydrate import Row, columns, fetch_one, iso
from appview.views import ActorView, Json, TrackView, View

NSID = "fm.plyr.getActorStatus"
# Short: a status changes with every track played, and expires within minutes.
MAX_AGE = 10


class StatusRow(Row, frozen=True):
    uri: str
    cid: str
    started_at: str
    expires_at: str
    # The record's `item` (JSON text), passed through untouched.
    item: str
    track_uri: str | None

    TABLE: ClassVar[str] = "s"
    SQL: ClassVar[Mapping[str, str]] = {
        "started_at": iso("s.started_at"),
        "expires_at": iso("s.expires_at"),
        "item": "(e.record->'item')::text",
    }


# The newest unexpired status of either collection at `now` (the caller's clock, passed in).
_CURRENT = f"""
SELECT {columns(StatusRow)} FROM actor_status s JOIN events e ON e.id = s.event_id
WHERE s.did = %(did)s AND s.author_active AND s.started_at <= %(now)s AND s.expires_at > %(now)s
ORDER BY s.started_at DESC, s.collection
LIMIT 1
"""


class StatusView(View, kw_only=True):
    uri: str
    cid: str
    time: str
    expiry: str
    item: Json
    track: TrackView | None = None


class ActorStatusOutput(View, kw_only=True):
    actor: ActorView
    status: StatusView | None = None


def _raw(text: str) -> Any:
    return msgspec.Raw(text.encode())


async def current(conn: hydrate.Conn, did: str, now: dt.datetime) -> StatusRow | None:
    return await fetch_one(conn, StatusRow, _CURRENT, {"did": did, "now": now})


@get(f"/xrpc/{NSID}", responses=ok(ActorStatusOutput), operation_id=NSID)
async def handler(request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], actor: Actor) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    named = actor_ref(actor)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        found = rules.checked_actor(await hydrate.named_actor(conn, named), named)
        status = await current(conn, found.did, dt.datetime.now(dt.UTC))
        uris = [status.track_uri] if status is not None and status.track_uri else []
        tracks = await hydrate.tracks(conn, uris, viewer)
        applied = await labels.for_tracks(conn, tracks.values(), labelers)
    shown = rules.not_label_hidden(rules.in_order(uris, tracks), applied, labelers.redact, listed=False)
    views = presenters.tracks(shown, ctx, viewer)
    labels.attach(views, applied)
    body = ActorStatusOutput(
        actor=presenters.actor_of(found),
        status=None
        if status is None
        else StatusView(
            uri=status.uri,
            cid=status.cid,
            time=status.started_at,
            expiry=status.expires_at,
            item=_raw(status.item),
            track=views[0] if views else None,
        ),
    )
    return labels.respond_labeled(request, body, viewer=viewer, max_age=MAX_AGE, labelers=labelers)
