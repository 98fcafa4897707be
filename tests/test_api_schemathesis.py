"""Property-based fuzzing of every documented operation from the app's own OpenAPI schema (read API, audio,
upload, write proxy): whatever the parameters and bodies, no 5xx, and every documented response matches its
schema. The app runs in a real uvicorn on loopback, over a database with some content so that valid identifiers
lead somewhere; uploads carry a valid service-auth token and proxied writes an access token whose repo's PDS is a
local stand-in answering like a PDS, so generated input reaches the code behind the authentication checks."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar import Litestar
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from appview.app import create_app
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
from indexer.audio.store import StorageSettings
from indexer.settings import Settings
from tests.api_support import SERVICE_DID, Keypair, StubResolver, service_jwt
from tests.helpers import COMMENT, LIKE, LIST, TRACK, ingest
from tests.proxy_support import Seen, StubPds, json_reply

EXAMPLES_PER_OPERATION = 100


class Served:
    def __init__(self, app: Litestar) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                return self
            threading.Event().wait(0.05)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def seed(db_url: str, validator: Validator) -> None:
    alice, bob = make_did(1), make_did(2)
    rec = track_record("Fuzz me")
    t = make_tid(BASE_US)
    subject = (uri(alice, TRACK, t), make_cid(rec))
    batch = [
        identity(alice, "alice.test", seq=1, micros=BASE_US),
        commit(alice, TRACK, t, t, rec),
        commit(bob, LIKE, make_tid(BASE_US + 1), make_tid(BASE_US + 1), like_record(*subject)),
        commit(bob, COMMENT, make_tid(BASE_US + 2), make_tid(BASE_US + 2), comment_record(*subject, "hi", ms=5)),
        commit(alice, LIST, make_tid(BASE_US + 3), make_tid(BASE_US + 3), list_record([subject])),
    ]
    asyncio.run(ingest(db_url, validator, batch))


ALICE = make_did(1)
UPLOADER = make_did(5)
CID = "bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm"
REV = "3l3qo2vutsw2b"


def pds_answer(seen: Seen) -> tuple[int, dict[str, str], bytes]:
    """What a PDS answers to the writes the proxy forwards; a body it cannot read gets a PDS-style 400."""
    method = seen.path.split("?", 1)[0].rsplit("/", 1)[-1]
    commit = {"cid": CID, "rev": REV}
    if method == "com.atproto.repo.uploadBlob":
        size = len(seen.body)
        return json_reply(
            200, {"blob": {"$type": "blob", "ref": {"$link": CID}, "mimeType": "audio/mpeg", "size": size}}
        )
    try:
        body = json.loads(seen.body)
        repo, writes = body["repo"], body.get("writes", [])
        if method in ("com.atproto.repo.createRecord", "com.atproto.repo.putRecord"):
            rkey = body.get("rkey") or REV
            return json_reply(200, {"uri": f"at://{repo}/{body['collection']}/{rkey}", "cid": CID, "commit": commit})
        if method == "com.atproto.repo.deleteRecord":
            return json_reply(200, {"commit": commit})
        if method == "com.atproto.repo.applyWrites":
            results = []
            for w in writes:
                kind = w["$type"].rsplit("#", 1)[-1]
                uri_ = f"at://{repo}/{w['collection']}/{w.get('rkey') or REV}"
                if kind == "delete":
                    results.append({"$type": "com.atproto.repo.applyWrites#deleteResult"})
                else:
                    results.append({"$type": f"com.atproto.repo.applyWrites#{kind}Result", "uri": uri_, "cid": CID})
            return json_reply(200, {"commit": commit, "results": results})
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        pass
    return json_reply(400, {"error": "InvalidRequest", "message": "the PDS could not read this request"})


def access_token(sub: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'ES256K'})}.{part({'sub': sub, 'scope': 'com.atproto.access'})}.c2ln"


@pytest.fixture
def served(db_url: str, validator: Validator, tmp_path: Path) -> Iterator[tuple[Served, Keypair]]:
    seed(db_url, validator)
    pds = StubPds(pds_answer)
    key = Keypair()
    resolver = StubResolver()
    resolver.pds[ALICE] = pds.url
    resolver.keys[UPLOADER] = key.did_key
    settings = Settings(
        public_host="api.plyr.test",
        allow_private_hosts=True,  # the stand-in PDS is on loopback
        proxy_timeout=5.0,
        audio_max_bytes=1024 * 1024,
        storage=StorageSettings(audio_dir=tmp_path / "audio"),
    )
    try:
        with Served(create_app(db_url, settings=settings, resolver=resolver)) as s:
            yield s, key
    finally:
        pds.close()


def _auth(path: str, key: Keypair) -> dict[str, str]:
    if path.endswith("fm.plyr.uploadAudio"):
        token = service_jwt(key, iss=UPLOADER, lxm="fm.plyr.uploadAudio", aud=SERVICE_DID)
        return {"Authorization": f"Bearer {token}"}
    if "/com.atproto.repo." in path:
        return {"Authorization": f"Bearer {access_token(ALICE)}"}
    return {}


def test_no_server_errors_on_any_input(served: tuple[Served, Keypair]) -> None:
    server, key = served
    schema = schemathesis.openapi.from_url(f"{server.base_url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = {(method.upper(), path) for path, item in schema.raw_schema["paths"].items() for method in item}
    assert {(op.method.upper(), op.path) for op in operations} == documented
    assert len(operations) >= 22
    failures: list[str] = []
    calls: dict[str, int] = {}
    statuses: dict[str, set[int]] = {}
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(base_url=server.base_url, headers=_auth(case.path, key))
            label = f"{case.method.upper()} {case.path}"
            calls[label] = calls.get(label, 0) + 1
            statuses.setdefault(label, set()).add(response.status_code)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance, content_type_conformance]
            )

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
    # Every operation was exercised, and the authenticated ones got past authentication at least once.
    assert set(calls) == {f"{op.method.upper()} {op.path}" for op in operations}
    for label, seen in statuses.items():
        if "uploadAudio" in label or "com.atproto.repo" in label:
            assert seen - {401}, (label, seen)
    print(json.dumps({"requests": sum(calls.values()), "statuses": {k: sorted(v) for k, v in statuses.items()}}))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3),
    max_leaves=12,
)


_keys = st.one_of(
    st.sampled_from(
        ["repo", "collection", "rkey", "record", "writes", "swapCommit", "validate", "title", "artist", "$type"]
    ),
    st.text(max_size=12),
)


def _valid_write(method: str) -> dict[str, Any]:
    record = track_record("Hostile fields")
    if method == "applyWrites":
        return {
            "repo": ALICE,
            "writes": [{"$type": "com.atproto.repo.applyWrites#create", "collection": TRACK, "value": record}],
        }
    body: dict[str, Any] = {"repo": ALICE, "collection": TRACK, "record": record}
    if method in ("putRecord", "deleteRecord"):
        body["rkey"] = make_tid(BASE_US + 99)
    if method == "deleteRecord":
        del body["record"]
    return body


@pytest.mark.parametrize("method", ["createRecord", "putRecord", "deleteRecord", "applyWrites"])
def test_well_formed_writes_with_hostile_fields_reach_the_pds_without_server_errors(
    served: tuple[Served, Keypair], method: str
) -> None:
    """Schema-driven bodies rarely get past validation; these start from a write the PDS accepts and replace one
    field (of the body, the record or the write) with an arbitrary JSON value."""
    import httpx

    server, _ = served
    outcomes: dict[int, int] = {}
    last: dict[int, str] = {}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:

        @given(where=st.sampled_from(["body", "record", "none"]), key=_keys, value=_json_values)
        @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(where: str, key: str, value: Any) -> None:
            body = _valid_write(method)
            target = body
            if where == "record":
                target = body["writes"][0]["value"] if method == "applyWrites" else body.get("record", body)
            if where != "none":
                target[key or "title"] = value
            resp = client.post(
                f"/xrpc/com.atproto.repo.{method}", json=body, headers=_auth("/com.atproto.repo.", Keypair())
            )
            outcomes[resp.status_code] = outcomes.get(resp.status_code, 0) + 1
            last[resp.status_code] = resp.text[:300]
            assert resp.status_code < 500, resp.text
            assert "error" in resp.json() if resp.status_code >= 400 else True

        run()
    assert outcomes.get(200, 0) > 0, (outcomes, last)  # some went through to the PDS and back
    assert any(400 <= status < 500 for status in outcomes), outcomes


def test_audio_uploads_with_hostile_bytes_never_5xx(served: tuple[Served, Keypair]) -> None:
    import httpx

    from tests.audio_support import mp3_bytes, wav_bytes

    server, key = served
    seeds = [wav_bytes(0.5), mp3_bytes(20)]
    outcomes: dict[int, int] = {}
    with httpx.Client(base_url=server.base_url, timeout=30) as client:

        @given(
            which=st.integers(0, 1),
            cut=st.integers(0, 4000),
            flips=st.lists(st.tuples(st.integers(0, 20_000), st.integers(0, 255)), max_size=8),
            content_type=st.sampled_from(["audio/wav", "audio/mpeg", "audio/flac", "application/octet-stream", ""]),
        )
        @settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def run(which: int, cut: int, flips: list[tuple[int, int]], content_type: str) -> None:
            data = bytearray(seeds[which][: max(0, len(seeds[which]) - cut)])
            for pos, value in flips:
                if data:
                    data[pos % len(data)] = value
            headers = {**_auth("fm.plyr.uploadAudio", key), "Content-Type": content_type}
            resp = client.post("/xrpc/fm.plyr.uploadAudio", content=bytes(data), headers=headers)
            outcomes[resp.status_code] = outcomes.get(resp.status_code, 0) + 1
            assert resp.status_code < 500, resp.text

        run()
    assert outcomes.get(200, 0) > 0 and any(400 <= s < 500 for s in outcomes), outcomes
