import type { Redis } from "ioredis";
import { RedisScript } from "../../../clients/redis-script.ts";
import { type BucketDraw, type Buckets, REFILL_PERIOD_MS, type TakeOutcome } from "./buckets.ts";

// Shared by both scripts. The clock is Redis's TIME, so every process sharing
// the Redis refills on one clock. Each bucket is a hash {l: level, ts: ms}; a
// full bucket is deleted (a missing key reads as full) and the others expire
// once they would be full again, so idle buckets disappear on their own.
// Scripts that call TIME and then write need effects replication: the default
// since Redis 5, asked for explicitly on older servers.
const COMMON = `
if redis.replicate_commands then redis.replicate_commands() end
local period = ${REFILL_PERIOD_MS}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function level(key, cap)
  local h = redis.call('HMGET', key, 'l', 'ts')
  if not h[1] then return cap end
  local elapsed = math.max(0, now - tonumber(h[2]))
  return math.min(cap, tonumber(h[1]) + elapsed * cap / period)
end
local function write(key, cap, l)
  if l >= cap then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'l', tostring(l), 'ts', now)
  redis.call('PEXPIRE', key, math.ceil((cap - l) * period / cap) + 1000)
end
`;

// KEYS: the buckets; ARGV: capacity, amount per bucket. All or nothing:
// returns {1} when taken, else {0, index (1-based), ms until it holds enough}
// for the bucket that waits longest.
const TAKE = `${COMMON}
local levels = {}
local worst, worstWait = 0, 0
for i = 1, #KEYS do
  local cap, amount = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  levels[i] = level(KEYS[i], cap)
  if levels[i] < amount then
    local wait = math.max(1, math.ceil((amount - levels[i]) * period / cap))
    if wait > worstWait then worst, worstWait = i, wait end
  end
end
if worst > 0 then return {0, worst, worstWait} end
for i = 1, #KEYS do
  write(KEYS[i], tonumber(ARGV[2 * i - 1]), levels[i] - tonumber(ARGV[2 * i]))
end
return {1}
`;

// KEYS: the buckets; ARGV: capacity, amount per bucket. Takes without a check
// (debt allowed), or gives back when the amount is negative (never above capacity).
const ADJUST = `${COMMON}
for i = 1, #KEYS do
  local cap, amount = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  write(KEYS[i], cap, math.min(cap, level(KEYS[i], cap) - amount))
end
return 1
`;

/** KEYS and ARGV of both scripts: the bucket keys, then capacity and amount per bucket. */
function scriptInput(draws: readonly BucketDraw[]): [string[], string[]] {
  return [draws.map((d) => d.key), draws.flatMap((d) => [String(d.capacity), String(d.amount)])];
}

/**
 * Token buckets in Redis: every process sharing the Redis enforces one limit.
 * One script call per check and per settle, so each is atomic. The client is
 * the host's shared one; this never closes it.
 */
export class RedisBuckets implements Buckets {
  private readonly takeScript = new RedisScript(TAKE);
  private readonly adjustScript = new RedisScript(ADJUST);

  constructor(private readonly redis: Redis) {}

  async take(draws: readonly BucketDraw[]): Promise<TakeOutcome> {
    const reply = (await this.takeScript.run(this.redis, ...scriptInput(draws))) as number[];
    if (reply[0] === 1) return { ok: true };
    return { ok: false, index: Number(reply[1]) - 1, retryAfterMs: Number(reply[2]) };
  }

  async adjust(draws: readonly BucketDraw[]): Promise<void> {
    await this.adjustScript.run(this.redis, ...scriptInput(draws));
  }
}
