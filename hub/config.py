"""Settings: one typed object, read once at start-up.

Sources, later wins: the defaults in the models below, ``config.yaml`` (or the file named by
``HUB_CONFIG``), then environment variables. An environment variable ``HUB_<PATH>`` overrides
the setting at that path, with ``__`` between levels: ``HUB_REDIS_URL`` sets ``redis_url`` and
``HUB_TWILIO__AUTH_TOKEN`` sets ``twilio.auth_token``. Values are strings converted to the
setting's type (``HUB_WORKER__MAX_JOBS=50``, ``HUB_SMTP__START_TLS=true``); lists and mappings are
written as YAML/JSON (``HUB_FALLBACK='[sms, email]'``); an empty value means unset.
``HUB_<PATH>_FILE`` reads the value from that file instead (container and systemd secrets:
``HUB_TWILIO__AUTH_TOKEN_FILE=/run/secrets/twilio_token``), its trailing newline dropped.

A missing or wrong value fails at start-up with ``ConfigError`` naming the key.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "MILESTONES",
    "ApiKey",
    "ConfigError",
    "Milestone",
    "Settings",
    "check_secrets",
    "load_settings",
    "runs_locally",
    "weak_secrets",
]

Milestone = Literal[
    "order_confirmed",
    "shipped",
    "in_transit",
    "out_for_delivery",
    "arriving_soon",
    "eta_changed",
    "delivered",
    "delivery_failed",
    "exception",
    "rescheduled",
    "ready_for_pickup",
    "returned",
]
MILESTONES: tuple[str, ...] = get_args(Milestone)
Channel = Literal["sms", "email", "push"]
ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the key."""


class _Model(BaseModel):
    # Attribute docstrings become field descriptions (docs/configuration.md is generated).
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ApiKey(_Model):
    source: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    """Name of the upstream system this key belongs to; events are idempotent per source."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Hex SHA-256 of the key; the key itself is never stored."""
    scopes: tuple[str, ...] = ("events", "read")
    """events: post events and manage customers; read: GET views; erase: erase customers; admin:
    unmasked views and replays."""


class ApiSettings(_Model):
    host: str = "127.0.0.1"
    """Interface `hub api` binds to."""
    port: int = Field(8080, ge=0, le=65535)
    """Port `hub api` listens on."""
    max_body_bytes: int = Field(1_048_576, ge=1024)
    """Larger request bodies are refused with 413."""
    batch_limit: int = Field(1000, ge=1)
    """Most events in one POST /v1/events/batch; more is a 413."""
    keys: tuple[ApiKey, ...] = ()
    """API keys as {source, sha256, scopes} entries."""
    auth_failures_per_minute: int = Field(20, ge=1)
    """Requests with a wrong or missing API key a client may make in a minute, counted per
    presented key and per client address (see trusted_proxies); past that, those requests get 429
    with Retry-After instead of 401 until the minute is over. A valid key is never refused."""
    trusted_proxies: tuple[str, ...] = ()
    """Addresses or CIDR ranges of your reverse proxies (e.g. ["10.0.0.0/8"]). Only from these is
    X-Forwarded-For read for the client's address; from anyone else the connection's address counts."""

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        try:
            return tuple(str(ipaddress.ip_network(v.strip(), strict=False)) for v in value)
        except ValueError as e:
            raise ValueError(f"not an address or CIDR range: {e}") from e


class SenderSettings(_Model):
    name: str = "Parcelhub"
    """The company name customers see in messages."""
    help_url: str | None = None
    """Where customers get help (shown in e-mails when set)."""


class TwilioSettings(_Model):
    account_sid: str = "ACsandbox0000000000000000000000000"
    """Twilio account SID (the default only works with the sandbox)."""
    auth_token: str = "sandbox-auth-token"
    """Twilio auth token; secret, set it through HUB_TWILIO__AUTH_TOKEN. The default is refused
    unless public_url is on this machine."""
    base_url: str = "https://api.twilio.com"
    """Replaces Twilio's API origin; `hub dev` points it at the sandbox."""
    from_number: str | None = "+15005550006"
    """Sender number (E.164) when no messaging service is used."""
    messaging_service_sid: str | None = None
    """Send through this messaging service instead of from_number."""
    timeout: float = Field(10.0, gt=0)
    """Seconds before a request to Twilio counts as a transient failure."""


class SmtpSettings(_Model):
    host: str = "127.0.0.1"
    """SMTP server host."""
    port: int = Field(2525, ge=0, le=65535)
    """SMTP server port (`hub dev` uses its sink's port)."""
    username: str | None = None
    """SMTP user, if the server wants AUTH."""
    password: str | None = None
    """SMTP password; secret, set it through HUB_SMTP__PASSWORD."""
    use_tls: bool = False
    """Implicit TLS (usually port 465)."""
    start_tls: bool = False
    """STARTTLS after connecting (usually port 587)."""
    from_address: str = "Parcelhub <updates@parcelhub.example>"
    """From header; its domain also names the Message-IDs."""
    timeout: float = Field(10.0, gt=0)
    """Seconds per SMTP command before it counts as a transient failure."""
    pool_size: int = Field(8, ge=1, le=64)
    """Open SMTP connections per worker process."""


class FcmSettings(_Model):
    project_id: str = "hub-sandbox"
    """Firebase project ID."""
    base_url: str = "https://fcm.googleapis.com"
    """Replaces FCM's origin; `hub dev` points it at the sandbox."""
    credentials_file: str | None = None
    """Service-account JSON file; without it only the sandbox accepts pushes."""
    timeout: float = Field(10.0, gt=0)
    """Seconds per FCM request."""
    max_concurrency: int = Field(8, ge=1, le=256)
    """Concurrent FCM sends per worker process. FCM speaks HTTP/2 (one connection carries them
    all); over HTTP/1.1 (the sandbox) every extra connection costs CPU on each request."""


class WorkerSettings(_Model):
    queue_name: str = "hub:queue"
    """arq queue (Redis key) shared by the API and the workers."""
    max_jobs: int = Field(100, ge=1)
    """Events processed concurrently per worker process."""
    job_timeout: float = Field(60.0, gt=0)
    """Seconds one job may take; a killed worker's jobs are taken over after this plus 15 to 40 s."""
    max_tries: int = Field(6, ge=1)
    """Attempts for a message that keeps failing transiently before it is marked dead."""
    retry_base_delay: float = Field(5.0, ge=0)
    """First retry delay in seconds; it doubles with every try (with jitter)."""
    retry_max_delay: float = Field(900.0, ge=0)
    """Longest delay between two tries (seconds), unless the provider's Retry-After asks for more."""


class RetentionSettings(_Model):
    idempotency_days: int = Field(7, ge=1)
    """How long an event_id is remembered (a repeat within it is a duplicate)."""
    message_log_days: int = Field(30, ge=1)
    """How long messages and their status history are kept."""
    timeline_days: int = Field(90, ge=1)
    """How long a delivery and its timeline are kept after its last event."""


WebhookEvent = Literal[
    "message.status",
    "customer.reply",
    "delivery.reschedule_requested",
    "delivery.instructions_updated",
    "feedback.received",
    "contact.opted_out",
    "contact.opted_in",
    "relay.session.opened",
    "relay.session.closed",
    "relay.interaction",
]


class WebhookSubscription(_Model):
    url: str = Field(pattern=r"^https?://")
    """Where to POST; only configured URLs ever receive webhooks."""
    secret: str = Field(min_length=16)
    """HMAC-SHA256 key for the Hub-Signature header; secret, keep it in the environment."""
    events: tuple[WebhookEvent, ...] = ()
    """Event types to send (empty: all)."""


class WebhookSettings(_Model):
    subscriptions: tuple[WebhookSubscription, ...] = ()
    """Receivers, as {url, secret, events} entries (HUB_WEBHOOKS__SUBSCRIPTIONS='[...]')."""
    queue_name: str = "hub:webhooks"
    """arq queue for webhook deliveries, apart from events so a slow receiver never delays sending."""
    max_attempts: int = Field(24, ge=1)
    """Attempts before a delivery is dead-lettered; with the default delays the last one comes
    14 to 29 hours after the first (about a day)."""
    retry_base_delay: float = Field(10.0, ge=0)
    """First retry delay in seconds; doubles per attempt up to retry_max_delay, with jitter."""
    retry_max_delay: float = Field(7200.0, ge=0)
    """Longest delay between two attempts."""
    timeout: float = Field(10.0, gt=0)
    """Seconds a receiver gets to answer."""
    concurrency: int = Field(20, ge=1)
    """Deliveries in flight per worker process."""


class TwilioHookSettings(_Model):
    trust_forwarded: bool = False
    """Behind a proxy: validate Twilio signatures against X-Forwarded-Proto/Host instead of public_url."""


class TrackingSettings(_Model):
    link_days: int = Field(30, ge=1, le=365)
    """A tracking link works this many days after the last message that carried it."""
    poll_seconds: int = Field(15, ge=2, le=300)
    """How often an open tracking page checks for news (it works without JavaScript too)."""


class ConversationSettings(_Model):
    reschedule_hours: float = Field(24.0, gt=0)
    """How long a reschedule prompt can be answered (also ends when its first slot starts)."""
    rating_hours: float = Field(72.0, gt=0)
    """How long after delivery a rating can be given by SMS."""
    keep_days: int = Field(7, ge=1)
    """How long the last prompt is remembered (to answer late replies helpfully)."""
    unknown_number_answers: int = Field(1, ge=0)
    """Answers a number that belongs to no customer gets per unknown_number_window_hours; its
    other texts get none (no loop with an auto-responder, no SMS paid per text). 0: never answered."""
    unknown_number_window_hours: float = Field(24.0, gt=0)
    """The window of unknown_number_answers, from the first answer."""


class RelaySettings(_Model):
    pool: tuple[str, ...] = ()
    """Proxy numbers (E.164). A participant gets one from their own country when the pool has one."""
    session_ttl_minutes: float = Field(240.0, gt=0)
    """A session ends this long after its last call or text."""
    close_grace_minutes: float = Field(30.0, ge=0)
    """After `delivered` or `returned`, the session stays usable this long, then closes."""
    auto_open: bool = True
    """Open a session on `out_for_delivery` when the driver's and the customer's numbers are known."""
    max_call_seconds: int = Field(900, ge=30)
    """Time limit of a relayed call."""
    voice_language: str = "en-US"
    """Language of the spoken refusal."""
    refusal_message: str = "This number connects deliveries and is not available for your call. Goodbye."
    """What callers who are not in a live session hear."""
    dispatcher_number: str | None = None
    """Connect refused callers here instead of hanging up (E.164)."""

    @field_validator("pool")
    @classmethod
    def _e164(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from preferences.validation import check_phone

        numbers = tuple(check_phone(n, "US") for n in value)
        if len(set(numbers)) != len(numbers):
            raise ValueError("the pool lists a number twice")
        return numbers


_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"  # ASCII digits only (\d takes any script's)
QuietMode = Literal["send", "push_only", "defer"]


class QuietWindow(_Model):
    start: str = Field(pattern=_HHMM)
    """Local time quiet hours begin, 24-hour HH:MM."""
    end: str = Field(pattern=_HHMM)
    """Local time they end; earlier than start means the window crosses midnight. Equal: none."""


class PolicySettings(_Model):
    quiet_hours: QuietWindow | None = QuietWindow(start="21:00", end="08:00")
    """Quiet hours in the customer's own time zone (null: none). Customers can set their own."""
    quiet_hours_by_country: dict[str, QuietWindow] = {}
    """Quiet hours per country (ISO 3166 code of the customer's phone number), before the global ones."""
    timezone_by_country: dict[str, str] = {"US": "America/New_York", "CA": "America/Toronto", "AU": "Australia/Sydney"}
    """Time zone for customers who gave none, by their phone number's country. Countries with one
    time zone need no entry; then `default_timezone` applies."""
    quiet_spread_minutes: float = Field(20.0, ge=0, le=240)
    """Messages held by quiet hours go out spread over this many minutes after the window ends."""
    urgent: dict[Milestone, QuietMode] = {"arriving_soon": "send", "delivery_failed": "push_only"}
    """Milestones that may break quiet hours, and how: send (every channel), push_only (push now,
    other channels wait for the window to end), defer (wait like any other). Unlisted: defer."""
    ttl_minutes: dict[Milestone, float] = {
        "order_confirmed": 4320,
        "shipped": 2880,
        "in_transit": 1440,
        "out_for_delivery": 720,
        "arriving_soon": 90,
        "eta_changed": 180,
        "delivered": 2880,
        "delivery_failed": 1440,
        "exception": 1440,
        "rescheduled": 2880,
        "ready_for_pickup": 4320,
        "returned": 4320,
    }
    """How long after the event occurred its messages may still go out (minutes); later they
    are dropped as `expired`. Unlisted milestones never expire."""
    window_bound: tuple[Milestone, ...] = ("out_for_delivery", "arriving_soon", "eta_changed")
    """Milestones whose messages also expire when the delivery's ETA window has ended."""
    collapsible: tuple[Milestone, ...] = ("eta_changed",)
    """Milestones whose messages wait `collapse_seconds` so that a burst sends only the newest."""
    collapse_seconds: float = Field(120.0, ge=0)
    """The collapsing window, opened by the first such message of a delivery."""
    obsoleted_by: dict[Milestone, tuple[Milestone, ...]] = {
        "shipped": ("out_for_delivery", "delivered", "returned"),
        "in_transit": ("out_for_delivery", "arriving_soon", "delivered", "delivery_failed", "returned"),
        "out_for_delivery": ("arriving_soon", "delivered", "delivery_failed", "rescheduled", "returned"),
        "arriving_soon": ("delivered", "delivery_failed", "rescheduled", "ready_for_pickup", "returned"),
        "eta_changed": ("arriving_soon", "delivered", "delivery_failed", "rescheduled", "returned"),
        "delivery_failed": ("delivered", "returned"),
        "exception": ("delivered", "returned"),
        "rescheduled": ("delivered", "returned"),
        "ready_for_pickup": ("delivered", "returned"),
    }
    """A message that waited (quiet hours, collapsing, rate limit, retry) is dropped as
    `superseded` when a newer event of the same milestone, or of one listed here, has arrived."""
    per_customer_hour: dict[Channel, int] = {"sms": 6, "email": 10, "push": 12}
    """At most this many messages per customer and channel in any hour (0: no limit); more wait."""
    sender_rate: dict[Channel, float] = {"sms": 10.0, "email": 20.0, "push": 0.0}
    """Messages per second per sender (Twilio number or service, SMTP account, FCM project),
    shared by all workers (0: no limit)."""
    sender_max_wait: float = Field(5.0, ge=0)
    """A send waits at most this long (seconds) for its sender's turn; longer, it is rescheduled."""
    escalate_after_minutes: float | None = Field(None, gt=0)
    """Push not confirmed by the app (POST /v1/push/receipts) within this many minutes is followed
    by an SMS, for `escalate_milestones` (null: off)."""
    escalate_milestones: tuple[Milestone, ...] = ("delivery_failed", "ready_for_pickup")
    """Milestones whose unconfirmed push escalates to SMS."""

    @field_validator("timezone_by_country")
    @classmethod
    def _zones(cls, value: dict[str, str]) -> dict[str, str]:
        from preferences.validation import check_timezone

        return {country.upper(): check_timezone(tz) for country, tz in value.items()}

    @field_validator("quiet_hours_by_country")
    @classmethod
    def _countries(cls, value: dict[str, QuietWindow]) -> dict[str, QuietWindow]:
        return {country.upper(): window for country, window in value.items()}


class SandboxSettings(_Model):
    failing_numbers: dict[str, int] = {}
    """Numbers whose messages the sandbox's Twilio accepts, then reports undelivered with this error code."""
    smtp_port: int = Field(0, ge=0, le=65535)
    """Port of `hub dev`'s SMTP sink (0: a free port)."""
    invalid_numbers: tuple[str, ...] = ()
    """Numbers the sandbox's Twilio rejects as invalid (error 21211)."""
    unregistered_tokens: tuple[str, ...] = ()
    bouncing_addresses: tuple[str, ...] = ()
    """E-mail addresses the sandbox's SMTP sink refuses with 550 (a hard bounce)."""
    """Push tokens the sandbox's FCM answers UNREGISTERED (also any starting with 'unregistered')."""


class OpsSettings(_Model):
    metrics: bool = True
    """Serve Prometheus metrics at /metrics (API) and on ``worker_metrics_port`` (workers)."""
    worker_metrics_port: int = Field(0, ge=0, le=65535)
    """Port each `hub worker` serves /metrics on (0: none; one port per process)."""
    ready_heartbeat_seconds: float = Field(30.0, gt=0)
    """/readyz fails when no worker has heartbeated for this long."""
    ready_max_queue_age_seconds: float = Field(120.0, gt=0)
    """/readyz fails when the oldest due job has waited longer than this."""
    shutdown_grace_seconds: float = Field(25.0, ge=0)
    """On SIGTERM, how long in-flight requests and jobs may take to finish before the rest are
    left to be re-queued."""


def _merged_table(default: Mapping[str, str | None], given: Any) -> Any:
    """A vendor status table as configured: the given entries over the defaults, keys compared
    without case (environment overrides arrive lower-cased); null ignores a status."""
    if not isinstance(given, Mapping):
        return given
    table = {key.lower(): value for key, value in default.items()}
    table.update({str(key).lower(): value for key, value in given.items()})
    return table


ONFLEET_TRIGGERS: dict[str, Milestone | None] = {
    "taskcreated": "order_confirmed",
    "taskstarted": "out_for_delivery",
    "tasketa": "arriving_soon",
    "taskarrival": "arriving_soon",
    "taskcompleted": "delivered",
    "taskfailed": "delivery_failed",
    "taskdelayed": "exception",
    "taskupdated": "eta_changed",
}
AFTERSHIP_TAGS: dict[str, Milestone | None] = {
    "inforeceived": "shipped",
    "intransit": "in_transit",
    "outfordelivery": "out_for_delivery",
    "attemptfail": "delivery_failed",
    "delivered": "delivered",
    "availableforpickup": "ready_for_pickup",
    "exception": "exception",
    "expired": None,
}
AFTERSHIP_SUBTAGS: dict[str, Milestone | None] = {"exception_011": "returned"}
AFTERSHIP_EXCEPTION_KINDS: dict[str, str | None] = {
    "exception_004": "delay",
    "exception_005": "delay",
    "exception_007": "address",
    "exception_012": "damage",
}
GenericField = Literal[
    "event_id",
    "type",
    "occurred_at",
    "delivery.id",
    "delivery.tracking_code",
    "delivery.merchant",
    "delivery.address",
    "delivery.eta.start",
    "delivery.eta.end",
    "customer.id",
    "customer.name",
    "customer.phone",
    "customer.email",
    "customer.locale",
    "customer.timezone",
    "driver.id",
    "driver.name",
    "driver.phone",
    "data.reason",
    "data.kind",
    "data.minutes",
    "data.pod.photo_url",
    "data.pod.signature",
    "data.pod.recipient",
    "data.pod.place",
]


class OnfleetSettings(_Model):
    secret: str | None = None
    """Onfleet's webhook secret (hex, as the dashboard shows it); secret, set it through
    HUB_ADAPTERS__ONFLEET__SECRET. Unset: POST/GET /webhooks/onfleet answer 404."""
    triggers: dict[str, Milestone | None] = ONFLEET_TRIGGERS
    """Onfleet trigger name -> milestone (null: acknowledged and ignored); entries given are
    merged over the defaults (docs/integrations.md), names compared without case."""
    delivery_id_metadata: str | None = None
    """Name of the task metadata field that holds the hub's delivery id (unset: the task id)."""
    merchant: str | None = None
    """Merchant name shown in messages for Onfleet tasks (unset: none)."""
    photo_url: str = Field("https://d15p8tr8p0vffz.cloudfront.net/{id}/800x.png", pattern=r"^https?://.*\{id\}")
    """Where a proof-of-delivery photo is seen, from its upload id ({id})."""

    @field_validator("triggers", mode="before")
    @classmethod
    def _triggers(cls, value: Any) -> Any:
        return _merged_table(ONFLEET_TRIGGERS, value)


class AfterShipSettings(_Model):
    secret: str | None = None
    """AfterShip's webhook secret; secret, set it through HUB_ADAPTERS__AFTERSHIP__SECRET.
    Unset: POST /webhooks/aftership answers 404."""
    tags: dict[str, Milestone | None] = AFTERSHIP_TAGS
    """AfterShip delivery status (tag) -> milestone (null: acknowledged and ignored); merged over
    the defaults (docs/integrations.md), compared without case."""
    subtags: dict[str, Milestone | None] = AFTERSHIP_SUBTAGS
    """Sub-status (e.g. Exception_011, returned to sender) -> milestone, before the tag's entry
    (defaults: docs/integrations.md)."""
    exception_kinds: dict[str, str | None] = AFTERSHIP_EXCEPTION_KINDS
    """Sub-status -> the `exception` event's data.kind: delay, damage, address (defaults:
    docs/integrations.md)."""
    delivery_id: Literal["tracking_number", "order_id", "id"] = "tracking_number"
    """Which tracking field is the hub's delivery id (order_id falls back to the tracking number)."""

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, value: Any) -> Any:
        return _merged_table(AFTERSHIP_TAGS, value)

    @field_validator("subtags", mode="before")
    @classmethod
    def _subtags(cls, value: Any) -> Any:
        return _merged_table(AFTERSHIP_SUBTAGS, value)

    @field_validator("exception_kinds", mode="before")
    @classmethod
    def _kinds(cls, value: Any) -> Any:
        return _merged_table(AFTERSHIP_EXCEPTION_KINDS, value)


class GenericMapping(_Model):
    secret: str | None = None
    """Signing secret; secret, set it through HUB_ADAPTERS__GENERIC__<NAME>__SECRET. Unset: disabled."""
    signature_header: str = Field("X-Signature", min_length=1)
    """Header carrying the signature."""
    algorithm: Literal["sha1", "sha256", "sha512"] = "sha256"
    """HMAC hash function over the raw body."""
    encoding: Literal["hex", "base64"] = "hex"
    """How the signature is written in the header."""
    signature_prefix: str = ""
    """Text before the signature in the header, e.g. `sha256=`."""
    secret_encoding: Literal["text", "hex", "base64"] = "text"
    """How the secret is written (the HMAC key is its bytes)."""
    fields: dict[GenericField, str]
    """Event field -> JSON pointer (RFC 6901) into the payload; delivery.id and type are required."""
    statuses: dict[str, Milestone | None] = {}
    """The `type` pointer's value -> milestone (null: ignored). A value that is already a milestone
    name needs no entry; anything else unlisted is acknowledged and ignored."""

    @field_validator("fields")
    @classmethod
    def _pointers(cls, value: dict[str, str]) -> dict[str, str]:
        missing = [f for f in ("delivery.id", "type") if f not in value]
        if missing:
            raise ValueError(f"{', '.join(missing)} must be mapped")
        bad = [f for f, pointer in value.items() if pointer and not pointer.startswith("/")]
        if bad:
            raise ValueError(f"not a JSON pointer (starts with /): {', '.join(bad)}")
        return value

    @field_validator("statuses", mode="before")
    @classmethod
    def _statuses(cls, value: Any) -> Any:
        return _merged_table({}, value)


class AdapterSettings(_Model):
    """Upstream adapters (docs/integrations.md): vendors' webhooks mapped onto milestones."""

    onfleet: OnfleetSettings = OnfleetSettings()
    aftership: AfterShipSettings = AfterShipSettings()
    generic: dict[str, GenericMapping] = {}
    """Named mappings for other JSON webhooks, each served at POST /webhooks/generic/{name}."""

    @field_validator("generic")
    @classmethod
    def _names(cls, value: dict[str, GenericMapping]) -> dict[str, GenericMapping]:
        import re

        bad = [name for name in value if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", name)]
        if bad:
            raise ValueError(f"mapping names are 1-40 lower-case letters, digits, _ or -: {', '.join(bad)}")
        return value


class Settings(_Model):
    redis_url: str | None = None
    """Redis URL, e.g. redis://10.0.0.5:6379/0. `hub dev` starts a private Redis when unset."""
    api_key: str | None = None
    """A plain API key for source "default" (scopes events, read); secret, environment only. At
    least 20 characters unless public_url is on this machine."""
    admin_api_key: str | None = None
    """A plain API key with every scope (events, read, erase, admin); secret, environment only. At
    least 20 characters unless public_url is on this machine."""
    secret_key: str | None = None
    """Signs links, receipts and form tokens. Required for `hub api` and `hub worker`; at least 32
    random characters unless public_url is on this machine (docs/deployment.md)."""
    public_url: str = "http://127.0.0.1:8080"
    """How customers and providers reach this hub (links, Twilio status callbacks)."""
    default_region: str = "DE"
    """Region for phone numbers written without a country code."""
    default_locale: str = "en"
    """Locale when neither the customer nor the event gives one (also the last fallback)."""
    default_timezone: str = "Europe/Berlin"
    """IANA time zone when the customer has none."""
    templates_dir: str = str(ROOT / "templates")
    """Where the message templates live."""
    data_dir: str = "var"
    """Where `hub dev` keeps its Redis data and generated secret."""
    log_level: str = "INFO"
    """Logging level."""
    log_format: Literal["auto", "json", "console"] = "auto"
    """json: one JSON object per line (ids and masked contacts as fields); console: readable
    lines; auto: console when stderr is a terminal, else json."""
    ops: OpsSettings = OpsSettings()
    api: ApiSettings = ApiSettings()
    sender: SenderSettings = SenderSettings()
    twilio: TwilioSettings = TwilioSettings()
    smtp: SmtpSettings = SmtpSettings()
    fcm: FcmSettings = FcmSettings()
    worker: WorkerSettings = WorkerSettings()
    retention: RetentionSettings = RetentionSettings()
    sandbox: SandboxSettings = SandboxSettings()
    webhooks: WebhookSettings = WebhookSettings()
    twilio_hooks: TwilioHookSettings = TwilioHookSettings()
    conversation: ConversationSettings = ConversationSettings()
    relay: RelaySettings = RelaySettings()
    policy: PolicySettings = PolicySettings()
    tracking: TrackingSettings = TrackingSettings()
    adapters: AdapterSettings = AdapterSettings()
    channels: dict[str, tuple[Channel, ...]] = {
        "order_confirmed": ("email",),
        "shipped": ("email", "push"),
        "in_transit": ("push",),
        "out_for_delivery": ("sms", "push", "email"),
        "arriving_soon": ("sms", "push"),
        "eta_changed": ("push", "sms"),
        "delivered": ("push", "email"),
        "delivery_failed": ("sms", "email", "push"),
        "exception": ("sms", "email"),
        "rescheduled": ("email", "push"),
        "ready_for_pickup": ("sms", "email", "push"),
        "returned": ("email",),
    }
    """Channels per milestone unless the customer's preferences say otherwise."""
    fallback: tuple[Channel, ...] = ("push", "sms", "email")
    """When none of a milestone's channels reaches the customer, the first reachable one of these."""

    @field_validator("channels")
    @classmethod
    def _known_milestones(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        unknown = sorted(set(value) - set(MILESTONES))
        if unknown:
            raise ValueError(f"unknown milestone(s): {', '.join(unknown)}")
        return value

    @field_validator("default_timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from preferences.validation import check_timezone

        return check_timezone(value)

    def all_keys(self) -> list[ApiKey]:
        keys = list(self.api.keys)
        if self.api_key:
            keys.append(ApiKey(source="default", sha256=hash_key(self.api_key), scopes=("events", "read")))
        if self.admin_api_key:
            scopes = ("events", "read", "erase", "admin")
            keys.append(ApiKey(source="admin", sha256=hash_key(self.admin_api_key), scopes=scopes))
        return keys

    def replace(self, **changes: Any) -> Settings:
        """A copy with top-level or dotted (``"smtp.port"``) settings changed."""
        data = self.model_dump()
        for key, value in changes.items():
            _set_path(data, key.split("."), value, key)
        return _validate(data)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# -- secrets strong enough for a deployment ---------------------------------------------------
SECRET_KEY_MIN = 32
API_KEY_MIN = 20
_SECRET_KEY_BITS = 100  # estimated from the characters used; a random 32-character hex key has ~115
SECRET_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def runs_locally(settings: Settings) -> bool:
    """Whether this hub is a local run (``hub dev``, tests, benchmarks): its ``public_url`` is on
    this machine, so neither customers nor Twilio can reach it."""
    host = urlsplit(settings.public_url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _predictable(secret: str, bits: float) -> bool:
    """A secret made of one chunk repeated, or whose characters carry fewer than ``bits`` bits
    (Shannon entropy of its own character counts, times its length)."""
    if any(len(secret) % n == 0 and secret == secret[:n] * (len(secret) // n) for n in range(1, len(secret) // 2 + 1)):
        return True
    counts = Counter(secret)
    per_char = -sum(c / len(secret) * math.log2(c / len(secret)) for c in counts.values())
    return per_char * len(secret) < bits


def weak_secrets(settings: Settings) -> dict[str, str]:
    """The settings too weak for a hub others can reach: name -> what is wrong (starting with the name)."""
    problems = {}
    secret = settings.secret_key
    if secret is not None and len(secret) < SECRET_KEY_MIN:
        problems["secret_key"] = f"secret_key is {len(secret)} characters; use at least {SECRET_KEY_MIN} random ones"
    elif secret is not None and _predictable(secret, _SECRET_KEY_BITS):
        problems["secret_key"] = "secret_key is too predictable (repeated or few different characters)"
    for name in ("api_key", "admin_api_key"):
        key = getattr(settings, name)
        if key is not None and len(key) < API_KEY_MIN:
            problems[name] = f"{name} is {len(key)} characters; use at least {API_KEY_MIN} random ones"
        elif key is not None and _predictable(key, 0):
            problems[name] = f"{name} is one chunk repeated"
    if settings.twilio.auth_token == TwilioSettings.model_fields["auth_token"].default:
        problems["twilio.auth_token"] = (
            "twilio.auth_token is the public sandbox default, with which anyone could sign Twilio's webhooks"
            " (set HUB_TWILIO__AUTH_TOKEN to your account's token)"
        )
    return problems


def check_secrets(settings: Settings) -> None:
    """Refuse weak secrets (``weak_secrets``) unless this is a local run (``runs_locally``):
    a short ``secret_key`` lets anyone forge links and CSRF tokens offline."""
    problems = weak_secrets(settings)
    if problems and not runs_locally(settings):
        raise ConfigError(
            f"weak secrets for a hub at {settings.public_url}: {'; '.join(problems.values())}. "
            f"Generate a secret with: {SECRET_HINT}"
        )


def _set_path(data: dict[str, Any], path: list[str], value: Any, name: str) -> None:
    node = data
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{name}: {part!r} is not a section")
        node = child
    node[path[-1]] = value


def _validate(data: Mapping[str, Any]) -> Settings:
    try:
        return Settings.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid configuration: {problems}") from e


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    env = os.environ if environ is None else environ
    path = Path(path or env.get("HUB_CONFIG") or ROOT / "config.yaml")
    data: dict[str, Any] = {}
    if path.is_file():
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded
    for name, raw in env.items():
        if not name.startswith("HUB_") or name == "HUB_CONFIG":
            continue
        parts = name[4:].lower().split("__")
        if name.endswith("_FILE") and not _is_setting(parts):
            parts[-1] = parts[-1].removesuffix("_file")
            raw = _read_secret_file(name, raw)
        _set_path(data, parts, _env_value(name, raw), name)
    for key, value in overrides.items():
        _set_path(data, key.split("."), value, key)
    return _validate(data)


def _is_setting(parts: list[str]) -> bool:
    """Whether ``parts`` names a field of the settings model (``fcm.credentials_file`` is one)."""
    model: Any = Settings
    for part in parts:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return False
        model = fields[part].annotation
    return True


def _read_secret_file(name: str, path: str) -> str:
    try:
        return Path(path).read_text().removesuffix("\n").removesuffix("\r")
    except OSError as e:
        raise ConfigError(f"{name}: cannot read {path}: {e.strerror}") from e


def _env_value(name: str, raw: str) -> Any:
    """An environment value as given: a string (pydantic converts numbers and booleans for the
    fields that want them), None when empty, and YAML only for lists and mappings (``[...]``,
    ``{...}``), so a secret such as ``s3cret #1`` is never cut at a YAML comment."""
    if raw == "":
        return None
    if raw.lstrip().startswith(("[", "{")):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"{name}: not valid YAML/JSON: {e}") from e
    return raw
