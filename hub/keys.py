"""Redis key layout: every key the hub writes is built here.

The Lua scripts that change several of these keys at once live beside it, in ``hub.lua_log``
(events and the message log) and ``hub.lua_records`` (customers, webhooks, feedback, relay, API
keys). This module imports nothing from the hub, so ``preferences`` can use it. Shapes and
lifetimes:

- ``hub:event:{source}:{event_id}``  hash: digest, state (queued|done), received_at, seq (arrival
  number, from ``hub:arrivals``).
  Idempotency record of an accepted event; TTL retention.idempotency_days.
- ``hub:customer:{id}``              hash: name, phone, email, push_tokens (JSON), locale, timezone,
  one ``pref:<name>`` field (JSON) per preference, erased ("1" after erasure), updated_at.
  No TTL (erased on request).
- ``hub:delivery:{id}``              hash: customer_id, tracking_code, merchant, address, eta (JSON),
  driver (JSON), status, last_ms and last_seq (the newest event applied), terminal, updated_at.
  TTL retention.timeline_days, renewed.
- ``hub:timeline:{delivery_id}``     sorted set, score occurred_at (ms), member an event summary
  (JSON). Same TTL as the delivery.
- ``hub:msg:{message_id}``           hash: the message log record (see pipeline). TTL message_log_days.
- ``hub:msg:{message_id}:history``   list of JSON status changes {status, at, detail}. Same TTL.
- ``hub:msgs:delivery:{id}``         sorted set of message ids by creation time. Same TTL.
- ``hub:msgs:customer:{id}``         sorted set of message ids by creation time. Same TTL.
- ``hub:provider:{provider_id}``     string: message id for a provider's id (status callbacks).
  Same TTL.
- ``hub:msgs:status:{status}``      sorted set of message ids for the statuses an operator acts
  on (dead, unknown: by time, ms) and those a message waits in (deferred, transient: by due time,
  ms; replaying: by time). Kept by lua_log.CLAIM_MESSAGE, REPLAY_MESSAGE and HubStore.record; entries
  older than the message log are trimmed on read.
- ``hub:rl:{customer_id}:{channel}`` sorted set: message ids sent to the customer on the channel
  in the last hour, scored by send time (ms). Expires an hour after the last send.
- ``hub:pace:{channel}:{sender}``    string: the next free send slot (ms) of a provider sender
  (see lua_log.PACE). Expires when idle.
- ``hub:collapse:{delivery}:{type}`` string: end (ms) of the open collapsing window for a
  delivery's milestone. Expires with the window.
- ``hub:link:{link_id}``            hash: delivery_id, customer_id, created_at of a tracking link
  (hub.links). Written once, by lua_log.ENSURE_LINK, never for another delivery or customer. TTL
  tracking.link_days, renewed by every message carrying it; deleted on erasure.
- ``hub:links:customer:{id}``        set of the customer's link ids (for erasure). Same TTL.
- ``hub:authfail:addr:{address}``   string: requests with a wrong API key from a client address
  (read through ``api.trusted_proxies`` only) in the current minute. TTL 60 s from the first.
- ``hub:authfail:key:{ref}``         string: the same per presented credential (a digest, after the
  ``hub_`` id prefix of a stored key). TTL 60 s from the first.
- ``hub:stranger:{ref}``             string: answers given to a number no customer has, in the
  current window (conversation.unknown_number_window_hours, the TTL, from the first). ``ref`` is
  keyed by the opt-out pepper, so the name holds no number.
- ``hub:avail:customer:{id}``        hash: what was learned of when the customer is home
  (hub.availability): tz, area (the last ones seen), failed ("1" after a failed attempt or a
  not-home answer), count, and one ``o:<key>`` field per observation ("ms|home|area|wd,block,weight;...",
  the newest availability.max_observations). No TTL (deleted on erasure).
- ``hub:avail:area:{area}``          hash: ``n:<wd>:<block>`` and ``h:<wd>:<block>``, the weight of
  the observations kept for the area's customers, and of those at home (``*``: every customer).
  No TTL; an observation leaves it when its customer forgets it or is erased.
- ``hub:arrivals``                   counter: the last arrival number given to an accepted event.
  No TTL.
- ``hub:replication:fence``         counter: written just before a Redis WAIT, so the wait covers
  every earlier write, whichever connection made it (hub.redis_conn.replicated). No TTL.
- ``hub:workers:heartbeat``          sorted set: worker name -> last heartbeat (unix s).
- arq's keys: the queue (``worker.queue_name``, sorted set of job ids by due time),
  ``arq:job:{job_id}`` (serialized job), ``arq:in-progress:{job_id}``, ``arq:retry:{job_id}``.
  Job ids are ``{source}:{event_id}`` for events, ``msg:{message_id}:{due_ms}`` for a message's
  own job (held, retried or replayed); see hub.jobs. lua_log.ACCEPT_EVENT writes the first two itself.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "ARRIVALS",
    "AVAILABILITY_AREA_PREFIX",
    "FOLLOWUPS_HANDLED",
    "FOLLOWUPS_OPEN",
    "INDEXED_STATUSES",
    "MERCHANTS",
    "RATED_DRIVERS",
    "RATED_MERCHANTS",
    "REPLICATION_FENCE",
    "WEBHOOK_DEAD",
    "WEBHOOK_INDEX",
    "WORKER_HEARTBEAT",
    "api_key",
    "api_key_index",
    "auth_failures",
    "availability",
    "availability_area",
    "collapse",
    "conversation",
    "customer",
    "dashboard_session",
    "deliveries_of",
    "delivery",
    "driver_position",
    "event",
    "feedback",
    "feedback_days",
    "feedback_shop_days",
    "followup",
    "followups_of",
    "inbound",
    "link",
    "links_of",
    "message",
    "message_history",
    "messages_by_customer",
    "messages_by_delivery",
    "messages_by_status",
    "optout_pepper",
    "pace",
    "pending_status",
    "phone",
    "provider",
    "rate_window",
    "relay_delivery",
    "relay_log",
    "relay_route",
    "relay_session",
    "relay_sticky",
    "sms_optout",
    "stats_attempts",
    "stats_hour",
    "stranger_answers",
    "timeline",
    "webhook",
    "webhooks_of",
    "whatsapp_optout",
    "whatsapp_window",
]

WORKER_HEARTBEAT = "hub:workers:heartbeat"
ARRIVALS = "hub:arrivals"
REPLICATION_FENCE = "hub:replication:fence"


def event(source: str, event_id: str) -> str:
    return f"hub:event:{source}:{event_id}"


def customer(customer_id: str) -> str:
    return f"hub:customer:{customer_id}"


def delivery(delivery_id: str) -> str:
    return f"hub:delivery:{delivery_id}"


def timeline(delivery_id: str) -> str:
    return f"hub:timeline:{delivery_id}"


def message(message_id: str) -> str:
    return f"hub:msg:{message_id}"


def message_history(message_id: str) -> str:
    return f"hub:msg:{message_id}:history"


def messages_by_delivery(delivery_id: str) -> str:
    return f"hub:msgs:delivery:{delivery_id}"


def messages_by_customer(customer_id: str) -> str:
    return f"hub:msgs:customer:{customer_id}"


def provider(provider_id: str) -> str:
    return f"hub:provider:{provider_id}"


# Statuses an operator acts on (dead, unknown) and those a message waits in (deferred, transient,
# replaying): the sweeper finds waiting messages whose job was lost.
INDEXED_STATUSES = ("dead", "unknown", "deferred", "transient", "replaying")


def messages_by_status(status: str) -> str:
    return f"hub:msgs:status:{status}"


def rate_window(customer_id: str, channel: str) -> str:
    return f"hub:rl:{customer_id}:{channel}"


def pace(channel: str, sender: str) -> str:
    return f"hub:pace:{channel}:{sender}"


def auth_failures(who: str) -> str:
    """``who``: ``addr:{address}`` or ``key:{ref}``."""
    return f"hub:authfail:{who}"


def stranger_answers(pepper: str, e164: str) -> str:
    return "hub:stranger:" + hashlib.sha256((pepper + e164).encode()).hexdigest()[:40]


def link(link_id: str) -> str:
    return f"hub:link:{link_id}"


def links_of(customer_id: str) -> str:
    return f"hub:links:customer:{customer_id}"


def collapse(delivery_id: str, milestone: str) -> str:
    return f"hub:collapse:{delivery_id}:{milestone}"


# -- two-way: conversations, opt-outs, feedback, outbound webhooks -----------------------------
# - ``hub:phone:{e164}``               string: customer id last seen with this phone. No TTL.
# - ``hub:sms_optout:{ref}``           hash: at, keyword, sender. Set by STOP, removed by START.
#   No TTL: an opt-out lasts until the customer opts back in, through erasure (a suppression
#   list). ``ref`` is a keyed hash of the E.164 number (see ``sms_optout``), never the number.
# - ``hub:conv:{e164}:{sender}``       string (JSON): the open prompt for replies from this phone
#   to this sender number (prompt, delivery_id, customer_id, source, locale, timezone, slots,
#   driver_id, expires_at). The latest prompt wins. TTL conversation.keep_days.
# - ``hub:inbound:{MessageSid}``       string: "1" once an inbound SMS was handled. TTL 7 days.
# - ``hub:feedback:{delivery_id}``     hash: rating, comment, driver_id, customer_id, at, day.
#   Same TTL as the message log.
# - ``hub:fbday:{driver_id}``          hash: "<day>:count", "<day>:sum" per UTC day. No TTL.
# - ``hub:fbshop:{merchant_id}``       hash: the same per shop (deliveries with a merchant_id). No TTL.
# - ``hub:fb:drivers``, ``hub:fb:merchants``  sets: the drivers and shops ever rated (hub.feedback
#   summarises them). No TTL.
# - ``hub:followup:{delivery_id}``     hash: the operators' follow-up of a low rating (hub.feedback):
#   delivery_id, customer_id, rating, low_rating, comment, driver_id, merchant_id, at, at_ms,
#   channel, sid, rated_at, handled_at, handled_by. TTL retention.message_log_days from the low rating.
# - ``hub:followups:open``, ``hub:followups:handled``  sorted sets: follow-up delivery ids by the
#   time of their low rating (ms); entries older than the message log are trimmed on every write.
# - ``hub:followups:customer:{id}``    set: the customer's follow-up delivery ids (for erasure).
#   Same TTL as the follow-ups, renewed.
# - ``hub:wh:{id}``                    hash: one outbound webhook delivery (url, type, body, status,
#   attempts, last_error, created_at, delivered_at). TTL retention.message_log_days.
# - ``hub:wh:customer:{id}``          set: webhook delivery ids whose body names the customer (for
#   erasure). Same TTL as the delivery records.
# - ``hub:wh:index``                   sorted set: webhook delivery ids by creation time (ms);
#   entries older than the delivery records' TTL are trimmed on every emit.
# - ``hub:wh:dead``                    sorted set: dead-lettered webhook delivery ids by time (ms).
# - ``hub:wa_optout:{ref}``            hash: at, keyword, sender. A STOP sent over WhatsApp (stops
#   WhatsApp only), removed by START over WhatsApp. No TTL, kept through erasure, like
#   ``hub:sms_optout``; ``ref`` keyed the same way.
# - ``hub:wa_window:{ref}``            string: the time (unix s) of the number's last inbound
#   WhatsApp message: while it exists, free-form WhatsApp text may be sent (hub.whatsapp). TTL
#   whatsapp.window_hours; deleted on erasure.
# - WhatsApp prompts use ``hub:conv:{e164}:{sender}`` with both parts as Twilio writes them,
#   ``whatsapp:+...``, so an SMS prompt and a WhatsApp prompt for one number never mix.


def phone(e164: str) -> str:
    return f"hub:phone:{e164}"


def optout_pepper(secret_key: str | None) -> str:
    """The key of the suppression list's hashed names, derived from ``secret_key``."""
    return hmac.new((secret_key or "").encode(), b"sms-optout", hashlib.sha256).hexdigest()


def sms_optout(pepper: str, e164: str) -> str:
    # SHA-1 because Lua has it (redis.sha1hex in lua_log.APPLY_EVENT), keyed by the pepper: the name
    # reveals no number, and a list of numbers cannot be matched against it without the secret.
    return f"hub:sms_optout:{hashlib.sha1((pepper + e164).encode()).hexdigest()}"


def whatsapp_optout(pepper: str, e164: str) -> str:
    return f"hub:wa_optout:{hashlib.sha1((pepper + e164).encode()).hexdigest()}"


def whatsapp_window(pepper: str, e164: str) -> str:
    return f"hub:wa_window:{hashlib.sha1((pepper + e164).encode()).hexdigest()}"


def conversation(e164: str, sender: str) -> str:
    return f"hub:conv:{e164}:{sender}"


def inbound(message_sid: str) -> str:
    return f"hub:inbound:{message_sid}"


def feedback(delivery_id: str) -> str:
    return f"hub:feedback:{delivery_id}"


def feedback_days(driver_id: str) -> str:
    return f"hub:fbday:{driver_id}"


def feedback_shop_days(merchant_id: str) -> str:
    return f"hub:fbshop:{merchant_id}"


def followup(delivery_id: str) -> str:
    return f"hub:followup:{delivery_id}"


def followups_of(customer_id: str) -> str:
    return f"hub:followups:customer:{customer_id}"


RATED_DRIVERS = "hub:fb:drivers"
RATED_MERCHANTS = "hub:fb:merchants"
FOLLOWUPS_OPEN = "hub:followups:open"
FOLLOWUPS_HANDLED = "hub:followups:handled"


def deliveries_of(customer_id: str) -> str:
    """``hub:deliveries:customer:{id}``: set of the customer's delivery ids (erasure scrubs them).
    TTL retention.timeline_days, renewed by each event."""
    return f"hub:deliveries:customer:{customer_id}"


def pending_status(provider_id: str) -> str:
    """``hub:pending_status:{sid}``: a status callback that came before the id was recorded. TTL 1 h."""
    return f"hub:pending_status:{provider_id}"


def webhook(delivery_id: str) -> str:
    return f"hub:wh:{delivery_id}"


def webhooks_of(customer_id: str) -> str:
    return f"hub:wh:customer:{customer_id}"


WEBHOOK_INDEX = "hub:wh:index"
WEBHOOK_DEAD = "hub:wh:dead"


# -- masked-number relay -------------------------------------------------------------------------
# - ``hub:relay:session:{sid}``        hash: id, delivery_id, driver, customer (real numbers),
#   driver_proxy, customer_proxy, status (open|closed), created_at, expires_at (unix s),
#   stopped_driver/stopped_customer ("1": no SMS forwarded to them). TTL message_log_days.
# - ``hub:relay:route:{real}:{proxy}`` string: session id. The routing key; TTL = the session's
#   remaining life, so expired routes vanish by themselves (no sweeper).
# - ``hub:relay:delivery:{id}``        string: the delivery's open session id. Same TTL.
# - ``hub:relay:sticky:{real}``        string: the proxy number this participant had last. 30 days.
# - ``hub:relay:log:{sid}``            list of JSON interactions (numbers masked). TTL message_log_days.


def relay_session(sid: str) -> str:
    return f"hub:relay:session:{sid}"


def relay_route(real: str, proxy: str) -> str:
    return f"hub:relay:route:{real}:{proxy}"


def relay_delivery(delivery_id: str) -> str:
    return f"hub:relay:delivery:{delivery_id}"


def relay_sticky(real: str) -> str:
    return f"hub:relay:sticky:{real}"


def relay_log(sid: str) -> str:
    return f"hub:relay:log:{sid}"


# -- API keys created at run time (hub.apikeys) --------------------------------------------------


def api_key(digest: str) -> str:
    """``hub:apikey:{sha256}`` hash: id, source, scopes (space-separated), created_at, revoked_at. No TTL."""
    return f"hub:apikey:{digest}"


def api_key_index() -> str:
    """``hub:apikeys`` hash: key id -> SHA-256 digest, for listing and revoking by id. No TTL."""
    return "hub:apikeys"


# -- merchants (hub.merchants) -------------------------------------------------------------------
# ``hub:merchants`` hash: merchant id -> the shop's record (JSON) as PUT /v1/merchants/{id} stored it.
# No TTL (removed by DELETE /v1/merchants/{id}). It holds no personal data.
MERCHANTS = "hub:merchants"


# -- the driver on the map (hub.location) --------------------------------------------------------


def driver_position(delivery_id: str) -> str:
    """``hub:position:{delivery_id}`` string (JSON): lat, lon, at, at_ms, stops_before; the latest
    position only, never a history. TTL tracking.map_position_minutes from ``at``; deleted by the
    delivery's next milestone off the road (lua_log.APPLY_EVENT) and by erasure."""
    return f"hub:position:{delivery_id}"


# -- when customers are home (hub.availability) -------------------------------------------------
# The pools' prefix: the Lua scripts name the pool of an observation's own area from it.
AVAILABILITY_AREA_PREFIX = "hub:avail:area:"


def availability(customer_id: str) -> str:
    """``hub:avail:customer:{id}`` hash: tz, area, failed, count, ``o:<key>`` observations. No TTL."""
    return f"hub:avail:customer:{customer_id}"


def availability_area(area: str) -> str:
    """``hub:avail:area:{area}`` hash: ``n:<wd>:<block>``, ``h:<wd>:<block>`` weights. No TTL."""
    return AVAILABILITY_AREA_PREFIX + area


# -- the operators' dashboard (hub.dashboard) ----------------------------------------------------


def dashboard_session(digest: str) -> str:
    """``hub:dash:session:{sha256 of the session id}`` hash: source, key (the API key's SHA-256),
    created_at. TTL dashboard.session_hours from sign-in; deleted by sign-out. The cookie holds the
    session id, which is stored only as its digest, and the API key is never stored."""
    return f"hub:dash:session:{digest}"


# -- operators' figures (hub.stats) --------------------------------------------------------------


def stats_hour(hour: str) -> str:
    """``hub:stats:{YYYYMMDDHH}`` hash of one UTC hour: ``<dim>|<fact>`` -> count, dim ``-`` (all),
    ``m:<merchant_id>`` or ``d:<driver_id>``. Expires stats.retention_days after the hour ends. No
    personal data: ids of shops and drivers, names of facts."""
    return f"hub:stats:{hour}"


def stats_attempts(delivery_id: str) -> str:
    """``hub:stats:attempts:{delivery_id}`` string: the delivery's failed attempts so far, which tell
    a first attempt from a later one. TTL retention.timeline_days, renewed by each attempt."""
    return f"hub:stats:attempts:{delivery_id}"
