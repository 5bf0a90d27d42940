"""Structured logging with a correlation id.

Every log line carries the id of the request (or UI action) that caused it, so that one
operator action can be followed through MongoDB writes and Kubernetes calls. Call sites
pass structured fields with `log(logger, "event", key=value)`; the formatter renders them
as `key=value` for people or as JSON lines for log pipelines.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
from datetime import UTC, datetime
from typing import Any

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

_RESERVED = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "fields"}


def new_request_id() -> str:
    """A short random id, for requests that bring none and for UI actions."""
    return secrets.token_hex(8)


def bind_request_id(value: str | None = None) -> contextvars.Token[str]:
    """Make `value` (or a new id) the correlation id of the current task and its children."""
    return request_id.set(value or new_request_id())


def log(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured line: an event name plus fields."""
    logger.log(level, event, extra={"fields": fields}, stacklevel=2)


_base_factory = logging.getLogRecordFactory()


def _record_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
    # A record factory (rather than a handler filter) stamps the id on every record, whichever
    # handler ends up formatting it: ours, uvicorn's or a test's capture.
    record = _base_factory(*args, **kwargs)
    record.request_id = request_id.get()
    return record


if getattr(logging.getLogRecordFactory(), "__name__", "") != "_record_factory":
    logging.setLogRecordFactory(_record_factory)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = dict(getattr(record, "fields", None) or {})
    for key, value in record.__dict__.items():
        if key not in _RESERVED and key != "request_id" and not key.startswith("_"):
            fields.setdefault(key, value)
    return fields


# C0 and C1 controls and DEL: a request path or a name may carry them (NUL, ESC sequences
# that repaint a terminal); a log line shows them escaped, never raw
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape_controls(text: str) -> str:
    return _CONTROLS.sub(lambda m: f"\\x{ord(m[0]):02x}", text)


def _json_controls(text: str) -> str:
    """JSON text with DEL and C1 escaped too (json.dumps escapes only C0)."""
    return _CONTROLS.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def _console_value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c.isspace() or c in '"=' for c in text):
        return _json_controls(json.dumps(text, ensure_ascii=False))
    return _escape_controls(text)


class ConsoleFormatter(logging.Formatter):
    """`time level logger [req] event k=v ...`: readable in a terminal, still greppable."""

    def format(self, record: logging.LogRecord) -> str:
        at = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]
        parts = [
            f"{at}Z",
            f"{record.levelname:<7}",
            record.name,
            f"[{getattr(record, 'request_id', '-')}]",
        ]
        parts.append(_escape_controls(record.getMessage()))
        parts.extend(
            f"{_escape_controls(str(k))}={_console_value(v)}" for k, v in _fields(record).items()
        )
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "event": record.getMessage(),
        }
        data.update(_fields(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return _json_controls(json.dumps(data, default=str, ensure_ascii=False))


def configure(fmt: str = "console", level: int = logging.INFO) -> None:
    """Install the formatter on the root logger (idempotent) and tame noisy libraries."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_gooseui", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler._gooseui = True  # type: ignore[attr-defined]
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("pymongo", "kubernetes_asyncio", "httpx", "httpcore", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
