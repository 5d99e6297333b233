--[[
  Moves a campaign to a new state, only from one of the states it may move from.

  Input:
    KEYS[1] the campaign's main hash

    ARGV[1] the new state
    ARGV[2] now, epoch ms (unused by the script; kept so callers pass one shape)
    ARGV[3 ..] the states the campaign may move from

  Output:
    1 when the campaign moved, 0 when its state was none of ARGV[3 ..]
]]
local state = redis.call('HGET', KEYS[1], 'state')
for i = 3, #ARGV do
  if state == ARGV[i] then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    return 1
  end
end
return 0
