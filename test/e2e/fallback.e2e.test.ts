import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import * as grpc from "@grpc/grpc-js";

const A = AgentService.method;

describe("the fallback provider in front of two OpenAI-compatible upstreams", () => {
  let primary: FakeOpenAI;
  let secondary: FakeOpenAI;
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    [primary, secondary] = await Promise.all([startFakeOpenAI(), startFakeOpenAI()]);
    server = await startServer({
      log: { level: "warn" },
      providers: {
        primary: { plugin: "openai", options: { baseUrl: primary.url, apiKey: "k1" } },
        secondary: { plugin: "openai", options: { baseUrl: secondary.url, apiKey: "k2" } },
        resilient: { plugin: "fallback", options: { providers: ["primary", { provider: "secondary", model: "small-model" }] } },
      },
      agents: [{ id: "assistant", provider: "resilient", model: "big-model" }],
      // One attempt: what is measured is the fallback, not the executor's retries.
      executor: { retry: { maxAttempts: 1 } },
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
    await Promise.all([primary?.close(), secondary?.close()]);
  });

  it("answers from the second upstream when the first is rate-limited, asking it for its own model", async () => {
    primary.enqueue({ kind: "error", status: 429, body: { error: { message: "slow down" } } });
    secondary.enqueue({ kind: "stream", chunks: ["from ", "secondary"] });
    const before = [primary.requests.length, secondary.requests.length];
    const res = await client.unary(AgentService, A.execute, { agentId: "assistant", task: "hello" });
    expect(res.result?.output).toBe("from secondary");
    expect([primary.requests.length - before[0]!, secondary.requests.length - before[1]!]).toEqual([1, 1]);
    expect(primary.requests.at(-1)!.body.model).toBe("big-model");
    expect(secondary.requests.at(-1)!.body.model).toBe("small-model");
  });

  it("does not touch the second upstream when the first answers", async () => {
    primary.enqueue({ kind: "stream", chunks: ["from primary"] });
    const before = secondary.requests.length;
    const res = await client.unary(AgentService, A.execute, { agentId: "assistant", task: "hello" });
    expect(res.result?.output).toBe("from primary");
    expect(secondary.requests.length).toBe(before);
  });

  it("gives the caller the last upstream's status when both are down", async () => {
    primary.enqueue({ kind: "error", status: 503 });
    secondary.enqueue({ kind: "error", status: 503 });
    const { code } = await statusOf(client.unary(AgentService, A.execute, { agentId: "assistant", task: "hello" }));
    expect(code).toBe(grpc.status.UNAVAILABLE);
  });

  it("does not fall back on a request the upstream refuses as invalid", async () => {
    primary.enqueue({ kind: "error", status: 400, body: { error: { message: "bad request" } } });
    const before = secondary.requests.length;
    const { code } = await statusOf(client.unary(AgentService, A.execute, { agentId: "assistant", task: "hello" }));
    expect(code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(secondary.requests.length).toBe(before);
  });
});
