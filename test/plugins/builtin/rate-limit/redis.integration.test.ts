import { Code, ConnectError, type Middleware, type Principal, type RunEvent } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import rateLimit from "../../../../src/plugins/builtin/rate-limit/plugin.ts";
import { agentContext, collect, runResult, setUpPlugin, terminal, type ContextInit } from "../../../support/plugin-context.ts";
import { rejection } from "../../../support/rejection.ts";
import { settlesBefore } from "../../../support/settles-before.ts";
import { redisUrl } from "../../../support/services.ts";

const REDIS_URL = redisUrl();
const alice: Principal = { id: "alice", admin: false, roles: [], method: "api-key" };

/** A `next` whose run reports the given usage. */
function usingTokens(inputTokens: number, outputTokens: number, before?: () => Promise<void>) {
  return async function* (): AsyncIterable<RunEvent> {
    yield { type: "started", model: "echo-1" };
    await before?.();
    yield { type: "completed", result: runResult("ok", { inputTokens, outputTokens }) };
  };
}

/** Resolves once `cond` holds; fails the test after a second. */
async function waitFor(cond: () => Promise<boolean>): Promise<void> {
  for (const deadline = Date.now() + 1_000; Date.now() < deadline;) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error("condition not met within 1 s");
}

const call = (mw: Middleware, init: ContextInit, next = terminal().next) => collect(mw.process(agentContext(init), next));
const taskOf = (tokens: number) => "x".repeat(tokens * 4);

describe("rate-limit (redis)", () => {
  let prefix: string;
  let clients: Redis[];
  let middlewares: Middleware[];

  /** A plugin instance on its own client, as a separate server process would have. */
  async function instance(options: object, client = new Redis(REDIS_URL)): Promise<Middleware> {
    clients.push(client);
    const mw = await setUpPlugin(rateLimit, { backend: "redis", keyPrefix: prefix, ...options }, { redis: client });
    middlewares.push(mw);
    return mw;
  }

  beforeEach(() => {
    prefix = `qingyu:rl:test:${randomUUID()}:`;
    clients = [];
    middlewares = [];
  });

  afterEach(async () => {
    await Promise.all(middlewares.map((m) => m.dispose?.()));
    const admin = new Redis(REDIS_URL);
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length > 0) await admin.del(...keys);
    await admin.quit();
    for (const c of clients) c.disconnect();
  });

  it("enforces one limit across two processes sharing Redis", async () => {
    const options = { perPrincipal: { requestsPerMinute: 10 } };
    const [a, b] = [await instance(options), await instance(options)];
    const t = terminal();
    const started = Date.now();
    const results = await Promise.allSettled(Array.from({ length: 30 }, (_, i) => call(i % 2 === 0 ? a : b, { principal: alice }, t.next)));
    const elapsed = Date.now() - started;
    const ok = results.filter((r) => r.status === "fulfilled");
    const refused = results.flatMap((r) => (r.status === "rejected" ? [r.reason as ConnectError] : []));
    expect(ok).toHaveLength(10);
    expect(t.calls).toBe(10);
    expect(refused).toHaveLength(20);
    for (const err of refused) {
      expect(err).toBeInstanceOf(ConnectError);
      expect(err.code).toBe(Code.ResourceExhausted);
      expect(err.rawMessage).toContain('requests per minute for principal "alice"');
      const ms = Number(err.metadata.get("retry-after-ms"));
      // 6 s per request at 10 a minute, less what has refilled since the bucket emptied: at most the time
      // these calls took, however long a busy machine made that.
      expect(ms).toBeGreaterThanOrEqual(6_000 - elapsed - 1);
      expect(ms).toBeLessThanOrEqual(6_000);
      expect(err.metadata.get("retry-after")).toBe(String(Math.ceil(ms / 1000)));
    }
  });

  it("gives every bucket a TTL so idle ones disappear", async () => {
    const mw = await instance({ perPrincipal: { requestsPerMinute: 10 }, perAgent: { tokensPerMinute: 1000 } });
    const redis = new Redis(REDIS_URL);
    clients.push(redis);
    const started = Date.now();
    await call(mw, { principal: alice, task: taskOf(100) }, usingTokens(100, 0));
    const req = await redis.pttl(`${prefix}p:alice:req`);
    const tok = await redis.pttl(`${prefix}a:echo:tok`);
    const elapsed = Date.now() - started;
    // Full again after 6 s (one request of 10) and 6 s (100 tokens of 1000), plus a second's margin: 7 s,
    // less no more than the time since the call began, however long a busy machine made that.
    for (const ttl of [req, tok]) {
      expect(ttl).toBeGreaterThanOrEqual(7_000 - elapsed - 1);
      expect(ttl).toBeLessThanOrEqual(7_000);
    }
  });

  it("settles real usage and refunds failures in the shared buckets", async () => {
    const options = { perPrincipal: { tokensPerMinute: 100 } };
    const [a, b] = [await instance(options), await instance(options)];
    const observer = new Redis(REDIS_URL);
    clients.push(observer);
    // A failed call on one process gives its estimate back.
    const failing = async function* (): AsyncIterable<RunEvent> {
      yield { type: "started", model: "echo-1" };
      throw new Error("upstream broke");
    };
    const key = `${prefix}p:alice:tok`;
    await expect(call(a, { principal: alice, task: taskOf(80) }, failing)).rejects.toThrow("upstream broke");
    // The caller does not wait for the settle; a refunded bucket is full, so its key is gone.
    await waitFor(async () => (await observer.exists(key)) === 0);
    await call(b, { principal: alice, task: taskOf(80) }, usingTokens(150, 0));
    // b's call went 50 into debt (estimated 80, used 150); a sees it.
    await waitFor(async () => Number(await observer.hget(key, "l")) < 0);
    const err = await rejection(call(a, { principal: alice, task: taskOf(1) }));
    expect(err.code).toBe(Code.ResourceExhausted);
    expect(err.rawMessage).toContain('tokens per minute for principal "alice"');
    expect(Number(err.metadata.get("retry-after-ms"))).toBeGreaterThan(30_000);
  });

  it("never breaks the caller's stream when settling fails", async () => {
    const client = new Redis(REDIS_URL);
    const mw = await instance({ perPrincipal: { tokensPerMinute: 1000 } }, client);
    const events = await call(
      mw,
      { principal: alice, task: taskOf(10) },
      usingTokens(500, 0, async () => client.disconnect()),
    );
    expect(events.map((e) => e.type)).toEqual(["started", "completed"]);
  });

  describe("when Redis is unreachable", () => {
    const unreachable = () => {
      const client = new Redis({
        host: "127.0.0.1",
        port: 1,
        connectTimeout: 200,
        commandTimeout: 200,
        maxRetriesPerRequest: 0,
        enableOfflineQueue: false,
        retryStrategy: () => 1000,
      });
      client.on("error", () => {});
      return client;
    };

    it('refuses with UNAVAILABLE quickly under onBackendError "reject"', async () => {
      const mw = await instance({ perPrincipal: { requestsPerMinute: 10 } }, unreachable());
      const t = terminal();
      const calling = call(mw, { principal: alice }, t.next);
      // Quickly: before the client's next reconnect (retryStrategy: 1 s) could come, so without waiting on one.
      expect(await settlesBefore(calling, 1_000)).toBe(true);
      const err = await rejection(calling);
      expect(err.code).toBe(Code.Unavailable);
      expect(t.calls).toBe(0);
    });

    it('lets the call through under onBackendError "allow"', async () => {
      const mw = await instance({ perPrincipal: { requestsPerMinute: 1, tokensPerMinute: 10 }, onBackendError: "allow" }, unreachable());
      const t = terminal();
      for (let i = 0; i < 3; i++) await expect(call(mw, { principal: alice }, t.next)).resolves.toHaveLength(4);
      expect(t.calls).toBe(3);
    });
  });
});
