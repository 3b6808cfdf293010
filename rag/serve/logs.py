"""The service's log lines, each naming the request it belongs to.

Every request gets an id (the client's ``X-Request-Id`` when it sends a usable one, else a new
one), returned in the response's ``X-Request-Id`` and carried by every log line written while the
request is handled, in worker threads too (anyio copies the context into them). The lines are
text (``RAG_LOG_FORMAT=text``: the message as it is, the id merged into an event's JSON object
or else in brackets before it) or JSON objects (``json``: time, level, logger, id, and the
event's fields or the message).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# A client's id is echoed into headers and logs: only short, plain ones are taken.
_USABLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def request_id(sent: str | None) -> str:
    """The id of a request: the client's when it is usable, else a new one."""
    if sent is not None and _USABLE_ID.fullmatch(sent):
        return sent
    return uuid.uuid4().hex


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class _Text(logging.Formatter):
    """The message as it is; the request id merged into a JSON object message, else before it."""

    def format(self, record: logging.LogRecord) -> str:
        rid = getattr(record, "request_id", None)
        fields = _fields(record.getMessage())
        if fields is not None:
            return json.dumps({**fields, "request_id": rid}) if rid else record.getMessage()
        message = super().format(record)
        return f"[{rid}] {message}" if rid else message


class _Json(logging.Formatter):
    """One JSON object a line: time, level, logger, request id, and the message's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name,
            "request_id": getattr(record, "request_id", None),
        }
        message = record.getMessage()
        line.update(_fields(message) or {"message": message})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


def _fields(message: str) -> dict[str, Any] | None:
    """The message's fields when it is a JSON object (the service's events are)."""
    if not message.startswith("{"):
        return None
    try:
        fields = json.loads(message)
    except ValueError:
        return None
    return fields if isinstance(fields, dict) else None


def handler(log_format: str, stream: Any) -> logging.Handler:
    """A handler writing ``log_format`` lines (``rag.settings.LOG_FORMATS``) to ``stream``."""
    out = logging.StreamHandler(stream)
    out.setFormatter(_Json() if log_format == "json" else _Text("%(message)s"))
    out.addFilter(_WithRequestId())
    return out
