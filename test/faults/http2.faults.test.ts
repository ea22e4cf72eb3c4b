// HTTP/2 abuse of the gRPC port with node:http2 (and raw TCP): rapid reset, oversized header
// blocks, a thousand idle connections. The server may refuse a stream or close the abusive
// connection; what it must not do is crash, leak the calls it started, or make another
// client wait.
import { create, toBinary } from "@bufbuild/protobuf";
import http2 from "node:http2";
import net from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, ExecuteRequestSchema } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { crashLines, expectServing, grpcFrame, rawGrpc, rssMiB } from "./support.ts";

const EXECUTE = "/qingyu.agent.v1.AgentService/Execute";
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
// The slow agent: a call the rapid reset abandons would run ~1 s if it were not cancelled.
const slowCall = grpcFrame(toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: "slow", task: "a b c d e f g h i" })));

describe("HTTP/2 abuse", () => {
  let server: ServerProcess;

  beforeAll(async () => {
    server = await startServer({
      log: { level: "warn" },
      server: { shutdownGraceMs: 10_000 },
      providers: { echo: { plugin: "echo" }, slow: { plugin: "echo", options: { tokenDelayMs: 100 } } },
      agents: [
        { id: "echo", provider: "echo", model: "echo-1" },
        { id: "slow", provider: "slow", model: "slow-1" },
      ],
      plugins: { dirs: [] },
    });
  });
  afterAll(async () => {
    await server?.stop("SIGKILL");
  });

  it("rapid reset: 2,000 streams opened and cancelled on one connection; another client is unaffected", async () => {
    const bystander = new TestClient(server.grpcPort);
    const session = http2.connect(`http://127.0.0.1:${server.grpcPort}`);
    let goaway: number | undefined;
    session.on("goaway", (code) => (goaway = code));
    session.on("error", () => undefined); // the server closing the connection is an acceptable answer
    await new Promise((r) => session.once("connect", r));
    let opened = 0;
    try {
      // Connected before the attack starts, then one call per batch of resets, so its calls
      // really are in flight while the server handles the flood.
      await bystander.unary(AgentService, AgentService.method.execute, { agentId: "echo", task: "warm" });
      const calls: Promise<{ result?: { output: string } }>[] = [];
      for (let batch = 0; batch < 20 && !session.closed && !session.destroyed; batch++) {
        calls.push(bystander.unary(AgentService, AgentService.method.execute, { agentId: "echo", task: `bystander ${batch}` }, { timeoutMs: 10_000 }));
        for (let i = 0; i < 100 && !session.closed && !session.destroyed; i++) {
          const req = session.request({ ":method": "POST", ":path": EXECUTE, "content-type": "application/grpc", te: "trailers" });
          req.on("error", () => undefined);
          req.write(slowCall);
          req.close(http2.constants.NGHTTP2_CANCEL);
          opened++;
        }
        await new Promise((r) => setImmediate(r));
      }
      const bystanderCalls = Promise.all(calls);
      const answers = await bystanderCalls;
      expect(answers.map((a) => a.result?.output)).toEqual(answers.map((_, i) => `[history=0] bystander ${i}`));
      console.log(`rapid reset: ${opened} streams sent and reset; server GOAWAY code ${goaway ?? "none"}`);
    } finally {
      session.destroy();
      bystander.close();
    }
    expect(opened).toBeGreaterThan(0);
    await expectServing(server);
  });

  it.each([
    ["200 headers", Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`x-h-${i}`, "v".repeat(10)]))],
    ["a 1 MiB header value", { "x-big": "a".repeat(1 << 20) }],
  ])("%s: the stream is refused, the server is fine", async (_name, headers) => {
    const reply = await rawGrpc(server.grpcPort, EXECUTE, slowCall, headers);
    // Refused below gRPC (RST_STREAM / GOAWAY), or a gRPC error status: never served.
    expect(reply.grpcStatus ?? -1).not.toBe(0);
    expect(reply.error ?? reply.grpcMessage).toBeTruthy();
    await expectServing(server);
  });

  it("a 1 MiB header on the HTTP port is 431, the server is fine", async () => {
    const res = await fetch(`http://127.0.0.1:${server.httpPort}/qingyu.agent.v1.AgentService/Execute`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-big": "a".repeat(1 << 20) },
      body: "{}",
      signal: AbortSignal.timeout(5000),
    });
    expect(res.status).toBe(431);
    await expectServing(server);
  });

  it("1,000 idle connections (500 silent TCP, 500 HTTP/2 sessions): a normal call still works", async () => {
    const before = rssMiB(server.child.pid!);
    const sockets = Array.from({ length: 500 }, () => net.connect(server.grpcPort, "127.0.0.1").on("error", () => undefined));
    const sessions = Array.from({ length: 500 }, () => http2.connect(`http://127.0.0.1:${server.grpcPort}`).on("error", () => undefined));
    try {
      await Promise.all(sockets.map((s) => new Promise((r) => (s.readyState === "open" ? r(null) : s.once("connect", r)))));
      await Promise.all(sessions.map((s) => new Promise((r) => (s.connecting ? s.once("connect", r) : r(null)))));
      await sleep(200);
      const during = rssMiB(server.child.pid!);
      console.log(`1,000 idle connections: RSS ${before.toFixed(0)} → ${during.toFixed(0)} MiB`);
      expect(sockets.filter((s) => !s.destroyed)).toHaveLength(500);
      await expectServing(server);
    } finally {
      for (const s of sockets) s.destroy();
      for (const s of sessions) s.destroy();
    }
  });

  it("afterwards: no call the abuse started is still running (SIGTERM exits at once, 0), nothing on stderr", async () => {
    const signalled = Date.now();
    expect(await server.stop(), server.stderr()).toBe(0);
    // Were any of the 2,000 reset calls still in flight, the server would wait for them (grace 10 s).
    expect(Date.now() - signalled).toBeLessThan(3000);
    expect(crashLines(server)).toEqual([]);
  });
});
