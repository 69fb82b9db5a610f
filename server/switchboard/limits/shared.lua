-- The shared sliding-window limiter: one atomic step per call (shared.py drives it).
--
-- Time is Redis's own clock (TIME), in microseconds; replicas' clocks never matter.
-- A key's time never goes backwards: it runs at max(TIME, the latest it has seen).
--
-- One hash per limited key, KEYS[i] = prefix .. key:
--   L          latest time (us) the key has seen
--   R, T       running sums of requests and tokens over its buckets
--   H, N       oldest and newest stored bucket index (absent when there are none)
--   r<b>, t<b> requests and tokens of bucket b; x<b> the next stored bucket after b
-- Buckets form a list oldest first (H -> x<H> -> ... -> N), so dropping expired ones
-- and walking them for a retry time touch stored buckets only, oldest first.
-- Bucket b covers [b*q, (b+1)*q); its entries are stamped at its end, (b+1)*q, and
-- count while stamp > now - window, i.e. they leave at stamp + window.
--
-- ARGV[1] op: "acquire" | "settle" | "charge" | "headroom"; ARGV[2] window (us); ARGV[3] q (us);
-- ARGV[4] expiry margin (ms).
--   acquire:  ARGV[5] tokens; ARGV[6 + 2(i-1)], ARGV[7 + 2(i-1)]: rpm, tpm of KEYS[i]
--             (-1: unlimited). Replies {1, TIME, bucket of KEYS[1], ...} when every key
--             fits (and records it on each), else {0, i, retry_at or -1 (never), TIME}
--             for the key i with the latest fit time, recording nothing.
--   settle:   ARGV[5] requests delta, ARGV[6] tokens delta; ARGV[7 + (i-1)] the bucket
--             of KEYS[i] to correct, if it is still stored and inside the window.
--             Replies {TIME, keys corrected}.
--   charge:   records what was admitted without Redis (an outage), unchecked, once:
--             KEYS[#KEYS] is a marker named by the charge's id; ARGV[5] its lifetime (ms);
--             ARGV[6 + 2(i-1)], ARGV[7 + 2(i-1)]: requests, tokens to add to KEYS[i].
--             Replies {1, TIME, bucket of KEYS[1], ...}, or, when the marker exists (the
--             charge was applied before and its reply lost), {0, TIME, the same buckets}.
--   headroom: replies {R, T} of KEYS[1] after dropping its expired buckets.
--
-- Every check happens before the first write, so an error never leaves half a change.
-- Numbers are Lua doubles: integers are exact below 2^53 (TIME in us is ~2^51), and
-- written with %.0f, since tostring would keep only 14 significant digits.

if redis.replicate_commands then
  redis.replicate_commands() -- Redis < 5: writes after TIME need effects replication
end

local op = ARGV[1]
local window = tonumber(ARGV[2])
local q = tonumber(ARGV[3])
local margin_ms = tonumber(ARGV[4])
local time = redis.call('TIME')
local clock = tonumber(time[1]) * 1000000 + tonumber(time[2])

local function fmt(n)
  return string.format('%.0f', n)
end

-- A key's state at its own time, expired buckets dropped from the sums; the hash is
-- written only by store_drops or record, so a check that fails writes nothing.
local function advance(key)
  local s = redis.call('HMGET', key, 'L', 'R', 'T', 'H', 'N')
  local now = clock
  local latest = tonumber(s[1])
  if latest ~= nil and latest > now then
    now = latest
  end
  local st = {key = key, now = now, r = tonumber(s[2]) or 0, t = tonumber(s[3]) or 0,
              head = tonumber(s[4]), newest = tonumber(s[5]), clear = false, drop = {}}
  if st.newest ~= nil and (st.newest + 1) * q + window <= now then
    -- Everything has left the window: one DEL instead of a walk.
    st.r, st.t, st.head, st.newest, st.clear = 0, 0, nil, nil, true
    return st
  end
  while st.head ~= nil and (st.head + 1) * q + window <= now do
    local b = fmt(st.head)
    local f = redis.call('HMGET', key, 'r' .. b, 't' .. b, 'x' .. b)
    st.r = st.r - tonumber(f[1])
    st.t = st.t - tonumber(f[2])
    local n = #st.drop
    st.drop[n + 1], st.drop[n + 2], st.drop[n + 3] = 'r' .. b, 't' .. b, 'x' .. b
    st.head = tonumber(f[3]) -- never nil here: the newest bucket is still in the window
  end
  return st
end

-- Writes back what advance dropped.
local function store_drops(st)
  if st.clear then
    redis.call('DEL', st.key)
  elseif #st.drop > 0 then
    redis.call('HDEL', st.key, unpack(st.drop))
    redis.call('HSET', st.key, 'R', fmt(st.r), 'T', fmt(st.t), 'H', fmt(st.head))
  end
end

-- 0: fits now; a time (us): fits then, if nothing else is admitted; -1: never.
local function fit(st, rpm, tpm, tokens)
  if tpm >= 0 and tokens > tpm then
    return -1
  end
  local excess_r, excess_t = 0, 0
  if rpm >= 0 then excess_r = st.r + 1 - rpm end
  if tpm >= 0 then excess_t = st.t + tokens - tpm end
  if excess_r <= 0 and excess_t <= 0 then
    return 0
  end
  local freed_r, freed_t = 0, 0
  local b = st.head
  while b ~= nil do
    local s = fmt(b)
    local f = redis.call('HMGET', st.key, 'r' .. s, 't' .. s, 'x' .. s)
    freed_r = freed_r + tonumber(f[1])
    freed_t = freed_t + tonumber(f[2])
    if freed_r >= excess_r and freed_t >= excess_t then
      return (b + 1) * q + window
    end
    b = tonumber(f[3])
  end
  return redis.error_reply('limiter state of ' .. st.key .. ' is out of step')
end

local function record(st, requests, tokens)
  local now = st.now
  local index = (now - math.fmod(now, q)) / q -- exact: floor(now / q)
  local b = fmt(index)
  store_drops(st)
  if st.newest == index then
    redis.call('HINCRBY', st.key, 'r' .. b, fmt(requests))
    redis.call('HINCRBY', st.key, 't' .. b, fmt(tokens))
  else
    redis.call('HSET', st.key, 'r' .. b, fmt(requests), 't' .. b, fmt(tokens))
    if st.newest ~= nil then
      redis.call('HSET', st.key, 'x' .. fmt(st.newest), b)
    else
      st.head = index
    end
  end
  redis.call('HSET', st.key, 'L', fmt(now), 'R', fmt(st.r + requests), 'T', fmt(st.t + tokens),
             'H', fmt(st.head), 'N', b)
  -- The newest bucket leaves at (index + 1) * q + window <= now + q + window, on the
  -- key's time, which may run ahead of TIME: the key outlives all of its buckets.
  redis.call('PEXPIRE', st.key, fmt(math.ceil((now - clock + q + window) / 1000) + margin_ms))
  return index
end

if op == 'acquire' then
  local tokens = tonumber(ARGV[5])
  local states = {}
  local worst_at, worst_key = 0, 0
  for i, key in ipairs(KEYS) do
    local st = advance(key)
    states[i] = st
    local at = fit(st, tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i]), tokens)
    if type(at) == 'table' then
      return at -- an error reply; nothing has been written
    end
    -- The latest wait wins; never (-1) outranks any time; ties go to the first named.
    if at ~= 0 and worst_at ~= -1 and (at == -1 or at > worst_at) then
      worst_at, worst_key = at, i
    end
  end
  if worst_key ~= 0 then
    for _, st in ipairs(states) do
      store_drops(st)
    end
    return {0, worst_key, worst_at, clock}
  end
  local reply = {1, clock}
  for i, st in ipairs(states) do
    reply[i + 2] = record(st, 1, tokens)
  end
  return reply
elseif op == 'charge' then
  local marker = KEYS[#KEYS]
  local done = redis.call('GET', marker)
  local reply = {0, clock}
  if done then
    for b in string.gmatch(done, '[^,]+') do
      reply[#reply + 1] = tonumber(b)
    end
    return reply
  end
  reply[1] = 1
  for i = 1, #KEYS - 1 do
    local st = advance(KEYS[i])
    reply[i + 2] = record(st, tonumber(ARGV[4 + 2 * i]), tonumber(ARGV[5 + 2 * i]))
  end
  local buckets = {}
  for i = 3, #reply do
    buckets[#buckets + 1] = fmt(reply[i])
  end
  redis.call('SET', marker, table.concat(buckets, ','), 'PX', ARGV[5])
  return reply
elseif op == 'settle' then
  local requests, tokens = tonumber(ARGV[5]), tonumber(ARGV[6])
  local corrected = 0
  for i, key in ipairs(KEYS) do
    local index = tonumber(ARGV[6 + i])
    local b = fmt(index)
    local s = redis.call('HMGET', key, 'L', 'r' .. b)
    local now = math.max(clock, tonumber(s[1]) or clock)
    -- A bucket that left the window needs no correction: it counts for nothing.
    if s[2] and (index + 1) * q + window > now then
      if requests ~= 0 then
        redis.call('HINCRBY', key, 'r' .. b, fmt(requests))
        redis.call('HINCRBY', key, 'R', fmt(requests))
      end
      if tokens ~= 0 then
        redis.call('HINCRBY', key, 't' .. b, fmt(tokens))
        redis.call('HINCRBY', key, 'T', fmt(tokens))
      end
      corrected = corrected + 1
    end
  end
  return {clock, corrected}
elseif op == 'headroom' then
  local st = advance(KEYS[1])
  store_drops(st)
  return {st.r, st.t}
end
return redis.error_reply('unknown limiter operation ' .. tostring(op))
