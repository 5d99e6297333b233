--[[
  Stores the closing verification and ends the campaign. Only a verifying campaign ends so.

  Input:
    KEYS[1] the campaign's main hash

    ARGV[1] the final state: `done` or `done-with-remainder`
    ARGV[2] the verification, JSON
    ARGV[3] now, epoch ms

  Output:
    1 when the campaign ended now, 0 when it was not verifying
]]
if redis.call('HGET', KEYS[1], 'state') ~= 'verifying' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'verification', ARGV[2])
redis.call('HSETNX', KEYS[1], 'finishedAt', ARGV[3])
return 1
