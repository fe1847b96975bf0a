"""The one interface every channel adapter implements, and its result type.

Adapters know nothing about events or deliveries: they take an ``Outbound`` (already rendered)
and return a ``SendResult``. Outcomes are values, not exceptions:

- ``accepted``: the provider took the message (``provider_id`` set);
- ``transient``: try again later (timeouts, 429, 5xx, refused connections; ``retry_after``
  when the provider said how long to wait);
- ``permanent``: retrying cannot help (invalid number, unregistered token, hard bounce);
  ``contact_invalid`` says the contact itself is bad and should be marked;
- ``in_doubt``: the request may have reached the provider, but its answer was lost (a timeout
  or a dropped connection after the request was sent). Sending again could deliver the message
  twice. Failures where the provider surely has nothing (a refused connection, an error answer)
  are ``transient``, never ``in_doubt``.

What the hub does with an ``in_doubt`` send is the channel's ``in_doubt`` policy
(``InDoubtPolicy``): ``RECONCILE`` asks the provider (``Channel.reconcile``) before sending
again; ``UNKNOWN`` records the message ``unknown`` and never sends it again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = ["Channel", "InDoubtPolicy", "Outbound", "SendResult"]

Outcome = Literal["accepted", "transient", "permanent", "in_doubt"]


class InDoubtPolicy(enum.Enum):
    """What the hub does with a send whose answer was lost (see the module docstring)."""

    RECONCILE = "reconcile"  # look the message up at the provider; send again only if it is not there
    UNKNOWN = "unknown"  # no reliable lookup: record ``unknown``, never send again


@dataclass(frozen=True)
class Outbound:
    message_id: str
    channel: Literal["sms", "email", "push", "whatsapp"]
    to: str  # E.164 phone, e-mail address or push token
    text: str  # SMS body, push body or e-mail plain text
    subject: str = ""  # e-mail subject or push title
    html: str = ""
    data: dict[str, str] = field(default_factory=dict)  # push data payload
    content_sid: str | None = None  # WhatsApp: send this approved Content template instead of ``text``
    content_variables: str | None = None  # WhatsApp: the template's variables, JSON {"1": ...}
    collapse_key: str | None = None  # push: a newer message with this key replaces older ones
    unsubscribe_url: str | None = None  # e-mail List-Unsubscribe
    locale: str = "en"
    sender: str | None = None  # SMS: send from this number (relay forwarding) instead of the default
    media_urls: tuple[str, ...] = ()  # SMS: MMS media to pass on
    # A shop's identity (hub.merchants), None: the hub's own.
    brand_sender: str | None = None  # SMS: the shop's sender (alphanumeric id or number), status callbacks kept
    email_from: str | None = None  # e-mail: From header ("Name <address>"); the envelope stays the hub's
    reply_to: str | None = None  # e-mail: Reply-To address


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    provider_id: str | None = None
    reason: str | None = None
    error_code: str | None = None
    retry_after: float | None = None
    contact_invalid: bool = False

    @classmethod
    def accepted(cls, provider_id: str) -> SendResult:
        return cls("accepted", provider_id=provider_id)

    @classmethod
    def transient(cls, reason: str, *, code: str | None = None, retry_after: float | None = None) -> SendResult:
        return cls("transient", reason=reason, error_code=code, retry_after=retry_after)

    @classmethod
    def permanent(cls, reason: str, *, code: str | None = None, contact_invalid: bool = False) -> SendResult:
        return cls("permanent", reason=reason, error_code=code, contact_invalid=contact_invalid)

    @classmethod
    def in_doubt(cls, reason: str, *, code: str | None = None) -> SendResult:
        return cls("in_doubt", reason=reason, error_code=code)


class Channel(Protocol):
    name: str
    in_doubt: InDoubtPolicy

    async def send(self, message: Outbound) -> SendResult: ...

    async def reconcile(self, message: Outbound, since: float) -> SendResult:
        """After an ``in_doubt`` send of ``message``: ``accepted`` (with the provider's id) when
        the provider has it, ``transient`` when it surely has not (safe to send again),
        ``in_doubt`` when it cannot tell. ``since``: no copy of the message was made before this
        time (Unix seconds). Only channels whose policy is ``RECONCILE`` are asked."""
        ...

    async def close(self) -> None: ...
