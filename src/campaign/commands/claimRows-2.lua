--[[
  Reads a batch's kept outcomes in one step with checking that nobody recorded the batch yet, so two
  workers on one batch (a lapsed lock) both write the whole set or nothing.

  Input:
    KEYS[1] the set of recorded batch markers
    KEYS[2] the batch's in-flight rows hash

    ARGV[1] the batch id

  Output:
    the rows hash as a flat (object id, outcome JSON) list; nil once the batch is recorded
]]
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return false end
return redis.call('HGETALL', KEYS[2])
