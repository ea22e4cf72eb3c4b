import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";

const A = AgentService.method;

describe("the openai provider through the server, against a local OpenAI-compatible server", () => {
  let fake: FakeOpenAI;
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    fake = await startFakeOpenAI();
    server = await startServer({
      log: { level: "warn" },
      providers: { llm: { plugin: "openai", options: { baseUrl: fake.url, apiKey: "sk-test" } } },
      agents: [{ id: "gpt", provider: "llm", model: "fake-model", systemPrompt: "Be brief.", defaults: { temperature: 0.2 } }],
      executor: { retry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 2000 } },
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
    await fake?.close();
  });

  it("streams the upstream's chunks as deltas and reports its usage", async () => {
    fake.enqueue({ kind: "stream", chunks: ["Hel", "lo", " there"], usage: { prompt_tokens: 11, completion_tokens: 3 } });
    const first = fake.requests.length;
    const events = await client.collect(client.stream(AgentService, A.executeStream, { agentId: "gpt", task: "greet me" }));
    const deltas = events.filter((e) => e.event.case === "delta").map((e) => (e.event.case === "delta" ? e.event.value.text : ""));
    expect(deltas).toEqual(["Hel", "lo", " there"]);
    const done = events.at(-1)!.event;
    expect(done.case).toBe("completed");
    if (done.case === "completed") {
      expect(done.value.output).toBe("Hello there");
      expect(done.value.usage).toMatchObject({ inputTokens: 11, outputTokens: 3 });
      expect(done.value.model).toBe("fake-model");
    }
    const sent = fake.requests[first]!;
    expect(sent.headers.authorization).toBe("Bearer sk-test");
    expect(sent.body).toMatchObject({ model: "fake-model", stream: true, temperature: 0.2 });
    expect(sent.body.messages).toEqual([
      { role: "system", content: "Be brief." },
      { role: "user", content: "greet me" },
    ]);
  });

  it("sends the session's history with the next turn", async () => {
    const { session } = await client.unary(SessionService, SessionService.method.createSession, { userId: "u", agentId: "gpt" });
    fake.enqueue({ kind: "stream", chunks: ["Paris."] }, { kind: "stream", chunks: ["About 2 million."] });
    await client.unary(AgentService, A.execute, { sessionId: session!.sessionId, task: "Capital of France?" });
    const second = fake.requests.length;
    const res = await client.unary(AgentService, A.execute, { sessionId: session!.sessionId, task: "Population?" });
    expect(res.result?.output).toBe("About 2 million.");
    expect(fake.requests[second]!.body.messages.slice(1)).toEqual([
      { role: "user", content: "Capital of France?" },
      { role: "assistant", content: "Paris." },
      { role: "user", content: "Population?" },
    ]);
  });

  it("retries a 500 and succeeds", async () => {
    const first = fake.requests.length;
    fake.enqueue({ kind: "error", status: 500 }, { kind: "error", status: 503 }, { kind: "stream", chunks: ["ok"] });
    const res = await client.unary(AgentService, A.execute, { agentId: "gpt", task: "x" });
    expect(res.result?.output).toBe("ok");
    expect(fake.requests.length - first).toBe(3);
  });

  it("honours Retry-After on 429, then succeeds", async () => {
    const first = fake.requests.length;
    fake.enqueue({ kind: "error", status: 429, headers: { "retry-after": "1" } }, { kind: "stream", chunks: ["later"] });
    const started = Date.now();
    const res = await client.unary(AgentService, A.execute, { agentId: "gpt", task: "x" });
    expect(res.result?.output).toBe("later");
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(fake.requests.length - first).toBe(2);
  });

  it("gives up after the configured attempts: 429 → RESOURCE_EXHAUSTED, 5xx → UNAVAILABLE", async () => {
    fake.enqueue(...Array.from({ length: 3 }, () => ({ kind: "error" as const, status: 429 })));
    const limited = await statusOf(client.unary(AgentService, A.execute, { agentId: "gpt", task: "x" }));
    expect(limited.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    fake.enqueue(...Array.from({ length: 3 }, () => ({ kind: "error" as const, status: 502 })));
    const down = await statusOf(client.unary(AgentService, A.execute, { agentId: "gpt", task: "x" }));
    expect(down.code).toBe(grpc.status.UNAVAILABLE);
  });

  it("does not retry what cannot succeed: 401, 403, 404, 400", async () => {
    for (const [status, code] of [
      [401, grpc.status.UNAUTHENTICATED],
      [403, grpc.status.PERMISSION_DENIED],
      [404, grpc.status.NOT_FOUND],
      [400, grpc.status.INVALID_ARGUMENT],
    ] as const) {
      const first = fake.requests.length;
      fake.enqueue({ kind: "error", status });
      const res = await statusOf(client.unary(AgentService, A.execute, { agentId: "gpt", task: "x" }));
      expect(grpc.status[res.code]).toBe(grpc.status[code]);
      expect(fake.requests.length - first).toBe(1);
    }
  });

  it("ends a hanging upstream at the deadline and closes the upstream connection", async () => {
    const index = fake.requests.length;
    fake.enqueue({ kind: "hang" });
    const res = await statusOf(client.unary(AgentService, A.execute, { agentId: "gpt", task: "x" }, { timeoutMs: 300 }));
    expect(res.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // The upstream never answers: its socket closing at all is the deadline's doing (how fast: provider.faults).
    await fake.waitForClose(index, 5000);
  });

  it("closes the upstream request when the client cancels after two chunks, before the answer's end", async () => {
    const index = fake.requests.length;
    const chunks = Array.from({ length: 40 }, (_, i) => `w${i} `);
    fake.enqueue({ kind: "stream", chunks, delayMs: 50 });
    const call = client.stream(AgentService, A.executeStream, { agentId: "gpt", task: "long answer" });
    let deltas = 0;
    await new Promise<void>((resolve) => {
      call.on("data", (m) => {
        if (m.event.case === "delta" && ++deltas === 2) {
          call.cancel();
          resolve();
        }
      });
      call.on("error", () => resolve());
    });
    await fake.waitForClose(index, 5000);
    // Closed by the cancel, not by the answer's end (40 chunks, 2 s); how soon is timed in timing.faults.
    const written = fake.requests[index]!.chunksWritten;
    expect(written).toBeLessThan(chunks.length);
    // No tokens generated, and billed, for a caller who left: nothing more once closed.
    await new Promise((r) => setTimeout(r, 200));
    expect(fake.requests[index]!.chunksWritten).toBe(written);
  });
});
