-- hostup-async: the store behind the shared rate limit (hostup_async/_pacing/shared).
--
-- It stores and reserves; it decides nothing. The rate, the length of a pause and the
-- adaptive policy are computed in Python and passed in, so both pacers run one policy.
-- Each call is atomic, on Redis' clock (TIME), so hosts whose clocks disagree share exactly.
--
-- KEYS[1] - state: hash {gen, born, hold, tat, first, last, paused, asked, version, policy,
--           decided_by, seq}
-- KEYS[2] - sends: sorted set of reserved send times (member: a sequence number)
-- KEYS[3] - refusals: sorted set of refused send times (member: the report's request id)
-- KEYS[4] - clients: sorted set of client ids, scored by when each was last seen
-- KEYS[5] - this client's last reservation: its request id and reply (at most once)
-- All five share one hash tag: one Redis Cluster slot.
--
-- ARGV[1] - operation: reserve | refuse | decide | ping | note (below)
-- ARGV[2] - now in seconds, or '' for Redis' TIME (tests drive the time)
-- ARGV[3] - client id
-- ARGV[4] - request id: unique per call; a call a client library retries repeats it
-- ARGV[5] - the state generation the client knows ('' before its first reply)
-- ARGV[6] - seconds every key outlives this call (beyond any pause)
-- ARGV[7] - seconds after a loss of the state during which nothing is reserved
-- ARGV[8] - seconds of send times kept
-- ARGV[9] - seconds a client counts as live after its last call
--
-- A lost state (a restart without persistence, FLUSHALL, eviction) gets a new generation.
-- A client that knew an older one has sends reserved under it still to go, so nothing is
-- reserved until ARGV[7] seconds after the loss was seen: old and new sends never meet.
--
-- Every number crosses as a '%.17g' string (a Lua number in a reply is cut to an integer);
-- a list of times as one string, the times separated by spaces (a reply element costs
-- the client's parser far more than a few bytes more in one).

local op, client, request, known_gen = ARGV[1], ARGV[3], ARGV[4], ARGV[5]
local keep, recovery = tonumber(ARGV[6]), tonumber(ARGV[7])
local log_span, live_span = tonumber(ARGV[8]), tonumber(ARGV[9])

-- reserve's reply to a request already run: the same reply, nothing reserved again.
if op == 'reserve' then
  local done = redis.call('GET', KEYS[5])
  if done then
    local sep = string.find(done, ' ', 1, true)
    if string.sub(done, 1, sep - 1) == request then
      return cjson.decode(string.sub(done, sep + 1))
    end
  end
end

local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end

local function fmt(x) return string.format('%.17g', x) end

local NEVER = -1e300
local s = redis.call('HMGET', KEYS[1], 'gen', 'born', 'hold', 'tat', 'last', 'paused', 'asked',
  'version', 'policy', 'decided_by', 'seq', 'first')
local gen, born, hold = s[1], tonumber(s[2]) or now, tonumber(s[3]) or NEVER
local tat, last = tonumber(s[4]) or NEVER, tonumber(s[5]) or NEVER
local paused, asked = tonumber(s[6]) or NEVER, tonumber(s[7]) or NEVER
local version, policy, decided_by = tonumber(s[8]) or 0, s[9] or '', s[10] or ''
local seq, first = tonumber(s[11]) or 0, s[12] or ''

-- The sends log outlives the last send by log_span: missing sooner, it was evicted.
if gen and last > now - log_span and redis.call('EXISTS', KEYS[2]) == 0 then
  gen = nil
end
if not gen then
  gen = fmt(now) .. '/' .. client
  born = now
  hold, tat, last, paused, asked = NEVER, NEVER, NEVER, NEVER, NEVER
  version, policy, decided_by, first = 0, '', '', ''
end
if known_gen ~= '' and known_gen ~= gen and now < born + recovery then
  -- This client (and so perhaps others) holds sends reserved under a lost state.
  hold = math.max(hold, born + recovery)
end

local function seen()
  redis.call('ZADD', KEYS[4], fmt(now), client)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. fmt(now - live_span))
  return redis.call('ZCARD', KEYS[4])
end

-- A send reserved at t that may go as late as t + late: the log holds its latest time, so
-- the 1-s window count below errs high, never low; the schedule (last) moves to t.
local function note_send(t, late)
  if first == '' then first = fmt(t) end  -- the key's first send (the policy's window)
  seq = seq + 1
  redis.call('ZADD', KEYS[2], fmt(t + (late or 0)), seq)
  if t > last then last = t end
end

local function scores(key, lo, hi, out)
  local rows = redis.call('ZRANGEBYSCORE', key, lo, hi, 'WITHSCORES')
  for i = 2, #rows, 2 do out[#out + 1] = rows[i] end
end

local out
if op == 'reserve' then
  -- ARGV[10] count, [11] more to lease ahead, [12] lease horizon s, [13] reserve cap s,
  -- [14] rate ('' for none), [15] burst s, [16] window margin s, [17] policy version known,
  -- [18] seconds after its time a slot leased ahead may still be sent (logged that late)
  -- returns {'slots', now, gen, live, next, times}: the send times reserved; fewer than
  --   asked when the next (at next) is more than the cap ahead of now,
  -- {'paused', now, gen, live, paused_left, asked_left}: nothing reserved, or
  -- {'policy', now, gen, live, version, policy}: the caller's policy is outdated.
  local live = seen()
  local count, ahead = tonumber(ARGV[10]), tonumber(ARGV[11])
  local lease_until, cap_until = now + tonumber(ARGV[12]), now + tonumber(ARGV[13])
  local rate, burst, margin = tonumber(ARGV[14]), tonumber(ARGV[15]), tonumber(ARGV[16])
  local late = tonumber(ARGV[18])
  if tonumber(ARGV[17]) ~= version then
    out = {'policy', fmt(now), gen, live, tostring(version), policy}
  elseif paused > now then
    out = {'paused', fmt(now), gen, live, fmt(paused - now), fmt(math.max(0, asked - now))}
  else
    redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. fmt(now - log_span))
    out = {'slots', fmt(now), gen, live, ''}
    local times = {}
    local T, tau, window = 0, 0, 0
    if rate then
      -- SendBucket's rules: a GCRA token bucket with a short burst, and at most
      -- floor(rate) sends in any 1-s window.
      T = 1.0 / rate
      tau = (math.max(1.0, rate * burst) - 1.0) * T
      window = math.max(1, math.floor(rate))
      -- Empty when a hold after a loss ends, and when a pause ends (SendBucket.hold):
      -- no burst follows either.
      tat = math.max(tat, hold + tau, paused + T + tau)
    end
    local nxt
    for i = 1, count + ahead do
      local t = math.max(now, last, hold)
      local next_tat = tat
      if rate then
        t = math.max(t, tat - tau)
        local nth = redis.call('ZREVRANGE', KEYS[2], window - 1, window - 1, 'WITHSCORES')
        local bound = nth[2] and tonumber(nth[2]) + 1.0 + margin
        if bound and bound > t then
          -- Held back by the window: the bucket is empty then, so no burst follows.
          t = bound
          next_tat = t + tau + T
        else
          next_tat = math.max(tat, t) + T
        end
      end
      if t > cap_until or (i > count and t > lease_until) then
        nxt = t
        break
      end
      tat = next_tat
      note_send(t, i > count and late or 0)
      times[#times + 1] = fmt(t)
    end
    if nxt then out[5] = fmt(nxt) end
    out[6] = table.concat(times, ' ')
  end
  redis.call('SET', KEYS[5], request .. ' ' .. cjson.encode(out), 'PX', math.ceil(keep * 1000))
elseif op == 'refuse' then
  -- ARGV[10] sent_at, [11] pause s (already bounded), [12] seconds the server asked,
  -- [13] seconds to look back from sent_at (0: no logs), [14] '1' refused or '0' a spent
  -- quota (not counted as refused), [15] '1' if the server took one of this client's
  -- requests sent since the pause began, since its last report
  -- returns {'refused', now, gen, version, policy, paused_left, asked_left, first send
  --   ('' for none), send times in [sent_at - look back, sent_at], refused send times in
  --   [sent_at - look back, sent_at)}
  local sent_at, pause, wanted = tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])
  local back = tonumber(ARGV[13])
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', '(' .. fmt(now - log_span))
  -- A new pause, or the server took a request sent since the pause began: an older ask
  -- is over.
  if now >= paused or ARGV[15] == '1' then asked = NEVER end
  if now + pause > paused then paused = now + pause end
  if now + wanted > asked then asked = now + wanted end
  local sends, refusals = {}, {}
  if back > 0 then
    scores(KEYS[2], fmt(sent_at - back), fmt(sent_at), sends)
    scores(KEYS[3], fmt(sent_at - back), '(' .. fmt(sent_at), refusals)
  end
  if ARGV[14] == '1' then redis.call('ZADD', KEYS[3], fmt(sent_at), request) end
  out = {'refused', fmt(now), gen, tostring(version), policy, fmt(paused - now),
    fmt(math.max(0, asked - now)), first, table.concat(sends, ' '),
    table.concat(refusals, ' ')}
elseif op == 'decide' then
  -- ARGV[10] the policy version the decision was made on, [11] the new policy state
  -- returns {'decided' or 'conflict', now, version, policy}: the policy stored now
  if decided_by == request then
    out = {'decided', fmt(now), tostring(version), policy}
  elseif tonumber(ARGV[10]) == version then
    version, policy, decided_by = version + 1, ARGV[11], request
    out = {'decided', fmt(now), tostring(version), policy}
  else
    out = {'conflict', fmt(now), tostring(version), policy}
  end
elseif op == 'ping' then
  -- returns {'pong', now, gen, live}; it writes, so a read-only replica refuses it
  out = {'pong', fmt(now), gen, seen()}
elseif op == 'note' then
  -- ARGV[10...] send times to record (the policy's table tests)
  for i = 10, #ARGV do note_send(tonumber(ARGV[i])) end
  out = {'noted', fmt(now), gen}
else
  return redis.error_reply('unknown operation ' .. op)
end

redis.call('HSET', KEYS[1], 'gen', gen, 'born', fmt(born), 'hold', fmt(hold), 'tat', fmt(tat),
  'last', fmt(last),
  'paused', fmt(paused), 'asked', fmt(asked), 'version', version, 'policy', policy,
  'decided_by', decided_by, 'seq', seq, 'first', first)
local ttl = math.ceil((math.max(0, paused - now) + keep) * 1000)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
return out
