"""Logging set-up: one line per record, with the ids a record carries appended as key=value.

Modules log with ``extra={"event_id": ..., "delivery_id": ..., "message_id": ...}``; this
formatter prints those ids so every line about an event or message can be found by grepping
for its id. Contact details never reach a log line unmasked (see ``hub.masking``).
"""

from __future__ import annotations

import logging

__all__ = ["IdFormatter", "setup_logging"]

IDS = ("source", "event_id", "delivery_id", "message_id")
_NOISY = ("arq", "mail.log", "httpx", "httpcore", "aiohttp.access")  # per-request lines, some with addresses


class IdFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = " ".join(f"{name}={getattr(record, name)}" for name in IDS if getattr(record, name, None))
        return f"{line} {ids}" if ids else line


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(IdFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in _NOISY:
        logging.getLogger(name).setLevel(logging.WARNING)
