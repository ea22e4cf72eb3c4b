import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";

const A = AgentService.method;
const IDLE_MS = 300;

describe("a stalled upstream stream and per-agent limits, through the server", () => {
  let fake: FakeOpenAI;
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    fake = await startFakeOpenAI();
    server = await startServer({
      log: { level: "warn" },
      providers: { llm: { plugin: "openai", options: { baseUrl: fake.url, apiKey: "sk-test", idleTimeoutMs: IDLE_MS } } },
      agents: [
        { id: "gpt", provider: "llm", model: "fake-model" },
        { id: "capped", provider: "llm", model: "fake-model", limits: { maxTaskBytes: 32, maxOutputTokens: 50, maxHistoryTokens: 5 } },
      ],
      executor: { retry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 200 } },
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
    await fake?.close();
  });

  it("a stream that stalls after one chunk ends with UNAVAILABLE within ~idleTimeoutMs, closes the upstream and is not retried", async () => {
    const index = fake.requests.length;
    fake.enqueue({ kind: "stream-then-hang", chunks: ["partial"] });
    const call = client.stream(AgentService, A.executeStream, { agentId: "gpt", task: "stall please" }, { timeoutMs: 10_000 });
    const deltas: string[] = [];
    let deltaAt = 0;
    call.on("data", (m) => {
      if (m.event.case === "delta") {
        deltas.push(m.event.value.text);
        deltaAt = Date.now();
      }
    });

    const err = await statusOf(new Promise((resolve, reject) => (call.on("error", reject), call.on("end", resolve))));

    const waited = Date.now() - deltaAt;
    expect(deltas).toEqual(["partial"]);
    expect(grpc.status[err.code]).toBe("UNAVAILABLE");
    expect(err.details).toContain(`sent nothing for ${IDLE_MS} ms (idleTimeoutMs)`);
    // Ended by the idle timeout, before the call's own 10 s deadline (which would say DEADLINE_EXCEEDED), and
    // not before IDLE_MS: a lower bound, which load only makes hold by more (how soon after: timing.faults).
    expect(waited).toBeGreaterThanOrEqual(IDLE_MS - 50);
    await fake.waitForClose(index, 5000);
    await new Promise((r) => setTimeout(r, 200));
    expect(fake.requests.length - index).toBe(1);
  });

  it("a stall before the first chunk is retried, and the next attempt's answer is returned", async () => {
    const index = fake.requests.length;
    fake.enqueue({ kind: "stream-then-hang", chunks: [] }, { kind: "stream", chunks: ["re", "covered"] });
    const started = Date.now();

    const res = await client.unary(AgentService, A.execute, { agentId: "gpt", task: "x" }, { timeoutMs: 10_000 });

    expect(res.result?.output).toBe("recovered");
    expect(Date.now() - started).toBeGreaterThanOrEqual(IDLE_MS - 50);
    expect(fake.requests.length - index).toBe(2);
    await fake.waitForClose(index, 5000);
  });

  it("refuses a task over the agent's maxTaskBytes before calling upstream", async () => {
    const index = fake.requests.length;

    const err = await statusOf(client.unary(AgentService, A.execute, { agentId: "capped", task: "t".repeat(33) }));

    expect(grpc.status[err.code]).toBe("INVALID_ARGUMENT");
    expect(err.details).toBe('task: is 33 bytes; the limit for agent "capped" is 32');
    // The other agent keeps the global limit.
    expect((await client.unary(AgentService, A.execute, { agentId: "gpt", task: "t".repeat(33) })).result?.success).toBe(true);
    expect(fake.requests.length - index).toBe(1);
  });

  it("refuses max_tokens above the agent's maxOutputTokens, and sends the cap when the caller asks none", async () => {
    const err = await statusOf(client.unary(AgentService, A.execute, { agentId: "capped", task: "hi", options: { maxTokens: 51 } }));
    expect(grpc.status[err.code]).toBe("INVALID_ARGUMENT");
    expect(err.details).toBe('options.max_tokens: must be at most 50 for agent "capped"');

    const index = fake.requests.length;
    await client.unary(AgentService, A.execute, { agentId: "capped", task: "hi" });
    await client.unary(AgentService, A.execute, { agentId: "capped", task: "hi", options: { maxTokens: 20 } });
    await client.unary(AgentService, A.execute, { agentId: "gpt", task: "hi" });
    expect(fake.requests[index]!.body.max_tokens).toBe(50);
    expect(fake.requests[index + 1]!.body.max_tokens).toBe(20);
    expect(fake.requests[index + 2]!.body).not.toHaveProperty("max_tokens");
  });

  it("sends only the newest history that fits the agent's maxHistoryTokens", async () => {
    const { session } = await client.unary(SessionService, SessionService.method.createSession, { userId: "u", agentId: "capped" });
    const sessionId = session!.sessionId;
    fake.enqueue({ kind: "stream", chunks: ["ok"] }, { kind: "stream", chunks: ["fine"] }, { kind: "stream", chunks: ["done"] });
    await client.unary(AgentService, A.execute, { sessionId, task: "a".repeat(20) }); // 5 tokens
    await client.unary(AgentService, A.execute, { sessionId, task: "b".repeat(8) }); // 2 tokens
    const index = fake.requests.length;

    await client.unary(AgentService, A.execute, { sessionId, task: "third" });

    // Newest first: "fine" (1) + "bbbbbbbb" (2) + "ok" (1) = 4 fit in 5; the 5-token first task does not,
    // and the answer "ok" goes with it: a window starts at a user message, so no answer (or tool result) is cut from its ask.
    expect(fake.requests[index]!.body.messages).toEqual([
      { role: "user", content: "b".repeat(8) },
      { role: "assistant", content: "fine" },
      { role: "user", content: "third" },
    ]);
    const stored = await client.unary(SessionService, SessionService.method.getSession, { sessionId, userId: "u" });
    expect(stored.session?.messages).toHaveLength(6);
  });
});
