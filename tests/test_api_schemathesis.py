"""Property-based fuzzing of every documented operation from the app's own OpenAPI schema: whatever the
parameters, no 5xx, and every documented response matches its schema. The app runs in a real uvicorn on
loopback, over a database with some content so that valid identifiers lead somewhere."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from indexer.lexicon import Validator
from indexer.synth import (
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
from tests.api_support import app
from tests.helpers import COMMENT, LIKE, LIST, TRACK, ingest

EXAMPLES_PER_OPERATION = 100


class Served:
    def __init__(self, db_url: str) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(app(db_url), log_config=None, access_log=False, lifespan="on")
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


@pytest.fixture
def served(db_url: str, validator: Validator) -> Iterator[Served]:
    seed(db_url, validator)
    with Served(db_url) as s:
        yield s


def test_no_server_errors_on_any_input(served: Served) -> None:
    schema = schemathesis.openapi.from_url(f"{served.base_url}/schema/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 13
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(base_url=served.base_url)
            case.validate_response(
                response, checks=[not_a_server_error, response_schema_conformance, content_type_conformance]
            )

        try:
            run()
        except Exception as exc:
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
