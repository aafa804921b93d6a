"""The Lua scripts of the Redis transport: every state change is atomic, with few commands per message.

How a lease is kept. A stream's pending entries list (PEL) records, per entry, its owner, a delivery
counter and the time of its last delivery; Redis itself can only tell how long an entry has been
*idle*. Delivery sets the idle time to 0, which is the start of the lease, so the hot path writes
nothing per entry: a receive is a plain ``XREADGROUP``. What a claimer must know is how long the
holder's lease is, and that is kept per consumer in the hash ``<stream>:leases`` (consumer -> ms):
an entry's lease has ended when its idle time reaches its owner's registered lease (owners not
registered, e.g. other software, count as HORIZON, 24 h). A consumer registers the longest lease
it uses; a shorter lease, an extend and a release are written into the idle time (``XCLAIM ...
IDLE registered-minus-lease JUSTID``, which changes neither the owner nor the counter): an entry
then comes back exactly when *its* lease ends, whoever looks. Registering a longer lease shifts
the idle times of the consumer's own entries, so what they had left is kept. Claims scan the
whole PEL (``XPENDING IDLE <shortest registered lease>``), oldest first, and take every entry
whose lease has ended, not only the oldest.

Tokens. The delivery counter is the lease token: a receipt is ``<entry id>:<counter>``, and a
settle only touches entries still owned by this consumer *with that counter* (``held``). A claim
counts a delivery, so a receipt whose lease was lost is inert. A release sets the counter back by
one (RETRYCOUNT): the next claim counts it again, so no attempt is burnt.

Acks without the check. Walking the PEL to check every receipt costs Redis more than the ack
itself, and it is only needed if an entry can have changed hands since it was received. That
happens in two ways only, a claim of an ended lease and a release, and both increment the
counter ``<stream>:reclaims`` (the "epoch"). Every receive reports the epoch it saw before it
delivered; an ack whose deliveries were all received at the current epoch needs no check (each
entry is still this consumer's with the token it was given, or gone), so it is a bare XACK + XDEL.
Otherwise the ack checks every receipt as before. Not covered: software that claims our entries
without this counter (asyncsup before this design claims only after 24 h idle), and a Redis that
goes back in time (restored from an older snapshot, a failover to a lagging replica): an entry
delivered again after that may be acked by its earlier holder, who has handled it.

Entry fields: ``m`` = our envelope bytes; ``d`` = deliveries counted before this entry existed (a
requeue writes a new entry): a delivery's count is its token + ``d``. A Symfony entry has one
field ``message``. Delayed messages wait in the sorted set ``<stream>:delayed`` (score = due time
in ms, member ``<16 hex uniq>:<d>:<bytes>``) and are moved into the stream by PREPARE when due,
atomically (two consumers never move one message twice); with format=symfony, Symfony's own
delayed set ``<stream>__queue`` too.

A receive is PREPARE + ``XREADGROUP`` in one pipeline; PREPARE answers ``[epoch, due, registered]``
(due = 1 when some lease has ended: the next receive claims with CLAIM first). CLAIM answers
``[epoch, entries, their counters]``; WAKE (when there was nothing) ``[wake_ms|false,
last_delivered_id]``. Browse answers flat ``[id, counter, kind, data, ...]``: kind 0 = our ``m``
field, 1 = a ``message`` field (data is its value), 2 = neither (data is the field list); the
scripts that only look (counts, browse) or keep house are in redis_admin_scripts.py. Scripts need
Redis >= 6.2 (XPENDING IDLE); the tests run 7.0.
"""

from __future__ import annotations

from asyncsup.transports.redis_link import Script

HORIZON_MS = 86_400_000  # 24 h: the longest lease, and the lease of an owner that registered none

HELPERS = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end

local function ms(x) return string.format('%.3f', x) end

local function field(fields, name)
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end

-- one delivery in a reply: id, counter, kind, data
local function push(out, id, counter, fields)
  local kind, data = 2, fields
  for i = 1, #fields, 2 do
    if fields[i] == 'm' then kind, data = 0, fields[i + 1]; break end
    if fields[i] == 'message' then kind, data = 1, fields[i + 1] end
  end
  out[#out + 1] = id
  out[#out + 1] = counter
  out[#out + 1] = kind
  out[#out + 1] = data
end

-- run redis.call(head..., ids[i..j]..., tail...) over ids in chunks (Lua's unpack has a limit);
-- the replies of the calls, concatenated
local function chunked(head, ids, tail)
  local n, out = #ids, {}
  for i = 1, n, 500 do
    local args, k = {unpack(head)}, #head
    for j = i, math.min(i + 499, n) do
      k = k + 1
      args[k] = ids[j]
    end
    for _, a in ipairs(tail) do
      k = k + 1
      args[k] = a
    end
    local reply = redis.call(unpack(args))
    if type(reply) == 'table' then
      for _, r in ipairs(reply) do out[#out + 1] = r end
    end
  end
  return out
end

-- the entry ids of the receipts ARGV[from..] ("<id>:<token>") that this consumer still holds
-- with that token (in PEL order). A receipt is matched as a whole against "<id>:<counter>" of
-- this consumer's PEL entries, so the happy path parses nothing. Receipts left unmatched are
-- checked: browse receipts ("<id>:0", "z<uniq>:0") and lost leases are skipped, anything else is
-- not a receipt (BADRECEIPT, raised before anything was written).
local function held(stream, group, me, from)
  local want, left, out = {}, 0, {}
  for i = from, #ARGV do
    if not want[ARGV[i]] then
      want[ARGV[i]] = true
      left = left + 1
    end
  end
  local start = '-'
  while left > 0 do
    local page = redis.call('XPENDING', stream, group, start, '+', 1000, me)
    for _, p in ipairs(page) do
      local receipt = p[1] .. ':' .. p[4]
      if want[receipt] then
        out[#out + 1] = p[1]
        want[receipt] = nil
        left = left - 1
      end
    end
    if #page < 1000 then break end
    start = '(' .. page[#page][1]
  end
  if left > 0 then
    for receipt in pairs(want) do
      if not string.match(receipt, '^%d+%-%d+:%d+$') and not string.match(receipt, '^z%x+:%d+$') then
        error({err = 'BADRECEIPT ' .. receipt})
      end
    end
  end
  return out
end

-- the lease registry: {consumer = ms} and the shortest registered lease
local function leases(key)
  local flat = redis.call('HGETALL', key)
  local by, shortest = {}, HORIZON
  for i = 1, #flat, 2 do
    local lease = tonumber(flat[i + 1])
    by[flat[i]] = lease
    if lease < shortest then shortest = lease end
  end
  return by, shortest
end

-- register a lease of at least `want` ms for `me` and return the registered one; when it grows,
-- me's entries are shifted so that each keeps the time it had left
local function register(stream, group, key, me, want)
  local have = tonumber(redis.call('HGET', key, me))
  if have and have >= want then return have end
  redis.call('HSET', key, me, want)
  if have then
    local start = '-'
    repeat
      local page = redis.call('XPENDING', stream, group, start, '+', 1000, me)
      for _, p in ipairs(page) do
        redis.call('XCLAIM', stream, group, me, 0, p[1], 'IDLE', p[3] + want - have, 'JUSTID')
      end
      if #page > 0 then start = '(' .. page[#page][1] end
    until #page < 1000
  end
  return want
end

-- up to `count` pending entries whose owner's lease has ended, oldest first: [id, owner, idle, n]
local function ended(stream, group, by, shortest, count)
  local out, start = {}, '-'
  while #out < count do
    local page = redis.call('XPENDING', stream, group, 'IDLE', shortest, start, '+', 100)
    for _, p in ipairs(page) do
      if #out < count and p[3] >= (by[p[2]] or HORIZON) then out[#out + 1] = p end
    end
    if #page < 100 then break end
    start = '(' .. page[#page][1]
  end
  return out
end

local function epoch(key)
  return tonumber(redis.call('GET', key) or '0')
end

-- move due delayed messages into the stream (ours: "uniq:d:bytes"; Symfony's: its JSON)
local function move_due(stream, zkey, now, symfony)
  local due = redis.call('ZRANGEBYSCORE', zkey, '-inf', ms(now), 'LIMIT', 0, 500)
  for _, m in ipairs(due) do
    if symfony then
      redis.call('XADD', stream, '*', 'message', m)
    else
      local colon = string.find(m, ':', 18, true)
      local d, data = string.sub(m, 18, colon - 1), string.sub(m, colon + 1)
      if d == '0' then
        redis.call('XADD', stream, '*', 'm', data)
      else
        redis.call('XADD', stream, '*', 'm', data, 'd', d)
      end
    end
  end
  if #due > 0 then redis.call('ZREM', zkey, unpack(due)) end
end

local function first_due(zkey, now, wake)
  local first = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
  if first[2] then
    local left = tonumber(first[2]) - now
    if not wake or left < wake then return left end
  end
  return wake
end

local function group_info(stream, group)
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    if info['name'] == group then return info end
  end
  return nil
end
""".replace("HORIZON", str(HORIZON_MS))

# Before every XREADGROUP, in the same pipeline. KEYS: stream, delayed, symfony queue, leases,
# reclaims. ARGV: group, me, lease_ms, symfony (1/0) -> {epoch, due (1/0), registered lease}
PREPARE = Script.of(
    HELPERS
    + r"""
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local now = now_ms()
move_due(stream, KEYS[2], now, false)
if ARGV[4] == '1' then move_due(stream, KEYS[3], now, true) end
local have = register(stream, group, KEYS[4], me, math.ceil(tonumber(ARGV[3])))
local by, shortest = leases(KEYS[4])
local due = #ended(stream, group, by, shortest, 1)
return {epoch(KEYS[5]), due, have}
"""
)

# KEYS: stream, leases, reclaims. ARGV: group, me, count, lease_ms -> {epoch, entries, counters}
CLAIM = Script.of(
    HELPERS
    + r"""
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local lease = math.ceil(tonumber(ARGV[4]))
local have = register(stream, group, KEYS[2], me, lease)
local by, shortest = leases(KEYS[2])
local ids, counters = {}, {}
for i, p in ipairs(ended(stream, group, by, shortest, tonumber(ARGV[3]))) do
  ids[i] = p[1]
  counters[p[1]] = p[4] + 1
end
if #ids == 0 then return {epoch(KEYS[3]), {}, {}} end
local now = redis.call('INCR', KEYS[3])  -- before XCLAIM: acks of what changed hands get checked
local entries, out = {}, {}
for _, e in ipairs(chunked({'XCLAIM', stream, group, me, 0}, ids, {'IDLE', have - lease})) do
  if e then  -- a deleted entry: Redis 6.2 answers nil (7.0 drops it from the PEL and the reply)
    entries[#entries + 1] = e
    out[#out + 1] = counters[e[1]]
  end
end
return {now, entries, out}
"""
)

# Nothing to take: when to look again. KEYS: stream, delayed, symfony queue, leases.
# ARGV: group, symfony -> {wake_ms|false, last delivered id}
WAKE = Script.of(
    HELPERS
    + r"""
local stream, group = KEYS[1], ARGV[1]
local now = now_ms()
local wake = first_due(KEYS[2], now, nil)
if ARGV[2] == '1' then wake = first_due(KEYS[3], now, wake) end
local by = leases(KEYS[4])
local pel = redis.call('XPENDING', stream, group, '-', '+', 200)
if #pel < 200 then  -- the next lease end, when that is cheap to know
  for _, p in ipairs(pel) do
    local left = (by[p[2]] or HORIZON) - p[3]
    if not wake or left < wake then wake = left end
  end
end
if wake then wake = ms(math.max(wake, 0)) else wake = false end
return {wake, group_info(stream, group)['last-delivered-id']}
""".replace("HORIZON", str(HORIZON_MS))
)

# The hot path. KEYS: stream, reclaims. ARGV: group, the epoch at the oldest delivery's receive,
# entry ids... -> how many were acked, or -1 when a lease changed hands since: then ACK_HELD.
ACK = Script.of(
    HELPERS
    + r"""
if epoch(KEYS[2]) ~= tonumber(ARGV[2]) then return -1 end
for i = 3, #ARGV, 500 do
  local j = math.min(i + 499, #ARGV)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, j))
  redis.call('XDEL', KEYS[1], unpack(ARGV, i, j))
end
return #ARGV - 2
"""
)

# KEYS: stream. ARGV: group, me, receipts... (each checked: only leases still held are acked)
ACK_HELD = Script.of(
    HELPERS
    + r"""
local ids = held(KEYS[1], ARGV[1], ARGV[2], 3)
chunked({'XACK', KEYS[1], ARGV[1]}, ids, {})
chunked({'XDEL', KEYS[1]}, ids, {})
return #ids
"""
)

# KEYS: stream, leases. ARGV: group, me, lease_ms, receipts...
EXTEND = Script.of(
    HELPERS
    + r"""
local ids = held(KEYS[1], ARGV[1], ARGV[2], 4)
local lease = math.ceil(tonumber(ARGV[3]))
local have = register(KEYS[1], ARGV[1], KEYS[2], ARGV[2], lease)
chunked({'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}, ids, {'IDLE', have - lease, 'JUSTID'})
return #ids
"""
)

# KEYS: stream, reclaims. ARGV: group, me, receipts... Claimable at once, the delivery uncounted.
RELEASE = Script.of(
    HELPERS
    + r"""
local ids, token = held(KEYS[1], ARGV[1], ARGV[2], 3), {}
if #ids == 0 then return 0 end
for i = 3, #ARGV do
  local id, n = string.match(ARGV[i], '^(.*):(%d+)$')
  if id then token[id] = tonumber(n) end
end
redis.call('INCR', KEYS[2])
for _, id in ipairs(ids) do
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id,
             'IDLE', HORIZON, 'RETRYCOUNT', token[id] - 1, 'JUSTID')
end
return #ids
""".replace("HORIZON", str(HORIZON_MS))
)

# KEYS: stream, delayed. ARGV: group, me, delay_ms, uniq, data, deliveries so far, receipt
REQUEUE = Script.of(
    HELPERS
    + r"""
local ids = held(KEYS[1], ARGV[1], ARGV[2], 7)
if #ids == 0 then return 0 end
local id, counted = ids[1], ARGV[6]
redis.call('XACK', KEYS[1], ARGV[1], id)
redis.call('XDEL', KEYS[1], id)
local delay = tonumber(ARGV[3])
if delay > 0 then
  redis.call('ZADD', KEYS[2], ms(now_ms() + delay), ARGV[4] .. ':' .. counted .. ':' .. ARGV[5])
else
  redis.call('XADD', KEYS[1], '*', 'm', ARGV[5], 'd', counted)
end
return 1
"""
)

# KEYS: delayed. ARGV: delay_ms, then (uniq, data) pairs. The due time is the server's clock.
PUBLISH_DELAYED = Script.of(
    HELPERS
    + r"""
local due = ms(now_ms() + tonumber(ARGV[1]))
local args = {'ZADD', KEYS[1]}
for i = 2, #ARGV, 2 do
  args[#args + 1] = due
  args[#args + 1] = ARGV[i] .. ':0:' .. ARGV[i + 1]
end
redis.call(unpack(args))
return due
"""
)
