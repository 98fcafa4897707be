"""Live ingest under API load (`bench/load_live.py`): a short run in the default suite, the full 10-minute
figure with `pytest -m long`."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load_live import run


def test_short_live_ingest_under_reads(db_url: str, tmp_path: Path) -> None:
    result = run(db_url, tmp_path, seconds=20, rate=500, rps=50, window=5, warmup=5, connections=8, base_events=5000)
    steady = result["steady"]
    assert result["verdict"]["ingest_rate_reached"], steady
    assert result["verdict"]["no_api_errors"], steady
    assert steady["logged_per_s"] > 0.8 * 500
    assert steady["lag_s_max"] is not None and steady["lag_s_max"] < 5
    assert steady["api_req_per_s"] >= 40
    assert steady["source_reconnects"] == 0
    assert all(s["indexer_rss_mib"] for s in result["samples"])


@pytest.mark.long
@pytest.mark.timeout(1200)
def test_ten_minutes_at_5k_events_and_500_requests_per_second(db_url: str, tmp_path: Path) -> None:
    result = run(db_url, tmp_path, seconds=600, rate=5000, rps=500)
    assert result["verdict"] == dict.fromkeys(result["verdict"], True), result["steady"]
