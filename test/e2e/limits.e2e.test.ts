import { create, toBinary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { connect as http2Connect, type ClientHttp2Session } from "node:http2";
import { gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService, ExecuteRequestSchema } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { EventService } from "../../src/gen/qingyu/agent/v1/event_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { runCli, runtime, startServer, writeConfig, type ServerProcess } from "../support/server-process.ts";

const A = AgentService.method;
const LIMIT = 32 * 1024;
const EXECUTE = "/qingyu.agent.v1.AgentService/Execute";

const base = {
  log: { level: "warn" },
  providers: { echo: { plugin: "echo" }, slow: { plugin: "echo", options: { tokenDelayMs: 100 } } },
  agents: [
    { id: "echo", provider: "echo", model: "echo-1" },
    { id: "slow", provider: "slow", model: "echo-slow" },
  ],
  plugins: { dirs: [] },
};

/** One gRPC call by hand, so the test decides whether the frame is gzip-compressed. */
function rawGrpc(session: ClientHttp2Session, path: string, message: Uint8Array, gzip: boolean): Promise<{ status: string; message: string }> {
  const payload = gzip ? gzipSync(message) : Buffer.from(message);
  const frame = Buffer.alloc(5 + payload.length);
  frame[0] = gzip ? 1 : 0;
  frame.writeUInt32BE(payload.length, 1);
  payload.copy(frame, 5);
  return new Promise((resolve, reject) => {
    const req = session.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc",
      te: "trailers",
      ...(gzip ? { "grpc-encoding": "gzip" } : {}),
    });
    let meta: Record<string, unknown> = {};
    req.on("response", (headers) => (meta = { ...headers }));
    req.on("trailers", (trailers) => (meta = { ...meta, ...trailers }));
    req.on("data", () => undefined);
    req.on("error", reject);
    req.on("close", () => resolve({ status: String(meta["grpc-status"]), message: decodeURIComponent(String(meta["grpc-message"] ?? "")) }));
    req.end(frame);
  });
}

const executeBytes = (task: string) => toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: "echo", task }));

async function connectCall(port: number, path: string, body: unknown, headers: Record<string, string> = {}, gzip = false) {
  const json = JSON.stringify(body);
  const res = await fetch(`http://127.0.0.1:${port}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...(gzip ? { "content-encoding": "gzip" } : {}), ...headers },
    body: gzip ? gzipSync(json) : json,
  });
  const text = await res.text();
  return { status: res.status, body: (text.startsWith("{") ? JSON.parse(text) : {}) as Record<string, any> };
}

/** How long a call took to fail, and how; `order` gets `name` when it settles. */
async function timed<T>(p: Promise<T>, name = "", order: string[] = []): Promise<{ ms: number; value: T }> {
  const start = Date.now();
  const value = await p;
  order.push(name);
  return { ms: Date.now() - start, value };
}

// A deadline fires after its time, never before (50 ms for timer rounding): a lower bound, which load cannot
// fail. How much later it fires is load's; the tests assert the order the deadlines end in instead
// (how soon after its time each ends is timed in faults/timing.faults).
const notBefore = (ms: number, target: number) => expect(ms).toBeGreaterThanOrEqual(target - 50);
/** Whether `first` settled before `then` did. */
const before = (order: string[], first: string, then: string) =>
  expect(order.indexOf(first), `${first} before ${then}: ${order}`).toBeLessThan(order.indexOf(then));

describe(`message, metadata and deadline limits (server on ${runtime})`, () => {
  let server: ServerProcess;
  let client: TestClient;
  beforeAll(async () => {
    server = await startServer({
      ...base,
      server: {
        limits: {
          maxMessageBytes: LIMIT,
          maxMetadataBytes: 4096,
          defaultDeadlineMs: 700,
          maxDeadlineMs: 1400,
          // Above the four calls the deadline tests make at once: a stream opened the moment a cancelled one
          // frees its slot on the client can still find the slot taken on the server, which Node 22+ refuses
          // with ENHANCE_YOUR_CALM (RESOURCE_EXHAUSTED), a race those tests are not about.
          maxConcurrentStreams: 5,
          keepaliveTimeMs: 300,
          maxConnectionIdleMs: 1000,
        },
      },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
  });

  it("refuses an oversize message on the gRPC port with RESOURCE_EXHAUSTED, and serves the next call", async () => {
    const big = await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", task: "x".repeat(LIMIT) }));
    expect(big.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    const near = await client.unary(AgentService, A.execute, { agentId: "echo", task: "y".repeat(LIMIT - 100) });
    expect(near.result?.output).toHaveLength(LIMIT - 100 + "[history=0] ".length);
  });

  it("counts the decompressed size: a small gzip frame that inflates past the limit is refused", async () => {
    const inflating = executeBytes("z".repeat(4 * LIMIT));
    expect(gzipSync(inflating).length).toBeLessThan(LIMIT / 8);
    const session = http2Connect(`http://127.0.0.1:${server.grpcPort}`);
    try {
      const refused = await rawGrpc(session, EXECUTE, inflating, true);
      expect(refused.status).toBe(String(grpc.status.RESOURCE_EXHAUSTED));
      // The same framing under the limit is served, so the size is what was refused.
      expect(await rawGrpc(session, EXECUTE, executeBytes("small and compressed"), true)).toMatchObject({ status: "0" });
      expect(await rawGrpc(session, EXECUTE, executeBytes("plain"), false)).toMatchObject({ status: "0" });
    } finally {
      session.destroy();
    }
  });

  it("refuses an oversize or inflating body on the Connect port with resource_exhausted, and serves the next call", async () => {
    const big = await connectCall(server.httpPort, "qingyu.agent.v1.AgentService/Execute", { agentId: "echo", task: "x".repeat(LIMIT) });
    expect(big).toMatchObject({ status: 429, body: { code: "resource_exhausted" } });
    const inflating = await connectCall(server.httpPort, "qingyu.agent.v1.AgentService/Execute", { agentId: "echo", task: "z".repeat(4 * LIMIT) }, {}, true);
    expect(inflating).toMatchObject({ status: 429, body: { code: "resource_exhausted" } });
    const ok = await connectCall(server.httpPort, "qingyu.agent.v1.AgentService/Execute", { agentId: "echo", task: "fine" }, {}, true);
    expect(ok).toMatchObject({ status: 200, body: { result: { output: "[history=0] fine" } } });
  });

  it("refuses request metadata over maxMetadataBytes on both ports", async () => {
    const big = await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", task: "hi" }, { metadata: { "x-padding": "p".repeat(5000) } }));
    expect(big.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect(big.details).toContain("server.limits.maxMetadataBytes");
    expect(
      (await client.unary(AgentService, A.execute, { agentId: "echo", task: "hi" }, { metadata: { "x-padding": "p".repeat(1000) } })).result?.success,
    ).toBe(true);
    // HTTP/1.1: Node's parser answers 431 before the handler runs.
    const connectBig = await connectCall(
      server.httpPort,
      "qingyu.agent.v1.AgentService/Execute",
      { agentId: "echo", task: "hi" },
      { "x-padding": "p".repeat(5000) },
    );
    expect(connectBig.status).toBe(431);
    const connectOk = await connectCall(
      server.httpPort,
      "qingyu.agent.v1.AgentService/Execute",
      { agentId: "echo", task: "hi" },
      { "x-padding": "p".repeat(1000) },
    );
    expect(connectOk.status).toBe(200);
  });

  // The slow agent would answer after ~3 s (30 words at 100 ms).
  const slowTask = Array.from({ length: 30 }, (_, i) => `w${i}`).join(" ");

  it("applies defaultDeadlineMs to a gRPC call without a deadline and caps a longer one at maxDeadlineMs", async () => {
    const order: string[] = [];
    const [none, long, short, stream] = await Promise.all([
      timed(statusOf(client.unary(AgentService, A.execute, { agentId: "slow", task: slowTask })), "none", order),
      timed(statusOf(client.unary(AgentService, A.execute, { agentId: "slow", task: slowTask }, { timeoutMs: 60_000 })), "long", order),
      timed(statusOf(client.unary(AgentService, A.execute, { agentId: "slow", task: slowTask }, { timeoutMs: 300 })), "short", order),
      timed(statusOf(client.collect(client.stream(AgentService, A.executeStream, { agentId: "slow", task: slowTask }))), "stream", order),
    ]);
    // All ended by a deadline, none by the answer (~3 s): the default applied, and 60 s was capped.
    for (const call of [none, long, short, stream]) expect(call.value.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // The client's 300 ms first, the default 700 ms next, the 1,400 ms cap last.
    for (const defaulted of ["none", "stream"]) {
      before(order, "short", defaulted);
      before(order, defaulted, "long");
    }
    notBefore(none.ms, 700);
    notBefore(long.ms, 1400);
    notBefore(short.ms, 300);
    notBefore(stream.ms, 700);
  });

  it("applies the same deadlines on the Connect port", async () => {
    const path = "qingyu.agent.v1.AgentService/Execute";
    const order: string[] = [];
    const [none, long] = await Promise.all([
      timed(connectCall(server.httpPort, path, { agentId: "slow", task: slowTask }), "none", order),
      timed(connectCall(server.httpPort, path, { agentId: "slow", task: slowTask }, { "connect-timeout-ms": "60000" }), "long", order),
    ]);
    for (const call of [none, long]) expect(call.value.body.code).toBe("deadline_exceeded");
    before(order, "none", "long");
    notBefore(none.ms, 700);
    notBefore(long.ms, 1400);
  });

  it("leaves event subscriptions open past both deadlines", async () => {
    const sub = client.stream(EventService, EventService.method.subscribe, {});
    const ended = new Promise<string>((resolve) => {
      sub.on("error", (err: grpc.ServiceError) => resolve(`error ${err.code}`));
      sub.on("end", () => resolve("end"));
    });
    sub.on("data", () => undefined);
    const outcome = await Promise.race([ended, new Promise((r) => setTimeout(r, 2000, "open"))]);
    expect(outcome).toBe("open");
    sub.cancel();
    expect(await ended).toBe(`error ${grpc.status.CANCELLED}`);
  });

  it("advertises maxConcurrentStreams, pings an open connection and sends an idle one away", async () => {
    const session = http2Connect(`http://127.0.0.1:${server.grpcPort}`);
    const started = Date.now();
    const seen: string[] = [];
    const pinged = new Promise<void>((resolve) => session.once("ping", () => resolve(void seen.push("ping"))));
    const away = new Promise<number>((resolve) => session.once("goaway", () => (seen.push("goaway"), resolve(Date.now() - started))));
    const settings = await new Promise<{ maxConcurrentStreams?: number }>((resolve) => session.once("remoteSettings", resolve));
    expect(settings.maxConcurrentStreams).toBe(5);
    await pinged;
    // Pinged (every 300 ms) while open, and sent away only once idle for maxConnectionIdleMs (1 s): not before it.
    expect(await away).toBeGreaterThanOrEqual(950);
    expect(seen).toEqual(["ping", "goaway"]);
    session.destroy();
  });
});

// Its own server: grpc-js (1.14) drops a connection whose keepalive ping falls in its age grace, calls and all.
describe(`maxConnectionAgeMs on the gRPC port (server on ${runtime})`, () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ ...base, server: { httpPort: null, limits: { maxConnectionAgeMs: 1500 } } });
  });
  afterAll(async () => {
    expect(await server?.stop()).toBe(0);
  });

  it("lets a call in flight finish when its connection reaches maxConnectionAgeMs", async () => {
    const session = http2Connect(`http://127.0.0.1:${server.grpcPort}`);
    const started = Date.now();
    let goawayAt = 0;
    session.once("goaway", () => (goawayAt = Date.now() - started));
    // ~2.5 s of streaming on one connection: past its age (1.5 s ± 10%), never idle.
    const words = Array.from({ length: 25 }, (_, i) => `w${i}`).join(" ");
    const req = toBinary(ExecuteRequestSchema, create(ExecuteRequestSchema, { agentId: "slow", task: words }));
    const done = await rawGrpc(session, "/qingyu.agent.v1.AgentService/ExecuteStream", req, false);
    expect(done.status).toBe("0");
    expect(goawayAt).toBeGreaterThan(1300);
    expect(goawayAt).toBeLessThan(Date.now() - started);
    session.destroy();
  });
});

describe(`limit config errors (server on ${runtime})`, () => {
  it("a default deadline above the cap stops start-up with exit 2 naming the key", async () => {
    const res = await runCli([
      "serve",
      "--config",
      writeConfig({ ...base, server: { limits: { defaultDeadlineMs: 5000, maxDeadlineMs: 1000 } } }),
      "--port",
      "0",
      "--http-port",
      "0",
    ]);
    expect(res.code).toBe(2);
    expect(res.stderr).toContain("server.limits.defaultDeadlineMs: must not exceed maxDeadlineMs (1000)");
  });
});
