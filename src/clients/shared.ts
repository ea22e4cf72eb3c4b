import { Code, ConnectError } from "@qingyu/plugin-api";
import { Redis } from "ioredis";
import pg from "pg";
import type { Logger } from "pino";

/** Connection settings for the shared clients, from config. */
export interface SharedClientSettings {
  redis: { url?: string | undefined; commandTimeoutMs: number; connectTimeoutMs: number };
  postgres: { url?: string | undefined; poolSize: number; connectTimeoutMs: number; statementTimeoutMs: number };
}

/**
 * The one Redis client and one PostgreSQL pool of the process, made on first
 * use so that a config naming a URL nobody uses opens no connection. Plugins
 * reach them through their host; they never open their own.
 */
export class SharedClients {
  private redisClient: Redis | undefined;
  private pool: pg.Pool | undefined;

  constructor(
    private readonly settings: SharedClientSettings,
    private readonly log: Logger,
  ) {}

  redis(): Redis {
    if (this.redisClient) return this.redisClient;
    const { url, commandTimeoutMs, connectTimeoutMs } = this.settings.redis;
    if (!url) throw new Error("no Redis is configured (set redis.url or REDIS_URL)");
    const client = new Redis(url, {
      // Bounded: a command fails with an error rather than waiting forever for a dead Redis.
      commandTimeout: commandTimeoutMs,
      connectTimeout: connectTimeoutMs,
      maxRetriesPerRequest: 1,
      retryStrategy: (attempt) => Math.min(attempt * 200, 2000),
      // A command sent on a connection that then dropped is never sent again on the next one:
      // its caller may already have failed (commandTimeout → UNAVAILABLE) and retried, and a
      // replayed script (a session append, a rate-limit charge) would then apply twice. Such a
      // command fails by its commandTimeout instead (test/faults/stores.faults).
      autoResendUnfulfilledCommands: false,
    });
    let down = false;
    client.on("error", (err) => {
      if (!down) this.log.warn({ err: err.message }, "redis connection error");
      down = true;
    });
    client.on("ready", () => {
      if (down) this.log.info("redis connection restored");
      down = false;
      // Queue only while the first connection comes up: after that, a command during an
      // outage fails at once (UNAVAILABLE) instead of waiting in an offline queue.
      client.options.enableOfflineQueue = false;
    });
    this.redisClient = client;
    return client;
  }

  postgres(): pg.Pool {
    if (this.pool) return this.pool;
    const { url, poolSize, connectTimeoutMs, statementTimeoutMs } = this.settings.postgres;
    if (!url) throw new Error("no PostgreSQL is configured (set postgres.url or DATABASE_URL)");
    const pool = new pg.Pool({
      connectionString: url,
      max: poolSize,
      connectionTimeoutMillis: connectTimeoutMs,
      statement_timeout: statementTimeoutMs,
      // Client side too: a server that silently drops packets must not hang a call until TCP gives up.
      query_timeout: statementTimeoutMs + 1000,
    });
    // An idle client's error (server restart) must not crash the process.
    pool.on("error", (err) => this.log.warn({ err: err.message }, "postgres idle client error"));
    this.pool = pool;
    return pool;
  }

  async close(): Promise<void> {
    const redis = this.redisClient;
    const pool = this.pool;
    this.redisClient = undefined;
    this.pool = undefined;
    await Promise.allSettled([redis?.quit().catch(() => redis.disconnect()), pool?.end()]);
  }
}

/** A shared-store failure as a status: the store being down is UNAVAILABLE, not INTERNAL. */
export function storeUnavailable(store: string, err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  return new ConnectError(`${store} is unavailable: ${(err as Error)?.message ?? String(err)}`, Code.Unavailable, undefined, undefined, err);
}
