"""The OpenAPI document's paths of the JSON API (``/v1/...``), the health probes and Twilio's
webhooks (hub.openapi assembles them); the small builders every part uses are hub.openapi_parts'.
"""

from __future__ import annotations

from typing import Any

from .openapi_deliveries import answer_paths, availability_paths, location_paths
from .openapi_feedback import feedback_paths
from .openapi_parts import error_answers, form_body, json_answer, json_body, ref

__all__ = [
    "api_paths",
    "error_answers",
    "form_body",
    "json_answer",
    "json_body",
    "ref",
    "relay_paths",
    "twilio_paths",
]


def _event_paths() -> dict[str, Any]:
    """Events in, one or a batch."""
    return {
        "/v1/events": {
            "post": {
                "summary": "Post one milestone event",
                "operationId": "postEvent",
                "requestBody": json_body("Event"),
                "responses": {
                    "202": json_answer("EventAccepted", "accepted or duplicate"),
                    **error_answers(400, 401, 403, 409, 413, 415, 422, 503),
                },
            }
        },
        "/v1/events/batch": {
            "post": {
                "summary": "Post up to api.batch_limit events",
                "operationId": "postEventBatch",
                "requestBody": json_body("Batch"),
                "responses": {
                    "202": json_answer("BatchResult", "every item accepted or duplicate"),
                    "207": json_answer("BatchResult", "some items rejected"),
                    "422": json_answer("BatchResult", "every item rejected"),
                    **error_answers(400, 401, 403, 413, 415, 503),
                },
            }
        },
    }


def _customer_paths(id_param: dict[str, Any], reveal: dict[str, Any]) -> dict[str, Any]:
    """Customers and their preferences."""
    return {
        "/v1/customers/{id}": {
            "parameters": [id_param],
            "put": {
                "summary": "Create or replace a customer's contact details",
                "operationId": "putCustomer",
                "requestBody": json_body("Contact"),
                "responses": {
                    "200": json_answer("CustomerView", "replaced"),
                    "201": json_answer("CustomerView", "created"),
                    **error_answers(400, 401, 403, 415, 422),
                },
            },
            "get": {
                "summary": "A customer (contacts masked)",
                "operationId": "getCustomer",
                "parameters": [reveal],
                "responses": {"200": json_answer("CustomerView", "the customer"), **error_answers(401, 403, 404)},
            },
            "delete": {
                "summary": "Erase a customer's personal data (needs the erase scope)",
                "operationId": "eraseCustomer",
                "responses": {"204": {"description": "erased"}, **error_answers(401, 403)},
            },
        },
        "/v1/customers/{id}/preferences": {
            "parameters": [id_param],
            "patch": {
                "summary": "Change any subset of preferences",
                "operationId": "patchPreferences",
                "requestBody": json_body("Preferences"),
                "responses": {
                    "200": json_answer("CustomerView", "updated"),
                    **error_answers(400, 401, 403, 404, 415, 422),
                },
            },
        },
    }


def _merchant_paths() -> dict[str, Any]:
    """Merchants (shops) and their identity."""
    merchant_id = {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"},
    }
    return {
        "/v1/merchants": {
            "get": {
                "summary": "Every merchant in force (registered here or in the configuration)",
                "operationId": "listMerchants",
                "responses": {"200": json_answer("MerchantList", "the merchants"), **error_answers(401, 403)},
            }
        },
        "/v1/merchants/{id}": {
            "parameters": [merchant_id],
            "put": {
                "summary": "Create or replace a merchant's identity",
                "operationId": "putMerchant",
                "requestBody": json_body("Merchant"),
                "responses": {
                    "200": json_answer("MerchantView", "replaced"),
                    "201": json_answer("MerchantView", "created"),
                    **error_answers(400, 401, 403, 415, 422),
                },
            },
            "get": {
                "summary": "A merchant",
                "operationId": "getMerchant",
                "responses": {"200": json_answer("MerchantView", "the merchant"), **error_answers(400, 401, 403, 404)},
            },
            "delete": {
                "summary": "Remove a merchant registered here (a configured one with its id applies again)",
                "operationId": "deleteMerchant",
                "responses": {
                    "204": {"description": "removed"},
                    "409": json_answer("Error", "only in the configuration (brands.merchants)"),
                    **error_answers(400, 401, 403, 404),
                },
            },
        },
    }


def _delivery_paths(id_param: dict[str, Any], reveal: dict[str, Any]) -> dict[str, Any]:
    """A delivery, and the messages of one or in a status."""
    return {
        "/v1/deliveries/{id}": {
            "get": {
                "summary": "A delivery and its milestone timeline",
                "operationId": "getDelivery",
                "parameters": [id_param, reveal],
                "responses": {"200": json_answer("DeliveryView", "the delivery"), **error_answers(401, 403, 404)},
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
                    "200": json_answer("MessageList", "newest last (by status: oldest first)"),
                    **error_answers(400, 401, 403),
                },
            }
        },
    }


def _message_paths(id_param: dict[str, Any], reveal: dict[str, Any]) -> dict[str, Any]:
    """One message, replaying dead ones, push receipts."""
    return {
        "/v1/messages/replay": {
            "post": {
                "summary": "Send dead-lettered messages again (admin); never one a provider already has",
                "operationId": "replayMessages",
                "requestBody": json_body("ReplayRequest"),
                "responses": {"202": json_answer("ReplayResult", "queued"), **error_answers(400, 401, 403, 415, 422)},
            }
        },
        "/v1/messages/{id}": {
            "get": {
                "summary": "One message with its status history",
                "operationId": "getMessage",
                "parameters": [id_param, reveal],
                "responses": {"200": json_answer("MessageView", "the message"), **error_answers(401, 403, 404)},
            }
        },
        "/v1/push/receipts": {
            "post": {
                "summary": "The app confirms a push was shown (no API key: the receipt from the push's data)",
                "operationId": "pushReceipt",
                "security": [],
                "requestBody": json_body("PushReceipt"),
                "responses": {"204": {"description": "recorded"}, **error_answers(400, 403, 404, 415, 422)},
            }
        },
    }


def _health_paths() -> dict[str, Any]:
    """Liveness and readiness."""
    return {
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


def api_paths(id_param: dict[str, Any], reveal: dict[str, Any]) -> dict[str, Any]:
    """The core API, in the document's order."""
    return {
        **_event_paths(),
        **_customer_paths(id_param, reveal),
        **_merchant_paths(),
        **_delivery_paths(id_param, reveal),
        **_message_paths(id_param, reveal),
        **feedback_paths(),
        **_health_paths(),
    }


def relay_paths(id_param: dict[str, Any], reveal: dict[str, Any]) -> dict[str, Any]:
    """Feedback, webhook deliveries, the relay and the driver app's position."""
    return {
        "/v1/feedback": {
            "get": {
                "summary": "Ratings of a driver: count and average, overall and per day",
                "operationId": "getFeedback",
                "parameters": [{"name": "driver_id", "in": "query", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": json_answer("FeedbackSummary", "the summary"), **error_answers(400, 401, 403)},
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
                "responses": {"200": json_answer("WebhookDeliveryList", "deliveries"), **error_answers(400, 401, 403)},
            }
        },
        "/v1/deliveries/{id}/relay": {
            "parameters": [id_param],
            "post": {
                "summary": "Open the masked-number relay for a delivery (idempotent)",
                "operationId": "openRelay",
                "requestBody": {"required": False, "content": {"application/json": {"schema": ref("RelayRequest")}}},
                "responses": {
                    "201": json_answer("RelaySession", "opened"),
                    "200": json_answer("RelaySession", "already open"),
                    **error_answers(400, 401, 403, 404, 409, 415, 422, 503),
                },
            },
            "get": {
                "summary": "The delivery's relay session and its interactions",
                "operationId": "getRelay",
                "parameters": [reveal],
                "responses": {"200": json_answer("RelaySession", "the session"), **error_answers(401, 403, 404)},
            },
            "delete": {
                "summary": "Close the relay session",
                "operationId": "closeRelay",
                "responses": {"204": {"description": "closed"}, **error_answers(401, 403, 404)},
            },
        },
        **location_paths(id_param),
        **availability_paths(id_param),
        **answer_paths(),
    }


def twilio_paths() -> dict[str, Any]:
    """Twilio's webhooks: inbound SMS, status callbacks, relayed calls."""
    twiml = {"content": {"application/xml": {"schema": {"type": "string"}}}}
    signed = {"403": json_answer("Error", "X-Twilio-Signature missing or wrong")}
    return {
        "/webhooks/twilio/sms": {
            "post": {
                "summary": "Inbound SMS (signed); a reply to the hub or a text to a proxy number; answered with TwiML",
                "operationId": "twilioInboundSms",
                "security": [],
                "requestBody": form_body({"MessageSid": "string", "From": "string", "To": "string", "Body": "string"}),
                "responses": {"200": {"description": "TwiML", **twiml}, **signed, **error_answers(400)},
            }
        },
        "/webhooks/twilio/status": {
            "post": {
                "summary": "Message status callback (signed)",
                "operationId": "twilioStatusCallback",
                "security": [],
                "requestBody": form_body({"MessageSid": "string", "MessageStatus": "string", "ErrorCode": "string"}),
                "responses": {
                    "204": {"description": "applied, or parked until the message is known"},
                    **signed,
                    **error_answers(400),
                },
            }
        },
        "/webhooks/twilio/voice": {
            "post": {
                "summary": "Call to a proxy number (signed); TwiML that dials the other participant or refuses",
                "operationId": "twilioVoice",
                "security": [],
                "requestBody": form_body({"CallSid": "string", "From": "string", "To": "string"}),
                "responses": {"200": {"description": "TwiML", **twiml}, **signed},
            }
        },
        "/webhooks/twilio/voice/status": {
            "post": {
                "summary": "Outcome of a relayed call (Dial action; signed)",
                "operationId": "twilioVoiceStatus",
                "security": [],
                "requestBody": form_body(
                    {"CallSid": "string", "DialCallStatus": "string", "DialCallDuration": "string"}
                ),
                "responses": {"200": {"description": "TwiML hang-up", **twiml}, **signed},
            }
        },
    }
