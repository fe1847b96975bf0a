"""Redis key layout and the Lua scripts that change several keys at once.

Every key the hub writes is built here. Shapes and lifetimes:

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
  ms; replaying: by time). Kept by CLAIM_MESSAGE, REPLAY_MESSAGE and HubStore.record; entries
  older than the message log are trimmed on read.
- ``hub:rl:{customer_id}:{channel}`` sorted set: message ids sent to the customer on the channel
  in the last hour, scored by send time (ms). Expires an hour after the last send.
- ``hub:pace:{channel}:{sender}``    string: the next free send slot (ms) of a provider sender
  (see PACE). Expires when idle.
- ``hub:collapse:{delivery}:{type}`` string: end (ms) of the open collapsing window for a
  delivery's milestone. Expires with the window.
- ``hub:link:{link_id}``            hash: delivery_id, customer_id, created_at of a tracking link
  (hub.links). Written once, by ENSURE_LINK, never for another delivery or customer. TTL
  tracking.link_days, renewed by every message carrying it; deleted on erasure.
- ``hub:links:customer:{id}``        set of the customer's link ids (for erasure). Same TTL.
- ``hub:authfail:addr:{address}``   string: requests with a wrong API key from a client address
  (read through ``api.trusted_proxies`` only) in the current minute. TTL 60 s from the first.
- ``hub:authfail:key:{ref}``         string: the same per presented credential (a digest, after the
  ``hub_`` id prefix of a stored key). TTL 60 s from the first.
- ``hub:stranger:{ref}``             string: answers given to a number no customer has, in the
  current window (conversation.unknown_number_window_hours, the TTL, from the first). ``ref`` is
  keyed by the opt-out pepper, so the name holds no number.
- ``hub:arrivals``                   counter: the last arrival number given to an accepted event.
  No TTL.
- ``hub:workers:heartbeat``          sorted set: worker name -> last heartbeat (unix s).
- arq's keys: the queue (``worker.queue_name``, sorted set of job ids by due time),
  ``arq:job:{job_id}`` (serialized job), ``arq:in-progress:{job_id}``, ``arq:retry:{job_id}``.
  Job ids are ``{source}:{event_id}`` for events, ``msg:{message_id}:{due_ms}`` for a message's
  own job (held, retried or replayed). ACCEPT_EVENT writes the first two itself, in arq's format.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = [
    "ACCEPT_EVENT",
    "APPLY_EVENT",
    "ARRIVALS",
    "CLAIM_MESSAGE",
    "COLLAPSE",
    "ENSURE_LINK",
    "IMPORT_CUSTOMER",
    "INDEXED_STATUSES",
    "PACE",
    "RELEASE_CLAIM",
    "REPLAY_MESSAGE",
    "REVOKE_API_KEY",
    "SETTLE_MESSAGE",
    "api_key",
    "api_key_index",
    "auth_failures",
    "collapse",
    "customer",
    "delivery",
    "event",
    "link",
    "links_of",
    "message",
    "message_history",
    "messages_by_customer",
    "messages_by_delivery",
    "messages_by_status",
    "pace",
    "provider",
    "rate_window",
    "timeline",
]

WORKER_HEARTBEAT = "hub:workers:heartbeat"
ARRIVALS = "hub:arrivals"


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


# Take or renew the tracking link of a delivery for a customer (hub.links, HubStore.ensure_link):
# the first candidate id already theirs is renewed; failing that the first free one is taken. A
# candidate held by another delivery or customer is never touched. Returns the id, or false when
# every candidate belongs to someone else.
# KEYS: hub:link:{id} per candidate (in order), then hub:links:customer:{id}.
# ARGV: delivery_id, customer_id, ttl (s), created_at, then the candidate ids (in KEYS' order).
ENSURE_LINK = """
local n = #KEYS - 1
local chosen, free = nil, nil
for i = 1, n do
  local owner = redis.call('HMGET', KEYS[i], 'delivery_id', 'customer_id')
  if owner[1] == ARGV[1] and owner[2] == ARGV[2] then
    chosen = i
    break
  end
  if not free and redis.call('EXISTS', KEYS[i]) == 0 then free = i end
end
if not chosen then
  if not free then return false end
  chosen = free
  redis.call('HSET', KEYS[chosen], 'delivery_id', ARGV[1], 'customer_id', ARGV[2], 'created_at', ARGV[4])
end
redis.call('EXPIRE', KEYS[chosen], ARGV[3])
redis.call('SADD', KEYS[n + 1], ARGV[4 + chosen])
redis.call('EXPIRE', KEYS[n + 1], ARGV[3])
return ARGV[4 + chosen]
"""


def collapse(delivery_id: str, milestone: str) -> str:
    return f"hub:collapse:{delivery_id}:{milestone}"


# Apply one event in one round trip: upsert the customer's inline contact fields (new contacts
# lift an erasure), always add the event to the timeline, and update the delivery's fields only
# when the event is current (not older than the newest applied event, and not a non-terminal
# milestone after a terminal one). Returns {current (1|0), customer hash, delivery hash}.
# KEYS: delivery, timeline, customer, the event's idempotency record (its arrival number, ``seq``).
# ARGV: type, occurred_ms, is_terminal (0|1), timeline
# member, delivery fields (JSON object of strings), ttl seconds, now (ISO), customer contact
# fields (JSON object of strings, may be empty), lift erasure (0|1), when the hub received the
# event (ISO, UTC; may be empty), the opt-out pepper (``optout_pepper``). The 4th result says
# whether the customer's phone has texted STOP (``sms_optout``), so planning needs no further round trip; the 5th is the
# event's arrival number.
APPLY_EVENT = """
local contact = cjson.decode(ARGV[8])
local seq = tonumber(redis.call('HGET', KEYS[4], 'seq') or '0')
-- Contact data is applied in the order the hub received it: a retried or late event does not
-- overwrite a contact that a later event or a PUT already changed.
local contact_at = redis.call('HGET', KEYS[3], 'contact_at')
if ARGV[10] ~= '' and contact_at and contact_at > ARGV[10] then contact = {} end
local touched = false
for _, f in ipairs({'phone', 'email'}) do
  if contact[f] and redis.call('HGET', KEYS[3], f) ~= contact[f] then redis.call('HDEL', KEYS[3], f .. '_invalid') end
end
for k, v in pairs(contact) do redis.call('HSET', KEYS[3], k, v); touched = true end
if touched then
  redis.call('HSET', KEYS[3], 'updated_at', ARGV[7])
  if ARGV[10] ~= '' then redis.call('HSET', KEYS[3], 'contact_at', ARGV[10]) end
end
if ARGV[9] == '1' and next(contact) ~= nil then redis.call('HDEL', KEYS[3], 'erased') end
local last_ms = tonumber(redis.call('HGET', KEYS[1], 'last_ms') or '-1')
local terminal = redis.call('HGET', KEYS[1], 'terminal') == '1'
local last_seq = tonumber(redis.call('HGET', KEYS[1], 'last_seq') or '0')
local ms = tonumber(ARGV[2])
local current = 1
-- Newest by (occurred_at, arrival): of events with one timestamp the later arrival wins, so
-- "the newest" is always one event (the same event applied again stays current).
if ms < last_ms or (ms == last_ms and seq < last_seq) then current = 0 end
if terminal and ARGV[3] ~= '1' then current = 0 end
-- The member carries the arrival number, so equal timestamps stay ordered in the timeline too.
redis.call('ZADD', KEYS[2], ms, string.sub(ARGV[4], 1, -2) .. ',"seq":' .. string.format('%d', seq) .. '}')
if current == 1 then
  redis.call('HSET', KEYS[1], 'status', ARGV[1], 'last_ms', ARGV[2], 'last_seq', string.format('%d', seq),
    'terminal', ARGV[3], 'updated_at', ARGV[7])
  local fields = cjson.decode(ARGV[5])
  for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
local phone = redis.call('HGET', KEYS[3], 'phone')
local stopped = 0
if phone and redis.call('EXISTS', 'hub:sms_optout:' .. redis.sha1hex(ARGV[11] .. phone)) == 1 then stopped = 1 end
return {current, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[1]), stopped, seq}
"""

# Move a message to a new status if its current one allows it, creating the record on first
# sight. ``"claimed"`` means the change was made (for target "sending": the caller may send now);
# otherwise the current status is returned and nothing changes. Statuses that allow a change are
# passed in (",transient,deferred,replaying,"); a missing record always does.
# With a per-customer limit (ARGV[8] > 0) a "sending" claim also takes a slot in the customer's
# hourly window; when the window is full it returns "limited:<ms when a slot frees>".
# A "sending" claim stamps ``claimed_ms`` (wall clock): a later handler that finds the message
# still sending can tell a live send from one a dead worker left behind. It also stores the
# handler's claim token (ARGV[13]): the same handler asking again (its first call's answer was
# lost with a Redis connection) is told "claimed", anyone else sees "sending". The status it
# replaced is kept as ``prior`` for RELEASE_CLAIM.
# A "sending" claim passes the send gate first (erasure, opt-outs, STOP, a changed address): a
# message it stops becomes "skipped" with the reason, and "gated:<reason>" is returned.
# KEYS: message, history, by-delivery index, by-customer index, the five status indexes (dead,
#   unknown, deferred, transient, replaying), the customer's rate window for the channel, the
#   customer, the SMS opt-out of the address (``sms_optout``; any key for other channels).
# ARGV: now (ISO), now (ms), ttl seconds, record fields (JSON object of strings), target status,
#   detail (why; may be empty), statuses allowing the change, hourly limit (0: none), window (ms),
#   due (ms, for deferred; may be empty), policy clock (ms), job payload for a waiting message
#   (JSON; may be empty), claim token (may be empty).
CLAIM_MESSAGE = """
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'sending' and ARGV[13] ~= '' and redis.call('HGET', KEYS[1], 'claim') == ARGV[13] then
  return 'claimed'
end
if st and not string.find(ARGV[7], ',' .. st .. ',', 1, true) then return st end
local fields = cjson.decode(ARGV[4])
-- A message seen for the first time: its record, indexed by delivery and customer.
local function create_record()
  if st then return end
  for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
  redis.call('HSET', KEYS[1], 'created_at', ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[2], fields['id'])
  redis.call('ZADD', KEYS[4], ARGV[2], fields['id'])
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
if ARGV[5] == 'sending' and redis.call('EXISTS', KEYS[11]) == 1 then
  -- The send gate: whatever the path (first send, held, retried, escalated, fallback, replayed),
  -- nothing goes to an erased customer, an opted-out channel, a number that texted STOP, or an
  -- address that is no longer the customer's. Checked here, atomically with the claim.
  local why = nil
  local channel, to = fields['channel'], fields['to']
  if redis.call('HGET', KEYS[11], 'erased') == '1' then
    why = 'the customer was erased'
  elseif channel == 'sms' and redis.call('EXISTS', KEYS[12]) == 1 then
    why = 'the number texted STOP'
  else
    local opt = redis.call('HGET', KEYS[11], 'pref:opt_out')
    if opt then
      for _, c in ipairs(cjson.decode(opt)) do if c == channel then why = 'the customer opted out of ' .. c end end
    end
    if not why then
      local current = false
      if channel == 'push' then
        local tokens = redis.call('HGET', KEYS[11], 'push_tokens')
        if tokens then for _, t in ipairs(cjson.decode(tokens)) do if t == to then current = true end end end
      else
        current = redis.call('HGET', KEYS[11], channel == 'sms' and 'phone' or 'email') == to
      end
      if not current then why = "the address is no longer the customer's" end
    end
  end
  if why then
    create_record()
    redis.call('HSET', KEYS[1], 'status', 'skipped', 'updated_at', ARGV[1])
    redis.call('HDEL', KEYS[1], 'due_at', 'job')
    redis.call('RPUSH', KEYS[2], cjson.encode({status = 'skipped', at = ARGV[1], detail = why}))
    redis.call('EXPIRE', KEYS[1], ARGV[3])
    redis.call('EXPIRE', KEYS[2], ARGV[3])
    for i = 5, 9 do redis.call('ZREM', KEYS[i], fields['id']) end
    return 'gated:' .. why
  end
end
local limit = tonumber(ARGV[8])
if ARGV[5] == 'sending' and limit > 0 then
  local now = tonumber(ARGV[11])
  local window = tonumber(ARGV[9])
  redis.call('ZREMRANGEBYSCORE', KEYS[10], '-inf', now - window)
  if not redis.call('ZSCORE', KEYS[10], fields['id']) then
    if redis.call('ZCARD', KEYS[10]) >= limit then
      local oldest = redis.call('ZRANGE', KEYS[10], 0, 0, 'WITHSCORES')
      return 'limited:' .. string.format('%d', tonumber(oldest[2]) + window)
    end
    redis.call('ZADD', KEYS[10], now, fields['id'])
  end
  redis.call('PEXPIRE', KEYS[10], window)
end
create_record()
redis.call('HSET', KEYS[1], 'status', ARGV[5], 'updated_at', ARGV[1])
if ARGV[5] == 'sending' then
  redis.call('HINCRBY', KEYS[1], 'attempts', 1)
  redis.call('HSET', KEYS[1], 'claimed_ms', ARGV[2], 'claim', ARGV[13], 'prior', st or '')
end
if ARGV[10] ~= '' then redis.call('HSET', KEYS[1], 'due_at', ARGV[10]) else redis.call('HDEL', KEYS[1], 'due_at') end
if ARGV[12] ~= '' then redis.call('HSET', KEYS[1], 'job', ARGV[12]) end
local entry = {status = ARGV[5], at = ARGV[1]}
if ARGV[6] ~= '' then entry['detail'] = ARGV[6] end
redis.call('RPUSH', KEYS[2], cjson.encode(entry))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[3])
for i = 5, 9 do redis.call('ZREM', KEYS[i], fields['id']) end
if ARGV[5] == 'deferred' then redis.call('ZADD', KEYS[7], ARGV[10] ~= '' and ARGV[10] or ARGV[2], fields['id']) end
return 'claimed'
"""

# Give back a "sending" claim whose handler never called the provider (Redis failed while it
# claimed, or its job was cancelled then): only the claim's own token may, and only while the
# message is still "sending" under it. The message returns to the status it had before the claim,
# or becomes "transient" (with the given job payload, due now) when it was new, and is indexed
# under that status, due now, so the sweeper finds it if no job runs it. Returns 1 if released.
# KEYS: message, history, the five status indexes (dead, unknown, deferred, transient,
#   replaying), the customer's rate window for the channel.
# ARGV: token, now (ISO), due (ms, policy clock), detail, the five status names in KEYS order, job payload.
RELEASE_CLAIM = """
if redis.call('HGET', KEYS[1], 'status') ~= 'sending' or redis.call('HGET', KEYS[1], 'claim') ~= ARGV[1] then
  return 0
end
local prior = redis.call('HGET', KEYS[1], 'prior') or ''
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('HDEL', KEYS[1], 'claim', 'claimed_ms', 'prior')
redis.call('HINCRBY', KEYS[1], 'attempts', -1)
if prior == '' then
  prior = 'transient'
  redis.call('HSET', KEYS[1], 'job', ARGV[10], 'due_at', ARGV[3])
end
redis.call('HSET', KEYS[1], 'status', prior, 'updated_at', ARGV[2])
for i = 3, 7 do
  if ARGV[i + 2] == prior then redis.call('ZADD', KEYS[i], ARGV[3], id) end
end
if id then redis.call('ZREM', KEYS[8], id) end
redis.call('RPUSH', KEYS[2], cjson.encode({status = prior, at = ARGV[2], detail = ARGV[4]}))
return 1
"""

# Record the outcome of a provider call, only while the message is still "sending" under the
# caller's claim token; the same write asked again after a lost answer finds its own time on the
# record and is told "done". Anything else (the claim given up at its lease, a later status from
# a callback) is left as it is and its status returned.
# KEYS: message, history, the target status's index, the provider-id key.
# ARGV: token, status, at (ISO), fields (JSON object of strings), history entry (JSON), index score
#   ('' when the status is not indexed), fields to clear (JSON list), message id, ttl seconds.
SETTLE_MESSAGE = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'sending' or redis.call('HGET', KEYS[1], 'claim') ~= ARGV[1] then
  if st == ARGV[2] and redis.call('HGET', KEYS[1], 'updated_at') == ARGV[3] then return 'done' end
  return st or 'gone'
end
local drop = cjson.decode(ARGV[7])
if #drop > 0 then redis.call('HDEL', KEYS[1], unpack(drop)) end
local fields = cjson.decode(ARGV[4])
for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
redis.call('RPUSH', KEYS[2], ARGV[5])
if ARGV[6] ~= '' then redis.call('ZADD', KEYS[3], ARGV[6], ARGV[8]) end
if fields['provider_id'] then redis.call('SET', KEYS[4], ARGV[8], 'EX', ARGV[9]) end
return 'done'
"""

# Replay a dead-lettered message: only a message still "dead" changes (to "replaying", with its
# tries counted afresh), so two replays of one message queue it once. Returns the status found.
# KEYS: message, history, dead index, replaying index. ARGV: now (ISO), now (ms).
REPLAY_MESSAGE = """
local st = redis.call('HGET', KEYS[1], 'status')
if st ~= 'dead' then return st or '' end
redis.call('HSET', KEYS[1], 'status', 'replaying', 'updated_at', ARGV[1], 'attempts', 0)
redis.call('HDEL', KEYS[1], 'due_at')
redis.call('RPUSH', KEYS[2], cjson.encode({status = 'replaying', at = ARGV[1], detail = 'replay requested'}))
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('ZREM', KEYS[3], id)
redis.call('ZADD', KEYS[4], ARGV[2], id)
return 'dead'
"""

# Take the next send slot of a provider sender (messages per second shared by all workers).
# Returns the wait in ms before sending; a wait longer than the maximum is not taken and comes
# back negative (the caller reschedules the message instead of holding a worker).
# Redis's own clock, so workers on machines whose clocks differ share one timeline.
# KEYS: pace key. ARGV: interval (ms), maximum wait (ms).
PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local at = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
local wait = at - now
if wait > tonumber(ARGV[2]) then return -wait end
local interval = tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%d', at + interval), 'PX', string.format('%d', wait + interval + 1000))
return wait
"""

# Open (or find) the collapsing window of a delivery's milestone; returns its end (ms).
# KEYS: collapse key. ARGV: end if opened now (ms), window length (ms).
COLLAPSE = """
local found = redis.call('GET', KEYS[1])
if found then return found end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""

# Register an event and enqueue its arq job in one atomic step, so an accepted event is always
# queued (no window in which a crash leaves it registered but not queued). Returns "new" for a
# first sighting, "conflict" when the event_id was used before with a different payload, else
# the stored state (queued | done). A "queued" event whose job is gone (its tries ran out) is
# queued again; a job that exists or has a result is left alone, as arq itself would.
# A new event takes the next arrival number (``seq``), the tie-break between events of one
# delivery with equal ``occurred_at``.
# KEYS: event, arq job key, arq queue, arq result key, the arrival counter.
# ARGV: digest, received_at (ISO), ttl seconds, job payload, score (ms), job expiry (ms), job id.
ACCEPT_EVENT = """
local digest = redis.call('HGET', KEYS[1], 'digest')
local state
if not digest then
  redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'state', 'queued', 'received_at', ARGV[2],
    'seq', redis.call('INCR', KEYS[5]))
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  state = 'new'
elseif digest ~= ARGV[1] then
  return 'conflict'
else
  state = redis.call('HGET', KEYS[1], 'state') or 'queued'
end
if state ~= 'done' and redis.call('EXISTS', KEYS[2], KEYS[4]) == 0 then
  redis.call('SET', KEYS[2], ARGV[4], 'PX', ARGV[6])
  redis.call('ZADD', KEYS[3], ARGV[5], ARGV[7])
end
return state
"""


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
# - ``hub:wh:{id}``                    hash: one outbound webhook delivery (url, type, body, status,
#   attempts, last_error, created_at, delivered_at). TTL retention.message_log_days.
# - ``hub:wh:customer:{id}``          set: webhook delivery ids whose body names the customer (for
#   erasure). Same TTL as the delivery records.
# - ``hub:wh:index``                   sorted set: webhook delivery ids by creation time (ms);
#   entries older than the delivery records' TTL are trimmed on every emit.
# - ``hub:wh:dead``                    sorted set: dead-lettered webhook delivery ids by time (ms).


def phone(e164: str) -> str:
    return f"hub:phone:{e164}"


def optout_pepper(secret_key: str | None) -> str:
    """The key of the suppression list's hashed names, derived from ``secret_key``."""
    return hmac.new((secret_key or "").encode(), b"sms-optout", hashlib.sha256).hexdigest()


def sms_optout(pepper: str, e164: str) -> str:
    # SHA-1 because Lua has it (redis.sha1hex in APPLY_EVENT), keyed by the pepper: the name
    # reveals no number, and a list of numbers cannot be matched against it without the secret.
    return f"hub:sms_optout:{hashlib.sha1((pepper + e164).encode()).hexdigest()}"


def conversation(e164: str, sender: str) -> str:
    return f"hub:conv:{e164}:{sender}"


def inbound(message_sid: str) -> str:
    return f"hub:inbound:{message_sid}"


def feedback(delivery_id: str) -> str:
    return f"hub:feedback:{delivery_id}"


def feedback_days(driver_id: str) -> str:
    return f"hub:fbday:{driver_id}"


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

# Move a message's status forward after a provider callback; never backwards (a late "sent"
# after "delivered" changes nothing). Returns the new status, or "" when nothing changed.
# KEYS: message, history. ARGV: status, rank of status, now (ISO), error code, ttl seconds.
STATUS_FORWARD = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return '' end
local ranks = {sending = 0, accepted = 1, queued = 1, sent = 2, delivered = 3, undelivered = 3, failed = 3,
  read = 3}
local rank = ranks[current]
if rank == nil then rank = 0 end
if tonumber(ARGV[2]) <= rank then return '' end
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'updated_at', ARGV[3])
local entry = {status = ARGV[1], at = ARGV[3]}
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'error_code', ARGV[4])
  entry['detail'] = 'provider error ' .. ARGV[4]
end
redis.call('RPUSH', KEYS[2], cjson.encode(entry))
return ARGV[1]
"""

# Remove one push token from a customer (FCM said it is no longer registered).
# KEYS: customer. ARGV: token. Returns 1 if removed.
REMOVE_PUSH_TOKEN = """
local raw = redis.call('HGET', KEYS[1], 'push_tokens')
if not raw then return 0 end
local tokens = cjson.decode(raw)
local kept = {}
local removed = 0
for _, t in ipairs(tokens) do
  if t == ARGV[1] then removed = 1 else table.insert(kept, t) end
end
if #kept == 0 then redis.call('HDEL', KEYS[1], 'push_tokens')
else redis.call('HSET', KEYS[1], 'push_tokens', cjson.encode(kept)) end
return removed
"""

# Record a rating for a delivery and keep per-driver, per-day sums right when it is changed.
# KEYS: feedback, driver days. ARGV: rating, comment, driver_id, customer_id, at, day, ttl.
RECORD_FEEDBACK = """
local old = redis.call('HGET', KEYS[1], 'rating')
local old_day = redis.call('HGET', KEYS[1], 'day')
if old and old_day then
  redis.call('HINCRBY', KEYS[2], old_day .. ':sum', -tonumber(old))
  redis.call('HINCRBY', KEYS[2], old_day .. ':count', -1)
end
redis.call('HSET', KEYS[1], 'rating', ARGV[1], 'comment', ARGV[2], 'driver_id', ARGV[3],
  'customer_id', ARGV[4], 'at', ARGV[5], 'day', ARGV[6])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('HINCRBY', KEYS[2], ARGV[6] .. ':sum', tonumber(ARGV[1]))
redis.call('HINCRBY', KEYS[2], ARGV[6] .. ':count', 1)
if old then return 0 end
return 1
"""

# Create a webhook delivery once (deterministic ids make a repeated emit a no-op) and enqueue
# its arq job. KEYS: delivery hash, index, arq job key, webhook queue.
# ARGV: fields (JSON), now (ms), job payload, job id, job expiry (ms), ttl seconds.
CREATE_WEBHOOK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local fields = cjson.decode(ARGV[1])
for k, v in pairs(fields) do redis.call('HSET', KEYS[1], k, v) end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[6]) * 1000)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[2], ARGV[4])
return 1
"""


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


# Open a relay session atomically. A participant may hold a proxy number in at most one live
# session, so a number is free for them when their routing key on it does not exist; the sticky
# number is tried first, then the pool in the given order (local numbers first).
# KEYS: delivery key, session key, driver sticky, customer sticky.
# ARGV: sid, driver, customer, route ttl (s), driver pool (JSON), customer pool (JSON),
# session fields (JSON), log ttl (s).
# Returns {"open", sid, driver proxy, customer proxy} | {"existing", sid} | {"exhausted", role}.
OPEN_RELAY = """
local existing = redis.call('GET', KEYS[1])
if existing and redis.call('HGET', 'hub:relay:session:' .. existing, 'status') == 'open' then
  return {'existing', existing}
end
local function free(real, x) return redis.call('EXISTS', 'hub:relay:route:' .. real .. ':' .. x) == 0 end
local function pick(real, pool, sticky_key)
  local sticky = redis.call('GET', sticky_key)
  if sticky then
    for _, x in ipairs(pool) do if x == sticky and free(real, x) then return x end end
  end
  for _, x in ipairs(pool) do if free(real, x) then return x end end
  return false
end
local xd = pick(ARGV[2], cjson.decode(ARGV[5]), KEYS[3])
if not xd then return {'exhausted', 'driver'} end
local xc = pick(ARGV[3], cjson.decode(ARGV[6]), KEYS[4])
if not xc then return {'exhausted', 'customer'} end
local ttl = tonumber(ARGV[4])
redis.call('SET', 'hub:relay:route:' .. ARGV[2] .. ':' .. xd, ARGV[1], 'EX', ttl)
redis.call('SET', 'hub:relay:route:' .. ARGV[3] .. ':' .. xc, ARGV[1], 'EX', ttl)
local fields = cjson.decode(ARGV[7])
for k, v in pairs(fields) do redis.call('HSET', KEYS[2], k, v) end
redis.call('HSET', KEYS[2], 'driver_proxy', xd, 'customer_proxy', xc, 'status', 'open')
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('SET', KEYS[3], xd, 'EX', 2592000)
redis.call('SET', KEYS[4], xc, 'EX', 2592000)
return {'open', ARGV[1], xd, xc}
"""

# Give a session a new remaining life (a call or text refreshes it; `delivered` shortens it to
# the grace period). Only shortens when ARGV[3] is "shorten". KEYS: session.
# ARGV: ttl (s), now (unix s), mode ("refresh" | "shorten"). Returns the new expiry or 0.
EXTEND_RELAY = """
if redis.call('HGET', KEYS[1], 'status') ~= 'open' then return 0 end
local s = redis.call('HMGET', KEYS[1], 'id', 'driver', 'customer', 'driver_proxy', 'customer_proxy', 'delivery_id',
  'expires_at')
local new_exp = tonumber(ARGV[2]) + tonumber(ARGV[1])
if ARGV[3] == 'shorten' and tonumber(s[7]) < new_exp then return tonumber(s[7]) end
local routes = {'hub:relay:route:' .. s[2] .. ':' .. s[4], 'hub:relay:route:' .. s[3] .. ':' .. s[5],
  'hub:relay:delivery:' .. s[6]}
for _, k in ipairs(routes) do
  if redis.call('GET', k) == s[1] then redis.call('EXPIRE', k, ARGV[1]) end
end
redis.call('HSET', KEYS[1], 'expires_at', new_exp)
return new_exp
"""

# Close a session: its routing keys go (only if still its own); the record stays for the log,
# and the delivery keeps pointing at it for the log's lifetime.
# KEYS: session. ARGV: now (ISO), log ttl (s). Returns 1 if it was open.
CLOSE_RELAY = """
if redis.call('HGET', KEYS[1], 'status') ~= 'open' then return 0 end
local s = redis.call('HMGET', KEYS[1], 'id', 'driver', 'customer', 'driver_proxy', 'customer_proxy', 'delivery_id')
local routes = {'hub:relay:route:' .. s[2] .. ':' .. s[4], 'hub:relay:route:' .. s[3] .. ':' .. s[5]}
for _, k in ipairs(routes) do
  if redis.call('GET', k) == s[1] then redis.call('DEL', k) end
end
local pointer = 'hub:relay:delivery:' .. s[6]
if redis.call('GET', pointer) == s[1] then redis.call('EXPIRE', pointer, ARGV[2]) end
redis.call('HSET', KEYS[1], 'status', 'closed', 'closed_at', ARGV[1])
return 1
"""

# Route an inbound call or text in one round trip: the session behind (caller, proxy) if it is
# open and not expired, with its life refreshed (a call or text counts as activity).
# KEYS: route key. ARGV: now (unix s), ttl (s). Returns the session hash (flat) or false.
ROUTE_RELAY = """
local sid = redis.call('GET', KEYS[1])
if not sid then return false end
local key = 'hub:relay:session:' .. sid
if redis.call('HGET', key, 'status') ~= 'open' then return false end
if tonumber(redis.call('HGET', key, 'expires_at') or '0') < tonumber(ARGV[1]) then return false end
local s = redis.call('HMGET', key, 'driver', 'customer', 'driver_proxy', 'customer_proxy', 'delivery_id')
local ttl = tonumber(ARGV[2])
for _, k in ipairs({'hub:relay:route:' .. s[1] .. ':' .. s[3], 'hub:relay:route:' .. s[2] .. ':' .. s[4],
    'hub:relay:delivery:' .. s[5]}) do
  if redis.call('GET', k) == sid then redis.call('EXPIRE', k, ttl) end
end
redis.call('HSET', key, 'expires_at', tonumber(ARGV[1]) + ttl)
return redis.call('HGETALL', key)
"""


# Upsert one customer from an import row (hub.importer), comparing first: nothing is written when the stored
# contact equals the row's and every preference the row names is already stored as given.
# Contact fields the row lacks are removed (PUT semantics); a changed phone or e-mail drops its
# "invalid" mark; an erasure tombstone is lifted; the phone index points at the customer.
# Returns 0 unchanged, 1 created, 2 updated.
# KEYS: customer, phone index (only when the row has a phone).
# ARGV: contact fields (JSON object of strings), preference fields ("pref:<name>" -> JSON text,
# as a JSON object), now (ISO), customer id.
IMPORT_CUSTOMER = """
local names = {'name', 'phone', 'email', 'push_tokens', 'locale', 'timezone'}
local contact = cjson.decode(ARGV[1])
local prefs = cjson.decode(ARGV[2])
local existed = redis.call('EXISTS', KEYS[1]) == 1
local have = redis.call('HMGET', KEYS[1], 'erased', unpack(names))
local changed = (not existed) or have[1] == '1'
local missing = {}
for i, n in ipairs(names) do
  local want = contact[n]
  if want == nil then
    if have[i + 1] then changed = true; table.insert(missing, n) end
  elseif want ~= have[i + 1] then
    changed = true
  end
end
if not changed then
  for k, v in pairs(prefs) do
    if redis.call('HGET', KEYS[1], k) ~= v then changed = true; break end
  end
end
if not changed then return 0 end
if #missing > 0 then redis.call('HDEL', KEYS[1], unpack(missing)) end
if contact['phone'] ~= have[3] then redis.call('HDEL', KEYS[1], 'phone_invalid') end
if contact['email'] ~= have[4] then redis.call('HDEL', KEYS[1], 'email_invalid') end
redis.call('HDEL', KEYS[1], 'erased')
local args = {'updated_at', ARGV[3], 'contact_at', ARGV[3]}
for k, v in pairs(contact) do table.insert(args, k); table.insert(args, v) end
for k, v in pairs(prefs) do table.insert(args, k); table.insert(args, v) end
redis.call('HSET', KEYS[1], unpack(args))
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[4]) end
if existed then return 2 end
return 1
"""

# -- API keys created at run time (hub.apikeys) --------------------------------------------------


def api_key(digest: str) -> str:
    """``hub:apikey:{sha256}`` hash: id, source, scopes (space-separated), created_at, revoked_at. No TTL."""
    return f"hub:apikey:{digest}"


def api_key_index() -> str:
    """``hub:apikeys`` hash: key id -> SHA-256 digest, for listing and revoking by id. No TTL."""
    return "hub:apikeys"


# Revoke an API key by id (hub.apikeys): marks the key's record once.
# Returns 0 (unknown id), 1 (revoked now), 2 (revoked already).
# KEYS: the id index. ARGV: key id, now (ISO).
REVOKE_API_KEY = """
local digest = redis.call('HGET', KEYS[1], ARGV[1])
if not digest then return 0 end
local record = 'hub:apikey:' .. digest
if redis.call('HSETNX', record, 'revoked_at', ARGV[2]) == 0 then return 2 end
return 1
"""
