"""Prometheus metrics: every metric the hub exports, defined once, at module level.

One ``CollectorRegistry`` per process (``REGISTRY``), not prometheus-client's global one, so the
hub's exposition holds only its own series and a process that builds many apps (the tests) never
registers a metric twice. Counters count what *this process* did: an API process counts events,
a worker process counts messages, provider calls and webhook deliveries; Prometheus sums them
over processes. What lives in Redis (queue depth, the oldest job's age, worker heartbeats) is
read at scrape time by the API (``scrape_time_metrics``), never kept in process memory.

Labels are bounded: channels, statuses, outcomes and milestone types are fixed sets, ``source``
is one per configured API key; no id (event, delivery, message, customer) is ever a label.
See docs/observability.md for the list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .vocabulary import MILESTONES

__all__ = [
    "CONTENT_TYPE",
    "DEAD_LETTERS",
    "EVENTS_ACCEPTED",
    "EVENTS_DUPLICATE",
    "EVENTS_REJECTED",
    "JOB_RETRIES",
    "MESSAGES",
    "MESSAGE_RETRIES",
    "PROVIDER_SECONDS",
    "REGISTRY",
    "RELAY_CALLS",
    "RELAY_SESSIONS_CLOSED",
    "RELAY_SESSIONS_OPENED",
    "RELAY_TEXTS",
    "WEBHOOKS_EMITTED",
    "WEBHOOK_DELIVERIES",
    "WEBHOOK_SECONDS",
    "QueueStats",
    "ScrapeTime",
    "event_type",
    "exposition",
    "serve_worker_metrics",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REGISTRY = CollectorRegistry(auto_describe=True)

# Provider calls last from a few ms (loopback) to the adapters' timeouts (10 s by default).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# -- API ---------------------------------------------------------------------------------------
# Events registered and queued, per milestone and upstream source (API key).
EVENTS_ACCEPTED = Counter("hub_events_accepted", "Events accepted and queued", ["type", "source"], registry=REGISTRY)
# Events whose event_id the source had already used with the same payload (answered, not queued).
EVENTS_DUPLICATE = Counter(
    "hub_events_duplicate", "Events already accepted before (idempotent repeats)", ["type", "source"], registry=REGISTRY
)
# Events refused: reason is invalid (422, validation) or conflict (409, event_id reused with another payload).
EVENTS_REJECTED = Counter("hub_events_rejected", "Events refused", ["type", "source", "reason"], registry=REGISTRY)

# -- worker: messages ----------------------------------------------------------------------------
# Every status the dispatcher records for a message: sending (a provider call begins), accepted,
# transient (a retry is scheduled), failed, dead, deferred, expired, superseded, skipped, unknown.
MESSAGES = Counter(
    "hub_messages", "Message status changes recorded by the dispatcher", ["channel", "status"], registry=REGISTRY
)
# The channel adapter's send call, by channel and outcome (accepted, transient, permanent).
PROVIDER_SECONDS = Histogram(
    "hub_provider_send_seconds",
    "Provider call latency (Twilio, SMTP, FCM)",
    ["channel", "outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
# A transient provider failure that scheduled another try of the message.
MESSAGE_RETRIES = Counter(
    "hub_message_retries", "Message sends scheduled again after a transient failure", ["channel"], registry=REGISTRY
)
# Jobs handed back to the queue by an unexpected error (Redis away, a bug), per job function.
JOB_RETRIES = Counter("hub_job_retries", "Jobs retried after an unexpected error", ["job"], registry=REGISTRY)
# Given up: kind is message (worker.max_tries transient failures) or webhook (webhooks.max_attempts).
DEAD_LETTERS = Counter("hub_dead_letters", "Messages and webhook deliveries dead-lettered", ["kind"], registry=REGISTRY)

# -- relay -----------------------------------------------------------------------------------
# Masked-number sessions opened (a new session, not a repeated open of a live one).
RELAY_SESSIONS_OPENED = Counter("hub_relay_sessions_opened", "Relay sessions opened", registry=REGISTRY)
# Sessions closed (by request, after the delivery's grace period, a customer's erasure).
RELAY_SESSIONS_CLOSED = Counter("hub_relay_sessions_closed", "Relay sessions closed", registry=REGISTRY)
# Calls to proxy numbers: connecting (bridged to the other party), refused (no live session),
# then the dial's result as Twilio reports it: completed, busy, no-answer, failed, canceled.
RELAY_CALLS = Counter("hub_relay_calls", "Calls to relay proxy numbers", ["outcome"], registry=REGISTRY)
# Texts to proxy numbers: forwarded, failed, refused, stopped, resumed, not_forwarded.
RELAY_TEXTS = Counter("hub_relay_texts", "Texts to relay proxy numbers", ["outcome"], registry=REGISTRY)

# -- outbound webhooks ---------------------------------------------------------------------------
# Deliveries created, per webhook type (message.status, reply types, relay.*: a fixed set).
WEBHOOKS_EMITTED = Counter("hub_webhooks_emitted", "Outbound webhook deliveries created", ["type"], registry=REGISTRY)
# Delivery attempts by outcome: delivered, retry, dead.
WEBHOOK_DELIVERIES = Counter(
    "hub_webhook_deliveries", "Outbound webhook delivery attempts", ["outcome"], registry=REGISTRY
)
# The POST to the receiver, whatever its answer.
WEBHOOK_SECONDS = Histogram(
    "hub_webhook_post_seconds", "Outbound webhook POST latency", buckets=_LATENCY_BUCKETS, registry=REGISTRY
)

_MILESTONES = frozenset(MILESTONES)
RELAY_DIAL_RESULTS = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})


def event_type(value: object) -> str:
    """A milestone as a label: anything outside the fixed set (bad input) is ``unknown``."""
    return value if isinstance(value, str) and value in _MILESTONES else "unknown"


# -- scrape time -------------------------------------------------------------------------------
class QueueStats:
    """One arq queue as read at scrape time."""

    def __init__(self, due: int, scheduled: int, oldest_age: float) -> None:
        self.due = due  # jobs whose time has come (waiting for a worker, or running)
        self.scheduled = scheduled  # jobs held for later (quiet hours, retries, collapsing)
        self.oldest_age = oldest_age  # seconds the oldest due job has waited (0: none due)


class ScrapeTime(Collector):
    """Gauges read from Redis for one scrape (built per request, never registered globally)."""

    def __init__(
        self,
        *,
        redis_up: bool,
        queues: Mapping[str, QueueStats],
        workers: int,
        heartbeat_age: float | None,
        ready: bool,
    ) -> None:
        self.redis_up = redis_up
        self.queues = queues
        self.workers = workers
        self.heartbeat_age = heartbeat_age
        self.ready = ready

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("hub_redis_up", "1 when the API reached Redis for this scrape, else 0")
        up.add_metric([], 1.0 if self.redis_up else 0.0)
        yield up
        ready = GaugeMetricFamily("hub_ready", "1 when /readyz would answer 200, else 0")
        ready.add_metric([], 1.0 if self.ready else 0.0)
        yield ready
        if not self.redis_up:
            return  # unknown, not zero: absent series make "no data" alerts fire instead of lying
        depth = GaugeMetricFamily("hub_queue_depth", "Jobs due now (waiting or running)", labels=["queue"])
        scheduled = GaugeMetricFamily("hub_queue_scheduled", "Jobs held for later", labels=["queue"])
        age = GaugeMetricFamily(
            "hub_queue_oldest_age_seconds", "How long the oldest due job has waited", labels=["queue"]
        )
        for name, stats in self.queues.items():
            depth.add_metric([name], stats.due)
            scheduled.add_metric([name], stats.scheduled)
            age.add_metric([name], stats.oldest_age)
        yield from (depth, scheduled, age)
        workers = GaugeMetricFamily(
            "hub_workers_alive", "Event workers with a heartbeat within ops.ready_heartbeat_seconds"
        )
        workers.add_metric([], self.workers)
        yield workers
        if self.heartbeat_age is not None:
            hb = GaugeMetricFamily("hub_worker_heartbeat_age_seconds", "Age of the newest event-worker heartbeat")
            hb.add_metric([], self.heartbeat_age)
            yield hb


def exposition(extra: Iterable[Collector] = ()) -> bytes:
    """The text exposition of this process's metrics, plus ``extra`` collectors (scrape time)."""
    parts = [generate_latest(REGISTRY)]
    for collector in extra:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        parts.append(generate_latest(registry))
    return b"".join(parts)


def serve_worker_metrics(port: int, host: str = "0.0.0.0") -> None:
    """Serve ``REGISTRY`` at http://host:port/metrics from a daemon thread (``hub worker``)."""
    start_http_server(port, addr=host, registry=REGISTRY)
