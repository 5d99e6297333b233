--[[
  Counts a page's objects as planned and moves the source's cursor, only while the cursor is still
  where the page was read from: two planners of one campaign never count a page twice. Jobs of a page
  are queued before it is counted, so a page of a campaign cancelled meanwhile is still counted: its
  jobs end as skipped:cancelled and done never exceeds planned.

  Input:
    KEYS[1] the campaign's main hash
    KEYS[2] the plan hash: a cursor per source

    ARGV[1] the source's index
    ARGV[2] the cursor the page was read from ('' for the source's first page)
    ARGV[3] the cursor after the page
    ARGV[4] the page's object count

  Output:
    'advanced'   counted
    'superseded' another planner counted this page first
    'cancelled'  counted, but the campaign was cancelled
]]
local at = redis.call('HGET', KEYS[2], ARGV[1])
if (at or '') ~= ARGV[2] then return 'superseded' end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
redis.call('HINCRBY', KEYS[1], 'planned', ARGV[4])
if redis.call('HGET', KEYS[1], 'state') == 'cancelled' then return 'cancelled' end
return 'advanced'
