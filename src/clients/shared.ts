import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";
import type { Redis } from "ioredis";
import type { Pool } from "pg";
import type { Logger } from "pino";

/** Connection settings for the shared clients, from config. */
export interface SharedClientSettings {
  redis: { url?: string | undefined; commandTimeoutMs: number; connectTimeoutMs: number };
  postgres: { url?: string | undefined; poolSize: number; connectTimeoutMs: number; statementTimeoutMs: number };
}

/** The driver modules a SharedClients makes its clients with: only those whose URL is configured. */
interface Drivers {
  Redis?: typeof Redis;
  Pool?: typeof Pool;
}

/**
 * The one Redis client and one PostgreSQL pool of the process, made on first
 * use so that a config naming a URL nobody uses opens no connection. Plugins
 * reach them through their host; they never open their own.
 */
export class SharedClients {
  private redisClient: Redis | undefined;
  private pool: Pool | undefined;
  /** Without `drivers`, neither client can be made: for a process that configures neither. */
  constructor(
    private readonly settings: SharedClientSettings,
    private readonly log: Logger,
    private readonly drivers: Drivers = {},
  ) {}

  /**
   * Shared clients with the drivers of the configured URLs imported. A driver
   * is loaded only when its URL is set: a server with neither Redis nor
   * PostgreSQL never has ioredis or pg in memory.
   */
  static async open(settings: SharedClientSettings, log: Logger): Promise<SharedClients> {
    const [redis, postgres] = await Promise.all([settings.redis.url ? import("ioredis") : undefined, settings.postgres.url ? import("pg") : undefined]);
    return new SharedClients(settings, log, { Redis: redis?.Redis, Pool: postgres?.default.Pool });
  }

  redis(): Redis {
    if (this.redisClient) return this.redisClient;
    const { url, commandTimeoutMs, connectTimeoutMs } = this.settings.redis;
    if (!url) throw new Error("no Redis is configured (set redis.url or REDIS_URL)");
    const Client = loaded(this.drivers.Redis, "ioredis");
    const client = new Client(url, {
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
      enableAutoPipelining: true,
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

  postgres(): Pool {
    if (this.pool) return this.pool;
    const { url, poolSize, connectTimeoutMs, statementTimeoutMs } = this.settings.postgres;
    if (!url) throw new Error("no PostgreSQL is configured (set postgres.url or DATABASE_URL)");
    const PgPool = loaded(this.drivers.Pool, "pg");
    const pool = new PgPool({
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

// A URL without its driver: clients made with `new` and no drivers, a bug in the caller, not a config error.
function loaded<T>(driver: T | undefined, name: string): T {
  if (driver === undefined) throw new Error(`${name} was not loaded: make the shared clients with SharedClients.open()`);
  return driver;
}

const BACKEND = Symbol("qingyu.store-backend");

/**
 * A shared-store failure as a status: the store being down is UNAVAILABLE, not
 * INTERNAL. The client hears only `${what} unavailable`: the driver's message
 * names hosts and ports ("connect ECONNREFUSED 10.0.0.7:6379"), which are the
 * operator's to know. It stays on the error as its cause, and the edge logs it,
 * throttled (OutageLog).
 */
export function storeUnavailable(what: string, err: unknown, backend?: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const error = withReason(new ConnectError(`${what} unavailable`, Code.Unavailable, undefined, undefined, err), ErrorReason.STORE_UNAVAILABLE);
  return Object.defineProperty(error, BACKEND, { value: backend, enumerable: false });
}

/** Which backend a storeUnavailable error names, when several serve the store (for the log, never the client). */
export function storeBackend(err: ConnectError): string | undefined {
  return (err as unknown as Record<symbol, string | undefined>)[BACKEND];
}

/** What went wrong, for a log line or a start-up message: a store error's hidden cause included. */
export function failureDetail(err: unknown): string {
  if (err instanceof ConnectError && err.cause !== undefined && err.cause !== err) return `${err.rawMessage}: ${failureDetail(err.cause)}`;
  // Its own words, not the "[code] " its message begins with.
  if (err instanceof ConnectError) return err.rawMessage;
  // Connecting to a name with several addresses fails with one error per address.
  if (err instanceof AggregateError && err.errors.length > 0) return err.errors.map(failureDetail).join("; ");
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    return err.message || (typeof code === "string" ? code : err.name);
  }
  return String(err);
}
