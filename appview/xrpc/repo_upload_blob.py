"""com.atproto.repo.uploadBlob through the write proxy: streamed to the PDS of the token's DID."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec

from appview.http import XrpcError
from appview.proxy import WriteProxy
from appview.proxy.routes import reply, responses
from appview.proxy.schemas import UploadBlobOutput
from appview.views import ErrorOutput

NSID = "com.atproto.repo.uploadBlob"


@post(
    f"/xrpc/{NSID}",
    status_code=200,
    responses={
        **responses(UploadBlobOutput),
        413: ResponseSpec(data_container=ErrorOutput, description="Over PLYR_APPVIEW_AUDIO_MAX_BYTES"),
    },
    operation_id=NSID,
    # The proxy enforces its own limit (PLYR_APPVIEW_AUDIO_MAX_BYTES) while streaming, with an XRPC error.
    request_max_body_size=None,
    description="The raw blob as the body; streamed, never buffered, to the PDS of the DID the access token"
    " names (its `sub`). At most PLYR_APPVIEW_AUDIO_MAX_BYTES bytes.",
)
async def handler(
    request: Request[Any, Any, Any], write_proxy: NamedDependency[WriteProxy]
) -> Response[UploadBlobOutput]:
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise XrpcError("InvalidRequest", "invalid Content-Length")
    answer = await write_proxy.upload_blob(
        request.stream(),
        request.headers,
        content_type=request.headers.get("content-type") or "application/octet-stream",
        content_length=None if length is None else int(length),
    )
    return reply(answer)
