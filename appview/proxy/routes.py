"""What the write-proxy XRPC handlers share: their documented responses and the reply they build."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Response
from litestar.openapi.datastructures import ResponseSpec

from appview.proxy.service import Answer
from appview.views import ErrorOutput


def responses(output: type[msgspec.Struct]) -> dict[int, ResponseSpec]:
    return {
        200: ResponseSpec(data_container=output, description="The PDS's answer"),
        400: ResponseSpec(data_container=ErrorOutput, description="Invalid request or record (the PDS's 4xx too)"),
        401: ResponseSpec(data_container=ErrorOutput, description="The PDS refused the credentials"),
        502: ResponseSpec(data_container=ErrorOutput, description="The PDS failed or could not be reached"),
        504: ResponseSpec(data_container=ErrorOutput, description="The PDS did not answer in time"),
    }


def reply(answer: Answer) -> Response[Any]:
    # DPoP-Nonce / WWW-Authenticate from the PDS: an OAuth client needs them for its next request.
    return Response(answer.body, status_code=200, headers=answer.headers)
