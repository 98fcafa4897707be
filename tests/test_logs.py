"""Logs are one line per record on stderr: JSON for collectors, readable text at a terminal, and never a
terminal escape sequence, whatever a hostile record or error message carries."""

from __future__ import annotations

import json
import logging

import pytest

from indexer.logs import JsonFormatter, TextFormatter

HOSTILE = "title \x1b[31mred\x1b[0m \x1b]0;owned\x07 bell\x07 nul\x00 end"


def _record(msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("indexer.test", logging.WARNING, __file__, 1, msg, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_fields_and_no_escapes() -> None:
    line = JsonFormatter().format(_record(HOSTILE, detail=HOSTILE, counts={"a\x1b[2J": [HOSTILE]}))
    assert "\n" not in line and "\x1b" not in line and "\\u001b" not in line and "\\u0007" not in line
    out = json.loads(line)
    assert out["level"] == "warning" and out["logger"] == "indexer.test"
    assert out["msg"] == out["detail"] == "title red  bell nul end"
    assert out["counts"] == {"a": ["title red  bell nul end"]}


def test_text_lines_are_readable_and_escape_free() -> None:
    line = TextFormatter().format(_record("jetstream disconnected", host="h.example", retry_in_s=1.5, why=HOSTILE))
    assert "WARNING" in line and "jetstream disconnected" in line
    assert "host=h.example" in line and "retry_in_s=1.5" in line
    assert "\x1b" not in line and "\x07" not in line and "\x00" not in line


@pytest.mark.parametrize(("fmt", "json_expected"), [("json", True), ("text", False), ("auto", True)])
def test_the_format_follows_the_setting_and_auto_means_json_off_a_terminal(
    fmt: str, json_expected: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    from indexer import logs

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("INFO", fmt)  # type: ignore[arg-type]
        logging.getLogger("indexer.test").info("hello", extra={"n": 1})
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    err = capsys.readouterr().err.strip()
    assert err, "nothing logged"
    if json_expected:
        assert json.loads(err)["msg"] == "hello"
    else:
        assert err.endswith("hello  n=1") or ("hello" in err and "n=1" in err)
        with pytest.raises(json.JSONDecodeError):
            json.loads(err)
