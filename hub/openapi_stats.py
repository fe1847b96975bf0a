"""The OpenAPI document's path of the operators' figures (``GET /v1/stats``, hub.api_stats),
with its answer's schema written out here: hub.openapi adds it after the other paths.
"""

from __future__ import annotations

from typing import Any

from .openapi_api import error_answers

__all__ = ["stats_paths"]

_COUNTS = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 1}}
_SHARE = {"type": ["number", "null"], "minimum": 0}
_STATS = {
    "type": "object",
    "required": ["from", "to", "granularity", "merchant_id", "buckets", "totals", "by_merchant", "by_driver", "rates"],
    "properties": {
        "from": {"type": "string", "format": "date-time", "description": "the first bucket's start (UTC)"},
        "to": {"type": "string", "format": "date-time", "description": "the last bucket's end (UTC)"},
        "granularity": {"type": "string", "enum": ["hour", "day"]},
        "merchant_id": {"type": ["string", "null"]},
        "buckets": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["start", "counts"],
                "properties": {"start": {"type": "string", "format": "date-time"}, "counts": _COUNTS},
            },
        },
        "totals": _COUNTS,
        "by_merchant": {"type": "object", "additionalProperties": _COUNTS},
        "by_driver": {"type": "object", "additionalProperties": _COUNTS},
        "rates": {
            "type": "object",
            "properties": {
                "provider_delivery": {"type": "object", "additionalProperties": _SHARE},
                "first_attempt_success": _SHARE,
                "reply_shares": {"type": "object", "additionalProperties": _SHARE},
            },
        },
    },
}


def _param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def stats_paths() -> dict[str, Any]:
    when = {"type": "string", "maxLength": 64}
    return {
        "/v1/stats": {
            "get": {
                "summary": "The operators' figures: counted facts by hour or UTC day, by shop and by driver;"
                " CSV with Accept: text/csv or format=csv (docs/api.md)",
                "operationId": "getStats",
                "parameters": [
                    _param("from", "ISO 8601 with an offset, or unix seconds (default: 24 h or 30 days back)", when),
                    _param("to", "ISO 8601 with an offset, or unix seconds (default: now)", when),
                    _param(
                        "merchant_id",
                        "one shop's figures",
                        {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
                    ),
                    _param("granularity", "bucket length", {"type": "string", "enum": ["hour", "day"]}),
                    _param("format", "csv: the CSV answer", {"type": "string", "enum": ["json", "csv"]}),
                ],
                "responses": {
                    "200": {
                        "description": "the figures",
                        "content": {
                            "application/json": {"schema": _STATS},
                            "text/csv": {"schema": {"type": "string", "description": "bucket_start,fact,count rows"}},
                        },
                    },
                    **error_answers(400, 401, 403),
                },
            }
        }
    }
