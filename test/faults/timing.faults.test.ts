// Timing promises taken out of the ordinary suite (issue #14, item 7): there the tests assert the
// outcome and the order of events, which load cannot change; here, where the suite runs on its
// own, they also assert how soon. Moved from e2e/openai.e2e (cancel → upstream closed within
// 100 ms), e2e/provider-stall.e2e (a stall ends soon after idleTimeoutMs) and e2e/limits.e2e
// (each deadline ends the call soon after its time).
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { crashLines } from "./support.ts";

const A = AgentService.method;
const IDLE_MS = 300;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How long `p` took to settle, and its value. */
async function timed<T>(p: Promise<T>): Promise<{ ms: number; value: T }> {
  const start = Date.now();
  const value = await p;
  return { ms: Date.now() - start, value };
}

describe("timing promises", () => {
  let fake: FakeOpenAI;
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    fake = await startFakeOpenAI();
    server = await startServer({
      log: { level: "warn" },
      server: { limits: { defaultDeadlineMs: 700, maxDeadlineMs: 1400 } },
      providers: {
        llm: { plugin: "openai", options: { baseUrl: fake.url, apiKey: "sk-test", idleTimeoutMs: IDLE_MS } },
        slow: { plugin: "echo", options: { tokenDelayMs: 100 } },
      },
      agents: [
        { id: "gpt", provider: "llm", model: "fake-model" },
        { id: "slow", provider: "slow", model: "echo-slow" },
      ],
      executor: { retry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 200 } },
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
    // A cold first call (code not yet compiled, no pooled connection) would count against the bounds below.
    const warm = await client.unary(AgentService, A.execute, { agentId: "gpt", task: "warm up" }, { timeoutMs: 10_000 });
    expect(warm.result?.output).toContain("warm up");
  });
  afterAll(async () => {
    client?.close();
    expect(crashLines(server)).toEqual([]);
    expect(await server?.stop(), server?.stderr()).toBe(0);
    await fake?.close();
  });

  it("a gRPC client cancelling after two chunks: the upstream request is closed within 100 ms", async () => {
    const index = fake.requests.length;
    fake.enqueue({ kind: "stream", chunks: Array.from({ length: 40 }, (_, i) => `w${i} `), delayMs: 50 });
    const call = client.stream(AgentService, A.executeStream, { agentId: "gpt", task: "long answer" });
    let deltas = 0;
    let cancelledAt = 0;
    await new Promise<void>((resolve) => {
      call.on("data", (m) => {
        if (m.event.case === "delta" && ++deltas === 2) {
          cancelledAt = Date.now();
          call.cancel();
          resolve();
        }
      });
      call.on("error", () => resolve());
    });
    const closedAt = await fake.waitForClose(index, 2000);
    expect(closedAt - cancelledAt).toBeLessThan(100);
    // Little generated, and billed, for a caller who left.
    await sleep(200);
    expect(fake.requests[index]!.chunksWritten).toBeLessThan(6);
  });

  it("a stream that stalls after one chunk ends with UNAVAILABLE within idleTimeoutMs + 1.5 s", async () => {
    fake.enqueue({ kind: "stream-then-hang", chunks: ["partial"] });
    const call = client.stream(AgentService, A.executeStream, { agentId: "gpt", task: "stall please" }, { timeoutMs: 10_000 });
    let deltaAt = 0;
    call.on("data", (m) => {
      if (m.event.case === "delta") deltaAt = Date.now();
    });
    const err = await statusOf(new Promise((resolve, reject) => (call.on("error", reject), call.on("end", resolve))));
    const waited = Date.now() - deltaAt;
    expect(grpc.status[err.code]).toBe("UNAVAILABLE");
    expect(waited).toBeGreaterThanOrEqual(IDLE_MS - 50);
    expect(waited).toBeLessThan(IDLE_MS + 1500);
  });

  it("each deadline ends its call within 900 ms of its time: the client's, the default, the cap", async () => {
    // The slow agent would answer after ~3 s (30 words at 100 ms).
    const task = Array.from({ length: 30 }, (_, i) => `w${i}`).join(" ");
    const [none, long, short] = await Promise.all([
      timed(statusOf(client.unary(AgentService, A.execute, { agentId: "slow", task }))),
      timed(statusOf(client.unary(AgentService, A.execute, { agentId: "slow", task }, { timeoutMs: 60_000 }))),
      timed(statusOf(client.unary(AgentService, A.execute, { agentId: "slow", task }, { timeoutMs: 300 }))),
    ]);
    for (const [call, target] of [
      [none, 700],
      [long, 1400],
      [short, 300],
    ] as const) {
      expect(call.value.code).toBe(grpc.status.DEADLINE_EXCEEDED);
      expect(call.ms).toBeGreaterThanOrEqual(target - 50);
      expect(call.ms).toBeLessThan(target + 900);
    }
  });
});
