"""The Redis transport's scripts that look (counts, browse) or keep house (remove, the group, the
consumers, the stop mark). The lease design they read is in redis_scripts.py."""

from __future__ import annotations

from asyncsup.transports.redis_link import Script
from asyncsup.transports.redis_scripts import HELPERS

# KEYS: stream, delayed, symfony queue, leases. ARGV: group, symfony.
# -> {ready, in_flight, delayed}
COUNTS = Script.of(
    HELPERS
    + r"""
local stream, group = KEYS[1], ARGV[1]
local later = redis.call('ZCARD', KEYS[2])
if ARGV[2] == '1' then later = later + redis.call('ZCARD', KEYS[3]) end
if redis.call('EXISTS', stream) == 0 then return {0, 0, later} end
local len = redis.call('XLEN', stream)
local info = group_info(stream, group)
if not info then return {len, 0, later} end
local pending = info['pending']
local by, shortest = leases(KEYS[4])
local expired = #ended(stream, group, by, shortest, pending)
local lag = info['lag']
if not lag then lag = math.max(len - pending, 0) end  -- unknown after deletions ahead of the group
return {lag + expired, pending - expired, later}
"""
)

# KEYS: stream, delayed. ARGV: group, offset, limit, after ('' or the id of the last entry of the
# previous page: a stream id, or 'z<uniq>' for a delayed one) -> flat deliveries (receipt token 0).
# With `after`, a page in the stream is one XRANGE from there, whatever the depth; a page in the
# delayed set finds its place with a ZSCAN of the set (small: only what waits for its time).
BROWSE = Script.of(
    HELPERS
    + r"""
local stream, group = KEYS[1], ARGV[1]
local offset, limit, after = tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local out, n, skip = {}, 0, 0
local function delayed_rank(uniq)
  local cursor = '0'
  repeat
    local r = redis.call('ZSCAN', KEYS[2], cursor, 'MATCH', uniq .. ':*', 'COUNT', 1000)
    cursor = r[1]
    if r[2][1] then return redis.call('ZRANK', KEYS[2], r[2][1]) end
  until cursor == '0'
  return -1  -- moved into the stream meanwhile: go on from the start of the delayed set
end
local entries = {}
if after == '' then
  local len = redis.call('XLEN', stream)
  if offset < len then
    entries = redis.call('XRANGE', stream, '-', '+', 'COUNT', offset + limit)
  end
  skip = math.max(offset - len, 0)
elseif string.sub(after, 1, 1) == 'z' then
  skip, offset = delayed_rank(string.sub(after, 2)) + 1, 0
else
  entries, offset = redis.call('XRANGE', stream, '(' .. after, '+', 'COUNT', limit), 0
end
for i = offset + 1, #entries do
  local e = entries[i]
  local p = redis.call('XPENDING', stream, group, e[1], e[1], 1)
  local counter = (p[1] and p[1][4] or 0) + (tonumber(field(e[2], 'd') or '0') or 0)
  push(out, e[1], counter, e[2])
  n = n + 1
end
if n < limit then
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

# KEYS: stream, leases. ARGV: group, me, stale_ms. Forget consumers that hold nothing (and their
# registered lease): this one, and any not seen for stale_ms (processes that died). A consumer
# with pending entries is kept, and so is its lease: its entries come back when that ends.
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
    redis.call('HDEL', KEYS[2], info['name'])
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
