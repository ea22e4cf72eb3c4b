// Helpers for the Redis session store tests: a key prefix per run, and ways to
// see how many commands a call cost, on the client and on the server.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { redisUrl } from "../support/services.ts";

/** The run's Redis (test/support/services.ts). */
export const REDIS_URL = redisUrl();

/** A prefix no other run uses, so a run's keys can be found and deleted. */
export const freshPrefix = () => `qingyu:test:sessions:${randomUUID()}:`;

/** Deletes every key under the prefix. */
export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  const keys = await redis.keys(`${prefix}*`);
  if (keys.length > 0) await redis.del(...keys);
}

/** The server's calls per command, from INFO commandstats. */
async function commandCalls(admin: Redis): Promise<Map<string, number>> {
  const calls = new Map<string, number>();
  for (const line of (await admin.info("commandstats")).split("\n")) {
    const m = /^cmdstat_([^:]+):calls=(\d+)/.exec(line.trim());
    if (m) calls.set(m[1]!, Number(m[2]));
  }
  return calls;
}

/**
 * How many EVALSHA and EVAL the server ran while `op` ran. The Redis is shared
 * with other test runs, whose calls can only add to a window, so this takes
 * the quietest of a few tries: the smallest count seen is an upper bound on
 * what `op` itself sent.
 */
export async function serverScriptCalls(admin: Redis, op: () => Promise<unknown>, tries = 5): Promise<{ evalsha: number; eval: number }> {
  let best = { evalsha: Infinity, eval: Infinity };
  for (let i = 0; i < tries; i++) {
    const before = await commandCalls(admin);
    await op();
    const after = await commandCalls(admin);
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    const seen = { evalsha: delta("evalsha"), eval: delta("eval") };
    if (seen.evalsha + seen.eval < best.evalsha + best.eval) best = seen;
    if (best.evalsha + best.eval <= 1) break;
  }
  return best;
}
