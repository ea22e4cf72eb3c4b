import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.ts";
import { TestClient } from "../support/grpc-client.ts";
import { runtime, startServer, type ServerProcess } from "../support/server-process.ts";
import { redisUrl } from "../support/services.ts";

const A = AgentService.method;
const REDIS_URL = redisUrl();

describe(`cache on a shared Redis across two server processes (${runtime})`, () => {
  // Every run has its own keys, so runs (and the Node and Deno suites) never hit each other's entries.
  const prefix = `qingyu:e2e:cache:${randomUUID()}:`;
  let redis: Redis;
  let fake: FakeOpenAI;
  let servers: ServerProcess[] = [];
  let a: TestClient;
  let b: TestClient;

  beforeAll(async () => {
    redis = new Redis(REDIS_URL);
    fake = await startFakeOpenAI();
    const config = {
      log: { level: "warn" },
      redis: { url: REDIS_URL },
      pipeline: ["validation", { plugin: "cache", options: { backend: "redis", keyPrefix: prefix } }],
      providers: { llm: { plugin: "openai", options: { baseUrl: fake.url, apiKey: "test" } } },
      agents: [{ id: "gpt", provider: "llm", model: "fake-model", systemPrompt: "Be brief." }],
      executor: { retry: { maxAttempts: 1 } },
      plugins: { dirs: [] },
    };
    servers = await Promise.all([startServer(config), startServer(config)]);
    a = new TestClient(servers[0]!.grpcPort);
    b = new TestClient(servers[1]!.grpcPort);
  });

  afterAll(async () => {
    a?.close();
    b?.close();
    await Promise.all(servers.map((s) => s.stop()));
    await fake?.close();
    if (redis) {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      redis.disconnect();
    }
  });

  it("answers a repeated task on the other process from the cache, without calling the model again", async () => {
    const task = `What is the capital of France? ${randomUUID()}`;
    const chunks = ["The ", "capital ", "is ", "Paris."];
    fake.enqueue({ kind: "stream", chunks, usage: { prompt_tokens: 12, completion_tokens: 4 } });
    const before = fake.requests.length;

    // Filled by a stream, so the entry keeps the answer's chunks (a unary Execute's answer is one whole delta).
    const filled = await a.collect(a.stream(AgentService, A.executeStream, { agentId: "gpt", task }));
    const last = filled.at(-1)!.event;
    const first = { result: last.case === "completed" ? last.value : undefined };
    expect(filled.filter((e) => e.event.case === "delta")).toHaveLength(chunks.length);
    expect(first.result?.output).toBe("The capital is Paris.");
    expect(first.result?.metadata.cache).toBe("miss");
    expect(fake.requests.length - before).toBe(1);
    // The entry is in the shared Redis, under this run's prefix.
    expect(await redis.keys(`${prefix}*`)).toHaveLength(1);

    const second = await b.unary(AgentService, A.execute, { agentId: "gpt", task });
    expect(second.result?.output).toBe(first.result?.output);
    expect(second.result?.model).toBe("fake-model");
    expect(second.result?.usage).toMatchObject({ inputTokens: 12, outputTokens: 4 });
    expect(second.result?.metadata.cache).toBe("hit");
    expect(fake.requests.length - before).toBe(1);

    // A stream on B replays the original chunks, one delta each, then the marked result.
    const events = await b.collect(b.stream(AgentService, A.executeStream, { agentId: "gpt", task }));
    expect(events.map((e) => e.event.case)).toEqual(["started", ...chunks.map(() => "delta"), "completed"]);
    const started = events[0]!.event;
    expect(started.case === "started" && started.value.model).toBe("fake-model");
    const deltas = events.slice(1, -1).map((e) => (e.event.case === "delta" ? e.event.value.text : "?"));
    expect(deltas).toEqual(chunks);
    const done = events.at(-1)!.event;
    expect(done.case).toBe("completed");
    if (done.case === "completed") {
      expect(done.value.output).toBe("The capital is Paris.");
      expect(done.value.metadata.cache).toBe("hit");
    }
    expect(fake.requests.length - before).toBe(1);
  });

  it("runs the model for a different task (a miss), on either process", async () => {
    const task = `What is the capital of Italy? ${randomUUID()}`;
    fake.enqueue({ kind: "stream", chunks: ["Rome."] });
    const before = fake.requests.length;
    const res = await b.unary(AgentService, A.execute, { agentId: "gpt", task });
    expect(res.result?.output).toBe("Rome.");
    expect(res.result?.metadata.cache).toBe("miss");
    expect(fake.requests.length - before).toBe(1);
    // The model saw this task, not a cached one.
    expect(fake.requests.at(-1)!.body.messages.at(-1)).toEqual({ role: "user", content: task });

    // Now cached for A as well.
    const again = await a.unary(AgentService, A.execute, { agentId: "gpt", task });
    expect(again.result?.output).toBe("Rome.");
    expect(again.result?.metadata.cache).toBe("hit");
    expect(fake.requests.length - before).toBe(1);
  });
});
