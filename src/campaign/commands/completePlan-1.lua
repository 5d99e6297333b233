--[[
  Marks the plan complete; a campaign whose objects all settled by then (none planned, or workers
  faster than the listing) settles now.

  Input:
    KEYS[1] the campaign's main hash

    ARGV[1] now, epoch ms

  Output:
    1 when the campaign now awaits its closing verification, else 0
]]
--- @include "finish-if-done"
redis.call('HSET', KEYS[1], 'planComplete', '1')
if redis.call('HGET', KEYS[1], 'state') == 'planning' then redis.call('HSET', KEYS[1], 'state', 'running') end
return finish_if_done(KEYS[1], ARGV[1])
