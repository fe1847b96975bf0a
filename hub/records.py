"""What the message log holds, as values: a message's record, its statuses, the outcome of a
claim, and the write of an outcome. ``hub.store`` turns Redis answers into these once, at the
boundary; nothing above it parses a script's reply.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import keys
from .clock import now_iso
from .masking import mask_numbers

__all__ = [
    "CLAIMED",
    "FRESH",
    "PENDING",
    "TOLD",
    "Claim",
    "Claimed",
    "Found",
    "Gated",
    "Limited",
    "MessageRecord",
    "OutcomeWrite",
    "decode_delivery",
    "decode_message",
    "now_iso",
    "now_ms",
    "pairs",
    "parse_claim",
]

# Statuses from which a message may still change: it waits (deferred), failed transiently and
# will retry, or is being replayed. A missing record may always be created. The event's own job
# takes only new or deferred messages (FRESH): a transient one belongs to its retry job.
PENDING = frozenset({"transient", "deferred", "replaying"})
FRESH = frozenset({"deferred"})
# Statuses upstream hears of (``message.status``): the dispatcher's outcomes and the provider's reports.
TOLD = frozenset({"accepted", "failed", "dead", "unknown", "expired", "sent", "delivered", "undelivered", "read"})


@dataclass(frozen=True)
class Claimed:
    """The change was made (for ``sending``: the caller may send now)."""


@dataclass(frozen=True)
class Limited:
    """The customer's hourly limit for the channel is reached; a slot frees at ``until_ms``."""

    until_ms: int


@dataclass(frozen=True)
class Gated:
    """The send gate stopped the message (it is ``skipped`` now), for ``reason``."""

    reason: str


@dataclass(frozen=True)
class Found:
    """Nothing changed: the message is in ``status``, which does not allow the change."""

    status: str


Claim = Claimed | Limited | Gated | Found
CLAIMED = Claimed()


def parse_claim(reply: str) -> Claim:
    """The reply of lua_log.CLAIM_MESSAGE as a value."""
    if reply == "claimed":
        return CLAIMED
    if reply.startswith("gated:"):
        return Gated(reply.removeprefix("gated:"))
    if reply.startswith("limited:"):
        return Limited(int(reply.removeprefix("limited:")))
    return Found(reply)


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


# Fields an outcome clears: a sent message keeps no error or retry payload; a failed or unknown
# one no retry payload.
_CLEARS = {"accepted": ("error", "error_code", "job"), "failed": ("job",), "unknown": ("job",)}


@dataclass(frozen=True)
class OutcomeWrite:
    """One outcome write: the record's fields, its history entry, the status index score ('' when
    the status is not indexed) and the fields it clears."""

    fields: dict[str, str]
    entry: str
    score: str
    drop: list[str]

    @classmethod
    def of(
        cls,
        message_id: str,
        status: str,
        provider_id: str | None,
        error: str | None,
        error_code: str | None,
        extra: dict[str, str] | None,
        due_ms: int | None,
        at: str,
    ) -> OutcomeWrite:
        fields = {"status": status, "updated_at": at, **(extra or {})}
        if provider_id:
            fields["provider_id"] = provider_id
        if error is not None:
            fields["error"] = mask_numbers(error)
        if error_code is not None:
            fields["error_code"] = error_code
        if due_ms is not None:
            fields["due_at"] = str(due_ms)
        entry: dict[str, Any] = {"status": status, "at": at}
        if error:
            entry["detail"] = mask_numbers(error)
        score = ""
        if status in keys.INDEXED_STATUSES:
            score = str(now_ms() if due_ms is None else due_ms)
        return cls(fields, json.dumps(entry), score, list(_CLEARS.get(status, ())))


@dataclass(frozen=True)
class MessageRecord:
    """What the log stores about one message before it is sent."""

    id: str
    event_id: str
    source: str
    delivery_id: str
    customer_id: str
    milestone: str
    channel: str
    to: str
    template: str
    locale: str
    via_fallback: bool = False
    fallback_of: str = ""  # the message this one stands in for (fallback, escalation)

    @classmethod
    def from_fields(cls, raw: Mapping[str, Any]) -> MessageRecord:
        """A record rebuilt from the log (a stored hash or a listed message)."""

        def text(name: str) -> str:
            return str(raw.get(name) or "")

        return cls(
            id=text("id"),
            event_id=text("event_id"),
            source=text("source"),
            delivery_id=text("delivery_id"),
            customer_id=text("customer_id"),
            milestone=text("milestone"),
            channel=text("channel"),
            to=text("to"),
            template=text("template"),
            locale=text("locale"),
            via_fallback=raw.get("via_fallback") in (True, "1"),
            fallback_of=text("fallback_of"),
        )

    def fields(self) -> dict[str, str]:
        extra = {"fallback_of": self.fallback_of} if self.fallback_of else {}
        return {
            **extra,
            "id": self.id,
            "event_id": self.event_id,
            "source": self.source,
            "delivery_id": self.delivery_id,
            "customer_id": self.customer_id,
            "milestone": self.milestone,
            "channel": self.channel,
            "to": self.to,
            "template": self.template,
            "locale": self.locale,
            "via_fallback": "1" if self.via_fallback else "0",
        }


def pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def decode_delivery(delivery_id: str, raw: dict[str, str]) -> dict[str, Any] | None:
    if not raw:
        return None
    out: dict[str, Any] = {"id": delivery_id}
    for name, value in raw.items():
        if name in ("eta", "driver", "reschedule_requested", "instructions", "slots", "destination"):
            out[name] = json.loads(value)
        elif name == "terminal":
            out[name] = value == "1"
        elif name not in ("last_ms", "last_seq"):
            out[name] = value
    return out


def decode_message(raw: dict[str, str], history: list[str]) -> dict[str, Any]:
    # job: the payload a retry, sweep or replay needs; claimed_ms, claim, prior: the sending lease,
    # its holder and the status it replaced. Internal.
    out: dict[str, Any] = {k: v for k, v in raw.items() if k not in ("job", "claimed_ms", "claim", "prior")}
    out.setdefault("to", "")  # removed by an erasure
    out["via_fallback"] = raw.get("via_fallback") == "1"
    if raw.get("due_at"):
        out["due_at"] = datetime.fromtimestamp(int(raw["due_at"]) / 1000, UTC).isoformat(timespec="seconds")
    out["attempts"] = int(raw.get("attempts", "0"))
    out["history"] = [json.loads(h) for h in history]
    return out
