"""The AppView's operational endpoints, served by the real app against a real Postgres."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from appview.app import create_app
from bench.synth import commit, make_did, make_tid, track_record
from indexer.atproto.lexicon import Validator
from indexer.metrics import Metrics
from tests.helpers import TRACK, ingest


async def test_health_reports_db_and_ingest_lag(db_url: str, validator: Validator) -> None:
    ev = commit(make_did(1), TRACK, make_tid(1), make_tid(1), track_record("x"), source="jetstream", cursor=42)
    ev.time_us = 1_750_000_000_000_000
    await ingest(db_url, validator, [ev])
    async with AsyncTestClient(app=create_app(db_url)) as client:
        resp = await client.get("/xrpc/_health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["db"] == "ok"
    assert body["ingest"]["jetstream"]["cursor"] == 42
    assert body["ingest"]["jetstream"]["lagSeconds"] > 0


async def test_health_is_503_when_db_is_down() -> None:
    app = create_app("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1")
    async with AsyncTestClient(app=app) as client:
        resp = await client.get("/xrpc/_health")
    assert resp.status_code == 503
    assert resp.json()["db"] == "unavailable"


async def test_metrics_are_prometheus_text(db_url: str, validator: Validator) -> None:
    metrics = Metrics()
    metrics.events_rejected.labels("invalid_record").inc(3)
    async with AsyncTestClient(app=create_app(db_url, metrics=metrics)) as client:
        resp = await client.get("/metrics")
    assert resp.status_code == 200
    assert 'plyr_events_rejected_total{reason="invalid_record"} 3.0' in resp.text


async def test_unknown_route_is_xrpc_error(db_url: str) -> None:
    async with AsyncTestClient(app=create_app(db_url)) as client:
        method = await client.get("/xrpc/fm.plyr.noSuchMethod")
        page = await client.get("/no/such/page")
    assert method.status_code == 501
    assert method.json()["error"] == "MethodNotImplemented"
    assert page.status_code == 404
    assert page.json()["error"] == "NotFound"
