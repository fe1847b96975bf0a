"""Lua scripts of the records beside the message log: customers (contacts, preferences, imports),
outbound webhooks, feedback, relay sessions and API keys.

Each script changes several keys at once, atomically; the keys are named in ``hub.keys``. This
module imports nothing, so ``preferences`` can use it without importing the hub.
"""

from __future__ import annotations

__all__ = [
    "AVAILABILITY_ERASE",
    "AVAILABILITY_LEARN",
    "CLOSE_RELAY",
    "CREATE_WEBHOOK",
    "EXTEND_RELAY",
    "IMPORT_CUSTOMER",
    "MARK_FOLLOWUP_HANDLED",
    "MARK_INVALID",
    "OPEN_RELAY",
    "PATCH_PREFERENCES",
    "RECORD_FEEDBACK",
    "REMOVE_PUSH_TOKEN",
    "REVOKE_API_KEY",
    "ROUTE_RELAY",
    "SETTLE_WEBHOOK",
    "STORE_POSITION",
]

# Create a webhook delivery once (deterministic ids make a repeated emit a no-op), enqueue its
# job (key, queue and payload built by hub.jobs) and wake the webhook workers; a delivery about
# a customer is listed under them (erasure scrubs its body).
# KEYS: delivery hash, index, job key, webhook queue, the customer's deliveries (any key: none).
# ARGV: fields (JSON), now (ms), job payload, job id, job expiry (ms), ttl seconds, the queue's
#   wake-up channel, whether the delivery is about a customer (1|0), when the job is due (ms: now,
#   or later when the process that made the delivery POSTs it itself; see SETTLE_WEBHOOK).
CREATE_WEBHOOK = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local set = {}
for k, v in pairs(cjson.decode(ARGV[1])) do set[#set + 1] = k; set[#set + 1] = v end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[6]) * 1000)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[9], ARGV[4])
if tonumber(ARGV[9]) <= tonumber(ARGV[2]) then redis.call('PUBLISH', ARGV[7], '1') end
if ARGV[8] == '1' then
  redis.call('SADD', KEYS[5], ARGV[4])
  redis.call('EXPIRE', KEYS[5], ARGV[6])
end
return 1
"""

# The outcome of a delivery POSTed by the process that made it (hub.webhooks.Webhooks.emit),
# recorded only while it is still pending (its own job, or a replay, may have moved on): delivered
# drops its job; failed makes the job due for its retry.
# KEYS: delivery hash, job key, webhook queue. ARGV: id, fields (JSON), retry due (ms; 0: delivered).
SETTLE_WEBHOOK = """
if redis.call('HGET', KEYS[1], 'status') ~= 'pending' then return 0 end
local set = {}
for k, v in pairs(cjson.decode(ARGV[2])) do set[#set + 1] = k; set[#set + 1] = v end
redis.call('HSET', KEYS[1], unpack(set))
if ARGV[3] == '0' then
  redis.call('HDEL', KEYS[1], 'last_error')
  redis.call('DEL', KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[1])
else
  redis.call('ZADD', KEYS[3], 'XX', ARGV[3], ARGV[1])
end
return 1
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

# Mark a customer's phone or e-mail invalid (the provider rejected it), only while it is still the
# address that was rejected. KEYS: customer. ARGV: field (phone | email), address, reason.
# Returns 1 if marked.
MARK_INVALID = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1] .. '_invalid', ARGV[3])
return 1
"""

# Set some of a customer's preferences (one field each), only if the customer exists.
# KEYS: customer. ARGV: field, value, field, value, ... Returns 1 if set.
PATCH_PREFERENCES = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
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
local names = {'name', 'phone', 'email', 'push_tokens', 'locale', 'timezone', 'whatsapp'}
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
local args = {'updated_at', ARGV[3], 'contact_at', ARGV[3] .. '|'}  -- explicit: wins a same-ms tie (hub.clock)
for k, v in pairs(contact) do table.insert(args, k); table.insert(args, v) end
for k, v in pairs(prefs) do table.insert(args, k); table.insert(args, v) end
redis.call('HSET', KEYS[1], unpack(args))
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[4]) end
if existed then return 2 end
return 1
"""

# Record a rating for a delivery and keep the per-driver and per-shop day sums right when it is
# changed (a re-rating moves its old count out of its old day), and keep the operators' follow-up
# of a low rating (hub.feedback): one entry per delivery, whatever the number of ratings.
# KEYS: feedback, driver days, shop days, follow-up, open follow-ups, handled follow-ups, the
#   customer's follow-ups, rated drivers, rated shops.
# ARGV: rating, comment, driver_id, customer_id, at, day, ttl (s), merchant_id ("" for none), the
#   low-rating threshold, at (ms), channel, delivery_id, sid (the reply's, keys the webhook).
# Returns {1 for a first rating of the delivery | 0, what happened to the follow-up}: "none" (not
# low, none open), "raised" (a new low rating: opened, or changed and opened again), "repeat"
# (the same low rating again from another message: nothing new), "same_message" (the message that
# raised it, handled again: its webhook is the same delivery), "rerated" (a later rating that is
# not low: recorded on the entry, which stays as it was).
RECORD_FEEDBACK = """
local rating = tonumber(ARGV[1])
local old = redis.call('HGET', KEYS[1], 'rating')
local old_day = redis.call('HGET', KEYS[1], 'day')
local old_shop = redis.call('HGET', KEYS[1], 'merchant_id')
if old and old_day then
  redis.call('HINCRBY', KEYS[2], old_day .. ':sum', -tonumber(old))
  redis.call('HINCRBY', KEYS[2], old_day .. ':count', -1)
  if old_shop and old_shop ~= '' and old_shop == ARGV[8] then
    redis.call('HINCRBY', KEYS[3], old_day .. ':sum', -tonumber(old))
    redis.call('HINCRBY', KEYS[3], old_day .. ':count', -1)
  end
end
redis.call('HSET', KEYS[1], 'rating', ARGV[1], 'comment', ARGV[2], 'driver_id', ARGV[3],
  'customer_id', ARGV[4], 'at', ARGV[5], 'day', ARGV[6], 'merchant_id', ARGV[8])
redis.call('EXPIRE', KEYS[1], ARGV[7])
redis.call('HINCRBY', KEYS[2], ARGV[6] .. ':sum', rating)
redis.call('HINCRBY', KEYS[2], ARGV[6] .. ':count', 1)
if ARGV[3] ~= '' then redis.call('SADD', KEYS[8], ARGV[3]) end
if ARGV[8] ~= '' then
  redis.call('HINCRBY', KEYS[3], ARGV[6] .. ':sum', rating)
  redis.call('HINCRBY', KEYS[3], ARGV[6] .. ':count', 1)
  redis.call('SADD', KEYS[9], ARGV[8])
end
local new = 1
if old then new = 0 end
local at_ms = tonumber(ARGV[10])
local horizon = at_ms - tonumber(ARGV[7]) * 1000
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', horizon)
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', horizon)
local entry = redis.call('HMGET', KEYS[4], 'rating', 'comment', 'sid')
local exists = entry[1] ~= false
if rating > tonumber(ARGV[9]) then
  if not exists then return {new, 'none'} end
  redis.call('HSET', KEYS[4], 'rating', ARGV[1], 'rated_at', ARGV[5])
  return {new, 'rerated'}
end
if exists and entry[1] == ARGV[1] and entry[2] == ARGV[2] then
  if entry[3] == ARGV[13] then return {new, 'same_message'} end
  return {new, 'repeat'}
end
redis.call('HDEL', KEYS[4], 'handled_at', 'handled_by', 'rated_at')
redis.call('HSET', KEYS[4], 'delivery_id', ARGV[12], 'customer_id', ARGV[4], 'rating', ARGV[1],
  'low_rating', ARGV[1], 'comment', ARGV[2], 'driver_id', ARGV[3], 'merchant_id', ARGV[8],
  'at', ARGV[5], 'at_ms', ARGV[10], 'channel', ARGV[11], 'sid', ARGV[13])
redis.call('EXPIRE', KEYS[4], ARGV[7])
redis.call('ZREM', KEYS[6], ARGV[12])
redis.call('ZADD', KEYS[5], at_ms, ARGV[12])
if ARGV[4] ~= '' then
  redis.call('SADD', KEYS[7], ARGV[12])
  redis.call('EXPIRE', KEYS[7], ARGV[7])
end
return {new, 'raised'}
"""

# Mark a follow-up handled, once: a second call changes nothing (the first handler and time stay).
# KEYS: follow-up, open follow-ups, handled follow-ups. ARGV: by, at.
# Returns 0 (no such follow-up), 1 (marked now), 2 (handled already).
MARK_FOLLOWUP_HANDLED = """
local at_ms = redis.call('HGET', KEYS[1], 'at_ms')
if not at_ms then return 0 end
if redis.call('HEXISTS', KEYS[1], 'handled_at') == 1 then return 2 end
redis.call('HSET', KEYS[1], 'handled_at', ARGV[2], 'handled_by', ARGV[1])
redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'delivery_id'))
redis.call('ZADD', KEYS[3], at_ms, redis.call('HGET', KEYS[1], 'delivery_id'))
return 1
"""

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

# The driver's latest position for a delivery (hub.location), in one call: only while the
# delivery is on the road, never for an erased customer, and never replacing a newer one.
# KEYS: the position (string, JSON), the delivery hash.
# ARGV: the position (JSON), its time (ms), its remaining life (ms), the statuses that take a
#   position (",out_for_delivery,arriving_soon,"), those that only keep one already there
#   (",eta_changed,": a new ETA on the road is still the same round).
# Returns "stored", "older" (a newer one is stored), "missing" (no such delivery), "erased", or
# "status:<status>" (not on the road).
STORE_POSITION = """
local d = redis.call('HMGET', KEYS[2], 'status', 'customer_id')
if not d[1] then return 'missing' end
local old = redis.call('GET', KEYS[1])
local on_road = string.find(ARGV[4], ',' .. d[1] .. ',', 1, true)
if not on_road and not (old and string.find(ARGV[5], ',' .. d[1] .. ',', 1, true)) then
  return 'status:' .. d[1]
end
if d[2] and redis.call('HGET', 'hub:customer:' .. d[2], 'erased') == '1' then return 'erased' end
if old and tonumber(cjson.decode(old)['at_ms']) >= tonumber(ARGV[2]) then return 'older' end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 'stored'
"""


# Add (sign "") or take back (sign "-") one observation of hub.availability in the pools of its
# own area and of every customer ("*"); a counter taken back to nothing is removed, so the pools
# hold no trace of a customer whose observations all left. The record: "ms|home|area|wd,b,w;...".
_AVAILABILITY_APPLY = """
local function apply(record, sign, prefix)
  local home, area, parts = string.match(record, '^%d+|(%d)|([^|]*)|(.*)$')
  if not parts then return end
  local pools = {prefix .. '*'}
  if area ~= '*' and area ~= '' then pools[2] = prefix .. area end
  for wd, b, w in string.gmatch(parts, '(%d+),(%d+),([^;]+)') do
    for _, pool in ipairs(pools) do
      local fields = {'n:' .. wd .. ':' .. b}
      if home == '1' then fields[2] = 'h:' .. wd .. ':' .. b end
      for _, f in ipairs(fields) do
        local v = tonumber(redis.call('HINCRBYFLOAT', pool, f, sign .. w))
        if sign == '-' and math.abs(v) < 1e-9 then redis.call('HDEL', pool, f) end
      end
    end
  end
end
"""

# What an event or a stated answer teaches (hub.availability), once per key: remember the
# customer's zone and area, flag a failure, and record the observation only if its field is new
# (a job retried learns nothing twice); over the limit the oldest observation is forgotten and
# leaves the pools. Nothing is kept of an erased customer.
# KEYS: the customer's availability hash, the customer's record.
# ARGV: field ("o:<key>", "" for none), record, tz ("" keeps), area ("" keeps), failed (1|0),
#   the most observations kept, the pools' key prefix.
# Returns 1 (recorded), 0 (nothing new), -1 (erased).
AVAILABILITY_LEARN = (
    _AVAILABILITY_APPLY
    + """
if redis.call('HGET', KEYS[2], 'erased') == '1' then return -1 end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'tz', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'area', ARGV[4]) end
if ARGV[5] ~= '' then
  local last = redis.call('HGET', KEYS[1], 'last_attempt')
  if not last or tonumber(string.sub(last, 3)) <= tonumber(string.sub(ARGV[5], 3)) then
    redis.call('HSET', KEYS[1], 'last_attempt', ARGV[5])
  end
end
if ARGV[1] == '' or redis.call('HSETNX', KEYS[1], ARGV[1], ARGV[2]) == 0 then return 0 end
apply(ARGV[2], '', ARGV[7])
if redis.call('HINCRBY', KEYS[1], 'count', 1) <= tonumber(ARGV[6]) then return 1 end
local all = redis.call('HGETALL', KEYS[1])
local oldest, oldest_ms = nil, nil
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'o:' then
    local ms = tonumber(string.match(all[i + 1], '^(%d+)|'))
    if ms and (not oldest_ms or ms < oldest_ms) then oldest, oldest_ms = i, ms end
  end
end
if oldest then
  redis.call('HDEL', KEYS[1], all[oldest])
  apply(all[oldest + 1], '-', ARGV[7])
  redis.call('HINCRBY', KEYS[1], 'count', -1)
end
return 1
"""
)

# Forget what was learned of a customer: each observation leaves the pools, then the hash goes.
# KEYS: the customer's availability hash. ARGV: the pools' key prefix. Returns the observations.
AVAILABILITY_ERASE = (
    _AVAILABILITY_APPLY
    + """
local all = redis.call('HGETALL', KEYS[1])
local n = 0
for i = 1, #all, 2 do
  if string.sub(all[i], 1, 2) == 'o:' then apply(all[i + 1], '-', ARGV[1]); n = n + 1 end
end
redis.call('DEL', KEYS[1])
return n
"""
)
