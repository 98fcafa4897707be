"""com.atproto.admin.updateSubjectStatus: the operator takes an account, a record or an uploaded audio object
down, or undoes it (the same change as `plyr-appview takedown`; indexer/moderation/takedowns.py)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from appview.context import AppContext
from appview.http import XrpcError, ok
from appview.moderation import SubjectStatusOutput, UpdateSubjectStatusInput, require_admin, status_of, subject_of
from indexer.moderation import takedowns

NSID = "com.atproto.admin.updateSubjectStatus"


@post(
    f"/xrpc/{NSID}",
    status_code=200,
    responses=ok(SubjectStatusOutput),
    operation_id=NSID,
)
async def handler(
    request: Request[Any, Any, Any], ctx: NamedDependency[AppContext], data: JSONBody[UpdateSubjectStatusInput]
) -> Response[SubjectStatusOutput]:
    require_admin(ctx.settings, request.headers.get("authorization"))
    subject = subject_of(data.subject)
    if data.takedown is None:
        raise XrpcError("InvalidRequest", "nothing to change: give `takedown` ({applied, ref?})")
    async with ctx.pool.connection() as conn:
        await takedowns.change(
            conn, subject, applied=data.takedown.applied, reason=data.takedown.ref, by=f"{NSID} from {_client(request)}"
        )
    # This process's next reads must not show the subject, even before the change's notification arrives.
    ctx.pages.changed()
    return Response(await status_of(ctx.pool, data.subject), headers={"Cache-Control": "no-store"})


def _client(request: Request[Any, Any, Any]) -> str:
    return request.client.host if request.client else "unknown"
