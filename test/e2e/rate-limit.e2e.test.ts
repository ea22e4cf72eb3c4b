import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { runtime, startServer, type ServerProcess } from "../support/server-process.ts";
import { redisUrl } from "../support/services.ts";

const A = AgentService.method;
const REDIS_URL = redisUrl();
/** Calls per minute per principal. */
const N = 5;
/** LLM tokens per minute per principal, for the token-bucket case. */
const TOKENS = 20;

/** The outcome of one call as its caller sees it. */
type Outcome = { ok: true } | { ok: false; code: grpc.status; details: string; metadata: grpc.Metadata };

async function outcome(p: Promise<unknown>): Promise<Outcome> {
  try {
    await p;
    return { ok: true };
  } catch (err) {
    const e = err as grpc.ServiceError;
    return { ok: false, code: e.code, details: e.details, metadata: e.metadata };
  }
}

const header = (md: grpc.Metadata, key: string) => String(md.get(key)[0] ?? "");

describe(`rate-limit on a shared Redis across two server processes (${runtime})`, () => {
  // Every run has its own keys, so runs (and the Node and Deno suites) never share buckets.
  const prefix = `qingyu:e2e:rl:${randomUUID()}:`;
  let redis: Redis;
  let servers: ServerProcess[] = [];
  let clients: TestClient[] = [];

  beforeAll(async () => {
    redis = new Redis(REDIS_URL);
    const config = {
      log: { level: "warn" },
      redis: { url: REDIS_URL },
      pipeline: ["validation", { plugin: "rate-limit", options: { backend: "redis", keyPrefix: prefix, perPrincipal: { requestsPerMinute: N } } }],
      providers: { echo: { plugin: "echo" } },
      agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
      plugins: { dirs: [] },
    };
    // Two more processes limit tokens instead of requests, on the same prefix (their keys end in :tok).
    const tokenConfig = {
      ...config,
      pipeline: ["validation", { plugin: "rate-limit", options: { backend: "redis", keyPrefix: prefix, perPrincipal: { tokensPerMinute: TOKENS } } }],
    };
    servers = await Promise.all([startServer(config), startServer(config), startServer(tokenConfig), startServer(tokenConfig)]);
    clients = servers.map((s) => new TestClient(s.grpcPort));
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.stop()));
    if (redis) {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });

  it(`lets exactly ${N} of ${3 * N} parallel calls through in total, alternating between the processes`, async () => {
    const [a, b] = clients as [TestClient, TestClient];
    const user = `alice-${randomUUID()}`;
    const calls = Array.from({ length: 3 * N }, (_, i) => {
      const client = i % 2 === 0 ? a : b;
      return outcome(client.unary(AgentService, A.execute, { agentId: "echo", task: `call ${i}`, userId: user }));
    });
    const results = await Promise.all(calls);

    expect(results.filter((r) => r.ok)).toHaveLength(N);
    const refused = results.filter((r): r is Extract<Outcome, { ok: false }> => !r.ok);
    expect(refused).toHaveLength(2 * N);
    for (const r of refused) {
      expect(grpc.status[r.code]).toBe("RESOURCE_EXHAUSTED");
      expect(r.details).toContain(`requests per minute for principal "user:${user}" (limit ${N})`);
      expect(header(r.metadata, "qingyu-reason")).toBe("RATE_LIMITED");
      // One request refills every 60/N s: the wait is positive and at most that.
      const ms = Number(header(r.metadata, "retry-after-ms"));
      expect(ms).toBeGreaterThan(0);
      expect(ms).toBeLessThanOrEqual(60_000 / N);
      expect(header(r.metadata, "retry-after")).toBe(String(Math.ceil(ms / 1000)));
    }
    // Both processes refuse: the bucket is one, not one per process.
    const refusedBy = (offset: number) => results.filter((r, i) => i % 2 === offset && !r.ok).length;
    expect(refusedBy(0)).toBeGreaterThan(0);
    expect(refusedBy(1)).toBeGreaterThan(0);
    // The bucket lives in Redis under the configured prefix.
    expect(await redis.exists(`${prefix}p:user:${user}:req`)).toBe(1);

    // The emptied bucket is the user's only: another user passes on both processes.
    const bob = `bob-${randomUUID()}`;
    for (const client of [a, b]) {
      const res = await client.unary(AgentService, A.execute, { agentId: "echo", task: "hi", userId: bob });
      expect(res.result?.success).toBe(true);
    }
    // And the first user is still refused on both.
    for (const client of [a, b]) {
      const again = await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", task: "again", userId: user }));
      expect(grpc.status[again.code]).toBe("RESOURCE_EXHAUSTED");
    }
  });

  it("settles the real token usage in the shared bucket, so the other process refuses the next call", async () => {
    const [, , c, d] = clients as [TestClient, TestClient, TestClient, TestClient];
    const user = `carol-${randomUUID()}`;
    const key = `${prefix}p:user:${user}:tok`;
    // 16 words, 31 characters: estimated at ceil(31 / 4) = 8 tokens before the call. The echo
    // provider then reports 16 input + 17 output = 33 tokens, so settling puts the bucket in debt.
    const task = "a b c d e f g h i j k l m n o p";
    const started = Date.now();
    /** Tokens refilled since the bucket was first charged: at most one per 60/TOKENS s of however long this took. */
    const refilledAtMost = () => ((Date.now() - started) * TOKENS) / 60_000;
    const res = await c.unary(AgentService, A.execute, { agentId: "echo", task, userId: user });
    expect(res.result?.usage).toMatchObject({ inputTokens: 16, outputTokens: 17 });

    // Settling is fire-and-forget after the answer: wait (bounded) until Redis shows the debt.
    let level = Number.NaN;
    for (const deadline = Date.now() + 2_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 10))) {
      level = Number(await redis.hget(key, "l"));
      if (level < 0) break;
    }
    // 20 - 33 = -13, plus what refilled in the meantime.
    expect(level).toBeLessThanOrEqual(-13 + refilledAtMost());

    // The other process sees the same debt: 8 estimated tokens wait for about (8 + 13) * 3 s.
    const refused = await statusOf(d.unary(AgentService, A.execute, { agentId: "echo", task, userId: user }));
    expect(grpc.status[refused.code]).toBe("RESOURCE_EXHAUSTED");
    expect(refused.details).toContain(`tokens per minute for principal "user:${user}" (limit ${TOKENS})`);
    const ms = Number(header(refused.metadata, "retry-after-ms"));
    expect(ms).toBeGreaterThanOrEqual(63_000 - refilledAtMost() * 3_000 - 1);
    expect(ms).toBeLessThanOrEqual(63_000);
    expect(header(refused.metadata, "retry-after")).toBe(String(Math.ceil(ms / 1000)));

    // Another user still has a full bucket.
    const other = await d.unary(AgentService, A.execute, { agentId: "echo", task, userId: `dave-${randomUUID()}` });
    expect(other.result?.success).toBe(true);

    // A task estimated above the whole per-minute limit can never fit: refused as bad input, not as a wait.
    const huge = await statusOf(c.unary(AgentService, A.execute, { agentId: "echo", task: "x".repeat(4 * TOKENS + 4), userId: `erin-${randomUUID()}` }));
    expect(grpc.status[huge.code]).toBe("INVALID_ARGUMENT");
    expect(header(huge.metadata, "qingyu-reason")).toBe("LIMIT_EXCEEDED");
  });
});
