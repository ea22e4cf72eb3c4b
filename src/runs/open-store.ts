import type { Logger } from "pino";
import type { SharedClients } from "../clients/shared.ts";
import type { Config } from "../config/schema.ts";
import { MemoryRunStore } from "./memory-store.ts";
import type { RunFeed } from "./feed.ts";
import type { RunStore } from "./types.ts";

/** Which journal config asks for: `auto` is PostgreSQL when sessions live there, else memory. */
function runStoreKind(config: Config): "memory" | "postgres" {
  if (config.runs.store !== "auto") return config.runs.store;
  return config.sessions.store === "postgres" || config.sessions.store === "redis+postgres" ? "postgres" : "memory";
}

/** The configured runs journal, migrated (memory: RunManager warns at the first run that it ends with the process). */
export async function openRunStore(config: Config, clients: SharedClients, log: Logger): Promise<RunStore> {
  // Imported only when configured: the default config loads no PostgreSQL code (idle memory, start-up).
  if (runStoreKind(config) === "postgres") {
    const { PostgresRunStore } = await import("./postgres-store.ts");
    return PostgresRunStore.open(clients.postgres(), { schema: config.sessions.postgresSchema, log });
  }
  return new MemoryRunStore();
}

/** The runs' live feed: a Redis stream per run whenever Redis is configured (redis.url), so any replica's watchers see text deltas; none without. */
export async function openRunFeed(config: Config, clients: SharedClients, log: Logger): Promise<RunFeed | undefined> {
  if (!config.redis.url) return undefined;
  const { RedisRunFeed } = await import("./redis-feed.ts");
  return new RedisRunFeed(clients.redis(), log.child({ component: "run-feed" }), { keyPrefix: config.sessions.redisKeyPrefix });
}
