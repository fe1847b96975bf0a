"""Lua scripts of the operators' figures (hub.stats): each counts what it is given in the hour's
hash in one command, so a fact costs the hot path one Redis call and no read of the message log.

The keys are named in ``hub.keys`` (``stats_hour``, ``stats_attempts``, ``event``, ``delivery``).
This module imports nothing.
"""

from __future__ import annotations

__all__ = ["COUNT_EVENT", "COUNT_FACT"]

# Count facts in an hour's hash, one field per dimension and fact (``<dim>|<fact>``), and keep the
# hash until the retention ends: its expiry is the same for every call of the hour, so it is set
# only when a call creates a field (the hash's first call among them). With a second key (a
# delivery's hash) the fact is counted for its shop too: a caller that knows only the delivery (a
# reply) pays no read of its own for it.
# KEYS: the hour's hash, [the delivery's hash]. ARGV: expire at (unix s), n, the fact (for the
#   shop), then the fields to increment.
COUNT_FACT = """
local created = false
if KEYS[2] then
  local shop = redis.call('HGET', KEYS[2], 'merchant_id')
  if shop then ARGV[#ARGV + 1] = 'm:' .. shop .. '|' .. ARGV[3] end
end
for i = 4, #ARGV do
  if redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[2]) == tonumber(ARGV[2]) then created = true end
end
if created then redis.call('EXPIREAT', KEYS[1], ARGV[1]) end
return 1
"""

# Count an applied event's facts once: the event's idempotency record takes a ``stats`` field the
# first time (a retried job finds it and counts nothing; an event without a record, which no
# accepted event is, is counted without the guard rather than leaving a key without a TTL). An
# attempt's outcome (delivered | failed) is first or later by the delivery's failed attempts so
# far, which a failed one raises. Expiry as in COUNT_FACT.
# KEYS: the hour's hash, the event's idempotency record, the delivery's failed-attempts counter.
# ARGV: expire at (unix s), the attempt's outcome ("" when the event is none), the counter's TTL
#   (s), the number of dimensions d, the d dimensions ("-", "m:<merchant_id>", "d:<driver_id>"),
#   then the facts counted whatever the attempt.
COUNT_EVENT = """
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('HSETNX', KEYS[2], 'stats', '1') == 0 then return 0 end
local d = tonumber(ARGV[4])
local facts = {}
for i = 5 + d, #ARGV do facts[#facts + 1] = ARGV[i] end
if ARGV[2] ~= '' then
  local before = tonumber(redis.call('GET', KEYS[3]) or '0')
  local which = 'later'
  if before == 0 then which = 'first' end
  facts[#facts + 1] = 'attempt.' .. which .. '.' .. ARGV[2]
  if ARGV[2] == 'failed' then redis.call('INCR', KEYS[3]) end
  redis.call('EXPIRE', KEYS[3], ARGV[3])
end
local created = false
for i = 5, 4 + d do
  for _, fact in ipairs(facts) do
    if redis.call('HINCRBY', KEYS[1], ARGV[i] .. '|' .. fact, 1) == 1 then created = true end
  end
end
if created then redis.call('EXPIREAT', KEYS[1], ARGV[1]) end
return 1
"""
