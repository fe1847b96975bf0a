"""Logging set-up: JSON lines for machines, readable lines for people.

Modules log with ``extra={"event_id": ..., "delivery_id": ..., "message_id": ...}``; both
formats carry those ids, so every line about an event or message can be found by its id:

- ``json``: one object per line: ``time`` (UTC, RFC 3339 with milliseconds), ``level``,
  ``logger``, ``message``, the ids the record carries (``IDS``) and, for an error, ``exception``
  (the formatted traceback). For log shippers (journald, Loki, Elasticsearch).
- ``console``: ``time level logger: message id=value ...``, for a terminal.
- ``auto``: console when stderr is a terminal, else json.

Contact details never reach a log line unmasked: callers mask them with ``hub.masking`` before
they log, and neither formatter adds anything from the record but the fields named above.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = ["IDS", "IdFormatter", "JsonFormatter", "resolve_format", "setup_logging"]

IDS = ("source", "event_id", "delivery_id", "message_id")
_NOISY = ("arq", "mail.log", "httpx", "httpcore", "aiohttp.access")  # per-request lines, some with addresses


class IdFormatter(logging.Formatter):
    """The console format: the standard line, then the record's ids as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in IDS if getattr(record, name, None))
        return f"{line} {ids}" if ids else line


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in IDS:
            value = getattr(record, name, None)
            if value:
                entry[name] = str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def resolve_format(fmt: str, stream: Any = None) -> Literal["json", "console"]:
    """``auto`` made concrete: console on a terminal, json otherwise (services, containers)."""
    if fmt == "json":
        return "json"
    if fmt == "console":
        return "console"
    if fmt != "auto":
        raise ValueError(f"log_format must be auto, json or console, not {fmt!r}")
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return "console" if callable(isatty) and isatty() else "json"


def setup_logging(level: str, fmt: str = "console") -> None:
    """Log to stderr at ``level`` in ``fmt`` (json, console or auto); replaces root's handlers."""
    handler = logging.StreamHandler()
    if resolve_format(fmt, handler.stream) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(IdFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
