-- abacus:peek
-- KEYS: sum.  The listing's read of one sum (the listing's own script was
-- counted by the limiter).  Reply: "ok -1 <sum>", "notint -1" or "missing -1".
local v = redis.pcall('GET', KEYS[1])
if type(v) == 'table' then return 'notint -1' end
return v and ('ok -1 ' .. v) or 'missing -1'
