-- One API request, one round trip: read the live version, the list(s) the request needs,
-- the catalogue entries of their items and the user's recent items, filter, and return
-- the chosen entries (with a reason each in user mode). Atomic, so one answer never mixes
-- two versions.
--
-- Keys are built from the prefix (recsys/store/keys.py) because the version is only known
-- once `live` is read; this needs a standalone Redis (not Redis Cluster).
--
-- ARGV: mode, prefix, expected version, n, then per mode:
--   user     model, user id, has category ("1"/"0"), category, exclude recent ("1"/"0"),
--            fallback ("0" none, "1" popular, "segment": the user's segment popular list
--            first, then popular), reason type of the model's list, reason type of the
--            popular lists (recsys/store/codec.py), excluded item ids...
--   similar  item id, models to try in order...
--   together item id
--   basket   item ids...
--   popular  category ("" = overall)
-- Reply:
--   {"nolive"}                     no live version
--   {"stale", live}                the caller's metadata is for another version: reload, retry
--   {"ok", live, source, fallback, known, items[, segment]}
--     source    model or list that served ("popular" or "segment" on fallback)
--     fallback  "" | "popular" (unknown user, empty basket) | "segment" (known user without a
--               list: their segment's list) | "top_up" (list filled from segment/popular)
--     known     one "1"/"0" per requested item (similar, together, basket), else "1"
--     items     the chosen entries as a JSON array: {"item_id", "score", ["confidence",
--               "lift",] ["reason" (user mode),] then the item's published catalogue
--               fields}, ready to send
--     segment   user mode only: the segment id whose list was used, else ""
--
-- Catalogue entries are JSON objects written by the publisher; they are spliced into the
-- answer, not decoded (decoded only to compare categories), to keep this script cheap:
-- Redis runs it for every request of every API worker.

local mode, prefix, expected = ARGV[1], ARGV[2], ARGV[3]
local n = tonumber(ARGV[4]) or 10
local RECENT_MAX = 200

local live = redis.call('GET', prefix .. 'live')
if not live then
  return {'nolive'}
end
if live ~= expected then
  return {'stale', live}
end

local root = prefix .. 'v:' .. live .. ':'
local catalog_key = root .. 'catalog'
local out = {'ok', live, '', '', '1'}
local count = 0
local chosen = {}
local NO_CATALOG = ',"title":null,"category":null,"price":null}'

-- Errors are raised as strings starting with "corrupt"; the API answers 503 with them.
local function decode_blob(blob, key, field)
  local ok, doc = pcall(cjson.decode, blob)
  if not ok or type(doc) ~= 'table' or type(doc.i) ~= 'table' or type(doc.s) ~= 'table' then
    error('corrupt list in ' .. key .. ' field ' .. field)
  end
  return doc
end

local function decode_list(key, field)
  local blob = redis.call('HGET', key, field)
  if not blob then
    return nil
  end
  return decode_blob(blob, key, field)
end

-- A JSON number, or null for anything else (missing, NaN, infinite).
local function num(value)
  if type(value) == 'number' and value == value and value ~= math.huge and value ~= -math.huge then
    return tostring(value)
  end
  return 'null'
end

-- The entries are built as pieces of one table, joined once at the end: every `..` makes
-- a new (hashed, interned) Lua string, which costs more than the rest of the loop.
local parts = {}

-- Appends `"id"` (JSON string); ids needing escapes (rare) go through cjson.
local function put_id(id)
  local p = #parts
  if string.find(id, '[%c"\\]') then
    parts[p + 1] = cjson.encode(id)
  else
    parts[p + 1], parts[p + 2], parts[p + 3] = '"', id, '"'
  end
end

-- Appends the published catalogue fields of one entry (its object without the opening
-- brace, so ending the entry) as ',"title":...}'.
local function put_fields(raw, id)
  local p = #parts
  if not raw then
    parts[p + 1] = NO_CATALOG
    return
  end
  if string.byte(raw, 1) ~= 123 or string.byte(raw, -1) ~= 125 then
    error('corrupt catalogue entry ' .. id .. ' in ' .. catalog_key)
  end
  local second = string.byte(raw, 2)
  if second == 125 or ((second == 32 or second == 9 or second == 10 or second == 13) and string.find(raw, '^{%s*}$')) then
    parts[p + 1] = '}'
  else
    parts[p + 1], parts[p + 2] = ',', string.sub(raw, 2)
  end
end

local function category_of(raw, id)
  local ok, entry = pcall(cjson.decode, raw)
  if not ok or type(entry) ~= 'table' then
    error('corrupt catalogue entry ' .. id .. ' in ' .. catalog_key)
  end
  return entry.category
end

-- Appends eligible entries of `doc` (in order) until n are chosen. Eligible: not skipped,
-- not chosen already, in stock, not hidden (item overlay), and of `category` when one is given (an item without a
-- catalogue entry is in stock but of no category). `rules`: add confidence and lift.
-- `reason` (user mode, see reasons_of): add each entry's reason.
local put_reason
local function take(doc, skip, category, rules, reason)
  if not doc or count >= n then
    return
  end
  local ids, scores = doc.i, doc.s
  local conf = type(doc.c) == 'table' and doc.c or {}
  local lift = type(doc.l) == 'table' and doc.l or {}
  local total = #ids
  local k = 1
  while k <= total and count < n do
    -- Fetch catalogue entries in windows a bit larger than what is still missing.
    local last = math.min(total, k + (n - count) + 3)
    local window = {}
    for j = k, last do
      window[j - k + 1] = tostring(ids[j])
    end
    local entries = redis.call('HMGET', catalog_key, unpack(window))
    for j = k, last do
      if count >= n then
        break
      end
      local id = window[j - k + 1]
      if not skip[id] and not chosen[id] then
        local raw = entries[j - k + 1]
        local eligible
        if raw then
          -- a plain search for "false" first: the pattern only runs when it can match
          eligible = not (string.find(raw, 'false', 1, true) and string.find(raw, '"in_stock"%s*:%s*false'))
            and not (string.find(raw, 'hidden', 1, true) and string.find(raw, '"hidden"%s*:%s*true'))
            and (not category or category_of(raw, id) == category)
        else
          eligible = not category
        end
        if eligible then
          chosen[id] = true
          count = count + 1
          parts[#parts + 1] = count == 1 and '{"item_id":' or ',{"item_id":'
          put_id(id)
          local p = #parts
          parts[p + 1], parts[p + 2] = ',"score":', num(scores[j])
          if rules then
            parts[p + 3], parts[p + 4], parts[p + 5], parts[p + 6] = ',"confidence":', num(conf[j]), ',"lift":', num(lift[j])
          end
          if reason then
            put_reason(reason, j)
          end
          put_fields(raw, id)
        end
      end
    end
    k = last + 1
  end
end

-- Reasons (user mode). An entry of a list whose blob has because codes ("b", w characters
-- an entry, recsys/store/codec.py) gets the reason the version's because-items hash holds
-- for its code, {"type":"because","item_id","title"} as the publisher wrote it; the others
-- the type of their list. The codes are resolved after every list is taken, with one HMGET
-- whose answers are spliced in as they are.
local REASON_TYPES = {personalized = true, similar_users = true, popular = true, trending = true}
local pending_at, pending_code = {}, {}

local function list_reason(kind, category, segment_name)
  if not REASON_TYPES[kind] then
    kind = 'personalized'
  end
  if kind == 'popular' or kind == 'trending' then
    local text = '{"type":"' .. kind .. '","category":' .. (category and cjson.encode(category) or 'null')
    if segment_name then
      text = text .. ',"segment":' .. cjson.encode(segment_name)
    end
    return text .. '}'
  end
  return '{"type":"' .. kind .. '"}'
end

-- The reason of a list's entries: its type's JSON, and its because codes when it has any.
local function reasons_of(doc, json, key, field)
  local reason = {json = json}
  if doc and type(doc.b) == 'string' and #doc.b > 0 then
    local width = #doc.b / #doc.i
    if width < 1 or width ~= math.floor(width) then
      error('corrupt list in ' .. key .. ' field ' .. field .. ': because codes do not match its items')
    end
    reason.codes, reason.width = doc.b, width
  end
  return reason
end

put_reason = function(reason, j)
  local p = #parts
  parts[p + 1], parts[p + 2] = ',"reason":', reason.json
  local codes = reason.codes
  if codes then
    local first = (j - 1) * reason.width + 1
    if string.byte(codes, first) ~= 32 then
      local k = #pending_at + 1
      pending_at[k], pending_code[k] = p + 2, string.sub(codes, first, first + reason.width - 1)
    end
  end
end

-- Replaces the pending entries' list reasons by their because items' (a code the version
-- does not resolve keeps the list's reason).
local function resolve_reasons()
  if #pending_at == 0 then
    return
  end
  local found = redis.call('HMGET', root .. 'because-items', unpack(pending_code))
  for k = 1, #pending_at do
    if found[k] then
      parts[pending_at[k]] = found[k]
    end
  end
end

local function in_catalog(item)
  return redis.call('HEXISTS', catalog_key, item) == 1
end

if mode == 'user' then
  local model, user = ARGV[5], ARGV[6]
  local category = nil
  if ARGV[7] == '1' then
    category = ARGV[8]
  end
  local exclude_recent, fallback = ARGV[9] == '1', ARGV[10] ~= '0'
  local by_segment = ARGV[10] == 'segment'
  local model_reason, popular_reason = ARGV[11], ARGV[12]
  local skip = {}
  for k = 13, #ARGV do
    skip[ARGV[k]] = true
  end
  if exclude_recent then
    local recent = redis.call('ZREVRANGE', prefix .. 'recent:' .. user, 0, RECENT_MAX - 1)
    for _, id in ipairs(recent) do
      skip[id] = true
    end
  end
  local key = root .. 'user:' .. model
  local doc = decode_list(key, user)
  out[3] = model
  if doc then
    take(doc, skip, category, false, reasons_of(doc, list_reason(model_reason, category), key, user))
  end
  -- The user's segment (keys.py: v:{v}:segment-of), only looked up when it is needed.
  local segment = false
  if by_segment and count < n then
    segment = redis.call('HGET', root .. 'segment-of', user)
  end
  if not doc and fallback then
    if segment then
      out[3], out[4] = 'segment', 'segment'
    else
      out[3], out[4] = 'popular', 'popular'
    end
  end
  if count < n and fallback then
    local before = count
    if segment then
      -- keys.py: v:{v}:segment-names (versions before it: the segment id)
      local name = redis.call('HGET', root .. 'segment-names', segment) or segment
      take(decode_list(root .. 'segment-popular', segment), skip, category, false, {json = list_reason('popular', category, name)})
    end
    take(decode_list(root .. 'popular', category or ''), skip, category, false, {json = list_reason(popular_reason, category)})
    if doc and count > before then
      out[4] = 'top_up'
    end
  end
  out[7] = segment or ''
  resolve_reasons()

elseif mode == 'similar' then
  local item = ARGV[5]
  local doc = nil
  for k = 6, #ARGV do
    doc = decode_list(root .. 'similar:' .. ARGV[k], item)
    if doc then
      out[3] = ARGV[k]
      break
    end
  end
  if not doc then
    out[3] = ARGV[6] or ''
    if not in_catalog(item) then
      out[5] = '0'
    end
  end
  take(doc, {[item] = true}, nil)

elseif mode == 'together' then
  local item = ARGV[5]
  local doc = decode_list(root .. 'together', item)
  out[3] = 'together'
  if not doc and not in_catalog(item) then
    out[5] = '0'
  end
  take(doc, {[item] = true}, nil, true)

elseif mode == 'basket' then
  local items, in_basket = {}, {}
  for k = 5, #ARGV do
    items[#items + 1] = ARGV[k]
    in_basket[ARGV[k]] = true
  end
  local blobs = redis.call('HMGET', root .. 'together', unpack(items))
  local known = redis.call('HMGET', catalog_key, unpack(items))
  local flags = {}
  -- Best confidence per candidate over the basket's lists (its lift with it), and the best
  -- rank any list gave it: ties in confidence keep the published order, so a basket of one
  -- item lists exactly that item's bought-together entries.
  local best, order = {}, {}
  for k = 1, #items do
    local blob = blobs[k]
    flags[k] = (blob or known[k]) and '1' or '0'
    if blob then
      local doc = decode_blob(blob, root .. 'together', items[k])
      local conf = type(doc.c) == 'table' and doc.c or doc.s
      local lift = type(doc.l) == 'table' and doc.l or {}
      for j = 1, #doc.i do
        local id = tostring(doc.i[j])
        local c = tonumber(conf[j]) or 0
        if not in_basket[id] then
          local seen = best[id]
          if not seen then
            best[id] = {c, tonumber(lift[j]) or 0, j}
            order[#order + 1] = id
          else
            if c > seen[1] then
              seen[1], seen[2] = c, tonumber(lift[j]) or 0
            end
            if j < seen[3] then
              seen[3] = j
            end
          end
        end
      end
    end
  end
  out[5] = table.concat(flags)
  table.sort(order, function(a, b)
    local x, y = best[a], best[b]
    if x[1] ~= y[1] then return x[1] > y[1] end
    if x[3] ~= y[3] then return x[3] < y[3] end
    if x[2] ~= y[2] then return x[2] > y[2] end
    return a < b
  end)
  local merged = {i = order, s = {}, c = {}, l = {}}
  for j, id in ipairs(order) do
    merged.s[j], merged.c[j], merged.l[j] = best[id][1], best[id][1], best[id][2]
  end
  out[3] = 'together'
  take(merged, in_basket, nil, true)
  if count == 0 then
    out[3], out[4] = 'popular', 'popular'
    take(decode_list(root .. 'popular', ''), in_basket, nil)
  end

elseif mode == 'popular' then
  local doc = decode_list(root .. 'popular', ARGV[5])
  out[3] = 'popular'
  take(doc, {}, nil)

else
  error('unknown mode ' .. tostring(mode))
end

out[6] = '[' .. table.concat(parts) .. ']'
return out
