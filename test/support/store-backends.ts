// Real Redis and PostgreSQL for session-store tests: a random key prefix and a
// random schema per suite, removed afterwards, and counters of the round trips
// a store sends (each command or query the client writes to its connection).
import { randomUUID } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import pg from "pg";
import { databaseUrl, redisUrl } from "./services.ts";

const REDIS_URL = redisUrl();
const PG_URL = databaseUrl();

/** Round trips sent so far, by backend. */
const sent = { redis: [] as string[], pg: 0 };

class CountingClient extends pg.Client {
  override query(...args: any[]): any {
    sent.pg++;
    return (pg.Client.prototype.query as (...a: unknown[]) => unknown).apply(this, args);
  }
}

/**
 * Records the name of every command the client writes to its connection in
 * `sink`: each one is a round trip on this client (nothing here pipelines).
 * Instrumentation only: the commands still go to the real server.
 */
export function recordCommands(redis: Redis, sink: string[] = []): string[] {
  const send = redis.sendCommand.bind(redis);
  redis.sendCommand = ((command: { name: string }, stream?: unknown) => {
    sink.push(command.name.toLowerCase());
    return send(command as never, stream as never);
  }) as typeof redis.sendCommand;
  return sink;
}

/** An ioredis client recording each command's name in `sent.redis`. */
export function countingRedis(url = REDIS_URL, options: RedisOptions = {}): Redis {
  const redis = new Redis(url, options);
  recordCommands(redis, sent.redis);
  return redis;
}

/** A pg pool whose every query is counted in `sent.pg`. */
export function countingPool(url = PG_URL, max = 10): pg.Pool {
  return new pg.Pool({ connectionString: url, max, Client: CountingClient as unknown as new () => pg.ClientBase });
}

/** The round trips `run` sent to each backend. */
export async function roundTrips(run: () => Promise<unknown>): Promise<{ redis: string[]; pg: number }> {
  const [r, p] = [sent.redis.length, sent.pg];
  await run();
  return { redis: sent.redis.slice(r), pg: sent.pg - p };
}

/** A schema and a key prefix no other run uses, and their removal. */
export function isolation() {
  const id = randomUUID().replace(/-/g, "").slice(0, 12);
  return {
    schema: `test_${id}`,
    prefix: `qingyu:test:${id}:`,
    async create(pool: pg.Pool): Promise<void> {
      await pool.query(`create schema ${this.schema}`);
    },
    async remove(pool: pg.Pool, redis: Redis): Promise<void> {
      await pool.query(`drop schema if exists ${this.schema} cascade`);
      await pool.query(`delete from qingyu_schema_migrations where component = $1`, [`sessions:${this.schema}`]).catch(() => undefined);
      const keys = await redis.keys(`${this.prefix}*`);
      for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
    },
  };
}
