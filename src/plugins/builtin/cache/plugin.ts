import { definePlugin } from "@qingyu/plugin-api";
import { z } from "zod";
import { MemoryCache } from "./memory-cache.ts";
import { cacheMiddleware } from "./middleware.ts";
import { RedisCache } from "./redis-cache.ts";
import type { CacheStore } from "./store.ts";

const Options = z
  .strictObject({
    /** "memory": per process; "redis": shared by every process through the runtime's Redis (`redis.url`). */
    backend: z.enum(["memory", "redis"]).default("memory"),
    /** How long an answer is served from the cache. */
    ttlSeconds: z.number().positive().default(300),
    /** Memory backend: most entries kept; the least recently used is evicted first. */
    maxEntries: z.int().positive().default(1000),
    // 64 MiB: 64 answers at the 1 MiB entry limit, thousands of typical ones; a bound well inside a default
    // Node heap, which it costs up to twice over (V8 keeps a string in 1 or 2 bytes a character).
    /** Memory backend: most bytes held, each entry counted as its stored size (as `maxEntryBytes`); the least recently used go until a new entry fits, and one larger than this is not stored. */
    maxBytes: z
      .int()
      .positive()
      .default(64 * 1024 * 1024),
    /** Answers whose stored entry (chunks and result) is larger than this, in bytes, are not cached. */
    maxEntryBytes: z
      .int()
      .positive()
      .default(1024 * 1024),
    /** Redis backend: prefix of every key, to share one Redis between deployments. */
    keyPrefix: z.string().default("qingyu:cache:"),
    /** Include the acting user in the key, so users never see each other's answers; false shares answers, and so tells one user what another asked. */
    perUser: z.boolean().default(true),
  })
  .prefault({});

/**
 * Serves repeated calls (same agent, model, system prompt, options, history
 * and task) from a cache, replaying the original stream without running the
 * agent. Only successful, completed runs are cached. A request header
 * `cache-control: no-cache` skips the lookup but stores the fresh answer;
 * `no-store` neither looks up nor stores. The result's `metadata.cache` is
 * "hit", "miss" or "bypass". Place it after auth: a hit skips everything after the cache.
 *
 * Answers are per user by default (`perUser: true`, keyed by the acting user,
 * whom auth sets). Shared (`perUser: false`), a `cache: hit` and its speed tell
 * a caller that someone else asked the same question with the same history: an
 * oracle on other users' prompts, acceptable only when every caller may know
 * what the others ask.
 */
export default definePlugin({
  name: "cache",
  kind: "middleware",
  configSchema: Options,
  setup({ options, logger, redis, meter }) {
    const store: CacheStore =
      options.backend === "redis"
        ? new RedisCache(redis(), options.keyPrefix, logger)
        : new MemoryCache({ maxEntries: options.maxEntries, maxBytes: options.maxBytes });
    return cacheMiddleware(store, options, logger, meter);
  },
});
