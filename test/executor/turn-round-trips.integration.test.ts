// The budget: one conversation turn costs at most one read and one write
// round trip to each store, however long the history. Measured on the real
// executor (the same path Execute takes) against the real Redis and PostgreSQL.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pino from "pino";
import { AgentRegistry } from "../../src/agents/registry.ts";
import { MemoryEventBus } from "../../src/events/memory-bus.ts";
import { Executor } from "../../src/executor/executor.ts";
import echo from "../../src/plugins/builtin/echo.ts";
import { HotCopy } from "../../src/sessions/hot-copy.ts";
import { SessionManager } from "../../src/sessions/manager.ts";
import { PostgresSessionStore } from "../../src/sessions/postgres-store.ts";
import { RedisSessionStore } from "../../src/sessions/redis-store.ts";
import { TieredSessionStore } from "../../src/sessions/tiered-store.ts";
import type { SessionStore } from "../../src/sessions/types.ts";
import { setUpPlugin } from "../support/plugin-context.ts";
import { countingPool, countingRedis, isolation, roundTrips } from "../support/store-backends.ts";

const log = pino({ level: "silent" });
const iso = isolation();
const pool = countingPool();
const redis = countingRedis();
const closers: (() => Promise<void>)[] = [];

beforeAll(() => iso.create(pool));
afterAll(async () => {
  for (const close of closers) await close();
  await iso.remove(pool, redis);
  redis.disconnect();
  await pool.end();
});

async function executorOn(store: SessionStore) {
  closers.push(() => store.close());
  const events = new MemoryEventBus(log);
  const sessions = new SessionManager(store, events, {
    ttlSeconds: 600,
    maxTtlSeconds: 3600,
    historyMessages: 20,
    historyTokens: 0,
    getMessagesLimit: 200,
    maxCheckpointBytes: 1 << 20,
    checkpointsKept: 20,
    defaultPageSize: 20,
    maxPageSize: 100,
  });
  const executor = new Executor({
    agents: new AgentRegistry([{ id: "echo", description: "", provider: "echo", model: "echo-1", systemPrompt: "", defaults: {} }]),
    providers: new Map([["echo", await setUpPlugin(echo, {})]]),
    middleware: [],
    sessions,
    events,
    retry: { maxAttempts: 1, baseDelayMs: 0, maxDelayMs: 0 },
    log,
  });
  const call = { signal: new AbortController().signal, header: () => undefined };
  const turn = (sessionId: string, task: string) => executor.execute({ agentId: "", sessionId, userId: "", task, metadata: {}, options: {} }, call);
  return { sessions, turn };
}

const stores: Record<string, () => Promise<SessionStore>> = {
  redis: async () => new RedisSessionStore(redis, { keyPrefix: iso.prefix }),
  postgres: () => PostgresSessionStore.open(pool, { schema: iso.schema, sweepIntervalMs: 60_000, log }),
  "redis+postgres": async () => {
    const truth = await PostgresSessionStore.open(pool, { schema: iso.schema, sweepIntervalMs: 60_000, log });
    return new TieredSessionStore(truth, new HotCopy(redis, `${iso.prefix}t:`, 50), { retryAfterMs: 1000 }, log);
  },
};

// Per turn, to each store: [reads, writes].
const budget: Record<string, { redis: string[]; pg: number }> = {
  redis: { redis: ["evalsha", "evalsha"], pg: 0 },
  postgres: { redis: [], pg: 2 },
  // The copy's read with the version it must match (in parallel), the commit, the copy's update.
  "redis+postgres": { redis: ["get", "evalsha"], pg: 2 },
};

describe("round trips of one conversation turn", () => {
  for (const [name, make] of Object.entries(stores)) {
    it(`${name}: one read and one write, with a 4-message or a 400-message history`, async () => {
      const { sessions, turn } = await executorOn(await make());
      const session = await sessions.create("alice", "echo", {}, 0);
      await turn(session.id, "first");
      await turn(session.id, "second");
      const short = await roundTrips(() => turn(session.id, "third"));
      for (let i = 0; i < 197; i++) await turn(session.id, `filler ${i}`);
      let answer = "";
      const long = await roundTrips(async () => (answer = (await turn(session.id, "last")).output));
      expect(short).toEqual(budget[name]);
      expect(long).toEqual(budget[name]);
      // The prompt took the last 20 of 400 messages.
      expect(answer).toBe("[history=20] last");
    });
  }
});
