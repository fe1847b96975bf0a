"""Lua scripts of the operators' figures (hub.stats): each counts what it is given in the hour's
hash in one command, so a fact costs the hot path one Redis call and no read of the message log.

The keys are named in ``hub.keys`` (``stats_hour``, ``stats_attempts``, ``event``, ``delivery``).
This module imports nothing.
"""

from __future__ import annotations

__all__ = ["COUNT_EVENT", "COUNT_FACT"]

# Count facts in an hour's hash under each dimension (``<dim>|<fact>``), and keep the hash until
# the retention ends. With a second key (a delivery's hash) its shop is a dimension too: a caller
# that knows only the delivery (a reply) pays no read of its own for it.
# KEYS: the hour's hash, [the delivery's hash]. ARGV: expire at (unix s), n, facts (JSON list),
#   dimensions (JSON list: "-", "m:<merchant_id>", "d:<driver_id>").
COUNT_FACT = """
local facts = cjson.decode(ARGV[3])
local dims = cjson.decode(ARGV[4])
if KEYS[2] then
  local shop = redis.call('HGET', KEYS[2], 'merchant_id')
  if shop then dims[#dims + 1] = 'm:' .. shop end
end
for _, dim in ipairs(dims) do
  for _, fact in ipairs(facts) do redis.call('HINCRBY', KEYS[1], dim .. '|' .. fact, ARGV[2]) end
end
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 1
"""

# Count an applied event's facts once: the event's idempotency record takes a ``stats`` field the
# first time (a retried job finds it and counts nothing; an event without a record, which no
# accepted event is, is counted without the guard rather than leaving a key without a TTL). An
# attempt's outcome (delivered | failed) is first or later by the delivery's failed attempts so
# far, which a failed one raises.
# KEYS: the hour's hash, the event's idempotency record, the delivery's failed-attempts counter.
# ARGV: expire at (unix s), facts (JSON list), the attempt's outcome ("" when the event is none),
#   dimensions (JSON list), the counter's TTL (s).
COUNT_EVENT = """
if redis.call('EXISTS', KEYS[2]) == 1 and redis.call('HSETNX', KEYS[2], 'stats', '1') == 0 then return 0 end
local facts = cjson.decode(ARGV[2])
if ARGV[3] ~= '' then
  local before = tonumber(redis.call('GET', KEYS[3]) or '0')
  local which = 'later'
  if before == 0 then which = 'first' end
  facts[#facts + 1] = 'attempt.' .. which .. '.' .. ARGV[3]
  if ARGV[3] == 'failed' then redis.call('INCR', KEYS[3]) end
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
for _, dim in ipairs(cjson.decode(ARGV[4])) do
  for _, fact in ipairs(facts) do redis.call('HINCRBY', KEYS[1], dim .. '|' .. fact, 1) end
end
redis.call('EXPIREAT', KEYS[1], ARGV[1])
return 1
"""
