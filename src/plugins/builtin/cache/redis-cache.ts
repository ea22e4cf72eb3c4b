import type { Redis } from "ioredis";
import type { PluginLogger } from "@qingyu/plugin-api";
import type { CacheStore } from "./store.ts";

/**
 * Entries in Redis, shared by every process of the deployment: one GET per
 * lookup, one `SET … PX` per store. Redis being down makes every call a miss
 * and skips the store; it never fails the call.
 */
export class RedisCache implements CacheStore {
  constructor(
    private readonly redis: Redis,
    private readonly keyPrefix: string,
    private readonly logger: PluginLogger,
  ) {}

  async get(key: string): Promise<string | undefined> {
    try {
      return (await this.redis.get(this.keyPrefix + key)) ?? undefined;
    } catch (err) {
      this.logger.warn({ err: (err as Error)?.message ?? String(err) }, "cache lookup failed; treating as a miss");
      return undefined;
    }
  }

  async set(key: string, value: string, ttlMs: number): Promise<void> {
    try {
      await this.redis.set(this.keyPrefix + key, value, "PX", ttlMs);
    } catch (err) {
      this.logger.warn({ err: (err as Error)?.message ?? String(err) }, "cache store failed; entry not cached");
    }
  }
}
