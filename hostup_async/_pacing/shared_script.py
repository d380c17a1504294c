"""The Lua script behind the shared rate limit: every pacing decision, atomically, on Redis' clock.

One script, four operations, each one round trip (``op`` is the first argument):

- ``a`` (acquire ``n`` send slots, and up to ``ahead`` more due within ``horizon``
  seconds): unless the key is paused, reserve the next send times and return them. Times follow a GCRA token bucket (the ``SendBucket`` rules: a
  ``RATE_BURST_SECONDS`` burst, then ``rate`` per second) and at most ``floor(rate)``
  sends in any 1-s window, fleet-wide; they never go backwards. A send the window holds
  back leaves the bucket empty, so no burst follows it. During a pause it
  reserves nothing and says how much of the pause is left.
- ``r`` / ``k`` (a refusal, or an accepted answer that said the quota is spent): the
  ``AdaptiveRate.on_refused`` decision on the shared state, then the shared pause and a
  bucket held empty until it ends (no burst after a pause).
- ``s`` (note sends at given times): for the policy's table tests, which drive time.

Times are Redis' ``TIME`` unless the caller passes one (tests only): hosts with skewed
clocks all read the same clock. Numbers cross as ``%.17g`` strings, exactly (a Lua number
in a reply would be truncated to an integer). The policy's constants come from
``_constants`` and ``adaptive``, so tuning them tunes both pacers.

The state of one namespace, all keys under one hash tag (Redis Cluster), all expiring:
``{ns}:st`` (hash: the bucket's ``tat``, the last send, the pause, the policy's ``epoch``,
``target``, ``floor``, ``resume``, ``lowered``, a sequence for unique members),
``{ns}:w`` (sorted set of send times, kept ``_MAX_SPAN`` seconds for the policy's
measure), ``{ns}:rf`` (refused send times) and ``{ns}:c`` (clients seen lately, for
the share each takes when Redis goes away).
"""

from __future__ import annotations

from .._constants import (
    ADAPTIVE_BACKOFF,
    ADAPTIVE_MIN_RATE,
    ADAPTIVE_PLATEAU,
    ADAPTIVE_REST,
    RATE_BURST_SECONDS,
    RATE_LIMIT_PAUSE,
)
from .adaptive import _LONG_WAIT, _MAX_SPAN

__all__ = ["LIVE_SECONDS", "SCRIPT", "WINDOW_MARGIN"]

#: Slack on the fleet's 1-s window cap (as ``SendBucket``'s): timer jitter on the way.
WINDOW_MARGIN = 0.005

#: A client that made no call for this long no longer counts as live.
LIVE_SECONDS = 10.0

# Seconds every key outlives the last call (beyond any pause): longer than the policy's
# longest look back, so a quiet minute forgets nothing it would use.
_KEEP = _MAX_SPAN + 60.0

_LUA = r"""
local st, ws, rs, cs = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local op = ARGV[1]
local now
if ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local ceiling = tonumber(ARGV[3])
local client = ARGV[4]
local max_pause = tonumber(ARGV[5])

local function fmt(x) return string.format('%.17g', x) end

local NEVER = -1e300
local s = redis.call('HMGET', st, 'tat', 'last', 'pause', 'epoch', 'target', 'floor', 'resume', 'lowered', 'seq')
local tat = tonumber(s[1]) or NEVER
local last = tonumber(s[2]) or NEVER
local paused = tonumber(s[3]) or NEVER
local epoch = tonumber(s[4]) or NEVER
local target = tonumber(s[5])
local floor = tonumber(s[6]) or 0
local resume = tonumber(s[7]) or 0
local lowered = tonumber(s[8]) or 0
local seq = tonumber(s[9]) or 0

-- AdaptiveRate.rate_at: CUBIC from the floor at the pause's end, flat at the target.
local function rate_at(t)
  if target == nil then return ceiling end
  local k = @PLATEAU@
  local x = math.max(0, t - resume) - k
  local amplitude = math.max(target - floor, target * (1 - @BACKOFF@))
  local r = math.max(floor, target + amplitude * (x / k) * (x / k) * (x / k))
  if ceiling ~= nil and r >= ceiling then return ceiling end
  return r
end

-- AdaptiveRate._measure: what the server took in its window before sent_at, fleet-wide.
local function measure(sent_at, wait, including)
  local long = wait > @LONG_WAIT@
  local start = sent_at - (long and math.min(wait, @MAX_SPAN@) or 1.0)
  local hi = including and fmt(sent_at) or ('(' .. fmt(sent_at))
  local through = redis.call('ZCOUNT', ws, fmt(start), hi)
  local earliest = sent_at
  if through > 0 then
    local first = redis.call('ZRANGEBYSCORE', ws, fmt(start), hi, 'WITHSCORES', 'LIMIT', 0, 1)
    earliest = tonumber(first[2])
  end
  through = through - redis.call('ZCOUNT', rs, fmt(start), '(' .. fmt(sent_at))
  if through <= 0 then return nil end
  if long then return through / math.max(1.0, sent_at - earliest + wait) end
  return through
end

local function note_send(t)
  seq = seq + 1
  redis.call('ZADD', ws, fmt(t), seq)
  if t > last then last = t end
end

local out
local horizon = fmt(now - @MAX_SPAN@ - 2.0)
if op == 'a' then
  redis.call('ZADD', cs, fmt(now), client)
  redis.call('ZREMRANGEBYSCORE', cs, '-inf', '(' .. fmt(now - @LIVE@))
  local live = redis.call('ZCARD', cs)
  local rate = rate_at(now)
  if paused > now then
    out = {'p', fmt(now), fmt(paused - now), rate and fmt(rate) or '', live}
  else
    out = {'a', fmt(now), rate and fmt(rate) or '', live}
    redis.call('ZREMRANGEBYSCORE', ws, '-inf', '(' .. horizon)
    local needed, ahead = tonumber(ARGV[6]), tonumber(ARGV[7]) or 0
    local until_ = now + (tonumber(ARGV[8]) or 0)
    for i = 1, needed + ahead do
      local t = math.max(now, last)
      local keep_tat = tat
      if rate ~= nil then
        local T = 1.0 / rate
        local tau = (math.max(1.0, rate * @BURST@) - 1.0) * T
        t = math.max(t, tat - tau)
        local cap = math.max(1, math.floor(rate))
        local nth = redis.call('ZREVRANGE', ws, cap - 1, cap - 1, 'WITHSCORES')
        local bound = nth[2] and tonumber(nth[2]) + 1.0 + @MARGIN@
        if bound and bound > t then
          -- Held back by the window: the bucket is empty then, or the tokens it gathered
          -- meanwhile would go as a burst, and echo a second later, every second.
          t = bound
          tat = t + tau + T
        else
          tat = math.max(tat, t) + T
        end
      end
      if i > needed and t > until_ then
        tat = keep_tat  -- beyond the lease's horizon: not reserved
        break
      end
      note_send(t)
      out[#out + 1] = fmt(t)
    end
  end
elseif op == 'r' or op == 'k' then
  local sent_at = tonumber(ARGV[6])
  local wait = tonumber(ARGV[7])
  local refused = op == 'r'
  local asked = wait or @DEFAULT_PAUSE@
  local pause = math.min(asked, max_pause)
  redis.call('ZREMRANGEBYSCORE', rs, '-inf', '(' .. horizon)
  if refused then
    seq = seq + 1
    redis.call('ZADD', rs, fmt(sent_at), seq)
  end
  local rate, measured = nil, nil
  if sent_at >= epoch then
    measured = measure(sent_at, asked, not refused)
    if measured ~= nil then
      local took = measured
      local current = rate_at(now)
      if current ~= nil and current < took then took = current end
      rate = math.max(@MIN_RATE@, took * @BACKOFF@)
      target = math.max(rate, took * @REST@)
      floor = rate
      resume = now + pause
      epoch = now
      lowered = lowered + 1
    end
  end
  if now + pause > paused then paused = now + pause end
  local r = rate_at(now)
  if r ~= nil then
    -- SendBucket.hold: empty until the pause ends, so the first send is one interval later.
    local T = 1.0 / r
    tat = math.max(tat, paused + T + (math.max(1.0, r * @BURST@) - 1.0) * T)
  end
  out = {op, fmt(now), fmt(paused - now), rate and fmt(rate) or '', measured and fmt(measured) or '', lowered}
elseif op == 's' then
  for i = 6, #ARGV do note_send(tonumber(ARGV[i])) end
  out = {'s', fmt(now), fmt(rate_at(now) or -1), lowered}
end

local fields = {'tat', fmt(tat), 'last', fmt(last), 'pause', fmt(paused), 'epoch', fmt(epoch),
  'floor', fmt(floor), 'resume', fmt(resume), 'lowered', lowered, 'seq', seq}
if target ~= nil then
  fields[#fields + 1] = 'target'
  fields[#fields + 1] = fmt(target)
end
redis.call('HSET', st, unpack(fields))
local keep = math.ceil((math.max(0, paused - now) + @KEEP@) * 1000)
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], keep) end
return out
"""


def _script() -> str:
    constants = {
        "PLATEAU": ADAPTIVE_PLATEAU,
        "LONG_WAIT": _LONG_WAIT,
        "MAX_SPAN": _MAX_SPAN,
        "LIVE": LIVE_SECONDS,
        "BURST": RATE_BURST_SECONDS,
        "MARGIN": WINDOW_MARGIN,
        "DEFAULT_PAUSE": RATE_LIMIT_PAUSE,
        "MIN_RATE": ADAPTIVE_MIN_RATE,
        "BACKOFF": ADAPTIVE_BACKOFF,
        "REST": ADAPTIVE_REST,
        "KEEP": _KEEP,
    }
    text = _LUA
    for name, value in constants.items():
        text = text.replace(f"@{name}@", repr(float(value)))
    return text


#: The script's source, with this release's tuning values written in.
SCRIPT = _script()
