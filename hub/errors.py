"""HTTP error bodies: one shape everywhere.

``{"error": {"code": "validation_failed", "message": "...", "fields": {"customer.phone": "..."}}}``
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = ["ApiError", "error_response"]


class ApiError(Exception):
    """Raised inside handlers; the middleware turns it into ``error_response``."""

    def __init__(self, status: int, code: str, message: str, fields: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields


def error_response(
    status: int, code: str, message: str, fields: dict[str, str] | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return web.Response(
        status=status,
        text=json.dumps({"error": body}),
        content_type="application/json",
        headers=headers,
    )
