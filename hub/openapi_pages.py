"""The OpenAPI document's paths outside the JSON API: the customer's pages (docs/self-service.md),
the vendors' webhooks (docs/integrations.md) and the operations endpoints (hub.openapi assembles them).
"""

from __future__ import annotations

from typing import Any

from .openapi_api import error_answers, json_answer

__all__ = ["adapter_paths", "dashboard_paths", "operations_paths", "page_paths"]

_HTML = {"content": {"text/html": {"schema": {"type": "string"}}}}
_TEXT = {"content": {"text/plain": {"schema": {"type": "string"}}}}
_TOKEN = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
_PAGE = {"tags": ["customer pages"], "security": []}


def _tracking_paths() -> dict[str, Any]:
    """The tracking page and its live part."""
    refused = {
        "403": {"description": "the link was tampered with", **_HTML},
        "404": {"description": "no such page", **_HTML},
        "410": {"description": "the link expired or was revoked (the customer was erased)", **_HTML},
    }
    live_error = {
        "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}
    }
    return {
        "/t/{token}": {
            "parameters": [_TOKEN],
            "get": {
                **_PAGE,
                "summary": "The customer's tracking page: timeline, ETA, driver, proof of delivery, forms",
                "operationId": "trackingPage",
                "responses": {"200": {"description": "the page", **_HTML}, **refused},
            },
        },
        "/t/{token}/live": {
            "parameters": [_TOKEN],
            "get": {
                **_PAGE,
                "summary": "The live part of the tracking page, for refreshing it without a reload",
                "operationId": "trackingLive",
                "responses": {
                    "200": {
                        "description": "the part's version and HTML",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"version": {"type": "string"}, "html": {"type": "string"}},
                                }
                            }
                        },
                    },
                    "403": {"description": "the link was tampered with", **live_error},
                    "404": {"description": "no such page", **live_error},
                    "410": {"description": "the link expired or was revoked", **live_error},
                },
            },
        },
    }


def _tracking_form_paths() -> dict[str, Any]:
    """The tracking page's forms."""
    refused = {
        "403": {"description": "the link was tampered with", **_HTML},
        "404": {"description": "no such page", **_HTML},
        "410": {"description": "the link expired or was revoked (the customer was erased)", **_HTML},
    }
    form = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
    return {
        "/t/{token}/{action}": {
            "parameters": [
                _TOKEN,
                {
                    "name": "action",
                    "in": "path",
                    "required": True,
                    "schema": {"enum": ["reschedule", "instructions", "feedback", "preferences"]},
                },
            ],
            "post": {
                **_PAGE,
                "summary": "A form of the tracking page (CSRF-protected); back to the page on success",
                "operationId": "trackingAction",
                "requestBody": form,
                "responses": {
                    "303": {"description": "done; the page again"},
                    **refused,
                    "404": {
                        "description": "no such page, or no such action (the API's JSON error)",
                        "content": {**_HTML["content"], **error_answers(404)["404"]["content"]},
                    },
                    "403": {"description": "the link was tampered with, or the form's CSRF token is wrong", **_HTML},
                    "400": {"description": "the body cannot be read (bad encoding or an unknown charset)", **_HTML},
                    "413": {"description": "the form is larger than the limit", **_HTML},
                    "415": {"description": "the body is not an url-encoded form", **_HTML},
                    "422": {
                        "description": "the form's values are invalid (or a rating before delivery); the page with "
                        "the errors",
                        **_HTML,
                    },
                },
            },
        },
    }


def page_paths() -> dict[str, Any]:
    """The customer's pages (HTML for browsers, reached by signed links), after this document's own path."""
    return {
        **operations_paths("/openapi.json"),
        **_tracking_paths(),
        **_tracking_form_paths(),
        **dashboard_paths(),
        "/u/{token}": {
            "parameters": [_TOKEN],
            "get": {
                **_PAGE,
                "summary": "One-click e-mail unsubscribe: the confirmation page",
                "operationId": "unsubscribePage",
                "responses": {"200": {"description": "the page", **_HTML}, "404": {"description": "bad link", **_HTML}},
            },
            "post": {
                **_PAGE,
                "summary": "One-click e-mail unsubscribe (RFC 8058)",
                "operationId": "unsubscribe",
                "responses": {
                    "200": {"description": "unsubscribed", **_HTML},
                    "404": {"description": "bad link", **_HTML},
                },
            },
        },
    }


def adapter_paths() -> dict[str, Any]:
    """Vendors' webhooks."""
    any_json = {"required": True, "content": {"application/json": {"schema": {}}}}
    answers = {
        "200": json_answer("AdapterAnswer", "acknowledged: ignored (unmapped status, no delivery id) or an opt-out"),
        "202": json_answer("AdapterAnswer", "mapped and queued (accepted, or a retry: duplicate or conflict)"),
        "401": json_answer("Error", "signature header missing or wrong"),
        "404": json_answer("Error", "adapter not configured (no secret) or no such mapping"),
        "413": json_answer("Error", "body too large"),
    }
    return {
        "/webhooks/onfleet": {
            "get": {
                "summary": "Onfleet's validation handshake: answers the check value as text",
                "operationId": "onfleetValidation",
                "security": [],
                "parameters": [{"name": "check", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "the check value", **_TEXT},
                    "400": json_answer("Error", "no check value"),
                    "404": json_answer("Error", "adapter not configured"),
                },
            },
            "post": {
                "summary": "Onfleet task webhooks (X-Onfleet-Signature: hex HMAC-SHA512 of the body)",
                "operationId": "onfleetWebhook",
                "security": [],
                "requestBody": any_json,
                "responses": dict(answers),
            },
        },
        "/webhooks/aftership": {
            "post": {
                "summary": "AfterShip tracking webhooks (aftership-hmac-sha256: base64 HMAC-SHA256 of the body)",
                "operationId": "aftershipWebhook",
                "security": [],
                "requestBody": any_json,
                "responses": dict(answers),
            }
        },
        "/webhooks/generic/{name}": {
            "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
            "post": {
                "summary": "Any JSON webhook, mapped by the named mapping in adapters.generic",
                "operationId": "genericWebhook",
                "security": [],
                "requestBody": any_json,
                "responses": dict(answers),
            },
        },
    }


def operations_paths(*names: str) -> dict[str, Any]:
    """The operations endpoints named (``/openapi.json``, ``/docs``, ``/metrics``), in that order."""
    paths = {
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "tags": ["operations"],
                "security": [],
                "responses": {"200": {"description": "the OpenAPI document", "content": {"application/json": {}}}},
            }
        },
        "/docs": {
            "get": {
                "summary": "This document as a browsable page (HTML, no script)",
                "operationId": "apiDocs",
                "tags": ["operations"],
                "security": [],
                "responses": {
                    "200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text exposition format)",
                "operationId": "metrics",
                "tags": ["operations"],
                "security": [],
                "responses": {"200": {"description": "metrics", **_TEXT}},
            }
        },
    }
    return {name: paths[name] for name in names}


_DASHBOARD = {"tags": ["operators' dashboard"], "security": []}


def _dashboard_form(summary: str, operation_id: str, responses: dict[str, Any]) -> dict[str, Any]:
    """A POST of one of the dashboard's forms, with the answers every form may get."""
    refused = {
        "400": {"description": "the form cannot be read (bad encoding or an unknown charset)", **_HTML},
        "403": {"description": "not signed in, or the form's CSRF token is missing or wrong", **_HTML},
        "413": {"description": "the form is larger than the limit", **_HTML},
        "415": {"description": "the body is not an url-encoded form", **_HTML},
    }
    form = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
    return {
        "post": {
            **_DASHBOARD,
            "summary": summary,
            "operationId": operation_id,
            "requestBody": form,
            "responses": {**refused, **responses},
        }
    }


def dashboard_paths() -> dict[str, Any]:
    """The operators' dashboard (docs/dashboard.md): HTML for browsers, a session cookie after
    signing in with an admin key; every form carries a CSRF token."""
    query = [
        {"name": "range", "in": "query", "required": False, "schema": {"enum": ["24h", "30d"]}},
        {"name": "shop", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200}},
    ]
    return {
        "/dashboard": {
            "get": {
                **_DASHBOARD,
                "summary": "The operators' dashboard; without a session, its sign-in page",
                "operationId": "dashboard",
                "parameters": query,
                "responses": {
                    "200": {"description": "the dashboard, or the sign-in page", **_HTML},
                    "400": {"description": "a query parameter is invalid (named in the page)", **_HTML},
                },
            }
        },
        "/dashboard/sign-in": _dashboard_form(
            "Sign in with an API key that has the admin scope (form fields key, csrf)",
            "dashboardSignIn",
            {
                "303": {"description": "signed in: a session cookie, and the dashboard"},
                "401": {"description": "unknown or revoked key (the sign-in page again)", **_HTML},
                "403": {"description": "the key lacks the admin scope, or the CSRF token is wrong", **_HTML},
                "429": {"description": "too many wrong keys; see Retry-After", **_HTML},
            },
        ),
        "/dashboard/sign-out": _dashboard_form(
            "End the session (form field csrf)", "dashboardSignOut", {"303": {"description": "signed out"}}
        ),
        "/dashboard/handled": _dashboard_form(
            "Mark a follow-up handled (form fields csrf, delivery_id, range, shop)",
            "dashboardMarkHandled",
            {
                "303": {"description": "marked: the dashboard again"},
                "404": {"description": "no follow-up for that delivery", **_HTML},
                "422": {"description": "delivery_id is missing or too long", **_HTML},
            },
        ),
    }
