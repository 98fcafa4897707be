"""`/.well-known/did.json`: our did:web document. A PDS reads it to find where to proxy a client's call
made with `atproto-proxy: <our DID>#fm_plyr_appview`.

The DID (`did:web:<host>`, a port's colon written `%3A`) and the service endpoint both come from our public URL
(`PLYR_APPVIEW_PUBLIC_URL`), so the endpoint has the scheme and port clients really reach us on. A PDS built on
`@atproto/identity` fetches a did:web document over https, except on the host name `localhost`, where it uses
http: a plain-http deployment is reachable through a PDS only as `http://localhost[:port]`."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency

from appview.auth import SERVICE_ID
from appview.context import AppContext
from appview.views import DidDocument, DidService

SERVICE_TYPE = "FmPlyrAppView"


@get("/.well-known/did.json", include_in_schema=False)
async def did_document(ctx: NamedDependency[AppContext]) -> Response[DidDocument]:
    settings = ctx.settings
    doc = DidDocument(
        context=["https://www.w3.org/ns/did/v1"],
        id=settings.did,
        service=[DidService(id=f"#{SERVICE_ID}", type=SERVICE_TYPE, serviceEndpoint=settings.service_endpoint)],
    )
    return Response(doc, headers={"Cache-Control": "public, max-age=300"})
