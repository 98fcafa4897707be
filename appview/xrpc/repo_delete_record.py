"""com.atproto.repo.deleteRecord for fm.plyr.* collections, through the write proxy (appview/proxy)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.params import JSONBody

from appview.proxy import WriteProxy
from appview.proxy.routes import reply, responses
from appview.proxy.schemas import DeleteRecordInput, DeleteRecordOutput

NSID = "com.atproto.repo.deleteRecord"


@post(
    f"/xrpc/{NSID}",
    status_code=200,
    responses=responses(DeleteRecordOutput),
    operation_id=NSID,
    description="Validated against the fm.plyr lexicons, then forwarded with the caller's credentials to the PDS"
    " named in the repo's DID document; on success the write is visible in this AppView at once.",
)
async def handler(
    request: Request[Any, Any, Any], data: JSONBody[DeleteRecordInput], write_proxy: NamedDependency[WriteProxy]
) -> Response[DeleteRecordOutput]:
    return reply(await write_proxy.delete_record(data, request.headers))
