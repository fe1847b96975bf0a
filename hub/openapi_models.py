"""The models of the OpenAPI document (hub.openapi) that only describe answers: the shapes the
handlers write by hand, as pydantic models so the document's schemas come from one generator.
Requests are described by the very models that validate them (``Event``, ``Contact``,
``Preferences``...), listed with these in ``MODELS``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from preferences import Contact, Preferences

from .api_answers import PushAnswer, PushAnswerResult
from .api_availability import AvailabilityAnswer, AvailabilityQuery, CustomerAvailability
from .location import LocationReport
from .merchants import Merchant
from .schema import Event, PushReceipt, ReplayRequest

__all__ = ["MODELS"]


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
    whatsapp: str | None = Field(None, description="WhatsApp number (E.164) when not the phone; masked like phone")


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
    channel: Literal["sms", "email", "push", "whatsapp"] | str
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
    merchant_id: str | None = None
    eta: dict[str, str] | None = None
    driver: dict[str, Any] | None = None
    timeline: list[TimelineEntry]
    destination: dict[str, float] | None = Field(None, description="the address's coordinates, when events give them")


class LocationAnswer(BaseModel):
    delivery_id: str
    status: Literal["stored", "ignored"]
    reason: Literal["older", "expired"] | None = Field(
        None, description="older: a newer position is stored; expired: taken longer ago than positions are kept"
    )
    message: str | None = None


class MerchantView(BaseModel):
    id: str
    name: str
    email_from: str | None = None
    reply_to: str | None = None
    sms_sender: str | None = None
    logo_url: str | None = None
    brand_color: str | None = None
    support_url: str | None = None
    support_phone: str | None = None
    whatsapp_templates: dict[str, dict[str, str]] | None = None
    source: Literal["api", "config"] = Field(description="registered through the API, or listed in the configuration")


class MerchantList(BaseModel):
    merchants: list[MerchantView]


# Every model the document's components describe (requests and answers).
MODELS: list[type[BaseModel]] = [
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
    Merchant,
    MerchantView,
    MerchantList,
    LocationReport,
    LocationAnswer,
    CustomerAvailability,
    AvailabilityQuery,
    AvailabilityAnswer,
    PushAnswer,
    PushAnswerResult,
]
