--[[
  finish_if_done(main, now): a campaign whose plan is complete and whose every object has an outcome
  has settled. It waits for its closing verification (`verifying`), or is done at once when it is
  cancelled or its spec skips the verification.
    main  the campaign's main hash
    now   epoch ms, stored as finishedAt when the campaign ends here
  Returns 1 when this call moved the campaign to `verifying`, else 0.
]]
local function finish_if_done(main, now)
  local h = redis.call('HMGET', main, 'planComplete', 'planned', 'done', 'state', 'skipVerification')
  if h[1] == '1' and tonumber(h[3]) >= tonumber(h[2]) and (h[4] == 'running' or h[4] == 'planning' or h[4] == 'paused' or h[4] == 'cancelled') then
    if h[4] == 'cancelled' or h[5] == '1' then
      if h[4] ~= 'cancelled' then redis.call('HSET', main, 'state', 'done') end
      redis.call('HSETNX', main, 'finishedAt', now)
      return 0
    end
    redis.call('HSET', main, 'state', 'verifying')
    return 1
  end
  return 0
end
