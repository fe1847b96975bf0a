"""The small builders every part of the OpenAPI document uses: a schema reference, a JSON answer,
the error answers by status, a form or JSON request body."""

from __future__ import annotations

from typing import Any

__all__ = ["error_answers", "form_body", "json_answer", "json_body", "ref"]


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_answer(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": ref(name)}}}


def error_answers(*codes: int) -> dict[str, Any]:
    text = {
        400: "malformed request",
        401: "missing or unknown API key",
        403: "key lacks the scope",
        404: "not found",
        409: "conflict",
        413: "body or batch too large",
        415: "not JSON",
        422: "validation failed (fields name each problem)",
        429: "too many requests with this wrong API key, or with wrong keys from this client (Retry-After says"
        " when to retry); a valid key is never refused",
        503: "store unavailable",
    }
    return {str(c): json_answer("Error", text[c]) for c in codes}


def form_body(fields: dict[str, str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": {k: {"type": v} for k, v in fields.items()}}
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def json_body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}
