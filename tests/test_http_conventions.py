"""What an XRPC client developer expects of the HTTP edge, on the real app over a real Postgres: 501 for a method
we do not serve, CORS preflight for ATProto's headers, HEAD wherever GET, one charset on /metrics, an OpenAPI
document completed from the lexicons, an API page that needs nothing from the network, and short error messages
that never echo a long hostile value."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from appview.api_doc import methods
from appview.http import ECHO_CHARS, MESSAGE_CHARS
from bench.synth import (
    BASE_US,
    comment_record,
    commit,
    identity,
    like_record,
    list_record,
    make_cid,
    make_did,
    make_tid,
    track_record,
    uri,
)
from indexer.atproto.lexicon import Validator
from tests.api_support import app
from tests.helpers import COMMENT, LIKE, LIST, TRACK, ingest

ALICE, BOB = make_did(1), make_did(2)
_RECORD = track_record("Conventions", album="Conventions LP")
_T = make_tid(BASE_US)
TRACK_URI = uri(ALICE, TRACK, _T)
LIST_URI = uri(ALICE, LIST, make_tid(BASE_US + 3))

Client = AsyncTestClient[Any]


async def _seed(db_url: str, validator: Validator) -> None:
    subject = (TRACK_URI, make_cid(_RECORD))
    await ingest(
        db_url,
        validator,
        [
            identity(ALICE, "alice.test", seq=1, micros=BASE_US),
            commit(ALICE, TRACK, _T, _T, _RECORD),
            commit(BOB, LIKE, make_tid(BASE_US + 1), make_tid(BASE_US + 1), like_record(*subject)),
            commit(BOB, COMMENT, make_tid(BASE_US + 2), make_tid(BASE_US + 2), comment_record(*subject, "hi", ms=5)),
            commit(ALICE, LIST, make_tid(BASE_US + 3), make_tid(BASE_US + 3), list_record([subject])),
        ],
    )


@pytest.fixture
async def client(db_url: str, validator: Validator) -> AsyncIterator[Client]:
    await _seed(db_url, validator)
    async with AsyncTestClient(app=app(db_url)) as c:
        yield c


async def _openapi(client: Client) -> dict[str, Any]:
    resp = await client.get("/schema/openapi.json")
    assert resp.status_code == 200
    doc: dict[str, Any] = resp.json()
    return doc


def _xrpc_operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in doc["paths"].items()
        if path.startswith("/xrpc/")
        for method, op in item.items()
    ]


# -- unknown methods and paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status", "error"),
    [
        ("GET", "/xrpc/fm.plyr.noSuchMethod", 501, "MethodNotImplemented"),
        ("POST", "/xrpc/fm.plyr.noSuchMethod", 501, "MethodNotImplemented"),
        ("GET", "/xrpc/com.example.elsewhere", 501, "MethodNotImplemented"),
        ("POST", "/xrpc/com.atproto.repo.getRecord", 501, "MethodNotImplemented"),
        ("GET", "/xrpc/fm.plyr.getTrack/extra", 501, "MethodNotImplemented"),
        ("GET", "/no/such/page", 404, "NotFound"),
        ("POST", "/no/such/page", 404, "NotFound"),
        ("GET", "/xrpcx/fm.plyr.getTrack", 404, "NotFound"),
        # Served methods and the health check are untouched.
        ("GET", "/xrpc/_health", 200, None),
        ("GET", "/xrpc/fm.plyr.getLatestTracks", 200, None),
        ("GET", f"/xrpc/fm.plyr.getTrack?uri={TRACK_URI}", 200, None),
        ("GET", "/xrpc/fm.plyr.getTrack?uri=at://did:plc:nobody/fm.plyr.track/3l3qo2vutsw2b", 404, "NotFound"),
        # A served method called with the wrong verb is refused, saying which verbs it takes.
        ("POST", "/xrpc/fm.plyr.getLatestTracks", 405, "InvalidRequest"),
    ],
)
async def test_unknown_xrpc_methods_are_501_other_paths_404(
    client: Client, method: str, path: str, status: int, error: str | None
) -> None:
    resp = await client.request(method, path)
    assert resp.status_code == status, resp.text
    if error is not None:
        body = resp.json()
        assert set(body) == {"error", "message"}
        assert body["error"] == error
        assert body["message"]
    if status == 405:
        assert {"GET", "HEAD"} <= {m.strip() for m in resp.headers["allow"].split(",")}


# -- CORS -----------------------------------------------------------------------------------------------------

ATPROTO_HEADERS = ["authorization", "dpop", "atproto-proxy", "atproto-accept-labelers", "content-type"]


@pytest.mark.parametrize("headers", [[h] for h in ATPROTO_HEADERS] + [ATPROTO_HEADERS, ["Authorization", "DPoP"]])
@pytest.mark.parametrize(("path", "method"), [("/xrpc/fm.plyr.getTrack", "GET"), ("/xrpc/fm.plyr.uploadAudio", "POST")])
async def test_preflight_allows_the_headers_atproto_clients_send(
    client: Client, headers: list[str], path: str, method: str
) -> None:
    resp = await client.options(
        path,
        headers={
            "Origin": "https://player.example",
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": ", ".join(headers),
        },
    )
    assert resp.status_code == 204, resp.text
    allowed = {h.strip().lower() for h in resp.headers["access-control-allow-headers"].split(",")}
    assert {h.lower() for h in headers} <= allowed
    assert method in resp.headers["access-control-allow-methods"]


async def test_preflight_refuses_other_headers(client: Client) -> None:
    resp = await client.options(
        "/xrpc/fm.plyr.getTrack",
        headers={
            "Origin": "https://player.example",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "x-not-atproto",
        },
    )
    assert resp.status_code == 400


# -- HEAD -----------------------------------------------------------------------------------------------------

# Every XRPC query, with parameters that name the seeded records.
QUERIES: dict[str, dict[str, str]] = {
    "fm.plyr.getTrack": {"uri": TRACK_URI},
    "fm.plyr.getTracks": {"uris": TRACK_URI},
    "fm.plyr.getLatestTracks": {},
    "fm.plyr.getActorTracks": {"actor": ALICE},
    "fm.plyr.getActorProfile": {"actor": "alice.test"},
    "fm.plyr.getActorStatus": {"actor": "alice.test"},
    "fm.plyr.getLikes": {"uri": TRACK_URI},
    "fm.plyr.getActorLikes": {"actor": BOB},
    "fm.plyr.getList": {"uri": LIST_URI},
    "fm.plyr.getActorLists": {"actor": ALICE},
    "fm.plyr.getComments": {"uri": TRACK_URI},
    "fm.plyr.searchTracks": {"q": "Conventions"},
    "fm.plyr.searchActors": {"q": "alice"},
    "fm.plyr.searchLists": {"q": "list"},
    "fm.plyr.getActorAlbums": {"actor": ALICE},
    "fm.plyr.getAlbum": {"actor": "alice.test", "name": "Conventions LP"},
    "fm.plyr.getTopTracks": {},
    "fm.plyr.getStats": {},
    "fm.plyr.getActivity": {},
}
# Operator only (appview/moderation.py): refused without the admin password, HEAD like GET.
ADMIN_QUERIES = {"com.atproto.admin.getSubjectStatus"}
# Pages and endpoints: (path, status of a GET).
PAGES = [
    ("/", 302),
    ("/status", 200),
    ("/listen", 200),
    (f"/embed/track/{ALICE}/{_T}", 200),
    (f"/embed/list/{ALICE}/{make_tid(BASE_US + 3)}", 200),
    ("/xrpc/_health", 200),
    ("/.well-known/did.json", 200),
    ("/metrics", 200),
    ("/schema", 200),
    ("/schema/openapi.json", 200),
    ("/xrpc/fm.plyr.noSuchMethod", 501),
    ("/xrpc/com.atproto.admin.getSubjectStatus?did=did:plc:x", 401),
    ("/no/such/page", 404),
]
# Bodies that change from one request to the next (times, counters), so their length may too.
VOLATILE = {"/status", "/xrpc/_health", "/metrics"}


async def test_queries_table_covers_every_xrpc_query(client: Client) -> None:
    doc = await _openapi(client)
    served = {path.removeprefix("/xrpc/") for method, path, _ in _xrpc_operations(doc) if method == "get"}
    assert served - {"_health"} - ADMIN_QUERIES == set(QUERIES)


async def test_head_answers_like_get_without_a_body(client: Client) -> None:
    cases = [(path, status) for path, status in PAGES] + [(f"/xrpc/{nsid}", 200) for nsid in QUERIES]
    params_of = {f"/xrpc/{nsid}": params for nsid, params in QUERIES.items()}
    mismatches = []
    for path, status in cases:
        params = params_of.get(path, {})
        get = await client.get(path, params=params, follow_redirects=False)
        head = await client.head(path, params=params, follow_redirects=False)
        assert get.status_code == status, (path, get.status_code, get.text[:300])
        assert get.content or status == 302, path  # there is a body to leave out
        get_headers, head_headers = dict(get.headers), dict(head.headers)
        if path in VOLATILE:
            get_headers.pop("content-length", None)
            head_headers.pop("content-length", None)
        # Each request is charged to the client's read limit: what is left counts down from one to the next, and
        # the window may roll over between the two (a new reset time). Both must still carry them.
        for varying in ("ratelimit-remaining", "ratelimit-reset"):
            assert (varying in get_headers) == (varying in head_headers), (path, varying)
            get_headers.pop(varying, None)
            head_headers.pop(varying, None)
        if head.status_code != get.status_code or head_headers != get_headers or head.content != b"":
            mismatches.append((path, get.status_code, head.status_code, get_headers, head_headers, head.content[:80]))
    assert not mismatches, mismatches


async def test_head_keeps_routes_own_head_and_refuses_where_get_is_refused(client: Client) -> None:
    # A POST-only method: HEAD is refused as GET is, with no body.
    get = await client.get("/xrpc/com.atproto.repo.createRecord")
    head = await client.head("/xrpc/com.atproto.repo.createRecord")
    assert get.status_code == head.status_code == 405
    assert head.content == b""
    assert head.headers["allow"] == get.headers["allow"]
    # Routes that declare their own HEAD (audio, static files) still answer it themselves.
    for path in (f"/audio/{ALICE}/{_T}", "/static/listen.js"):
        get = await client.get(path, follow_redirects=False)
        head = await client.head(path, follow_redirects=False)
        assert head.status_code == get.status_code, path
        assert head.headers.get("content-length") == get.headers.get("content-length"), path
        assert head.content == b"", path


# -- /metrics -----------------------------------------------------------------------------------------------


async def test_metrics_content_type_has_one_charset(client: Client) -> None:
    resp = await client.get("/metrics")
    content_type = resp.headers["content-type"]
    assert content_type.startswith("text/plain; version=0.0.4")
    assert content_type.lower().count("charset=") == 1, content_type


# -- OpenAPI --------------------------------------------------------------------------------------------------


def _errors_by_status(op: dict[str, Any]) -> dict[str, set[str]]:
    return {status: set(resp.get("x-xrpc-errors") or []) for status, resp in op["responses"].items()}


async def test_openapi_operations_are_described_by_their_lexicons(client: Client) -> None:
    doc = await _openapi(client)
    lexicons = dict(methods())
    status_of = {"NotFound": "404", "AuthRequired": "401", "PayloadTooLarge": "413"}
    checked = 0
    for method, path, op in _xrpc_operations(doc):
        nsid = path.removeprefix("/xrpc/")
        assert op.get("summary") and op["summary"] != "Handler", (path, op.get("summary"))
        assert op.get("description"), path
        main = lexicons.get(nsid)
        if main is None:
            continue
        checked += 1
        assert method == ("get" if main["type"] == "query" else "post")
        text = " ".join(main["description"].split())
        assert op["description"] == text
        assert text.startswith(op["summary"]) and op["summary"].endswith("."), (op["summary"], text)
        errors = _errors_by_status(op)
        assert "InvalidRequest" in errors["400"], path
        for error in main.get("errors") or []:
            assert error["name"] in errors[status_of.get(error["name"], "400")], (path, error, errors)
        assert "BadJwt" in errors["401"], path
        if main["type"] == "query":
            assert "304" in op["responses"]
    assert checked == len([m for m in lexicons.values() if m["type"] in ("query", "procedure")])


async def test_openapi_error_responses_name_their_errors(client: Client) -> None:
    doc = await _openapi(client)
    for _, path, op in _xrpc_operations(doc):
        for status, resp in op["responses"].items():
            if int(status) >= 400 and path != "/xrpc/_health":
                assert resp.get("x-xrpc-errors"), (path, status)
                assert resp["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorOutput"}
                for name in resp["x-xrpc-errors"]:
                    assert f"`{name}`" in resp["description"]


@pytest.mark.parametrize("authorization", ["Basic abc", "Bearer not-a-jwt", "Bearer a.b.c"])
async def test_documented_token_errors_are_the_ones_answered(client: Client, authorization: str) -> None:
    doc = await _openapi(client)
    documented = set(doc["paths"]["/xrpc/fm.plyr.getLatestTracks"]["get"]["responses"]["401"]["x-xrpc-errors"])
    resp = await client.get("/xrpc/fm.plyr.getLatestTracks", headers={"Authorization": authorization})
    assert resp.status_code == 401
    assert resp.json()["error"] in documented


# -- /schema, the API page ------------------------------------------------------------------------------------


async def test_api_page_is_self_contained_and_lists_every_operation(client: Client) -> None:
    doc = await _openapi(client)
    resp = await client.get("/schema")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert "<script" not in page.lower()
    urls = re.findall(r"""(?:src|href|action)\s*=\s*["']?([^"' >]+)""", page, flags=re.IGNORECASE)
    external = [u for u in urls if re.match(r"^(?:[a-z][a-z0-9+.-]*:|//)", u, flags=re.IGNORECASE)]
    assert not external, external
    assert not re.search(r"url\(|@import", page), "styles load nothing"
    assert 'href="/schema/openapi.json"' in page
    for _, path, op in _xrpc_operations(doc):
        assert html.escape(path) in page, path
        assert html.escape(op["summary"], quote=True) in page, op["summary"]
        for resp_ in op["responses"].values():
            for name in resp_.get("x-xrpc-errors") or []:
                assert f"<code>{html.escape(name)}</code>" in page
        for param in op.get("parameters") or []:
            assert f"<code>{html.escape(param['name'])}</code>" in page
    assert len(re.findall(r"<section ", page)) == sum(len(item) for item in doc["paths"].values())


# -- error messages -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/xrpc/fm.plyr.getTrack", "uri", "x" * 5000),
        ("/xrpc/fm.plyr.getTrack", "uri", "at://" + ALICE + "/fm.plyr.like/" + "k" * 4000),
        ("/xrpc/fm.plyr.getTrack", "uri", "at://" + ALICE + "/fm.plyr.track/" + "k" * 500),
        ("/xrpc/fm.plyr.getLatestTracks", "cursor", "9" * 5000),
        ("/xrpc/fm.plyr.getLatestTracks", "cursor", "9" * 300 + "__" + "b" * 200),
        ("/xrpc/fm.plyr.getActorTracks", "actor", "q" * 2000),
        ("/xrpc/fm.plyr.getActorTracks", "actor", "did:plc:" + "z" * 1500),
        ("/xrpc/fm.plyr.getActorTracks", "actor", "y" * 5000),
        ("/xrpc/fm.plyr.getTopTracks", "since", "s" * 5000),
        ("/xrpc/fm.plyr.searchTracks", "q", "w" * 5000),
        ("/xrpc/fm.plyr.getTracks", "uris", "u" * 5000),
    ],
)
async def test_error_messages_are_short_and_never_echo_long_values(
    client: Client, path: str, name: str, value: str
) -> None:
    resp = await client.get(path, params={name: value})
    assert 400 <= resp.status_code < 500, resp.text[:300]
    body = resp.json()
    assert set(body) == {"error", "message"}
    message = body["message"]
    assert len(message) <= MESSAGE_CHARS + 1, message
    assert value[: ECHO_CHARS + 1] not in message, message
    assert "?" not in message and "Validation failed" not in message, message
    assert message[0].islower(), message  # the reason comes first


async def test_validation_messages_name_the_parameter(client: Client) -> None:
    resp = await client.get("/xrpc/fm.plyr.getLatestTracks", params={"limit": "abc", "cursor": "1" * 600})
    message = resp.json()["message"]
    assert resp.status_code == 400
    assert message.startswith("query parameter limit: ")
    assert "query parameter cursor: " in message
