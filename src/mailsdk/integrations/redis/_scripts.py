"""The Lua scripts behind the Redis limits and the ledger (each runs atomically in Redis).

Layer: L7 (integrations.redis). Data only. Every script reads the clock with ``TIME`` inside
Redis, so the workers' clocks never matter, and touches only the keys it is given (cluster-safe
when those keys share a hash tag).
"""

from __future__ import annotations

__all__ = [
    "LEDGER_CLAIM",
    "LEDGER_MARK_SENDING",
    "LEDGER_PRUNE",
    "LEDGER_RECORD",
    "LEDGER_RENEW",
    "LEDGER_RESOLVE",
    "LEDGER_SWEEP",
    "RATE_MAX_WAIT",
    "RATE_RESERVE",
    "SEMAPHORE_ACQUIRE",
    "SEMAPHORE_RELEASE",
    "SEMAPHORE_RENEW",
]

#: The longest wait a reservation may be given, in seconds (30 days): a longer one is a mistake
#: (a wrong Rate, a count of millions) and would hold up every sender sharing the budget.
RATE_MAX_WAIT = 30 * 24 * 3600

#: Reserve tokens from every bucket at once; returns the wait in microseconds.
#: KEYS[1] = penalty key, KEYS[2..] = bucket hashes (fields ``tokens``, ``ts``).
#: ARGV = ``penalty_us`` (0 to reserve, > 0 to penalize), then per bucket: rate (tokens per
#: second), capacity, cost. Tokens may go negative: a reservation is a place in the queue, and
#: the caller waits the returned time before sending. A penalty pushes every bucket's clock to
#: its end, so reservations queue *behind* it rather than all firing when it ends. -1 (nothing
#: taken) for a reservation that would wait longer than ``RATE_MAX_WAIT`` seconds.
RATE_RESERVE = """
local MAX_WAIT_US = RATE_MAX_WAIT_US
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local penalty = tonumber(ARGV[1])
local until_us = tonumber(redis.call('GET', KEYS[1]) or '0')
if penalty > 0 then
  if now + penalty > until_us then
    until_us = now + penalty
    local px = math.ceil(penalty / 1000) + 1000
    redis.call('SET', KEYS[1], string.format('%.0f', until_us), 'PX', px)
  end
  return 0
end
local at = now
if until_us > at then at = until_us end
local wait = at - now
local new = {}
for i = 2, #KEYS do
  local base = (i - 2) * 3 + 2
  local rate = tonumber(ARGV[base])
  local cap = tonumber(ARGV[base + 1])
  local cost = tonumber(ARGV[base + 2])
  if cost > 0 then
    local state = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    local tokens = tonumber(state[1]) or cap
    local ts = tonumber(state[2]) or at
    if at > ts then
      tokens = math.min(cap, tokens + (at - ts) * rate / 1000000)
      ts = at
    end
    tokens = tokens - cost
    local w = ts - now
    if tokens < 0 then w = w + (-tokens) / rate * 1000000 end
    if w > wait then wait = w end
    new[#new + 1] = {KEYS[i], tokens, ts, rate, cap}
  end
end
-- Nothing is written for a reservation no budget can pay within MAX_WAIT: it would put
-- every sender sharing the budget behind it (for years, or break the expiry arithmetic).
if wait > MAX_WAIT_US then return -1 end
for _, b in ipairs(new) do
  local key, tokens, ts, rate, cap = b[1], b[2], b[3], b[4], b[5]
  redis.call('HSET', key, 'tokens', string.format('%.6f', tokens),
    'ts', string.format('%.0f', ts))
  local refill_ms = math.ceil((cap - tokens) / rate * 1000) + (ts - now) / 1000 + 1000
  redis.call('PEXPIRE', key, math.ceil(refill_ms))
end
return math.ceil(wait)
""".replace("RATE_MAX_WAIT_US", str(RATE_MAX_WAIT * 1_000_000))

#: KEYS[1] = sorted set (member = lease id, score = expiry in ms); ARGV = limit, ttl_ms, lease.
SEMAPHORE_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
-- Ours already: a replay of a call whose reply was lost (a client retrying on a timeout) must
-- not count its own lease against the cap and leave it held by nobody until it expires.
local mine = redis.call('ZSCORE', KEYS[1], ARGV[3])
if mine or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  -- Never shorten the set's life: a holder with a longer lease_ttl (a rolling deploy) would
  -- lose its lease with the whole set, and the cap with it.
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) * 2 then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2)
  end
  return 1
end
return 0
"""

#: KEYS[1] = sorted set; ARGV = ttl_ms, lease. 1 when the lease was still alive and is renewed.
SEMAPHORE_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[2])
  if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) * 2 then
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2)
  end
  return 1
end
return 0
"""

#: KEYS[1] = sorted set; ARGV = lease.
SEMAPHORE_RELEASE = """
return redis.call('ZREM', KEYS[1], ARGV[1])
"""

#: Claim a message before sending it. KEYS[1] = entry hash, KEYS[2] = parked-UNKNOWN sorted set,
#: KEYS[3] = the ``sending`` index (entry names scored by claim expiry, see LEDGER_SWEEP).
#: ARGV = owner, claim_ttl_ms, entry_ttl_s, message key. Returns {verdict, attempts} (and for
#: ``busy`` also the ms until the holder's claim lapses and the holder's state): ``claimed``
#: (send it), ``accepted``/``partial``/``refused`` (done: never resend), ``unknown`` (parked for
#: review), ``busy`` (a live claim of another owner). A claim that expired while its owner was
#: ``sending`` may have written end-of-data: it is parked as UNKNOWN, never resent.
LEDGER_CLAIM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local e = redis.call('HMGET', KEYS[1], 'state', 'owner', 'expires', 'attempts')
local state, owner, expires = e[1], e[2], tonumber(e[3] or '0')
local attempts = tonumber(e[4] or '0')
local function claim()
  attempts = attempts + 1
  redis.call('HSET', KEYS[1], 'state', 'claimed', 'owner', ARGV[1], 'key', ARGV[4],
    'expires', now + tonumber(ARGV[2]), 'updated', now, 'attempts', attempts)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  return {'claimed', attempts}
end
if not state or state == 'failed' then return claim() end
if state == 'accepted' or state == 'partial' or state == 'refused' or state == 'unknown' then
  return {state, attempts}
end
if owner == ARGV[1] then
  redis.call('HSET', KEYS[1], 'expires', now + tonumber(ARGV[2]))
  if state == 'claimed' then return {'claimed', attempts} end
  return {'busy', attempts, tonumber(ARGV[2]), state}
end
if expires > now then return {'busy', attempts, expires - now, state} end
if state == 'claimed' then return claim() end
redis.call('HSET', KEYS[1], 'state', 'unknown', 'owner', '', 'updated', now,
  'reason', 'the worker sending it stopped before recording the outcome')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('ZREM', KEYS[3], KEYS[1])
return {'unknown', attempts}
"""

#: ``claimed`` -> ``sending`` for the owner of a live claim. KEYS[1] = entry, KEYS[2] = the
#: ``sending`` index; ARGV = owner, claim_ttl_ms. 1 when the owner may send now; 0 when the
#: claim was lost (do not send).
#: Idempotent for the owner, so a call whose reply was lost (Redis restarting) can be repeated.
LEDGER_MARK_SENDING = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local e = redis.call('HMGET', KEYS[1], 'state', 'owner', 'expires')
if e[1] == 'sending' and e[2] == ARGV[1] then return 1 end
if e[1] ~= 'claimed' or e[2] ~= ARGV[1] or tonumber(e[3] or '0') <= now then return 0 end
redis.call('HSET', KEYS[1], 'state', 'sending', 'expires', now + tonumber(ARGV[2]), 'updated', now)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), KEYS[1])
return 1
"""

#: Record an outcome. KEYS[1] = entry, KEYS[2] = parked set, KEYS[3] = the ``sending`` index;
#: ARGV = owner, state, detail JSON,
#: entry_ttl_s, message key. Allowed for the claim's owner, and over an UNKNOWN parked because
#: the owner's claim expired (the real outcome is better than a guess). 1 = recorded.
LEDGER_RECORD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local e = redis.call('HMGET', KEYS[1], 'state', 'owner')
if not e[1] then return 0 end
if e[2] ~= ARGV[1] and e[1] ~= 'unknown' then return 0 end
if e[1] == 'unknown' and ARGV[2] ~= 'accepted' and ARGV[2] ~= 'partial'
  and ARGV[2] ~= 'refused' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'owner', '', 'detail', ARGV[3], 'updated', now)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('ZREM', KEYS[3], KEYS[1])
if ARGV[2] == 'unknown' then
  redis.call('ZADD', KEYS[2], now, ARGV[5])
else
  redis.call('ZREM', KEYS[2], ARGV[5])
end
return 1
"""

#: Keep an owner's live claims alive while a long chunk is being sent. KEYS = entries; ARGV =
#: owner, claim_ttl_ms. Only ``claimed``/``sending`` entries of that owner whose claim has not
#: expired yet are extended (an expired one may already be someone else's); returns how many.
LEDGER_RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local renewed = 0
for i = 1, #KEYS do
  local e = redis.call('HMGET', KEYS[i], 'state', 'owner', 'expires')
  if (e[1] == 'claimed' or e[1] == 'sending') and e[2] == ARGV[1]
    and tonumber(e[3] or '0') > now then
    redis.call('HSET', KEYS[i], 'expires', now + tonumber(ARGV[2]))
    renewed = renewed + 1
  end
end
return renewed
"""

#: Close the review of a parked message. KEYS[1] = entry, KEYS[2] = parked set; ARGV =
#: delivered (1/0), message key, entry_ttl_s. Only an entry that is ``unknown`` now is changed:
#: a mistyped key, or one already accepted or being sent by a live worker, must not be
#: rewritten (dropping an ``accepted`` entry would let the message go out twice). Returns the
#: state found (``unknown`` when resolved, ``''`` when the ledger has no such entry).
LEDGER_RESOLVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'unknown' then
  redis.call('ZREM', KEYS[2], ARGV[2])  -- a stale member (its entry expired or moved on)
  return state or ''
end
if ARGV[1] == '1' then
  redis.call('HSET', KEYS[1], 'state', 'accepted', 'owner', '', 'updated', now,
    'reason', 'reviewed: delivered')
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
else
  redis.call('DEL', KEYS[1])
end
redis.call('ZREM', KEYS[2], ARGV[2])
return 'unknown'
"""

#: Drop members of the parked set whose entry is gone (expired) or no longer ``unknown``.
#: KEYS[1] = parked set, KEYS[2..] = entries; ARGV = their message keys. Returns how many.
LEDGER_PRUNE = """
local dropped = 0
for i = 2, #KEYS do
  if redis.call('HGET', KEYS[i], 'state') ~= 'unknown' then
    dropped = dropped + redis.call('ZREM', KEYS[1], ARGV[i - 1])
  end
end
return dropped
"""

#: Park one message a sender left ``sending`` when its claim lapsed, without waiting for a
#: second claim of it (a task that is never delivered again, a revoked one): so the review
#: list shows every message that may be at the server. KEYS[1] = entry, KEYS[2] = parked set,
#: KEYS[3] = the ``sending`` index; ARGV = entry_ttl_s. 1 when parked; a live one is re-scored
#: to its claim's current expiry, a stale index member dropped.
LEDGER_SWEEP = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local e = redis.call('HMGET', KEYS[1], 'state', 'expires', 'key')
local expires = tonumber(e[2] or '0')
if e[1] ~= 'sending' or not e[3] then
  redis.call('ZREM', KEYS[3], KEYS[1])
  return 0
end
if expires > now then
  redis.call('ZADD', KEYS[3], expires, KEYS[1])
  return 0
end
redis.call('HSET', KEYS[1], 'state', 'unknown', 'owner', '', 'updated', now,
  'reason', 'the worker sending it stopped before recording the outcome')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('ZADD', KEYS[2], now, e[3])
redis.call('ZREM', KEYS[3], KEYS[1])
return 1
"""
