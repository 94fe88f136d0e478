-- One read of a consumer group's own pending or stale entries, bounded in bytes (see
-- reader.rs; new entries are read with a plain XREADGROUP, reader/plain.rs).
--
-- Entries are delivered in chunks no larger than what the rest of the budget allows at the
-- per-entry limit (one at a time once that is less than one), so the reply never holds more
-- than the budget plus one entry. An entry over the per-entry limit costs only its stub: its
-- size, the SHA-1 of its largest field and that field's first bytes. Every read takes at
-- least one entry, so every read makes progress.
--
-- KEYS: the streams. ARGV: group, consumer, mode ('own' | 'claim'), entries per
-- stream, budget (bytes), entry limit (bytes), prefix length (bytes), claim idle (ms), then
-- for 'own' one cursor per stream (the id after which to read).
--
-- Returns, for each stream that gave entries, {stream, {id, n, field, value, ..., id, n, ...}}:
-- each entry flat as its id, its number of fields n, then its n field/value pairs (one array
-- per stream, not two per entry: the client builds a value per array and per string); a
-- stub's fields are 'rps-oversized' / size, sha1 / prefix; a pending entry deleted from the
-- stream has none (n = 0).
local group, consumer, mode = ARGV[1], ARGV[2], ARGV[3]
local count, budget, limit, prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local idle = ARGV[8]
local used = 0
local out = {}

local function size_of(fields)
  local n = 0
  if fields then
    for i = 2, #fields, 2 do n = n + #fields[i] end
  end
  return n
end

local function cost(fields)
  local n = size_of(fields)
  if n > limit then return prefix + 64 end
  return n
end

-- Whether an entry costing `c` still fits in this read.
local function fits(c)
  return used == 0 or used + c <= budget
end

-- How many entries the next chunk may hold: at the per-entry limit each, what the rest of
-- the budget allows, at least one, at most `left`.
local function chunk(left)
  return math.max(1, math.min(left, math.floor((budget - used) / limit)))
end

local function shaped(entry)
  local fields = entry[2]
  if not fields or size_of(fields) <= limit then return entry end
  local largest = ''
  for i = 2, #fields, 2 do
    if #fields[i] > #largest then largest = fields[i] end
  end
  return {entry[1], {'rps-oversized', tostring(size_of(fields)), redis.sha1hex(largest), string.sub(largest, 1, prefix)}}
end

local function take(list, entry)
  used = used + cost(entry[2])
  local shape = shaped(entry)
  local fields = shape[2] or {}
  list.n = list.n + 1
  list[#list + 1] = shape[1]
  list[#list + 1] = #fields / 2
  for i = 1, #fields do list[#list + 1] = fields[i] end
end

for k, key in ipairs(KEYS) do
  local taken = {n = 0}
  if mode == 'own' then
    local cursor = ARGV[8 + k]
    while taken.n < count and used < budget do
      local reply = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', chunk(count - taken.n), 'STREAMS', key, cursor)
      local entries = reply[1] and reply[1][2] or {}
      if #entries == 0 then break end
      for _, entry in ipairs(entries) do take(taken, entry) end
      cursor = entries[#entries][1]
    end
  else
    -- Claim entries other consumers left pending for `idle` ms; this consumer's own are
    -- read back as its own pending entries, never claimed from itself.
    local start = '-'
    local full = false
    while not full and taken.n < count do
      local stale = redis.call('XPENDING', key, group, 'IDLE', idle, start, '+', count)
      if #stale == 0 then break end
      for _, p in ipairs(stale) do
        if p[2] ~= consumer then
          local peek = redis.call('XRANGE', key, p[1], p[1])[1]
          if peek and not fits(cost(peek[2])) then
            full = true
            break
          end
          -- A deleted entry is dropped from the pending list by the claim.
          local claimed = redis.call('XCLAIM', key, group, consumer, idle, p[1])[1]
          if claimed then take(taken, claimed) end
          if taken.n >= count then break end
        end
      end
      start = '(' .. stale[#stale][1]
    end
  end
  if taken.n > 0 then
    taken.n = nil
    out[#out + 1] = {key, taken}
  end
  if used >= budget then break end
end
return out
