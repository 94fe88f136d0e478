-- The least a script can do to read the same entries: XREADGROUP per stream, COUNT as given,
-- the reply handed back as Redis gave it (no budget, no stubs, no flattening).
local out = {}
for _, key in ipairs(KEYS) do
  local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[4], 'STREAMS', key, '>')
  if reply then out[#out + 1] = reply[1] end
end
return out
