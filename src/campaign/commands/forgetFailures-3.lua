--[[
  Un-counts the failed rows of one batch before they are queued again, once only: a `retry` run again
  after a crash neither un-counts twice nor loses a row. The campaign runs again until they settle.

  Input:
    KEYS[1] the campaign's main hash
    KEYS[2] the counts by reason hash
    KEYS[3] the set of recorded batch markers (this forgetting's marker joins them)

    ARGV[1] the marker of this forgetting (`forgot:<retry batch id>`)
    ARGV[2] the failed count
    ARGV[3] n, the number of (reason label, count) pairs that follow
    ARGV[4 .. 3 + 2n] the (label, count) pairs

  Output:
    1 when counts were taken back now, 0 when this forgetting happened before
]]
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], 'done', -tonumber(ARGV[2]))
redis.call('HINCRBY', KEYS[1], 'failed', -tonumber(ARGV[2]))
local n = tonumber(ARGV[3])
for i = 0, n - 1 do redis.call('HINCRBY', KEYS[2], ARGV[4 + 2 * i], -tonumber(ARGV[5 + 2 * i])) end
redis.call('HDEL', KEYS[1], 'finishedAt', 'verification')
redis.call('HSET', KEYS[1], 'state', 'running')
return 1
