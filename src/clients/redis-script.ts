import { createHash } from "node:crypto";
import type { Redis } from "ioredis";

/** A value a script takes as a key or an argument. */
export type ScriptArg = string | number;

/**
 * A Lua script run by its SHA, sent in full only when the server has not
 * cached it yet (after a restart or SCRIPT FLUSH): one round trip in the
 * steady state, two the first time a server sees the script.
 */
export class RedisScript {
  /** The SHA1 EVALSHA names the script by. */
  readonly sha: string;

  constructor(private readonly lua: string) {
    this.sha = createHash("sha1").update(lua).digest("hex");
  }

  /** Runs the script atomically on `redis` with these KEYS and ARGV. */
  async run(redis: Redis, keys: readonly ScriptArg[], args: readonly ScriptArg[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith("NOSCRIPT")) throw err;
      // EVAL caches the script, so the next run by SHA finds it.
      return await redis.eval(this.lua, keys.length, ...keys, ...args);
    }
  }
}
