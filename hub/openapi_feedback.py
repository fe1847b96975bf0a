"""The OpenAPI paths of hub.api_feedback: the follow-up list of low ratings and the ratings per
driver and per shop. Their answers' schemas are written here, inline (hub.openapi_api adds the
paths to the document)."""

from __future__ import annotations

from typing import Any

from .api_feedback import HandledRequest
from .feedback import FOLLOWUP_STATUSES, RATING_GROUPS

__all__ = ["feedback_paths"]

_ERRORS = {
    400: "malformed request (the field is named)",
    401: "missing or unknown API key",
    403: "key lacks the scope",
    404: "no follow-up for this delivery",
    415: "not JSON",
    422: "validation failed (fields name each problem)",
}


def _errors(*codes: int) -> dict[str, Any]:
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {str(c): {"description": _ERRORS[c], **error} for c in codes}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_TEXT = {"type": ["string", "null"]}
_FOLLOWUP: dict[str, Any] = {
    "type": "object",
    "required": ["delivery_id", "rating", "low_rating", "status", "at"],
    "properties": {
        "delivery_id": {"type": "string"},
        "customer_id": {**_TEXT, "description": "null after the customer's erasure"},
        "rating": {"type": "integer", "minimum": 1, "maximum": 5, "description": "the latest rating"},
        "low_rating": {"type": "integer", "minimum": 1, "maximum": 5, "description": "the rating that raised it"},
        "comment": {**_TEXT, "description": "the low rating's comment, numbers and e-mail addresses masked"},
        "driver_id": _TEXT,
        "merchant_id": _TEXT,
        "channel": _TEXT,
        "at": {"type": "string", "description": "when the low rating came"},
        "rated_at": {**_TEXT, "description": "when a later rating above the threshold came"},
        "status": {"type": "string", "enum": ["open", "handled"]},
        "handled_at": _TEXT,
        "handled_by": _TEXT,
    },
}
_WINDOW = {
    "type": "object",
    "properties": {"count": {"type": "integer"}, "average": {"type": ["number", "null"]}},
}
_RATING = {
    "type": "object",
    "required": ["id", "count", "average", "last_7_days", "previous_7_days", "trend"],
    "properties": {
        "id": {"type": "string", "description": "the driver's or the shop's id"},
        "count": {"type": "integer"},
        "average": {"type": ["number", "null"]},
        "last_7_days": _WINDOW,
        "previous_7_days": _WINDOW,
        "trend": {"type": ["number", "null"], "description": "last 7 days' average minus the 7 before's"},
    },
}


def feedback_paths() -> dict[str, Any]:
    limit = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}}
    status = {"name": "status", "in": "query", "schema": {"type": "string", "enum": list(FOLLOWUP_STATUSES)}}
    delivery = {"name": "delivery_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 128}}
    listing = {
        "type": "object",
        "properties": {"status": {"type": "string"}, "followups": {"type": "array", "items": _FOLLOWUP}},
    }
    ratings = {
        "type": "object",
        "properties": {"by": {"type": "string"}, "ratings": {"type": "array", "items": _RATING}},
    }
    body = {"required": False, "content": {"application/json": {"schema": HandledRequest.model_json_schema()}}}
    return {
        "/v1/feedback/followups": {
            "get": {
                "summary": "The operators' follow-up list of low ratings, newest first (default: open ones)",
                "operationId": "listFollowups",
                "parameters": [status, limit],
                "responses": {"200": _json(listing, "the follow-ups"), **_errors(400, 401, 403)},
            }
        },
        "/v1/feedback/followups/{delivery_id}/handled": {
            "parameters": [delivery],
            "post": {
                "summary": "Mark a delivery's follow-up handled (idempotent: the first handler and time stay)",
                "operationId": "markFollowupHandled",
                "requestBody": body,
                "responses": {"200": _json(_FOLLOWUP, "the follow-up"), **_errors(400, 401, 403, 404, 415, 422)},
            },
        },
        "/v1/ratings": {
            "get": {
                "summary": "Ratings per driver or per shop: count, average, last 7 UTC days against the 7 before",
                "operationId": "listRatings",
                "parameters": [
                    {"name": "by", "in": "query", "required": True, "schema": {"enum": list(RATING_GROUPS)}},
                ],
                "responses": {"200": _json(ratings, "most ratings first"), **_errors(400, 401, 403)},
            }
        },
    }
