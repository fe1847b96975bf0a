"""The OpenAPI 3.1 document served at ``/openapi.json``.

Request bodies come from the same pydantic models that validate requests (``Event``,
``Contact``, ``Preferences``), so the document cannot drift from the validation. Response shapes
are small models below, used only for the document.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from preferences import Contact, Preferences

from .schema import Event, PushReceipt, ReplayRequest

__all__ = ["openapi_document"]


class ErrorBody(BaseModel):
    code: str = Field(description="machine-readable error code, e.g. validation_failed")
    message: str
    fields: dict[str, str] | None = Field(None, description="dotted field path -> what is wrong")


class Error(BaseModel):
    error: ErrorBody


class EventAccepted(BaseModel):
    event_id: str
    status: Literal["accepted", "duplicate"]


class BatchItem(BaseModel):
    index: int
    event_id: str | None
    status: Literal["accepted", "duplicate", "rejected", "conflict"]
    error: ErrorBody | None = None


class BatchSummary(BaseModel):
    accepted: int
    duplicate: int
    rejected: int


class BatchResult(BaseModel):
    results: list[BatchItem]
    summary: BatchSummary


class Batch(BaseModel):
    events: list[dict[str, Any]] = Field(description="up to api.batch_limit events (see Event)")


class CustomerView(BaseModel):
    id: str
    name: str | None
    phone: str | None = Field(description="E.164, masked unless ?reveal=true with an admin key")
    email: str | None
    push_tokens: list[str]
    locale: str | None
    timezone: str | None
    preferences: dict[str, Any]
    erased: bool
    updated_at: str | None
    invalid: dict[str, str] = Field(description="phone/email the provider rejected, with the reason")


class StatusChange(BaseModel):
    status: str
    at: str
    detail: str | None = None


class MessageView(BaseModel):
    id: str
    event_id: str
    source: str
    delivery_id: str
    customer_id: str
    milestone: str
    channel: Literal["sms", "email", "push"] | str
    to: str | None
    template: str
    locale: str
    status: str = Field(
        description="deferred | sending | accepted | sent | delivered | undelivered | failed | transient | dead"
        " | replaying | unknown | superseded | expired | skipped"
    )
    provider_id: str | None = None
    error: str | None = None
    error_code: str | None = None
    attempts: int
    via_fallback: bool
    fallback_of: str | None = Field(None, description="the message this one stands in for (fallback, escalation)")
    due_at: str | None = Field(None, description="when a deferred message or its next try is due")
    history: list[StatusChange]


class ReplayResult(BaseModel):
    queued: list[str] = Field(description="message ids queued to be sent again")
    not_dead: list[str] = Field(description="ids that were not dead (sent, already replayed, unknown)")


class MessageList(BaseModel):
    messages: list[MessageView]


class TimelineEntry(BaseModel):
    event_id: str
    type: str
    occurred_at: str
    source: str
    received_at: str | None = None


class FeedbackDay(BaseModel):
    day: str
    count: int
    average: float


class FeedbackSummary(BaseModel):
    driver_id: str
    count: int
    average: float | None
    days: list[FeedbackDay]


class WebhookDelivery(BaseModel):
    id: str
    url: str
    type: str
    status: Literal["pending", "retrying", "delivered", "dead"]
    attempts: int
    created_at: str
    delivered_at: str | None = None
    last_error: str | None = None
    body: dict[str, Any] = Field(description="what was (or will be) POSTed: {id, type, created_at, data}")


class WebhookDeliveryList(BaseModel):
    deliveries: list[WebhookDelivery]


class RelayParticipant(BaseModel):
    number: str = Field(description="the participant's real number, masked unless ?reveal=true with an admin key")
    proxy_number: str = Field(description="the number this participant dials to reach the other")
    forwarding_stopped: bool


class RelaySession(BaseModel):
    id: str
    delivery_id: str
    status: Literal["open", "closed", "expired"]
    created_at: str | None
    expires_at: str
    closed_at: str | None
    participants: dict[str, RelayParticipant]
    interactions: list[dict[str, Any]] | None = None


class RelayRequest(BaseModel):
    driver_phone: str | None = Field(None, description="default: the delivery's driver phone")
    customer_phone: str | None = Field(None, description="default: the delivery's customer's phone")


class AdapterAnswer(BaseModel):
    status: Literal["accepted", "duplicate", "conflict", "ignored", "opted_out"] = Field(
        description="accepted, duplicate or conflict: queued like POST /v1/events; ignored: nothing for the hub"
        " (logged); opted_out: the recipient's phone no longer gets SMS"
    )
    event_id: str | None = Field(None, description="the event's id, derived from the vendor's payload")
    type: str | None = Field(None, description="the milestone the webhook was mapped onto")
    reason: str | None = Field(None, description="why it was ignored")
    fields: dict[str, str] | None = Field(None, description="what made the mapped event invalid")
    channel: str | None = None


class DeliveryView(BaseModel):
    id: str
    customer_id: str | None = None
    status: str
    terminal: bool
    tracking_code: str | None = None
    merchant: str | None = None
    eta: dict[str, str] | None = None
    driver: dict[str, Any] | None = None
    timeline: list[TimelineEntry]


_MODELS: list[type[BaseModel]] = [
    Event,
    Contact,
    Preferences,
    Error,
    EventAccepted,
    Batch,
    BatchResult,
    CustomerView,
    MessageView,
    MessageList,
    DeliveryView,
    FeedbackSummary,
    WebhookDeliveryList,
    RelaySession,
    RelayRequest,
    ReplayRequest,
    ReplayResult,
    PushReceipt,
    AdapterAnswer,
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(name)}}}


def _errors(*codes: int) -> dict[str, Any]:
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
    return {str(c): _json("Error", text[c]) for c in codes}


def _form(fields: dict[str, str]) -> dict[str, Any]:
    schema = {"type": "object", "properties": {k: {"type": v} for k, v in fields.items()}}
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def _body(name: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(name)}}}


def openapi_document(server_url: str | None = None) -> dict[str, Any]:
    _, schemas = models_json_schema([(m, "validation") for m in _MODELS], ref_template="#/components/schemas/{model}")
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
        "/v1/events": {
            "post": {
                "summary": "Post one milestone event",
                "operationId": "postEvent",
                "requestBody": _body("Event"),
                "responses": {
                    "202": _json("EventAccepted", "accepted or duplicate"),
                    **_errors(400, 401, 403, 409, 413, 415, 422, 503),
                },
            }
        },
        "/v1/events/batch": {
            "post": {
                "summary": "Post up to api.batch_limit events",
                "operationId": "postEventBatch",
                "requestBody": _body("Batch"),
                "responses": {
                    "202": _json("BatchResult", "every item accepted or duplicate"),
                    "207": _json("BatchResult", "some items rejected"),
                    "422": _json("BatchResult", "every item rejected"),
                    **_errors(400, 401, 403, 413, 415, 503),
                },
            }
        },
        "/v1/customers/{id}": {
            "parameters": [id_param],
            "put": {
                "summary": "Create or replace a customer's contact details",
                "operationId": "putCustomer",
                "requestBody": _body("Contact"),
                "responses": {
                    "200": _json("CustomerView", "replaced"),
                    "201": _json("CustomerView", "created"),
                    **_errors(400, 401, 403, 415, 422),
                },
            },
            "get": {
                "summary": "A customer (contacts masked)",
                "operationId": "getCustomer",
                "parameters": [reveal],
                "responses": {"200": _json("CustomerView", "the customer"), **_errors(401, 403, 404)},
            },
            "delete": {
                "summary": "Erase a customer's personal data (needs the erase scope)",
                "operationId": "eraseCustomer",
                "responses": {"204": {"description": "erased"}, **_errors(401, 403)},
            },
        },
        "/v1/customers/{id}/preferences": {
            "parameters": [id_param],
            "patch": {
                "summary": "Change any subset of preferences",
                "operationId": "patchPreferences",
                "requestBody": _body("Preferences"),
                "responses": {"200": _json("CustomerView", "updated"), **_errors(400, 401, 403, 404, 415, 422)},
            },
        },
        "/v1/deliveries/{id}": {
            "get": {
                "summary": "A delivery and its milestone timeline",
                "operationId": "getDelivery",
                "parameters": [id_param, reveal],
                "responses": {"200": _json("DeliveryView", "the delivery"), **_errors(401, 403, 404)},
            }
        },
        "/v1/messages": {
            "get": {
                "summary": "Messages of a delivery or customer, or all in a status (dead, unknown, deferred)",
                "operationId": "listMessages",
                "parameters": [
                    {"name": "delivery_id", "in": "query", "schema": {"type": "string"}},
                    {"name": "customer_id", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "status",
                        "in": "query",
                        "description": "alone: dead, unknown or deferred; with a filter: any status",
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "since",
                        "in": "query",
                        "description": "with status alone: entered that status since (RFC 3339)",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    reveal,
                ],
                "responses": {
                    "200": _json("MessageList", "newest last (by status: oldest first)"),
                    **_errors(400, 401, 403),
                },
            }
        },
        "/v1/messages/replay": {
            "post": {
                "summary": "Send dead-lettered messages again (admin); never one a provider already has",
                "operationId": "replayMessages",
                "requestBody": _body("ReplayRequest"),
                "responses": {"202": _json("ReplayResult", "queued"), **_errors(400, 401, 403, 415, 422)},
            }
        },
        "/v1/messages/{id}": {
            "get": {
                "summary": "One message with its status history",
                "operationId": "getMessage",
                "parameters": [id_param, reveal],
                "responses": {"200": _json("MessageView", "the message"), **_errors(401, 403, 404)},
            }
        },
        "/v1/push/receipts": {
            "post": {
                "summary": "The app confirms a push was shown (no API key: the receipt from the push's data)",
                "operationId": "pushReceipt",
                "security": [],
                "requestBody": _body("PushReceipt"),
                "responses": {"204": {"description": "recorded"}, **_errors(400, 403, 404, 415, 422)},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Alive",
                "operationId": "healthz",
                "security": [],
                "responses": {"200": {"description": "alive"}},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Redis reachable, a recent worker heartbeat (ops.ready_heartbeat_seconds) and the oldest due"
                " job younger than ops.ready_max_queue_age_seconds",
                "operationId": "readyz",
                "security": [],
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
    }
    paths.update(_two_way_paths(id_param, reveal))
    paths.update(_adapter_paths())
    paths.update(_page_paths())
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
                op["responses"].setdefault(str(code), _errors(code)[str(code)])


def _page_paths() -> dict[str, Any]:
    """The customer's pages (docs/self-service.md): HTML for browsers, reached by signed links."""
    html = {"content": {"text/html": {"schema": {"type": "string"}}}}
    token = {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}}
    refused = {
        "403": {"description": "the link was tampered with", **html},
        "404": {"description": "no such page", **html},
        "410": {"description": "the link expired or was revoked (the customer was erased)", **html},
    }
    live_error = {
        "content": {"application/json": {"schema": {"type": "object", "properties": {"error": {"type": "string"}}}}}
    }
    page = {"tags": ["customer pages"], "security": []}
    form = {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}
    return {
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "tags": ["operations"],
                "security": [],
                "responses": {"200": {"description": "the OpenAPI document", "content": {"application/json": {}}}},
            }
        },
        "/t/{token}": {
            "parameters": [token],
            "get": {
                **page,
                "summary": "The customer's tracking page: timeline, ETA, driver, proof of delivery, forms",
                "operationId": "trackingPage",
                "responses": {"200": {"description": "the page", **html}, **refused},
            },
        },
        "/t/{token}/live": {
            "parameters": [token],
            "get": {
                **page,
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
        "/t/{token}/{action}": {
            "parameters": [
                token,
                {
                    "name": "action",
                    "in": "path",
                    "required": True,
                    "schema": {"enum": ["reschedule", "instructions", "feedback", "preferences"]},
                },
            ],
            "post": {
                **page,
                "summary": "A form of the tracking page (CSRF-protected); back to the page on success",
                "operationId": "trackingAction",
                "requestBody": form,
                "responses": {
                    "303": {"description": "done; the page again"},
                    **refused,
                    "404": {
                        "description": "no such page, or no such action (the API's JSON error)",
                        "content": {**html["content"], **_errors(404)["404"]["content"]},
                    },
                    "403": {"description": "the link was tampered with, or the form's CSRF token is wrong", **html},
                    "400": {"description": "the body cannot be read (bad encoding or an unknown charset)", **html},
                    "413": {"description": "the form is larger than the limit", **html},
                    "415": {"description": "the body is not an url-encoded form", **html},
                    "422": {
                        "description": "the form's values are invalid (or a rating before delivery); the page with "
                        "the errors",
                        **html,
                    },
                },
            },
        },
        "/u/{token}": {
            "parameters": [token],
            "get": {
                **page,
                "summary": "One-click e-mail unsubscribe: the confirmation page",
                "operationId": "unsubscribePage",
                "responses": {"200": {"description": "the page", **html}, "404": {"description": "bad link", **html}},
            },
            "post": {
                **page,
                "summary": "One-click e-mail unsubscribe (RFC 8058)",
                "operationId": "unsubscribe",
                "responses": {
                    "200": {"description": "unsubscribed", **html},
                    "404": {"description": "bad link", **html},
                },
            },
        },
    }


def _adapter_paths() -> dict[str, Any]:
    """Vendors' webhooks (docs/integrations.md) and the metrics endpoint."""
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    any_json = {"required": True, "content": {"application/json": {"schema": {}}}}
    answers = {
        "200": _json("AdapterAnswer", "acknowledged: ignored (unmapped status, no delivery id) or an opt-out"),
        "202": _json("AdapterAnswer", "mapped and queued (accepted, or a retry: duplicate or conflict)"),
        "401": _json("Error", "signature header missing or wrong"),
        "404": _json("Error", "adapter not configured (no secret) or no such mapping"),
        "413": _json("Error", "body too large"),
    }
    return {
        "/webhooks/onfleet": {
            "get": {
                "summary": "Onfleet's validation handshake: answers the check value as text",
                "operationId": "onfleetValidation",
                "security": [],
                "parameters": [{"name": "check", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {
                    "200": {"description": "the check value", **text},
                    "400": _json("Error", "no check value"),
                    "404": _json("Error", "adapter not configured"),
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
                "responses": {"200": {"description": "metrics", **text}},
            }
        },
    }


def _two_way_paths(id_param: dict[str, Any], reveal: dict[str, Any]) -> dict[str, Any]:
    """Feedback, webhook deliveries, the relay and Twilio's webhooks."""
    twiml = {"content": {"application/xml": {"schema": {"type": "string"}}}}
    signed = {"403": _json("Error", "X-Twilio-Signature missing or wrong")}
    return {
        "/v1/feedback": {
            "get": {
                "summary": "Ratings of a driver: count and average, overall and per day",
                "operationId": "getFeedback",
                "parameters": [{"name": "driver_id", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json("FeedbackSummary", "the summary"), **_errors(400, 401, 403)},
            }
        },
        "/v1/webhooks/deliveries": {
            "get": {
                "summary": "Outbound webhook deliveries, newest last",
                "operationId": "listWebhookDeliveries",
                "parameters": [
                    {
                        "name": "status",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["pending", "retrying", "delivered", "dead"]},
                    },
                    {"name": "type", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                ],
                "responses": {"200": _json("WebhookDeliveryList", "deliveries"), **_errors(400, 401, 403)},
            }
        },
        "/v1/deliveries/{id}/relay": {
            "parameters": [id_param],
            "post": {
                "summary": "Open the masked-number relay for a delivery (idempotent)",
                "operationId": "openRelay",
                "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("RelayRequest")}}},
                "responses": {
                    "201": _json("RelaySession", "opened"),
                    "200": _json("RelaySession", "already open"),
                    **_errors(400, 401, 403, 404, 409, 415, 422, 503),
                },
            },
            "get": {
                "summary": "The delivery's relay session and its interactions",
                "operationId": "getRelay",
                "parameters": [reveal],
                "responses": {"200": _json("RelaySession", "the session"), **_errors(401, 403, 404)},
            },
            "delete": {
                "summary": "Close the relay session",
                "operationId": "closeRelay",
                "responses": {"204": {"description": "closed"}, **_errors(401, 403, 404)},
            },
        },
        "/webhooks/twilio/sms": {
            "post": {
                "summary": "Inbound SMS (signed); a reply to the hub or a text to a proxy number; answered with TwiML",
                "operationId": "twilioInboundSms",
                "security": [],
                "requestBody": _form({"MessageSid": "string", "From": "string", "To": "string", "Body": "string"}),
                "responses": {"200": {"description": "TwiML", **twiml}, **signed, **_errors(400)},
            }
        },
        "/webhooks/twilio/status": {
            "post": {
                "summary": "Message status callback (signed)",
                "operationId": "twilioStatusCallback",
                "security": [],
                "requestBody": _form({"MessageSid": "string", "MessageStatus": "string", "ErrorCode": "string"}),
                "responses": {
                    "204": {"description": "applied, or parked until the message is known"},
                    **signed,
                    **_errors(400),
                },
            }
        },
        "/webhooks/twilio/voice": {
            "post": {
                "summary": "Call to a proxy number (signed); TwiML that dials the other participant or refuses",
                "operationId": "twilioVoice",
                "security": [],
                "requestBody": _form({"CallSid": "string", "From": "string", "To": "string"}),
                "responses": {"200": {"description": "TwiML", **twiml}, **signed},
            }
        },
        "/webhooks/twilio/voice/status": {
            "post": {
                "summary": "Outcome of a relayed call (Dial action; signed)",
                "operationId": "twilioVoiceStatus",
                "security": [],
                "requestBody": _form({"CallSid": "string", "DialCallStatus": "string", "DialCallDuration": "string"}),
                "responses": {"200": {"description": "TwiML hang-up", **twiml}, **signed},
            }
        },
    }
