"""Lua scripts of the event and message log: accepting and applying events, the message log's
claims and outcomes, the send gate, pacing, collapsing, tracking links.

Each script changes several keys at once, atomically; the keys are named in ``hub.keys`` (the
shapes and lifetimes are described there) and passed in by ``hub.store``. Scripts hold no key
prefixes of their own except where a key's name follows from data read inside the script.
"""

from __future__ import annotations

__all__ = [
    "ACCEPT_EVENT",
    "APPLY_EVENT",
    "CLAIM_MESSAGE",
    "COLLAPSE",
    "ENSURE_LINK",
    "PACE",
    "RELEASE_CLAIM",
    "REPLAY_MESSAGE",
    "SETTLE_MESSAGE",
    "STATUS_FORWARD",
]

# Register an event and enqueue its arq job in one atomic step, so an accepted event is always
# queued (no window in which a crash leaves it registered but not queued). Returns "new" for a
# first sighting, "conflict" when the event_id was used before with a different payload, else
# the stored state (queued | done). A "queued" event whose job is gone (its tries ran out) is
# queued again; a job that exists or has a result is left alone, as arq itself would.
# A new event takes the next arrival number (``seq``), the tie-break between events of one
# delivery with equal ``occurred_at``.
# The job itself is opaque here: its key, queue, result key, id and serialized payload are built
# by hub.jobs (the caller passes them in).
# KEYS: event, job key, queue, job result key, the arrival counter.
# ARGV: digest, received_at (ISO), ttl seconds, job payload, score (ms), job expiry (ms), job id,
#   the queue's wake-up channel (hub.jobs.wake_channel: the workers start the job at once).
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
  redis.call('PUBLISH', ARGV[8], '1')
end
return state
"""

# Apply one event in one round trip: upsert the customer's inline contact fields (new contacts
# lift an erasure), always add the event to the timeline, and update the delivery's fields only
# when the event is current (not older than the newest applied event, and not a non-terminal
# milestone after a terminal one). Returns {current (1|0), customer hash, delivery hash}.
# KEYS: delivery, timeline, customer, the event's idempotency record (its arrival number, ``seq``),
#   the phone index of the contact's phone (any key when the event carries none), the customer's
#   deliveries, the driver's position (deleted by a current milestone not in the last ARGV).
# ARGV: type, occurred_ms, is_terminal (0|1), timeline
# member, delivery fields (JSON object of strings), ttl seconds, now (ISO), customer contact
# fields (JSON object of strings, may be empty), lift erasure (0|1), when the hub received the
# event (ISO, UTC; may be empty), the opt-out pepper (``optout_pepper``), the delivery id, the
# customer id, the milestones of the round (",out_for_delivery,...,"). The 4th result says
# whether the customer's phone has texted STOP (``sms_optout``), so planning needs no further round trip; the 5th is the
# event's arrival number; the 6th whether the customer's WhatsApp number (else the phone) sent
# STOP over WhatsApp (``whatsapp_optout``).
APPLY_EVENT = """
local contact = cjson.decode(ARGV[8])
local has_phone = contact['phone'] ~= nil
local seq = tonumber(redis.call('HGET', KEYS[4], 'seq') or '0')
-- Contact data is applied in the order the hub received it: a retried or late event does not
-- overwrite a contact that a later event or a PUT already changed.
local contact_at = redis.call('HGET', KEYS[3], 'contact_at')
if ARGV[10] ~= '' and contact_at and contact_at > ARGV[10] then contact = {} end
local touched = false
for _, f in ipairs({'phone', 'email'}) do
  if contact[f] and redis.call('HGET', KEYS[3], f) ~= contact[f] then redis.call('HDEL', KEYS[3], f .. '_invalid') end
end
local flat = {}
for k, v in pairs(contact) do flat[#flat + 1] = k; flat[#flat + 1] = v; touched = true end
if touched then
  flat[#flat + 1] = 'updated_at'; flat[#flat + 1] = ARGV[7]
  if ARGV[10] ~= '' then flat[#flat + 1] = 'contact_at'; flat[#flat + 1] = ARGV[10] end
  redis.call('HSET', KEYS[3], unpack(flat))
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
  local set = {'status', ARGV[1], 'last_ms', ARGV[2], 'last_seq', string.format('%d', seq), 'terminal', ARGV[3],
    'updated_at', ARGV[7]}
  for k, v in pairs(cjson.decode(ARGV[5])) do set[#set + 1] = k; set[#set + 1] = v end
  redis.call('HSET', KEYS[1], unpack(set))
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
-- The driver's position ends with the round (hub.location): a current milestone off the road deletes it.
if current == 1 and not string.find(ARGV[14], ',' .. ARGV[1] .. ',', 1, true) then redis.call('DEL', KEYS[7]) end
-- The customer's phone index and list of deliveries (in this step: one round trip per event).
if has_phone then redis.call('SET', KEYS[5], ARGV[13]) end
redis.call('SADD', KEYS[6], ARGV[12])
redis.call('EXPIRE', KEYS[6], ARGV[6])
local phone = redis.call('HGET', KEYS[3], 'phone')
local stopped = 0
if phone and redis.call('EXISTS', 'hub:sms_optout:' .. redis.sha1hex(ARGV[11] .. phone)) == 1 then stopped = 1 end
local wa = redis.call('HGET', KEYS[3], 'whatsapp') or phone
local wa_stopped = 0
if wa and redis.call('EXISTS', 'hub:wa_optout:' .. redis.sha1hex(ARGV[11] .. wa)) == 1 then wa_stopped = 1 end
return {current, redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[1]), stopped, seq, wa_stopped}
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
#   customer, the SMS opt-out of the address (``sms_optout``; ``whatsapp_optout`` for WhatsApp; any
#   key for other channels).
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
local id = fields['id']
-- Every field this claim writes, in one HSET at the end (later names win, as in HSET itself).
local set = {}
local function put(k, v) set[#set + 1] = k; set[#set + 1] = v end
-- A message seen for the first time: its record, indexed by delivery and customer. Only a
-- record that existed can be in a status index, or have a due time or a job to clear.
if not st then
  for k, v in pairs(fields) do put(k, v) end
  put('created_at', ARGV[1])
  redis.call('ZADD', KEYS[3], ARGV[2], id)
  redis.call('ZADD', KEYS[4], ARGV[2], id)
  redis.call('EXPIRE', KEYS[3], ARGV[3])
  redis.call('EXPIRE', KEYS[4], ARGV[3])
end
local function write(status, entry)
  put('status', status)
  put('updated_at', ARGV[1])
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('RPUSH', KEYS[2], cjson.encode(entry))
  redis.call('EXPIRE', KEYS[1], ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
  if st then for i = 5, 9 do redis.call('ZREM', KEYS[i], id) end end
end
if ARGV[5] == 'sending' and redis.call('EXISTS', KEYS[11]) == 1 then
  -- The send gate: whatever the path (first send, held, retried, escalated, fallback, replayed),
  -- nothing goes to an erased customer, an opted-out channel, a number that texted STOP, or an
  -- address that is no longer the customer's. Checked here, atomically with the claim.
  local why = nil
  local channel, to = fields['channel'], fields['to']
  local c = redis.call('HMGET', KEYS[11], 'erased', 'pref:opt_out', 'push_tokens', 'phone', 'email', 'whatsapp')
  if c[1] == '1' then
    why = 'the customer was erased'
  elseif channel == 'sms' and redis.call('EXISTS', KEYS[12]) == 1 then
    why = 'the number texted STOP'
  elseif channel == 'whatsapp' and redis.call('EXISTS', KEYS[12]) == 1 then
    why = 'the number sent STOP on WhatsApp'
  else
    if c[2] then
      for _, o in ipairs(cjson.decode(c[2])) do if o == channel then why = 'the customer opted out of ' .. o end end
    end
    if not why then
      local current = false
      if channel == 'push' then
        if c[3] then for _, t in ipairs(cjson.decode(c[3])) do if t == to then current = true end end end
      elseif channel == 'whatsapp' then
        current = (c[6] or c[4]) == to
      else
        current = (channel == 'sms' and c[4] or c[5]) == to
      end
      if not current then why = "the address is no longer the customer's" end
    end
  end
  if why then
    if st then redis.call('HDEL', KEYS[1], 'due_at', 'job') end
    write('skipped', {status = 'skipped', at = ARGV[1], detail = why})
    return 'gated:' .. why
  end
end
local limit = tonumber(ARGV[8])
if ARGV[5] == 'sending' and limit > 0 then
  local now = tonumber(ARGV[11])
  local window = tonumber(ARGV[9])
  redis.call('ZREMRANGEBYSCORE', KEYS[10], '-inf', now - window)
  if not redis.call('ZSCORE', KEYS[10], id) then
    if redis.call('ZCARD', KEYS[10]) >= limit then
      local oldest = redis.call('ZRANGE', KEYS[10], 0, 0, 'WITHSCORES')
      return 'limited:' .. string.format('%d', tonumber(oldest[2]) + window)
    end
    redis.call('ZADD', KEYS[10], now, id)
  end
  redis.call('PEXPIRE', KEYS[10], window)
end
if ARGV[5] == 'sending' then
  if st or fields['attempts'] then redis.call('HINCRBY', KEYS[1], 'attempts', 1) else put('attempts', '1') end
  put('claimed_ms', ARGV[2])
  put('claim', ARGV[13])
  put('prior', st or '')
end
if ARGV[10] ~= '' then put('due_at', ARGV[10]) elseif st then redis.call('HDEL', KEYS[1], 'due_at') end
if ARGV[12] ~= '' then put('job', ARGV[12]) end
local entry = {status = ARGV[5], at = ARGV[1]}
if ARGV[6] ~= '' then entry['detail'] = ARGV[6] end
write(ARGV[5], entry)
if ARGV[5] == 'deferred' then redis.call('ZADD', KEYS[7], ARGV[10] ~= '' and ARGV[10] or ARGV[2], id) end
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
local set = {}
for k, v in pairs(fields) do set[#set + 1] = k; set[#set + 1] = v end
if #set > 0 then redis.call('HSET', KEYS[1], unpack(set)) end
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

# Move a message's status forward after a provider callback; never backwards (a late "sent"
# after "delivered" changes nothing). Returns the new status, or "" when nothing changed.
# KEYS: message, history. ARGV: status, rank of status, now (ISO), error code, ttl seconds.
STATUS_FORWARD = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return '' end
local ranks = {sending = 0, accepted = 1, queued = 1, sent = 2, delivered = 3, undelivered = 3, failed = 3,
  read = 4}
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
