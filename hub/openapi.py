"""The OpenAPI 3.1 document served at ``/openapi.json``.

Request bodies come from the same pydantic models that validate requests (``Event``,
``Contact``, ``Preferences``), so the document cannot drift from the validation. Response shapes
are small models in ``hub.openapi_models``, used only for the document; the paths are built in
``hub.openapi_api`` and ``hub.openapi_pages``, in the order the document lists them.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from .openapi_api import api_paths, error_answers, relay_paths, twilio_paths
from .openapi_models import MODELS
from .openapi_pages import adapter_paths, operations_paths, page_paths
from .openapi_stats import stats_paths

__all__ = ["openapi_document"]


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    _, schemas = models_json_schema([(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}")
    components = schemas.get("$defs", {})
    id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 128}}
    reveal = {
        "name": "reveal",
        "in": "query",
        "required": False,
        "schema": {"type": "boolean"},
        "description": "show contact details unmasked (admin keys only)",
    }
    paths: dict[str, Any] = {
        **api_paths(id_param, reveal),
        **relay_paths(id_param, reveal),
        **twilio_paths(),
        **adapter_paths(),
        **operations_paths("/docs", "/metrics"),
        **page_paths(),
        **stats_paths(),
    }
    _common_errors(paths)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "Delivery notification hub",
            "version": "1",
            "description": "Milestone events in; SMS, e-mail and push out. See docs/api.md.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc


def _common_errors(paths: dict[str, Any]) -> None:
    """Answers any operation can give, added to every one that can: 429 on the API for a wrong key
    retried, or a client sending many, 400 for a malformed path id, 503 when Redis is down, and 400/415
    for a Twilio webhook whose body is not a readable form."""
    for path, item in paths.items():
        for method, op in item.items():
            if method == "parameters":
                continue
            extra: list[int] = [503]
            if path.startswith("/v1/"):
                extra.append(429)
            if "{id}" in path:
                extra.append(400)
            if path.startswith("/webhooks/twilio/"):
                extra += [400, 415]
            for code in extra:
                op["responses"].setdefault(str(code), error_answers(code)[str(code)])
