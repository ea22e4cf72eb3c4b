import type { Logger } from "pino";
import type { SharedClients } from "../clients/shared.ts";
import type { Config } from "../config/schema.ts";
import { HotCopy } from "./hot-copy.ts";
import { MemorySessionStore } from "./memory-store.ts";
import { PostgresSessionStore } from "./postgres-store.ts";
import { RedisSessionStore } from "./redis-store.ts";
import { TieredSessionStore } from "./tiered-store.ts";
import type { SessionStore } from "./types.ts";

/**
 * The configured session store. PostgreSQL stores run their migrations here,
 * so a database that cannot be reached (or a schema that does not exist)
 * stops start-up with the reason rather than failing the first call.
 */
export async function openStore(config: Config["sessions"], clients: SharedClients, log: Logger): Promise<SessionStore> {
  const postgresSettings = { schema: config.postgresSchema, sweepIntervalMs: config.sweepIntervalMs, maxPageBytes: config.maxPageBytes, log };
  switch (config.store) {
    case "memory":
      return new MemorySessionStore(config.sweepIntervalMs, Date.now, config.maxPageBytes);
    case "redis":
      return new RedisSessionStore(clients.redis(), { keyPrefix: config.redisKeyPrefix, maxPageBytes: config.maxPageBytes });
    case "postgres":
      return PostgresSessionStore.open(clients.postgres(), postgresSettings);
    case "redis+postgres": {
      const truth = await PostgresSessionStore.open(clients.postgres(), postgresSettings);
      const hot = new HotCopy(clients.redis(), config.redisKeyPrefix, config.hotMessages);
      return new TieredSessionStore(truth, hot, { retryAfterMs: 1000 }, log.child({ store: "tiered" }));
    }
  }
}
