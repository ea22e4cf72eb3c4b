import type { Middleware, RunEvent } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import cachePlugin from "../../../../src/plugins/builtin/cache/plugin.ts";
import { agentContext, collect, setUpPlugin, terminal } from "../../../support/plugin-context.ts";
import { redisUrl } from "../../../support/services.ts";

const REDIS_URL = redisUrl();

function result(events: RunEvent[]) {
  const last = events.at(-1);
  if (last?.type !== "completed") throw new Error(`last event is ${last?.type}`);
  return last.result;
}

describe("cache middleware (redis)", () => {
  // Two clients, as two server processes of one deployment would have.
  let redisA: Redis;
  let redisB: Redis;
  const keyPrefix = `qingyu-test:cache:${randomUUID()}:`;

  beforeAll(() => {
    redisA = new Redis(REDIS_URL);
    redisB = new Redis(REDIS_URL);
  });

  afterEach(async () => {
    const keys = await redisA.keys(`${keyPrefix}*`);
    if (keys.length > 0) await redisA.del(...keys);
  });

  afterAll(async () => {
    await Promise.all([redisA.quit(), redisB.quit()]);
  });

  async function instance(redis: Redis, options: Record<string, unknown> = {}): Promise<Middleware> {
    return setUpPlugin(cachePlugin, { backend: "redis", keyPrefix, ...options }, { redis });
  }

  it("an answer stored by one process is a hit in another, which never runs the agent", async () => {
    const a = await instance(redisA);
    const b = await instance(redisB);
    const ta = terminal("shared answer", ["shared ", "answer"]);
    const tb = terminal("should not run", ["no"]);

    const miss = await collect(a.process(agentContext({ task: "share me" }), ta.next));
    const hit = await collect(b.process(agentContext({ task: "share me" }), tb.next));

    expect(ta.calls).toBe(1);
    expect(tb.calls).toBe(0);
    expect(result(miss).metadata.cache).toBe("miss");
    expect(result(hit).metadata.cache).toBe("hit");
    expect(result(hit).output).toBe("shared answer");
    expect(hit.slice(0, 3)).toEqual([
      { type: "started", model: "echo-1" },
      { type: "delta", text: "shared " },
      { type: "delta", text: "answer" },
    ]);
  });

  it("the entry is visible to another process as soon as the first client has its result", async () => {
    const a = await instance(redisA);
    const b = await instance(redisB);
    const ta = terminal();
    const tb = terminal();
    const it = a.process(agentContext(), ta.next)[Symbol.asyncIterator]();
    let event = await it.next();
    while (!event.done && event.value.type !== "completed") event = await it.next();
    expect(event.value?.type).toBe("completed");
    expect(result(await collect(b.process(agentContext(), tb.next))).metadata.cache).toBe("hit");
    expect(tb.calls).toBe(0);
  });

  it("stores entries with the configured TTL", async () => {
    const a = await instance(redisA, { ttlSeconds: 120 });
    const started = Date.now();
    await collect(a.process(agentContext({ task: "ttl" }), terminal().next));
    const keys = await redisA.keys(`${keyPrefix}*`);
    expect(keys).toHaveLength(1);
    const pttl = await redisA.pttl(keys[0]!);
    // 120 s less no more than the time since the call began, however long a busy machine made that.
    expect(pttl).toBeGreaterThanOrEqual(120_000 - (Date.now() - started));
    expect(pttl).toBeLessThanOrEqual(120_000);
  });

  it("does not store a failed run", async () => {
    const a = await instance(redisA);
    const failing = async function* (): AsyncIterable<RunEvent> {
      yield { type: "started", model: "echo-1" };
      throw new Error("boom");
    };
    await expect(collect(a.process(agentContext(), failing))).rejects.toThrow("boom");
    expect(await redisA.keys(`${keyPrefix}*`)).toEqual([]);
  });

  it("a call still succeeds through the agent when Redis is unreachable", async () => {
    const dead = new Redis({
      host: "127.0.0.1",
      port: 1,
      connectTimeout: 200,
      commandTimeout: 200,
      maxRetriesPerRequest: 0,
      enableOfflineQueue: false,
      retryStrategy: () => null,
    });
    dead.on("error", () => {}); // the connection failure is expected
    try {
      const mw = await instance(dead);
      const t = terminal("through the agent", ["through ", "the agent"]);
      const first = await collect(mw.process(agentContext(), t.next));
      const second = await collect(mw.process(agentContext(), t.next));
      expect(t.calls).toBe(2);
      expect(result(first).output).toBe("through the agent");
      expect(result(first).success).toBe(true);
      expect(result(second).metadata.cache).toBe("miss");
    } finally {
      dead.disconnect();
    }
  });
});
