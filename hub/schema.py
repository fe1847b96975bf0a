"""The public event schema: validation of what upstream systems post.

``parse_event(payload, region)`` returns a normalized ``Event`` or raises ``EventInvalid`` whose
``fields`` map dotted field paths to messages, e.g. ``{"customer.phone": "not a valid phone
number for region DE"}``. The normalized form (``Event.to_job()``) is what the queue carries.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from preferences.model import Contact
from preferences.validation import check_phone

from .merchants import MERCHANT_ID
from .vocabulary import MILESTONES, Milestone, ReasonCode

__all__ = ["TERMINAL", "Event", "EventInvalid", "PushReceipt", "ReplayRequest", "parse_event", "validation_fields"]

TERMINAL = frozenset({"delivered", "returned"})
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]*$"


class EventInvalid(Exception):
    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in fields.items()))
        self.fields = fields


class _Edge(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


def _plausible(value: datetime) -> datetime:
    if not 2000 <= value.year <= 2100:
        raise ValueError("timestamp must be between the years 2000 and 2100")
    return value


# A timestamp with a UTC offset, in a range every component (and every time zone) can handle.
Timestamp = Annotated[AwareDatetime, AfterValidator(_plausible)]


class Window(_Edge):
    start: Timestamp
    end: Timestamp

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.end < self.start:
            raise ValueError("end is before start")
        return self


class Slot(Window):
    id: str = Field(min_length=1, max_length=64)


class Geo(_Edge):
    """A point (WGS 84 degrees): the delivery address's coordinates, for the tracking page's map."""

    lat: float = Field(ge=-90, le=90, strict=True)
    lon: float = Field(ge=-180, le=180, strict=True)


class Delivery(_Edge):
    id: str = Field(min_length=1, max_length=128, pattern=_ID)
    tracking_code: str | None = Field(None, max_length=64)
    merchant: str | None = Field(None, max_length=120)
    address: str | None = Field(None, max_length=300)
    eta: Window | None = None
    # The shop (hub.merchants); an id no shop has is no error: the hub's own identity applies.
    merchant_id: str | None = Field(None, max_length=64, pattern=MERCHANT_ID)
    destination: Geo | None = None
    # The area the customer's availability is pooled in (hub.availability): a postcode or zone.
    area: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9 _.:/-]*$")


class Customer(Contact):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)
    id: str = Field(min_length=1, max_length=128, pattern=_ID)


class Driver(_Edge):
    id: str = Field(min_length=1, max_length=128, pattern=_ID)
    name: str | None = Field(None, max_length=200)
    phone: str | None = Field(None, max_length=40)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None, info: ValidationInfo) -> str | None:
        from preferences.model import region_of

        return None if value is None else check_phone(value, region_of(info))


class ProofOfDelivery(_Edge):
    photo_url: str | None = Field(None, max_length=2000, pattern=r"^https?://")
    signature: bool | str | None = None
    recipient: str | None = Field(None, max_length=200)
    place: str | None = Field(None, max_length=200)


class Pickup(_Edge):
    name: str = Field(min_length=1, max_length=200)
    address: str | None = Field(None, max_length=300)
    hours: str | None = Field(None, max_length=200)
    code: str | None = Field(None, max_length=64)
    until: Timestamp | None = None


class EventData(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)
    reschedule_slots: list[Slot] | None = Field(None, max_length=9)
    minutes: int | None = Field(None, ge=0, le=24 * 60)
    reason: str | None = Field(None, max_length=300)
    # Shown in the customer's language instead of ``reason`` (kept for upstream and the timeline).
    reason_code: ReasonCode | None = None
    kind: str | None = Field(None, max_length=40)
    next_attempt: Window | None = None
    pod: ProofOfDelivery | None = None
    pickup: Pickup | None = None


class Event(_Edge):
    event_id: str = Field(min_length=1, max_length=128, pattern=_ID)
    type: Milestone
    occurred_at: Timestamp
    delivery: Delivery
    customer: Customer
    driver: Driver | None = None
    data: EventData = Field(default_factory=lambda: EventData())

    @field_validator("occurred_at", mode="before")
    @classmethod
    def _offset_required(cls, value: Any) -> Any:
        if isinstance(value, str) and value and not _has_offset(value):
            raise ValueError("timestamp needs a UTC offset, e.g. 2026-11-24T08:05:00+01:00")
        return value

    def to_job(self) -> dict[str, Any]:
        """The normalized, JSON-safe form carried by the queue (unset fields left out)."""
        return self.model_dump(mode="json", exclude_none=True)

    def digest(self) -> str:
        body = json.dumps(self.to_job(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(body.encode()).hexdigest()[:32]


def _has_offset(value: str) -> bool:
    tail = value[10:] if len(value) > 10 else ""
    return tail.endswith(("Z", "z")) or "+" in tail or (tail.count("-") >= 1 and "T" in value.upper())


def validation_fields(error: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for err in error.errors():
        path = ".".join(str(p) for p in err["loc"]) or "body"
        msg = err["msg"]
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "literal_error" and path == "type":
            msg = f"unknown event type; expected one of {', '.join(MILESTONES)}"
        elif err["type"] == "timezone_aware":
            msg = "timestamp needs a UTC offset, e.g. 2026-11-24T08:05:00+01:00"
        fields.setdefault(path, msg)
    return fields


def parse_event(payload: Any, region: str) -> Event:
    if not isinstance(payload, dict):
        raise EventInvalid({"body": "an event must be a JSON object"})
    try:
        return Event.model_validate(payload, context={"region": region})
    except ValidationError as e:
        raise EventInvalid(validation_fields(e)) from e


def occurred_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def occurred_ms_of(value: str) -> int:
    return occurred_ms(datetime.fromisoformat(value))


class ReplayRequest(BaseModel):
    """Dead-lettered messages to send again: by id, or every one dead-lettered since a time."""

    model_config = ConfigDict(extra="forbid")
    ids: list[str] = Field(default_factory=list, max_length=1000, description="message ids")
    since: AwareDatetime | None = Field(None, description="every message dead-lettered since (RFC 3339)")

    @model_validator(mode="after")
    def _something(self) -> ReplayRequest:
        if not self.ids and self.since is None:
            raise ValueError("give ids or since")
        return self


class PushReceipt(BaseModel):
    """The app's confirmation that a push was shown (``message_id`` and ``receipt`` from its data)."""

    model_config = ConfigDict(extra="forbid")
    message_id: str = Field(min_length=1, max_length=64)
    receipt: str = Field(min_length=1, max_length=64)
