"""The settings' sections: one model per part of the hub (``Settings`` in ``hub.config`` holds them).

Every field's docstring is its description in docs/configuration.md (``python -m hub.confdoc``),
so each field has one; the defaults here are the only ones (``config.yaml`` carries what a
deployer sets).
"""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, field_validator

from preferences.validation import check_phone

from .merchants import MerchantEntry
from .vocabulary import MILESTONES, WebhookEvent

__all__ = [
    "ApiKey",
    "ApiSettings",
    "BrandSettings",
    "ConversationSettings",
    "FcmSettings",
    "OpsSettings",
    "RedisSentinelSettings",
    "RelaySettings",
    "RetentionSettings",
    "SandboxSettings",
    "Section",
    "SenderSettings",
    "SmtpSettings",
    "TrackingSettings",
    "TwilioHookSettings",
    "TwilioSettings",
    "WebhookSettings",
    "WebhookSubscription",
    "WhatsAppSettings",
    "WorkerSettings",
]


class Section(BaseModel):
    """Base of every settings model: unknown keys are errors (a typo fails at start-up, named),
    values never change after loading, and attribute docstrings become field descriptions."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class ApiKey(Section):
    source: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    """Name of the upstream system this key belongs to; events are idempotent per source."""
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Hex SHA-256 of the key; the key itself is never stored."""
    scopes: tuple[str, ...] = ("events", "read")
    """events: post events and manage customers; read: GET views; erase: erase customers; admin:
    unmasked views and replays."""


class ApiSettings(Section):
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
        try:
            return tuple(str(ipaddress.ip_network(v.strip(), strict=False)) for v in value)
        except ValueError as e:
            raise ValueError(f"not an address or CIDR range: {e}") from e


class SenderSettings(Section):
    name: str = "Parcelhub"
    """The company name customers see in messages."""
    help_url: str | None = None
    """Where customers get help (shown in e-mails when set)."""


class TwilioSettings(Section):
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


class SmtpSettings(Section):
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


class FcmSettings(Section):
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


class WorkerSettings(Section):
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


class RetentionSettings(Section):
    idempotency_days: int = Field(7, ge=1)
    """How long an event_id is remembered (a repeat within it is a duplicate)."""
    message_log_days: int = Field(30, ge=1)
    """How long messages and their status history are kept."""
    timeline_days: int = Field(90, ge=1)
    """How long a delivery and its timeline are kept after its last event."""


class WebhookSubscription(Section):
    url: str = Field(pattern=r"^https?://")
    """Where to POST; only configured URLs ever receive webhooks."""
    secret: str = Field(min_length=16)
    """HMAC-SHA256 key for the Hub-Signature header; secret, keep it in the environment."""
    events: tuple[WebhookEvent, ...] = ()
    """Event types to send (empty: all)."""


class WebhookSettings(Section):
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
    """Deliveries in flight per worker process, from the webhook queue."""
    direct_concurrency: int = Field(100, ge=0)
    """Deliveries a worker POSTs itself as it makes them, in flight at once per process (their
    queued jobs only a backstop); past it, or at 0, they go through the webhook queue."""


class TwilioHookSettings(Section):
    trust_forwarded: bool = False
    """Behind a proxy: validate Twilio signatures against X-Forwarded-Proto/Host instead of public_url."""


class TrackingSettings(Section):
    link_days: int = Field(30, ge=1, le=365)
    """A tracking link works this many days after the last message that carried it."""
    poll_seconds: int = Field(15, ge=2, le=300)
    """How often an open tracking page checks for news (it works without JavaScript too)."""
    map_max_stops: int = Field(5, ge=0, le=100)
    """The page shows the driver's position only when at most this many stops come before the
    customer's (the count the driver app reports); 0: only when the customer's stop is next."""
    map_position_minutes: float = Field(10.0, gt=0, le=120)
    """A driver's position is kept this long after the time it was taken; older ones are dropped."""
    map_tiles: str = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"
    """The map's tile server: an http(s) URL with {z}, {x} and {y} (and optionally {s}). Its
    origin is the only one the page may load images from. Empty or `none`: no tiles (markers on
    a plain background)."""
    map_attribution: str = "© OpenStreetMap contributors"
    """The attribution shown on the map, as the tile server's licence requires."""

    @field_validator("map_tiles")
    @classmethod
    def _tiles(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in ("", "none"):
            return ""
        # The origin goes into the page's Content-Security-Policy: a plain host name (a {s}
        # subdomain allowed) and port, nothing that could end the directive.
        import re  # here, not at the top: the one section that needs it

        shape = r"https?://(\{s\}\.)?[A-Za-z0-9.-]+(:[0-9]{1,5})?/[^\s;,'\"]*"
        if not re.fullmatch(shape, value) or not all(p in value for p in ("{z}", "{x}", "{y}")):
            raise ValueError("an http(s) URL with a host name and {z}, {x} and {y}, or none")
        return value


class ConversationSettings(Section):
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


class RelaySettings(Section):
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
        numbers = tuple(check_phone(n, "US") for n in value)
        if len(set(numbers)) != len(numbers):
            raise ValueError("the pool lists a number twice")
        return numbers


class SandboxSettings(Section):
    failing_numbers: dict[str, int] = {}
    """Numbers whose messages the sandbox's Twilio accepts, then reports undelivered with this error code."""
    smtp_port: int = Field(0, ge=0, le=65535)
    """Port of `hub dev`'s SMTP sink (0: a free port)."""
    invalid_numbers: tuple[str, ...] = ()
    """Numbers the sandbox's Twilio rejects as invalid (error 21211)."""
    unregistered_tokens: tuple[str, ...] = ()
    """Push tokens the sandbox's FCM answers UNREGISTERED (also any starting with 'unregistered')."""
    bouncing_addresses: tuple[str, ...] = ()
    """E-mail addresses the sandbox's SMTP sink refuses with 550 (a hard bounce)."""


class OpsSettings(Section):
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


class RedisSentinelSettings(Section):
    sentinels: tuple[str, ...] = ()
    """Redis Sentinel addresses as "host:port" (e.g. ["10.0.0.5:26379", "10.0.0.6:26379",
    "10.0.0.7:26379"]), instead of redis_url: the API, the workers and arq's queue ask them for the
    primary, and ask again after a failover (docs/deployment.md). Leave empty to use redis_url."""
    service: str = Field("mymaster", min_length=1)
    """The name the sentinels monitor the primary under (`sentinel monitor <service> ...`)."""
    password: str | None = None
    """Password of the Redis servers behind the sentinels (their requirepass); secret, environment
    only. The sentinels themselves are asked without one."""
    db: int = Field(0, ge=0)
    """Redis database number on the primary."""
    min_replicas_acked: int = Field(1, ge=0)
    """Replicas that must hold an accepted event before the API answers 202, and a message's claim
    before a worker calls the provider (Redis WAIT), so that a failover loses neither; 0 turns the
    wait off. Keep it below the number of replicas, or the hub stops accepting after a failover
    leaves fewer."""
    ack_timeout_ms: int = Field(1000, ge=1)
    """How long to wait for those replicas. Past it the API answers 503 with Retry-After (the
    client posts again; the event id makes that safe) and a worker gives the claim back and tries
    later."""

    @field_validator("sentinels")
    @classmethod
    def _addresses(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for address in value:
            host, _, port = address.strip().rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r} is not host:port")
        return tuple(a.strip() for a in value)


# Where Twilio delivers an alphanumeric sender id as it is (no registration needed beforehand in
# most of them); elsewhere (the US and Canada among them) a shop's SMS comes from the hub's number.
_ALPHANUMERIC_COUNTRIES = (
    *("AT", "BE", "CH", "DE", "DK", "ES", "FI", "FR"),
    *("GB", "IE", "IT", "NL", "NO", "PL", "PT", "SE"),
)


class BrandSettings(Section):
    merchants: tuple[MerchantEntry, ...] = ()
    """Shops known from the configuration, as {id, name, email_from, reply_to, sms_sender, logo_url,
    brand_color, support_url, support_phone} entries (what PUT /v1/merchants/{id} takes, with the
    id). Read-only base entries: a shop registered through the API with the same id wins, and
    deleting that one brings this one back (docs/brands.md)."""
    alphanumeric_countries: tuple[str, ...] = _ALPHANUMERIC_COUNTRIES
    """Countries (ISO 3166 codes) of the customer's phone where a shop's alphanumeric sms_sender
    may be used. Check Twilio's country guide: some ask for the sender id to be registered first."""
    cache_seconds: float = Field(10.0, ge=0)
    """How long a worker or API process keeps a shop it read (a change through the API reaches
    the other processes within this time; 0: read on every event)."""

    @field_validator("merchants")
    @classmethod
    def _unique(cls, value: tuple[MerchantEntry, ...]) -> tuple[MerchantEntry, ...]:
        ids = [m.id for m in value]
        if len(set(ids)) != len(ids):
            raise ValueError("a merchant id is listed twice")
        return value

    @field_validator("alphanumeric_countries")
    @classmethod
    def _countries(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        codes = tuple(v.strip().upper() for v in value)
        if any(len(c) != 2 or not c.isalpha() or not c.isascii() for c in codes):
            raise ValueError("use two-letter ISO 3166 country codes, e.g. DE")
        return codes


# What a WhatsApp template variable can be (hub.whatsapp.variables explains each).
WHATSAPP_VALUES = ("name", "shop", "window", "link", "tracking_code", "text")


class WhatsAppSettings(Section):
    from_number: str | None = None
    """The WhatsApp sender's number (E.164), registered with Twilio as a WhatsApp sender. Unset:
    no WhatsApp; customers who prefer it get the next channel of their fallback order."""
    templates: dict[str, dict[str, str]] = {}
    """Approved Content templates per milestone and locale: {milestone: {locale: content_sid}},
    e.g. {"out_for_delivery": {"en": "HX...", "de": "HX..."}}. A locale falls back to its language
    ("de-AT" to "de"). Outside the customer's 24-hour window a message goes out only as its
    template; with none for its milestone and locale it is not sent on WhatsApp (the fallback
    order takes over)."""
    variables: tuple[str, ...] = ("name", "text")
    """What fills the templates' {{1}}, {{2}}, ...: the n-th name fills {{n}}. Names: name (the
    customer's first name), shop (the merchant, else sender.name), window (the delivery window),
    link (the tracking page), tracking_code, text (the hub's rendered SMS text). Whitespace is
    collapsed to single spaces and an empty value is sent as "-"."""
    window_hours: float = Field(24.0, gt=0, le=24)
    """How long after a customer's last WhatsApp message free-form text may be sent (WhatsApp's
    customer service window is 24 hours; a shorter value leaves a margin)."""

    @field_validator("from_number")
    @classmethod
    def _e164(cls, value: str | None) -> str | None:
        return None if value is None else check_phone(value.removeprefix("whatsapp:"), "US")

    @field_validator("templates")
    @classmethod
    def _milestones(cls, value: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        unknown = sorted(set(value) - set(MILESTONES))
        if unknown:
            raise ValueError(f"unknown milestone(s): {', '.join(unknown)}")
        return value

    @field_validator("variables")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [v for v in value if v not in WHATSAPP_VALUES]
        if unknown:
            raise ValueError(f"unknown variable(s) {', '.join(unknown)}; use {', '.join(WHATSAPP_VALUES)}")
        return value
