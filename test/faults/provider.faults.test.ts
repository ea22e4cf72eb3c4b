// An upstream that hangs, misbehaves mid-stream or answers bytes that are not SSE.
// openai.e2e already covers 500/503/200 retried to success, 429 with Retry-After,
// 400/401/403/404 not retried, a 300 ms deadline on a hang and a gRPC cancel after two
// chunks; these are the tighter and the malformed cases, on both ports.
import * as grpc from "@grpc/grpc-js";
import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { chunk, connectCall, crashLines, expectServing, sse, startRawUpstream, type RawAnswer, type RawUpstream, finish } from "./support.ts";

const A = AgentService.method;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("provider faults", () => {
  let fake: FakeOpenAI;
  let raw: RawUpstream;
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    [fake, raw] = await Promise.all([startFakeOpenAI(), startRawUpstream()]);
    server = await startServer({
      log: { level: "warn" },
      providers: {
        fake: { plugin: "openai", options: { baseUrl: fake.url, apiKey: "sk-test" } },
        raw: { plugin: "openai", options: { baseUrl: raw.url, apiKey: "sk-test" } },
        echo: { plugin: "echo" },
      },
      agents: [
        { id: "gpt", provider: "fake", model: "fake-model" },
        { id: "raw", provider: "raw", model: "raw-model" },
        { id: "echo", provider: "echo", model: "echo-1" },
      ],
      executor: { retry: { maxAttempts: 3, baseDelayMs: 20, maxDelayMs: 2000 } },
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
    // The first call through a provider pays for a cold start (code not yet compiled, no pooled
    // connection); on a loaded machine that alone can outlast the 100 ms deadline below, before
    // the request reaches the upstream. One ordinary call first (the fake echoes when nothing is queued).
    const warm = await client.unary(AgentService, A.execute, { agentId: "gpt", task: "warm up" }, { timeoutMs: 10_000 });
    expect(warm.result?.output).toContain("warm up");
  });
  afterAll(async () => {
    client?.close();
    expect(crashLines(server)).toEqual([]);
    expect(await server?.stop(), server?.stderr()).toBe(0);
    await Promise.all([fake?.close(), raw?.close()]);
  });

  it("a 100 ms deadline against a hanging upstream: DEADLINE_EXCEEDED well under a second, upstream socket closed", async () => {
    const index = fake.requests.length;
    fake.enqueue({ kind: "hang" });
    const started = Date.now();
    const res = await statusOf(client.unary(AgentService, A.execute, { agentId: "gpt", task: "x" }, { timeoutMs: 100 }));
    expect(grpc.status[res.code]).toBe("DEADLINE_EXCEEDED");
    expect(Date.now() - started).toBeLessThan(1000);
    expect((await fake.waitForClose(index, 1000)) - started).toBeLessThan(1000);
    await expectServing(server);
  });

  it("a deadline after three streamed chunks: the client keeps them, then DEADLINE_EXCEEDED, upstream closed", async () => {
    const index = fake.requests.length;
    fake.enqueue({ kind: "stream-then-hang", chunks: ["a ", "b ", "c "] });
    const deltas: string[] = [];
    const call = client.stream(AgentService, A.executeStream, { agentId: "gpt", task: "x" }, { timeoutMs: 300 });
    call.on("data", (m) => m.event.case === "delta" && deltas.push(m.event.value.text));
    const res = await statusOf(client.collect(call));
    expect(grpc.status[res.code]).toBe("DEADLINE_EXCEEDED");
    expect(deltas).toEqual(["a ", "b ", "c "]);
    await fake.waitForClose(index, 1000);
  });

  it("Connect with connect-timeout-ms 100 against a hang: deadline_exceeded under a second, upstream closed", async () => {
    const index = fake.requests.length;
    fake.enqueue({ kind: "hang" });
    const started = Date.now();
    const res = await connectCall(server.httpPort, "qingyu.agent.v1.AgentService/Execute", '{"agentId":"gpt","task":"x"}', { "connect-timeout-ms": "100" });
    expect(res.json?.code).toBe("deadline_exceeded");
    expect(Date.now() - started).toBeLessThan(1000);
    await fake.waitForClose(index, 1000);
  });

  it("a Connect client that aborts after three chunks: upstream closed within ~100 ms, nothing more generated", async () => {
    const index = fake.requests.length;
    const total = 40;
    fake.enqueue({ kind: "stream", chunks: Array.from({ length: total }, (_, i) => `w${i} `), delayMs: 30 });
    const agents = createClient(AgentService, createConnectTransport({ baseUrl: `http://127.0.0.1:${server.httpPort}`, httpVersion: "1.1" }));
    const abort = new AbortController();
    let deltas = 0;
    let abortedAt = 0;
    try {
      for await (const m of agents.executeStream({ agentId: "gpt", task: "long" }, { signal: abort.signal })) {
        if (m.event.case === "delta" && ++deltas === 3) {
          abortedAt = Date.now();
          abort.abort();
        }
      }
    } catch {
      // the abort ends the loop with a cancel error
    }
    expect(deltas).toBe(3);
    const closedAt = await fake.waitForClose(index, 1000);
    expect(closedAt - abortedAt).toBeLessThan(150);
    const written = fake.requests[index]!.chunksWritten;
    await sleep(300);
    expect(fake.requests[index]!.chunksWritten).toBe(written);
    expect(written).toBeLessThan(8);
  });

  it("a Retry-After longer than the time left is not waited for: the call fails fast instead of past its deadline", async () => {
    const first = fake.requests.length;
    fake.enqueue({ kind: "error", status: 503, headers: { "retry-after": "1" } });
    const started = Date.now();
    const res = await statusOf(client.unary(AgentService, A.execute, { agentId: "gpt", task: "x" }, { timeoutMs: 500 }));
    expect(grpc.status[res.code]).toBe("UNAVAILABLE");
    expect(res.details).toContain("503");
    expect(Date.now() - started).toBeLessThan(500);
    expect(fake.requests.length - first).toBe(1);
    await expectServing(server);
  });

  const errorEvent = (message: string) => `data: ${JSON.stringify({ error: { message, type: "server_error" } })}`;

  // Each: what the upstream does per attempt, the status the client must get, how many attempts.
  type Case = { name: string; answers: RawAnswer[]; code: string; attempts: number };
  const malformed: Case[] = [
    // Broken upstream output is the upstream's failure: UNAVAILABLE, retried.
    { name: "SSE data that is not JSON", answers: [1, 2, 3].map(() => sse(["data: {not json"])), code: "UNAVAILABLE", attempts: 3 },
    { name: "an error event before any token, three times", answers: [1, 2, 3].map(() => sse([errorEvent("overloaded")])), code: "UNAVAILABLE", attempts: 3 },
    {
      name: "an error event, then a good stream",
      answers: [sse([errorEvent("overloaded")]), sse([chunk("fine"), finish(), "data: [DONE]"])],
      code: "OK",
      attempts: 2,
    },
    // A unary Execute reads the whole answer: a failure part-way reached no client, so it is retried
    // (ExecuteStream, below, is not: its client saw the first token).
    {
      name: "an error event after the first token",
      answers: [1, 2, 3].map(() => sse([chunk("half"), errorEvent("died")])),
      code: "UNAVAILABLE",
      attempts: 3,
    },
    { name: "the connection cut after the first token", answers: [1, 2, 3].map(() => sse([chunk("half")], "cut")), code: "UNAVAILABLE", attempts: 3 },
    {
      name: "the connection reset before any answer, then a good stream",
      answers: [(q) => q.socket.destroy(), sse([chunk("fine"), finish(), "data: [DONE]"])],
      code: "OK",
      attempts: 2,
    },
  ];

  const run = async ({ answers }: Case) => {
    const first = raw.count();
    raw.enqueue(...answers);
    const outcome = await client.unary(AgentService, A.execute, { agentId: "raw", task: "x" }, { timeoutMs: 10_000 }).then(
      (res) => ({ code: 0, details: res.result?.output ?? "" }),
      (err: grpc.ServiceError) => ({ code: err.code, details: err.details }),
    );
    return { ...outcome, attempts: raw.count() - first };
  };

  it.each(malformed)("$name: $code after $attempts attempt(s), process fine", async (c) => {
    const outcome = await run(c);
    expect(grpc.status[outcome.code], outcome.details).toBe(c.code);
    if (c.code !== "OK") expect(outcome.details).toContain("openai provider");
    expect(outcome.attempts).toBe(c.attempts);
    await expectServing(server);
  });

  // Streamed, a failure after the first token is not retried: the client has part of an answer.
  it.each([
    { name: "an error event after the first token", answers: [sse([chunk("half"), errorEvent("died")])], deltas: 1 },
    { name: "the connection cut after the first token", answers: [sse([chunk("half")], "cut")], deltas: 1 },
    { name: "a stream that ends after one token without a finish reason", answers: [sse([chunk("half")])], deltas: 1 },
  ] as Array<{ name: string; answers: RawAnswer[]; deltas: number }>)(
    "ExecuteStream, $name: UNAVAILABLE after one attempt, the token already out",
    async (c) => {
      const first = raw.count();
      raw.enqueue(...c.answers);
      const seen: string[] = [];
      const failure = await (async () => {
        for await (const m of client.stream(AgentService, A.executeStream, { agentId: "raw", task: "x" }, { timeoutMs: 10_000 })) seen.push(m.event.case ?? "");
      })().then(
        () => undefined,
        (err: grpc.ServiceError) => err,
      );
      expect(grpc.status[failure?.code ?? 0], failure?.details).toBe("UNAVAILABLE");
      expect(failure?.details).toContain("openai provider");
      expect(seen.filter((e) => e === "delta")).toHaveLength(c.deltas);
      expect(raw.count() - first).toBe(1);
      await expectServing(server);
    },
  );

  // An answer without any finish_reason was cut short (or is not an OpenAI stream): UNAVAILABLE,
  // retried only while nothing reached the client.
  it.each([
    {
      name: "a 200 that is HTML, not SSE",
      answers: [
        (_q, s) => {
          s.writeHead(200, { "content-type": "text/html" });
          s.end("<html>gateway</html>");
        },
      ],
      code: "UNAVAILABLE",
      attempts: 3,
    },
    {
      name: "a stream that ends cleanly after one token, with no finish_reason and no [DONE]",
      answers: [1, 2, 3].map(() => sse([chunk("half")])),
      code: "UNAVAILABLE",
      attempts: 3,
    },
  ] as Case[])("$name is not a success: $code after $attempts attempt(s)", async (c) => {
    const outcome = await run(c);
    expect(grpc.status[outcome.code], outcome.details).toBe(c.code);
    expect(outcome.details).toContain("without a finish reason");
    expect(outcome.attempts).toBe(c.attempts);
    await expectServing(server);
  });
});
