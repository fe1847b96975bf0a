"""One message on its way: what it is (``Spec``), what every message of its event shares
(``Send``), its id, and its own jobs (``Scheduler``).

A message that must wait (quiet hours, collapsing, rate limits, retries, escalation) gets a job of
its own (``send_message``, id ``msg:{message_id}:{due_ms}``), deferred by the time it waits; the
job re-checks everything (hub.retries), so a message held overnight is dropped if the parcel was
delivered meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from preferences import CustomerRecord

from . import jobs
from .config import Settings
from .config_policy import QuietWindow
from .jobs import Enqueue, MessageJob, MessageJobKind
from .policy import customer_timezone, expires_at, quiet_window
from .records import MessageRecord
from .render import Rendered
from .schema import occurred_ms_of

__all__ = ["IN_DOUBT", "Scheduler", "Send", "SendInProgress", "Spec", "iso", "job_payload", "message_id"]

# Spec.reason of a message's retry after a send whose answer was lost: it asks the provider
# before sending again (see hub.dispatch).
IN_DOUBT = "in_doubt"


class SendInProgress(Exception):
    """A message is ``sending`` under another handler's lease; its job should run again in
    ``retry_in`` seconds, when the send has settled or the lease has run out."""

    def __init__(self, message_id: str, retry_in: float) -> None:
        super().__init__(f"message {message_id} is being sent elsewhere; look again in {retry_in:.0f} s")
        self.message_id = message_id
        self.retry_in = retry_in


def message_id(source: str, event_id: str, channel: str, address: str) -> str:
    """Deterministic, so a retried or re-delivered event finds the messages it already has."""
    digest = hashlib.sha256(f"{source}\x1f{event_id}\x1f{channel}\x1f{address}".encode()).hexdigest()
    return f"m_{digest[:24]}"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Spec:
    """One message to send (JSON-safe: it travels in jobs)."""

    channel: str
    address: str
    via_fallback: bool = False
    fallback_of: str = ""
    reason: str = ""  # "escalation": an SMS standing in for an unconfirmed push; IN_DOUBT

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Spec:
        return cls(
            str(raw["channel"]),
            str(raw["address"]),
            bool(raw.get("via_fallback")),
            str(raw.get("fallback_of", "")),
            str(raw.get("reason", "")),
        )


@dataclass
class Send:
    """What every message of one event shares (built once per event, or per message job)."""

    source: str
    event: dict[str, Any]
    customer: CustomerRecord
    delivery: dict[str, Any]
    locale: str
    timezone: str
    quiet: QuietWindow | None
    expires: float | None
    stopped: frozenset[str]
    driver_contact: str | None = None
    used: set[str] = field(default_factory=set)  # channels this event already has messages on
    rendered: Rendered | None = None  # the parts of the channels in ``rendered_for``
    rendered_for: set[str] = field(default_factory=set)
    context: dict[str, Any] | None = None  # the templates' context, built once
    link: str = ""  # the tracking page's URL, once rendered
    render_error: str | None = None
    # The event's messages are sent concurrently: the first to render does it for all of them.
    render_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False, compare=False)
    prompt: dict[str, Any] | None = None
    prompt_built: bool = False

    @property
    def milestone(self) -> str:
        return str(self.event["type"])

    @property
    def ids(self) -> dict[str, str]:
        return {"event_id": self.event["event_id"], "delivery_id": self.delivery["id"], "source": self.source}

    @classmethod
    def of(
        cls,
        settings: Settings,
        source: str,
        event: dict[str, Any],
        customer: CustomerRecord,
        delivery: dict[str, Any],
        locale: str,
        stopped: frozenset[str],
        driver_contact: str | None = None,
    ) -> Send:
        """The event's shared part, with the customer's time zone, quiet hours and the event's
        expiry worked out under the delivery policy."""
        cfg, prefs = settings.policy, customer.prefs
        tz = customer_timezone(prefs, customer.timezone, customer.phone, cfg, settings.default_timezone)
        eta = event["delivery"].get("eta") or delivery.get("eta") or {}
        eta_end = occurred_ms_of(eta["end"]) / 1000 if eta.get("end") else None
        occurred = occurred_ms_of(event["occurred_at"]) / 1000
        return cls(
            source=source,
            event=event,
            customer=customer,
            delivery=delivery,
            locale=locale,
            timezone=tz,
            quiet=quiet_window(prefs, customer.phone, cfg),
            expires=expires_at(event["type"], occurred, eta_end, cfg),
            stopped=stopped,
            driver_contact=driver_contact,
        )

    def message_id(self, spec: Spec) -> str:
        return message_id(self.source, self.event["event_id"], spec.channel, spec.address)

    def record(self, spec: Spec) -> MessageRecord:
        """The log's record of the message ``spec`` describes."""
        return MessageRecord(
            id=self.message_id(spec),
            event_id=self.event["event_id"],
            source=self.source,
            delivery_id=self.delivery["id"],
            customer_id=self.customer.id,
            milestone=self.milestone,
            channel=spec.channel,
            to=spec.address,
            template=f"{self.locale}/{self.milestone}",
            locale=self.locale,
            via_fallback=spec.via_fallback,
            fallback_of=spec.fallback_of,
        )


def job_payload(send: Send, spec: Spec) -> str:
    """What a message's own job (a retry, a sweep, a replay) needs to run it again: kept on its record."""
    return json.dumps({"source": send.source, "event": send.event, "spec": asdict(spec)})


class Scheduler:
    """Queues a message's own jobs (``send_message``) through arq, on the policy clock."""

    def __init__(self, enqueue: Enqueue | None, clock: Callable[[], float] = time.time) -> None:
        self.enqueue = enqueue
        self.clock = clock

    async def schedule(self, kind: MessageJobKind, send: Send, spec: Spec, due_ms: int, suffix: str = "") -> None:
        """A job of the message's own at ``due_ms`` (policy clock), deferred by the time left."""
        job = MessageJob(send.source, send.event, asdict(spec), due_ms, kind)
        job_id = jobs.message_job_id(send.message_id(spec), due_ms, *([suffix] if suffix else []))
        await self.later(job, job_id=job_id, defer_by=max(0.0, due_ms / 1000 - self.clock()))

    async def later(self, job: MessageJob, *, job_id: str, defer_by: float | None = None) -> bool:
        """Queue ``job`` under ``job_id`` (once); False when that job is queued already."""
        if self.enqueue is None:
            raise RuntimeError("this runtime cannot schedule jobs (no queue)")
        return await jobs.send_later(self.enqueue, job, job_id=job_id, defer_by=defer_by)
