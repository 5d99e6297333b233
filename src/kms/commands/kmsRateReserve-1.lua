--[[
  GCRA, the token bucket kept as one number: the theoretical arrival time (TAT) of the next call, in
  microseconds of Redis' clock, so hosts with skewed clocks still share one schedule. Every call
  reserves the next slot and learns how long to wait for it, so waiting needs no polling and callers
  are served in order. A slot reserved by a caller that then dies is lost, which only errs on the slow
  side. The key expires once its TAT has passed, when it would no longer matter.
  `%.0f` because Lua 5.1's tostring rounds numbers this large to 14 digits; `ceil` so rounding errs on
  the slow side.

  Input:
    KEYS[1] the campaign's rate key (its TAT)

    ARGV[1] the interval between calls, microseconds
    ARGV[2] the tolerance (burst - 1 intervals), microseconds

  Output:
    the microseconds to wait before making the call
]]
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local stored = redis.call('GET', KEYS[1])
local tat = stored and tonumber(stored) or now
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait < 0 then wait = 0 end
local nextTat = tat + interval
redis.call('SET', KEYS[1], string.format('%.0f', math.ceil(nextTat)), 'PX', math.ceil((nextTat - now) / 1000) + 1000)
return wait
