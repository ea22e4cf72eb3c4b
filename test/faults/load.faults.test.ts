// Concurrency on one session, and a burst of 1,000 streams over 10 connections with the
// server's memory measured before, at the peak and after.
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, ExecuteStreamRequestSchema, ExecuteStreamResponseSchema, type ExecuteStreamResponse } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { connectCall, crashLines, expectServing, rssMiB } from "./support.ts";

const A = AgentService.method;
const S = SessionService.method;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("concurrency and load", () => {
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    server = await startServer({
      log: { level: "warn" },
      providers: {
        echo: { plugin: "echo" },
        paced: { plugin: "echo", options: { tokenDelayMs: 10 } },
        slow: { plugin: "echo", options: { tokenDelayMs: 20 } },
      },
      agents: [
        { id: "echo", provider: "echo", model: "echo-1" },
        { id: "paced", provider: "paced", model: "paced-1" },
        { id: "slow", provider: "slow", model: "slow-1" },
      ],
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(crashLines(server)).toEqual([]);
    expect(await server?.stop(), server?.stderr()).toBe(0);
  });

  /** Each user message is directly followed by the answer to it: the history is whole turns. */
  function expectWholeTurns(messages: { role: string; content: string }[]): string[] {
    const tasks: string[] = [];
    for (let i = 0; i < messages.length; i += 2) {
      const [user, answer] = [messages[i]!, messages[i + 1]!];
      expect([user.role, answer.role]).toEqual(["user", "assistant"]);
      expect(answer.content).toMatch(new RegExp(`^\\[history=\\d+\\] ${user.content}$`));
      tasks.push(user.content);
    }
    return tasks;
  }

  it("two concurrent Executes on one session (one per port) both succeed and the history stays whole turns", async () => {
    const { session } = await client.unary(SessionService, S.createSession, { userId: "u", agentId: "slow" });
    const sessionId = session!.sessionId;
    // Six words at 20 ms each: the two turns overlap for most of their ~150 ms.
    const task = (who: string) => `turn from ${who} one two three`;
    const [viaGrpc, viaConnect] = await Promise.all([
      client.unary(AgentService, A.execute, { sessionId, userId: "u", task: task("grpc") }),
      connectCall(server.httpPort, "qingyu.agent.v1.AgentService/Execute", JSON.stringify({ sessionId, userId: "u", task: task("connect") })),
    ]);
    expect(viaGrpc.result?.output).toBe(`[history=0] ${task("grpc")}`);
    expect(viaConnect.json?.result?.output).toBe(`[history=0] ${task("connect")}`);
    const got = (await client.unary(SessionService, S.getSession, { sessionId, userId: "u" })).session!;
    expect(got.messages).toHaveLength(4);
    expect(got.version).toBe(2n);
    expect(expectWholeTurns(got.messages).sort()).toEqual([task("connect"), task("grpc")]);
  });

  it("eight concurrent turns on one session: eight whole turns, in the order they finished", async () => {
    const { session } = await client.unary(SessionService, S.createSession, { userId: "u", agentId: "slow" });
    const sessionId = session!.sessionId;
    const tasks = Array.from({ length: 8 }, (_, i) => `task ${i} ${"w ".repeat(i % 3)}end`.replace(/\s+/g, " "));
    await Promise.all(tasks.map((task) => client.unary(AgentService, A.execute, { sessionId, userId: "u", task })));
    const got = (await client.unary(SessionService, S.getSession, { sessionId, userId: "u" })).session!;
    expect(got.messages).toHaveLength(16);
    expect(got.version).toBe(8n);
    expect(expectWholeTurns(got.messages).sort()).toEqual([...tasks].sort());
  });

  it("1,000 concurrent streams over 10 connections all complete, and RSS comes back near its baseline", async () => {
    const pid = server.child.pid!;
    // Warm up first, so lazily loaded code and JIT are in the baseline.
    await Promise.all(Array.from({ length: 50 }, (_, i) => client.unary(AgentService, A.execute, { agentId: "echo", task: `warm ${i}` })));
    await sleep(200);
    const baseline = rssMiB(pid);

    // A local subchannel pool per client: ten real TCP connections, not one shared.
    const clients = Array.from(
      { length: 10 },
      () => new grpc.Client(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure(), { "grpc.use_local_subchannel_pool": 1 }),
    );
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 25);
    const started = Date.now();
    try {
      const outcomes = await Promise.all(Array.from({ length: 1000 }, (_, i) => streamOnce(clients[i % 10]!, `stream ${i} hello`)));
      const failures = outcomes.filter((o) => o !== "completed");
      expect(failures.slice(0, 5)).toEqual([]);
      expect(outcomes).toHaveLength(1000);
    } finally {
      clearInterval(sampler);
      for (const c of clients) c.close();
    }
    const elapsed = Date.now() - started;

    // Give the heap a moment to shrink back; poll rather than sleep a fixed time.
    let after = rssMiB(pid);
    for (let i = 0; i < 50 && after - baseline >= 150; i++) {
      await sleep(100);
      after = rssMiB(pid);
    }
    console.log(
      `1,000 streams / 10 connections in ${elapsed} ms; RSS baseline ${baseline.toFixed(0)} MiB, peak ${peak.toFixed(0)} MiB, after ${after.toFixed(0)} MiB`,
    );
    expect(after - baseline).toBeLessThan(150);
    await expectServing(server);
  });
});

/** One ExecuteStream on `client`; resolves with the last event's case, or the error's status name. */
function streamOnce(client: grpc.Client, task: string): Promise<string> {
  return new Promise((resolve) => {
    const call = client.makeServerStreamRequest(
      `/${AgentService.typeName}/${A.executeStream.name}`,
      (m: unknown) => Buffer.from(toBinary(ExecuteStreamRequestSchema, m as never)),
      (b: Buffer) => fromBinary(ExecuteStreamResponseSchema, b),
      // Five tokens 10 ms apart: each stream lasts ~50 ms, so the 1,000 are open at once.
      create(ExecuteStreamRequestSchema, { agentId: "paced", task }),
      new grpc.Metadata(),
      { deadline: Date.now() + 30_000 },
    );
    let last = "";
    call.on("data", (m: ExecuteStreamResponse) => (last = m.event.case ?? ""));
    call.on("error", (err: grpc.ServiceError) => resolve(grpc.status[err.code] ?? String(err.code)));
    call.on("end", () => resolve(last));
  });
}
