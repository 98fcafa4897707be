"""fm.plyr.getActorProfile: an actor's profile with what they published."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency

from appview import hydrate, labels, presenters, rules
from appview.context import AppContext
from appview.http import Actor, actor_ref, ok, viewer_of
from appview.views import ProfileView

NSID = "fm.plyr.getActorProfile"


@get(f"/xrpc/{NSID}", responses=ok(ProfileView), operation_id=NSID)
async def handler(request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], actor: Actor) -> Response[bytes]:
    viewer = await viewer_of(ctx, request, NSID)
    named = actor_ref(actor)
    labelers = labels.of_request(request, ctx.settings.labelers)
    async with ctx.pool.connection() as conn:
        # Skeleton: the actor named.
        found = rules.checked_actor(await hydrate.named_actor(conn, named), named)
        applied = await labels.fetch(conn, [found.did], labelers)
        rules.refuse_label_redacted_actor(found.did, applied, labelers.redact)
        counts = await hydrate.profile(conn, found.did)
    body = presenters.profile(found, counts)
    body.labels = list(applied.get(found.did, ())) or None
    return labels.respond_labeled(request, body, viewer=viewer, max_age=ctx.settings.cache_max_age, labelers=labelers)
