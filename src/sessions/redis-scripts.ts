import { LISTED_OVERHEAD_BYTES } from "./types.ts";

// The Lua behind RedisSessionStore: each store method is one of these scripts,
// so each is atomic and costs one round trip (EVALSHA) however long the history.
//
// Layout, for key prefix p and session id S (the {S} hash tag keeps a session's
// keys in one slot):
//   p s:{S}      hash   u user, a agent, md metadata JSON, ct/ut/et create, update
//                       and expire ms, ttl ms, v version
//   p s:{S}:m    list   messages as JSON, oldest first: {role, content} and, when the
//                       message has them, toolCalls [{id, name, arguments}] and toolCallId
//   p s:{S}:c    hash   checkpoint id -> {"id","v","t","p","d"} JSON
//   p s:{S}:cv   zset   checkpoint id scored by the version that saved it
//   p u:USER     zset   session id scored by create ms: the user's listing
//   p l:USER     zset   session id scored by expire ms: the user's live sessions,
//                       counted against the per-user cap (expired ones pruned first)
// Every write moves the expiry of all four session keys and the session's score
// in p l:USER, and stretches the user's two sets to live at least as long as the
// session. The scripts build the user keys (and, in the listing, session keys)
// from the prefix, so they are for a single Redis (or Sentinel), not Cluster.
//
// The clock is Redis's TIME, so every process agrees on create/update/expiry.
// Scripts that call TIME and then write need effects replication: the default
// since Redis 5, asked for explicitly on older servers.

const COMMON = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
-- u a ct ut et ttl v md of a live session, or nil when it is missing or past its expiry.
local function load(key)
  local h = redis.call('HMGET', key, 'u', 'a', 'ct', 'ut', 'et', 'ttl', 'v', 'md')
  if not h[1] or tonumber(h[5]) <= now then return nil end
  return h
end
-- An index outlives every session in it, so it never drops a live one.
local function stretch(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
-- A command over list[first..], in chunks Lua's unpack can take.
local function chunked(cmd, key, list, first)
  for i = first or 1, #list, 1000 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 999, #list)))
  end
end
`;

// The session scripts take KEYS = the session's hash, messages, checkpoints, versions.
const SESSION = `${COMMON}
-- Every write: bump the version and move the expiry (the caller then calls expire).
local function bump(h)
  local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
  redis.call('HSET', KEYS[1], 'ut', now, 'et', now + tonumber(h[6]))
  return v
end
-- After a write created whatever keys it needed: all of them expire together,
-- and the user's live set knows the session's new expiry.
local function expire(h, prefix, id)
  local ttl = tonumber(h[6])
  for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], ttl) end
  stretch(prefix .. 'u:' .. h[1], ttl)
  local live = prefix .. 'l:' .. h[1]
  redis.call('ZADD', live, now + ttl, id)
  stretch(live, ttl)
end
`;

/**
 * KEYS: session, user index, user live set. ARGV: user, agent, metadata JSON, ttl ms, id,
 * most live sessions ("" = no cap). Returns {1, now}, or {0} when the user already
 * holds that many live sessions: counted and added in one script, so concurrent
 * creates never pass the cap.
 */
export const CREATE = `${COMMON}
local ttl = tonumber(ARGV[4])
local max = tonumber(ARGV[6])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if max and redis.call('ZCARD', KEYS[3]) >= max then return {0} end
redis.call('HSET', KEYS[1], 'u', ARGV[1], 'a', ARGV[2], 'md', ARGV[3], 'ttl', ttl, 'v', 0,
  'ct', now, 'ut', now, 'et', now + ttl)
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('ZADD', KEYS[2], now, ARGV[5])
stretch(KEYS[2], ttl)
redis.call('ZADD', KEYS[3], now + ttl, ARGV[5])
stretch(KEYS[3], ttl)
return {1, now}
`;

/** ARGV: how many of the latest messages. Returns nil, or the 8 fields, the message count, the messages. */
export const GET = `${SESSION}
local h = load(KEYS[1])
if not h then return nil end
h[9] = redis.call('LLEN', KEYS[2])
local n = tonumber(ARGV[1])
if n > 0 then
  local m = redis.call('LRANGE', KEYS[2], -n, -1)
  for i = 1, #m do h[9 + i] = m[i] end
end
return h
`;

/** ARGV: key prefix, session id, then the messages as JSON. Returns nil (no session) or the new version. */
export const APPEND = `${SESSION}
local h = load(KEYS[1])
if not h then return nil end
chunked('RPUSH', KEYS[2], ARGV, 3)
local v = bump(h)
expire(h, ARGV[1], ARGV[2])
return v
`;

/**
 * ARGV: key prefix, checkpoint id, expected version, keep, data JSON, session id.
 * Returns {0} (no session), {1, version} (stale) or {2, version, now, parent id}.
 * The record is spliced as text (every spliced value is a number or our UUID),
 * so the data's JSON is stored exactly as sent, never re-encoded by Lua.
 */
export const SAVE_CHECKPOINT = `${SESSION}
local h = load(KEYS[1])
if not h then return {0} end
local expected = tonumber(ARGV[3])
if expected >= 0 and tonumber(h[7]) ~= expected then return {1, tonumber(h[7])} end
local parent = redis.call('ZREVRANGE', KEYS[4], 0, 0)[1] or ''
local v = bump(h)
redis.call('HSET', KEYS[3], ARGV[2],
  '{"id":"' .. ARGV[2] .. '","v":' .. v .. ',"t":' .. now .. ',"p":"' .. parent .. '","d":' .. ARGV[5] .. '}')
redis.call('ZADD', KEYS[4], v, ARGV[2])
local extra = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[4])
if extra > 0 then
  chunked('HDEL', KEYS[3], redis.call('ZRANGE', KEYS[4], 0, extra - 1))
  redis.call('ZREMRANGEBYRANK', KEYS[4], 0, extra - 1)
end
expire(h, ARGV[1], ARGV[6])
return {2, v, now, parent}
`;

/** ARGV: checkpoint id ("" = latest). Returns {0} (no session), {1} (no checkpoint) or {2, record JSON}. */
export const GET_CHECKPOINT = `${SESSION}
if not load(KEYS[1]) then return {0} end
local id = ARGV[1]
if id == '' then id = redis.call('ZREVRANGE', KEYS[4], 0, 0)[1] end
local json = id and redis.call('HGET', KEYS[3], id)
if not json then return {1} end
return {2, json}
`;

/**
 * ARGV: highest version ("+inf" or "(N"), how many, page byte budget. Returns nil (no
 * session) or {more (0/1), the records' JSON newest first}: the page stops early once
 * the records reach the budget (at least one), and more says whether any are left.
 */
export const LIST_CHECKPOINTS = `${SESSION}
if not load(KEYS[1]) then return nil end
local want, budget = tonumber(ARGV[2]), tonumber(ARGV[3])
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[4], ARGV[1], '-inf', 'LIMIT', 0, want + 1)
local out, bytes = {}, 0
for i = 1, #ids do
  local json = redis.call('HGET', KEYS[3], ids[i])
  if json then
    local size = ${LISTED_OVERHEAD_BYTES} + #json
    if #out == want or (#out > 0 and bytes + size > budget) then return {1, out} end
    bytes = bytes + size
    out[#out + 1] = json
  end
end
return {0, out}
`;

/** ARGV: key prefix, id. Deletes the session's keys and its entries in the user's sets; returns 1, or 0 when there was none. */
export const DELETE = `${SESSION}
local h = load(KEYS[1])
if not h then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('ZREM', ARGV[1] .. 'u:' .. h[1], ARGV[2])
redis.call('ZREM', ARGV[1] .. 'l:' .. h[1], ARGV[2])
return 1
`;

/**
 * KEYS: user index. ARGV: session key prefix, cursor create ms ("" = first page),
 * cursor id, how many, page byte budget. Returns {more (0/1), live sessions newest
 * first as {id, 8 fields, message count}}: the page stops early once its sessions
 * reach the budget (at least one; sized as bounds.ts sessionListedBytes does), and
 * more says whether a live session follows. Ids whose session has expired are
 * removed from the index on the way.
 */
export const LIST = `${COMMON}
-- Byte order, as ZREVRANGE orders ties: Lua's < follows the server's locale.
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local want, budget = tonumber(ARGV[4]), tonumber(ARGV[5])
local ctime = ARGV[2] ~= '' and tonumber(ARGV[2]) or nil
local max = ctime and ARGV[2] or '+inf'
local out, dead, offset, bytes, more = {}, {}, 0, 0, false
while not more do
  local page = redis.call('ZREVRANGEBYSCORE', KEYS[1], max, '-inf', 'WITHSCORES', 'LIMIT', offset, want + 16)
  if #page == 0 then break end
  for i = 1, #page, 2 do
    local id = page[i]
    -- Ties with the cursor's time come after it only when their id sorts below.
    if not ctime or tonumber(page[i + 1]) < ctime or before(id, ARGV[3]) then
      local key = ARGV[1] .. '{' .. id .. '}'
      local h = load(key)
      if h then
        local size = ${LISTED_OVERHEAD_BYTES} + #id + #h[1] + #h[2] + #h[8]
        if #out == want or (#out > 0 and bytes + size > budget) then
          more = true
          break
        end
        bytes = bytes + size
        h[9] = redis.call('LLEN', key .. ':m')
        out[#out + 1] = {id, unpack(h)}
      else
        dead[#dead + 1] = id
      end
    end
  end
  offset = offset + #page / 2
end
if #dead > 0 then chunked('ZREM', KEYS[1], dead) end
return {more and 1 or 0, out}
`;
