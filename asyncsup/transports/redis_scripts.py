"""The Lua scripts of the Redis transport: every state change is one atomic script, one round trip.

How a lease is kept (the "horizon" trick): a stream's pending entries list (PEL) records, per
entry, its owner, a delivery counter and the time of the last delivery. Redis can only reclaim by
*idle time* (XAUTOCLAIM min-idle), which would make the lease the claimer's choice. Instead every
lease is written into that idle time: an entry leased for L ms gets ``IDLE = HORIZON - L`` (XCLAIM
... IDLE ... JUSTID, which neither changes the owner nor counts a delivery), and every claimer
reclaims at ``min-idle = HORIZON``. So an entry comes back exactly when *its holder's* lease ends,
an extend rewrites the idle time, a release sets it to HORIZON (claimable at once). XPENDING
therefore shows an idle time of "HORIZON minus the lease left".

The delivery counter is the lease token: a receipt is ``<entry id>:<counter>``, and a settle
(ack, extend, release, requeue) only touches entries still owned by this consumer *with that
counter*. A reclaim counts a delivery, so a receipt whose lease was lost is inert. A release sets
the counter back by one (RETRYCOUNT): the next receive counts it again, so no attempt is burnt.

Entry fields: ``m`` = our envelope bytes; ``d`` = deliveries already counted before this entry
existed (a requeue writes a new entry: the counter is carried over with RETRYCOUNT on its first
delivery). A Symfony entry has one field ``message``. Delayed messages wait in the sorted set
``<stream>:delayed`` (score = due time in ms, member ``<16 hex uniq>:<d>:<bytes>``) and are moved
into the stream by the take script when due, in the same atomic step (two consumers never move
one message twice). Symfony's own delayed set ``<stream>__queue`` is moved too with format=symfony.

A take answers ``[false, false, reclaimed entries, their counters, new entries]`` (entries as
XAUTOCLAIM/XREADGROUP give them: ``[id, [field, value, ...]]``; a new entry's counter is 1 + its
``d``), or ``[wake_ms|false, last_delivered_id]`` when there was nothing to take. Browse answers
flat ``[id, counter, kind, data, ...]``: kind 0 = our ``m`` field, 1 = a ``message`` field (data is
its value), 2 = neither (data is the field list). Scripts need Redis >= 6.2 (XAUTOCLAIM); the tests
run 7.0.
"""

from __future__ import annotations

from asyncsup.transports.redis_link import Script

HORIZON_MS = 86_400_000  # 24 h: the longest lease; an idle time >= this means "lease ended"

_HELPERS = r"""
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

-- run redis.call(head..., ids[i..j]..., tail...) over ids in chunks (Lua's unpack has a limit)
local function chunked(head, ids, tail)
  local n = #ids
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
    redis.call(unpack(args))
  end
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
"""

# KEYS: stream, delayed, symfony queue. ARGV: group, me, count, lease_ms, symfony (1/0)
TAKE = Script.of(
    _HELPERS
    + r"""
local stream, group, me = KEYS[1], ARGV[1], ARGV[2]
local count, hold = tonumber(ARGV[3]), HORIZON - tonumber(ARGV[4])
local symfony = ARGV[5] == '1'
local now = now_ms()
move_due(stream, KEYS[2], now, false)
if symfony then move_due(stream, KEYS[3], now, true) end
local taken, claimed, counters, fresh = {}, {}, {}, {}

-- 1. leases that ran out, anywhere in the group (all of them are scanned, oldest entry first)
local first = redis.call('XPENDING', stream, group, 'IDLE', HORIZON, '-', '+', 1)
if first[1] then
  local cursor = first[1][1]
  repeat
    local r = redis.call('XAUTOCLAIM', stream, group, me, HORIZON, cursor, 'COUNT', count - #taken)
    cursor = r[1]
    for _, e in ipairs(r[2]) do
      if e then  -- Redis 6.2 answers a deleted entry with nil
        taken[#taken + 1] = e[1]
        claimed[#claimed + 1] = e
      end
    end
  until cursor == '0-0' or #taken >= count
  for i, e in ipairs(claimed) do
    counters[i] = redis.call('XPENDING', stream, group, e[1], e[1], 1)[1][4]
  end
end

-- 2. entries never delivered to the group (returned as XREADGROUP gave them: no re-packing)
if #taken < count then
  local r = redis.call('XREADGROUP', 'GROUP', group, me, 'COUNT', count - #taken, 'STREAMS', stream, '>')
  if r then
    fresh = r[1][2]
    for _, e in ipairs(fresh) do
      taken[#taken + 1] = e[1]
      local d = #e[2] > 2 and tonumber(field(e[2], 'd'))  -- a requeued entry: count on
      if d and d > 0 then
        redis.call('XCLAIM', stream, group, me, 0, e[1], 'RETRYCOUNT', d + 1, 'JUSTID')
      end
    end
  end
end

-- 3. the lease, written into the idle time
if #taken > 0 then
  chunked({'XCLAIM', stream, group, me, 0}, taken, {'IDLE', hold, 'JUSTID'})
  return {false, false, claimed, counters, fresh}
end

-- nothing: say when to look again (next delayed due, or next lease end when the PEL is small)
local wake = first_due(KEYS[2], now, nil)
if symfony then wake = first_due(KEYS[3], now, wake) end
local pel = redis.call('XPENDING', stream, group, '-', '+', 200)
if #pel < 200 then
  for _, p in ipairs(pel) do
    local left = HORIZON - p[3]
    if not wake or left < wake then wake = left end
  end
end
if wake then wake = ms(math.max(wake, 0)) else wake = false end
return {wake, group_info(stream, group)['last-delivered-id']}
""".replace("HORIZON", str(HORIZON_MS))
)

# KEYS: stream. ARGV: group, me, receipts...
ACK = Script.of(
    _HELPERS
    + r"""
local ids = held(KEYS[1], ARGV[1], ARGV[2], 3)
chunked({'XACK', KEYS[1], ARGV[1]}, ids, {})
chunked({'XDEL', KEYS[1]}, ids, {})
return #ids
"""
)

# KEYS: stream. ARGV: group, me, lease_ms, receipts...
EXTEND = Script.of(
    _HELPERS
    + r"""
local ids = held(KEYS[1], ARGV[1], ARGV[2], 4)
local hold = HORIZON - tonumber(ARGV[3])
chunked({'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}, ids, {'IDLE', hold, 'JUSTID'})
return #ids
""".replace("HORIZON", str(HORIZON_MS))
)

# KEYS: stream. ARGV: group, me, receipts... Claimable at once, the delivery uncounted.
RELEASE = Script.of(
    _HELPERS
    + r"""
local ids, token = held(KEYS[1], ARGV[1], ARGV[2], 3), {}
for i = 3, #ARGV do
  local id, n = string.match(ARGV[i], '^(.*):(%d+)$')
  if id then token[id] = tonumber(n) end
end
for _, id in ipairs(ids) do
  redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id,
             'IDLE', HORIZON, 'RETRYCOUNT', token[id] - 1, 'JUSTID')
end
return #ids
""".replace("HORIZON", str(HORIZON_MS))
)

# KEYS: stream, delayed. ARGV: group, me, delay_ms, uniq, data, receipt
REQUEUE = Script.of(
    _HELPERS
    + r"""
local ids = held(KEYS[1], ARGV[1], ARGV[2], 6)
if #ids == 0 then return 0 end
local id = ids[1]
local counted = string.match(ARGV[6], ':(%d+)$')
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
    _HELPERS
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

# KEYS: stream, delayed, symfony queue. ARGV: group, symfony. -> {ready, in_flight, delayed}
COUNTS = Script.of(
    _HELPERS
    + r"""
local stream, group = KEYS[1], ARGV[1]
local later = redis.call('ZCARD', KEYS[2])
if ARGV[2] == '1' then later = later + redis.call('ZCARD', KEYS[3]) end
if redis.call('EXISTS', stream) == 0 then return {0, 0, later} end
local len = redis.call('XLEN', stream)
local info = group_info(stream, group)
if not info then return {len, 0, later} end
local pending, expired, start = info['pending'], 0, '-'
while pending > 0 do
  local page = redis.call('XPENDING', stream, group, 'IDLE', HORIZON, start, '+', 1000)
  expired = expired + #page
  if #page < 1000 then break end
  start = '(' .. page[#page][1]
end
local lag = info['lag']
if not lag then lag = math.max(len - pending, 0) end  -- unknown after deletions ahead of the group
return {lag + expired, pending - expired, later}
""".replace("HORIZON", str(HORIZON_MS))
)

# KEYS: stream, delayed. ARGV: group, offset, limit -> flat deliveries (receipt token 0)
BROWSE = Script.of(
    _HELPERS
    + r"""
local stream, group = KEYS[1], ARGV[1]
local offset, limit = tonumber(ARGV[2]), tonumber(ARGV[3])
local out, n = {}, 0
local len = redis.call('XLEN', stream)
if offset < len then
  local entries = redis.call('XRANGE', stream, '-', '+', 'COUNT', offset + limit)
  for i = offset + 1, #entries do
    local e = entries[i]
    local p = redis.call('XPENDING', stream, group, e[1], e[1], 1)
    local counter = p[1] and p[1][4] or tonumber(field(e[2], 'd') or '0') or 0
    push(out, e[1], counter, e[2])
    n = n + 1
  end
end
if n < limit then
  local skip = math.max(offset - len, 0)
  for _, m in ipairs(redis.call('ZRANGE', KEYS[2], skip, skip + limit - n - 1)) do
    local colon = string.find(m, ':', 18, true)
    push(out, 'z' .. string.sub(m, 1, 16), tonumber(string.sub(m, 18, colon - 1)),
         {'m', string.sub(m, colon + 1)})
  end
end
return out
"""
)

# KEYS: stream, delayed. ARGV: group, then entry ids or 'z<uniq>' -> how many were removed
REMOVE = Script.of(r"""
local stream, group, removed = KEYS[1], ARGV[1], 0
for i = 2, #ARGV do
  local id = ARGV[i]
  if string.sub(id, 1, 1) == 'z' then
    local cursor = '0'
    repeat
      local r = redis.call('ZSCAN', KEYS[2], cursor, 'MATCH', string.sub(id, 2) .. ':*', 'COUNT', 1000)
      cursor = r[1]
      for k = 1, #r[2], 2 do removed = removed + redis.call('ZREM', KEYS[2], r[2][k]) end
    until cursor == '0'
  else
    redis.call('XACK', stream, group, id)
    removed = removed + redis.call('XDEL', stream, id)
  end
end
return removed
""")

# KEYS: stream. ARGV: group -> how many groups the stream has (ours included)
CREATE_GROUP = Script.of(r"""
local ok = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
if type(ok) == 'table' and ok.err and not string.find(ok.err, 'BUSYGROUP', 1, true) then
  return redis.error_reply(ok.err)
end
return #redis.call('XINFO', 'GROUPS', KEYS[1])
""")

# KEYS: stream. ARGV: group, me, stale_ms. Forget consumers that hold nothing: this one, and
# any not seen for stale_ms (processes that died). A consumer with pending entries is kept.
PRUNE = Script.of(r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ok, consumers = pcall(redis.call, 'XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if not ok then return 0 end
local gone, stale = 0, tonumber(ARGV[3])
for _, c in ipairs(consumers) do
  local info = {}
  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end
  if info['pending'] == 0 and (info['name'] == ARGV[2] or info['idle'] >= stale) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    gone = gone + 1
  end
end
return gone
""")

# KEYS: mark key. -> the server's time, as seconds with microseconds
SET_MARK = Script.of(r"""
local t = redis.call('TIME')
local value = t[1] .. '.' .. string.format('%06d', tonumber(t[2]))
redis.call('SET', KEYS[1], value)
return value
""")
