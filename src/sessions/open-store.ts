import type { Logger } from "pino";
import type { SharedClients } from "../clients/shared.ts";
import type { Config } from "../config/schema.ts";
import { MemorySessionStore } from "./memory-store.ts";
import type { SessionStore } from "./types.ts";

/**
 * The configured session store. PostgreSQL stores run their migrations here,
 * so a database that cannot be reached (or a schema that does not exist)
 * stops start-up with the reason rather than failing the first call.
 * A store's module is imported only when configured: a memory store loads
 * neither the PostgreSQL driver nor the Redis scripts.
 */
export async function openStore(config: Config["sessions"], clients: SharedClients, log: Logger): Promise<SessionStore> {
  const postgresSettings = { schema: config.postgresSchema, sweepIntervalMs: config.sweepIntervalMs, maxPageBytes: config.maxPageBytes, log };
  switch (config.store) {
    case "memory":
      return new MemorySessionStore(config.sweepIntervalMs, Date.now, config.maxPageBytes);
    case "redis": {
      const { RedisSessionStore } = await import("./redis-store.ts");
      return new RedisSessionStore(clients.redis(), { keyPrefix: config.redisKeyPrefix, maxPageBytes: config.maxPageBytes });
    }
    case "postgres": {
      const { PostgresSessionStore } = await import("./postgres-store.ts");
      return PostgresSessionStore.open(clients.postgres(), postgresSettings);
    }
    case "redis+postgres": {
      const [{ PostgresSessionStore }, { HotCopy }, { TieredSessionStore }] = await Promise.all([
        import("./postgres-store.ts"),
        import("./hot-copy.ts"),
        import("./tiered-store.ts"),
      ]);
      const truth = await PostgresSessionStore.open(clients.postgres(), postgresSettings);
      const hot = new HotCopy(clients.redis(), config.redisKeyPrefix, config.hotMessages);
      return new TieredSessionStore(truth, hot, { retryAfterMs: 1000 }, log.child({ store: "tiered" }));
    }
  }
}
