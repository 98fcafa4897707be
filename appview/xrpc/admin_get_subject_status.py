"""com.atproto.admin.getSubjectStatus: whether an account (`did`), a record (`uri`) or an uploaded audio object
(`did` + `blob`, its CID) is taken down, and the operator's reference for it."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.params import Parameter

from appview.context import AppContext
from appview.http import XrpcError, ok
from appview.moderation import (
    RepoBlobRef,
    RepoRef,
    StrongRef,
    SubjectRef,
    SubjectStatusOutput,
    require_admin,
    status_of,
)

NSID = "com.atproto.admin.getSubjectStatus"

Text = Annotated[str | None, Parameter(max_length=8192)]


@get(f"/xrpc/{NSID}", responses=ok(SubjectStatusOutput), operation_id=NSID)
async def handler(
    request: Request[Any, Any, Any],
    ctx: NamedDependency[AppContext],
    did: Text = None,
    uri: Text = None,
    blob: Text = None,
) -> Response[SubjectStatusOutput]:
    require_admin(ctx.settings, request.headers.get("authorization"))
    ref: SubjectRef
    if uri is not None and did is None and blob is None:
        ref = StrongRef(uri=uri, cid="")
    elif blob is not None and did is not None and uri is None:
        ref = RepoBlobRef(did=did, cid=blob)
    elif did is not None and uri is None and blob is None:
        ref = RepoRef(did=did)
    else:
        raise XrpcError("InvalidRequest", "give one subject: `did`, `uri`, or `did` and `blob`")
    return Response(await status_of(ctx.pool, ref), headers={"Cache-Control": "no-store"})
