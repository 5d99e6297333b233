--[[
  Counts a batch's final outcomes once its rows are durable, in one step with the batch's marker, and
  forgets its in-flight state. A batch is counted once: a re-delivered job or a second worker finds the
  marker and counts nothing.

  Input:
    KEYS[1] the campaign's main hash (counters, state)
    KEYS[2] the counts by reason hash
    KEYS[3] the set of recorded batch markers
    KEYS[4] the batch's in-flight rows hash
    KEYS[5] the batch's in-flight write intents hash
    KEYS[6] the set of source KMS key ids of rotated objects
    KEYS[7] the batch's list of objects handed to retry batches

    ARGV[1] the batch id
    ARGV[2] now, epoch ms
    ARGV[3] done count
    ARGV[4] rotated count
    ARGV[5] skipped count
    ARGV[6] failed count
    ARGV[7] bytes read
    ARGV[8] bytes written
    ARGV[9] n, the number of (reason label, count) pairs that follow
    ARGV[10 .. 9 + 2n] the (label, count) pairs
    ARGV[10 + 2n ..] the source key ids of the batch's rotated rows

  Output:
    'duplicate' the batch was counted before
    'recorded'  counted now
    'verify'    counted, and it settled the campaign's last object: the campaign awaits its verification
]]
--- @include "finish-if-done"
if redis.call('SADD', KEYS[3], ARGV[1]) == 0 then return 'duplicate' end
redis.call('HINCRBY', KEYS[1], 'done', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'rotated', ARGV[4])
redis.call('HINCRBY', KEYS[1], 'skipped', ARGV[5])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[6])
redis.call('HINCRBY', KEYS[1], 'bytesRead', ARGV[7])
redis.call('HINCRBY', KEYS[1], 'bytesWritten', ARGV[8])
local n = tonumber(ARGV[9])
for i = 0, n - 1 do redis.call('HINCRBY', KEYS[2], ARGV[10 + 2 * i], ARGV[11 + 2 * i]) end
for i = 10 + 2 * n, #ARGV do redis.call('SADD', KEYS[6], ARGV[i]) end
redis.call('DEL', KEYS[4], KEYS[5], KEYS[7])
if finish_if_done(KEYS[1], ARGV[2]) == 1 then return 'verify' end
return 'recorded'
