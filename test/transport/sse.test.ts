import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";
import { create, toJson } from "@bufbuild/protobuf";
import { once } from "node:events";
import { createServer, request, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import pino from "pino";
import { afterEach, describe, expect, it, vi } from "vitest";
import { AgentService, ExecuteStreamResponseSchema, type ExecuteStreamRequest, type ExecuteStreamResponse } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { CallTracker } from "../../src/transport/call-tracker.ts";
import { ErrorEdge } from "../../src/transport/edge-error.ts";
import { OutageLog } from "../../src/transport/outage-log.ts";
import type { Admit } from "../../src/transport/preflight.ts";
import { acceptsEventStream, eventName, SseStreams, type SseOptions } from "../../src/transport/sse.ts";
import type { CallContext, HostedService } from "../../src/transport/types.ts";
import { EVENTUALLY } from "../support/limits.ts";
import { EXECUTE_STREAM_PATH, EventStreamReader, parseEventStream, postEventStream } from "../support/sse-client.ts";

const silent = pino({ level: "silent" });
const LIMITS = {
  maxMessageBytes: 1 << 20,
  maxMetadataBytes: 8192,
  maxMapEntries: 4,
  maxMapBytes: 1000,
  defaultDeadlineMs: 60_000,
  maxDeadlineMs: 120_000,
};

type Impl = (req: ExecuteStreamRequest, call: CallContext) => AsyncIterable<ExecuteStreamResponse>;

const started = () => create(ExecuteStreamResponseSchema, { event: { case: "started", value: { agentId: "a", model: "m" } } });
const delta = (text: string) => create(ExecuteStreamResponseSchema, { event: { case: "delta", value: { text } } });
const completed = (output: string) => create(ExecuteStreamResponseSchema, { event: { case: "completed", value: { success: true, output } } });

/** Resolves when `signal` aborts, with its reason. */
const aborted = (signal: AbortSignal) =>
  new Promise<unknown>((resolve) => (signal.aborted ? resolve(signal.reason) : signal.addEventListener("abort", () => resolve(signal.reason))));

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
});

/** The SSE form of a fake ExecuteStream on a real HTTP server, as HttpTransport mounts it. */
async function serve(impl: Impl, options: Partial<Omit<SseOptions, "limits" | "edge">> & { limits?: Partial<typeof LIMITS> } = {}) {
  const tracker = new CallTracker();
  const services: HostedService[] = [{ service: AgentService as never, impl: { executeStream: impl } as never, track: {} }];
  const edge = new ErrorEdge(silent, new OutageLog(silent, 30_000));
  const streams = new SseStreams(services, tracker, { ...options, limits: { ...LIMITS, ...options.limits }, edge });
  const server = createServer((req, res) => {
    if (streams.handles(req)) return void streams.serve(req, res);
    res.writeHead(404).end();
  });
  servers.push(server);
  const connections: Socket[] = [];
  server.on("connection", (socket: Socket) => connections.push(socket));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, tracker, connections };
}

/** Posts and reads the whole answer. */
async function call(base: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await postEventStream(base, body, headers);
  return { status: res.status, headers: res.headers, ...parseEventStream(await res.text()) };
}

const errorOf = (events: { event: string; data: string }[]) => {
  const last = events.at(-1)!;
  expect(last.event).toBe("error");
  return JSON.parse(last.data) as { code: string; message: string; reason: string; metadata: Record<string, string> };
};

describe("which requests are the SSE form", () => {
  it("takes an Accept naming text/event-stream, not */*", () => {
    expect(acceptsEventStream("text/event-stream")).toBe(true);
    expect(acceptsEventStream("application/json, Text/Event-Stream;q=0.9")).toBe(true);
    expect(acceptsEventStream("*/*")).toBe(false);
    expect(acceptsEventStream("text/*")).toBe(false);
    expect(acceptsEventStream(undefined)).toBe(false);
  });

  it("names an event by its message's oneof case", () => {
    const method = AgentService.method.executeStream;
    expect([started(), delta("x"), completed("y")].map((m) => eventName(method, m))).toEqual(["started", "delta", "completed"]);
    expect(eventName(method, create(ExecuteStreamResponseSchema))).toBe("message");
  });

  it("leaves Connect, gRPC-Web and gRPC requests, other methods and other verbs to connect-node", async () => {
    const { base } = await serve(async function* () {
      yield started();
    });
    const status = async (path: string, init: RequestInit) => (await fetch(`${base}${path}`, init)).status;
    const sse = { accept: "text/event-stream" };
    expect(await status(EXECUTE_STREAM_PATH, { method: "POST", headers: { ...sse, "content-type": "application/connect+json" }, body: "" })).toBe(404);
    expect(await status(EXECUTE_STREAM_PATH, { method: "POST", headers: { ...sse, "content-type": "application/grpc-web+proto" }, body: "" })).toBe(404);
    expect(await status(EXECUTE_STREAM_PATH, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).toBe(404);
    expect(await status("/qingyu.agent.v1.AgentService/Execute", { method: "POST", headers: { ...sse, "content-type": "application/json" }, body: "{}" })).toBe(
      404,
    );
    expect(await status(EXECUTE_STREAM_PATH, { method: "PUT", headers: { ...sse, "content-type": "application/json" }, body: "{}" })).toBe(404);
  });
});

describe("the SSE form of a server stream", () => {
  it("sends one event per message, named by its case, with its canonical JSON and ids in order, then ends", async () => {
    const messages = [started(), delta("Hel"), delta("lo\nthere"), completed("Hello\nthere")];
    const seen: ExecuteStreamRequest[] = [];
    const { base, tracker } = await serve(async function* (req) {
      seen.push(req);
      yield* messages;
    });
    const got = await call(base, { agentId: "a", task: "hi", metadata: { k: "v" } });
    expect(got.status).toBe(200);
    expect(got.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(got.events).toEqual(
      messages.map((m, i) => ({ event: m.event.case, id: String(i + 1), data: JSON.stringify(toJson(ExecuteStreamResponseSchema, m)) })),
    );
    expect(seen.map((r) => ({ agentId: r.agentId, task: r.task, metadata: r.metadata }))).toEqual([{ agentId: "a", task: "hi", metadata: { k: "v" } }]);
    expect(tracker.inFlight).toBe(0);
  });

  it("takes a GET's request from its `message` parameter (EventSource), and refuses one from another site", async () => {
    const seen: string[] = [];
    const { base } = await serve(async function* (req) {
      seen.push(req.task);
      yield completed(req.task);
    });
    const url = `${base}${EXECUTE_STREAM_PATH}?message=${encodeURIComponent(JSON.stringify({ agentId: "a", task: "from EventSource" }))}`;
    const same = await fetch(url, { headers: { accept: "text/event-stream", "sec-fetch-site": "same-origin" } });
    expect(parseEventStream(await same.text()).events.map((e) => e.event)).toEqual(["completed"]);
    const cross = await fetch(url, { headers: { accept: "text/event-stream", "sec-fetch-site": "cross-site" } });
    expect(cross.status).toBe(403);
    expect(errorOf(parseEventStream(await cross.text()).events).code).toBe("PERMISSION_DENIED");
    const foreignOrigin = await fetch(url, { headers: { accept: "text/event-stream", origin: "https://evil.example" } });
    expect(foreignOrigin.status).toBe(403);
    const ownOrigin = await fetch(url, { headers: { accept: "text/event-stream", origin: base } });
    expect(ownOrigin.status).toBe(200);
    await ownOrigin.text();
    const missing = await fetch(`${base}${EXECUTE_STREAM_PATH}`, { headers: { accept: "text/event-stream" } });
    expect(missing.status).toBe(400);
    expect(errorOf(parseEventStream(await missing.text()).events).message).toContain("`message` query parameter");
    expect(seen).toEqual(["from EventSource", "from EventSource"]);
  });

  it("refuses a POST body that is not JSON, or is compressed, before running anything", async () => {
    let ran = 0;
    const { base } = await serve(async function* () {
      ran++;
      yield started();
    });
    const form = await call(base, {}, { "content-type": "application/x-www-form-urlencoded" });
    expect(form.status).toBe(400);
    expect(errorOf(form.events)).toMatchObject({ code: "INVALID_ARGUMENT", message: expect.stringContaining("content-type: application/json") });
    const gzip = await call(base, {}, { "content-encoding": "gzip" });
    expect(gzip.status).toBe(501);
    expect(errorOf(gzip.events).code).toBe("UNIMPLEMENTED");
    const bad = await call(base, "not an object");
    expect(bad.status).toBe(400);
    expect(errorOf(bad.events).message).toContain("qingyu.agent.v1.ExecuteStreamRequest");
    expect(ran).toBe(0);
  });

  it("answers a reconnection (Last-Event-ID) with 204 and does not run the task again", async () => {
    let ran = 0;
    const { base } = await serve(async function* () {
      ran++;
      yield started();
    });
    const res = await postEventStream(base, { agentId: "a", task: "again" }, { "last-event-id": "3" });
    expect(res.status).toBe(204);
    expect(ran).toBe(0);
  });

  it("admits on headers before the body is read: a refusal is its HTTP status and an error event, and nothing runs", async () => {
    const admitted: object[] = [];
    const admit: Admit = (info) => {
      admitted.push(info);
      if (info.header("authorization") === "Bearer good") return Promise.resolve({ id: "alice" });
      return Promise.reject(withReason(new ConnectError("unknown API key", Code.Unauthenticated), ErrorReason.TOKEN_INVALID));
    };
    const contexts: CallContext[] = [];
    const { base } = await serve(
      async function* (_req, ctx) {
        contexts.push(ctx);
        yield completed("ok");
      },
      { admit },
    );
    // A body the decoder would refuse: the refusal of the credentials comes first.
    const refused = await call(base, "not json at all", { authorization: "Bearer bad" });
    expect(refused.status).toBe(401);
    expect(refused.headers.get("qingyu-reason")).toBe("TOKEN_INVALID");
    expect(errorOf(refused.events)).toEqual({ code: "UNAUTHENTICATED", message: "unknown API key", reason: "TOKEN_INVALID", metadata: {} });
    expect(contexts).toHaveLength(0);
    const ok = await call(base, { agentId: "a", task: "x" }, { authorization: "Bearer good" });
    expect(ok.events.map((e) => e.event)).toEqual(["completed"]);
    // The object admitted is the call's context, so the executor's admission (memoised per object) is not run again.
    expect(contexts[0]).toBe(admitted[1]);
  });

  it("ends a stream that fails after it started with an error event, status 200", async () => {
    const { base } = await serve(async function* () {
      yield started();
      throw withReason(new ConnectError("the provider failed", Code.Unavailable), ErrorReason.PROVIDER_UNAVAILABLE);
    });
    const got = await call(base, { agentId: "a", task: "x" });
    expect(got.status).toBe(200);
    expect(got.events.map((e) => e.event)).toEqual(["started", "error"]);
    expect(errorOf(got.events)).toMatchObject({ code: "UNAVAILABLE", reason: "PROVIDER_UNAVAILABLE" });
  });
});

describe("limits, deadlines and call tracking, as on every other call", () => {
  it("refuses a body over maxMessageBytes, a map over its bounds and headers over maxMetadataBytes, and runs nothing", async () => {
    let ran = 0;
    const { base } = await serve(async function* () {
      ran++;
      yield started();
    });
    const big = await call(base, { agentId: "a", task: "x".repeat(LIMITS.maxMessageBytes) });
    expect(big.status).toBe(429);
    expect(errorOf(big.events).code).toBe("RESOURCE_EXHAUSTED");
    const map = await call(base, { agentId: "a", task: "x", metadata: { a: "1", b: "2", c: "3", d: "4", e: "5" } });
    expect(map.status).toBe(400);
    expect(errorOf(map.events)).toMatchObject({
      code: "INVALID_ARGUMENT",
      reason: "LIMIT_EXCEEDED",
      metadata: { field: "metadata", limit: "server.limits.maxMapEntries" },
    });
    const headers = await call(base, { agentId: "a", task: "x" }, { "x-padding": "p".repeat(LIMITS.maxMetadataBytes) });
    expect(headers.status).toBe(429);
    expect(errorOf(headers.events)).toMatchObject({
      code: "RESOURCE_EXHAUSTED",
      reason: "LIMIT_EXCEEDED",
      metadata: { limit: "server.limits.maxMetadataBytes" },
    });
    expect(ran).toBe(0);
  });

  it("runs under the client's deadline (connect-timeout-ms or grpc-timeout), capped at maxDeadlineMs, else defaultDeadlineMs", async () => {
    const deadlines: Array<number | undefined> = [];
    const { base } = await serve(async function* (_req, ctx) {
      deadlines.push(ctx.deadline);
      yield completed("ok");
    });
    const within = async (headers: Record<string, string>, ms: number) => {
      const before = Date.now();
      await call(base, { agentId: "a", task: "x" }, headers);
      const after = Date.now();
      const deadline = deadlines.at(-1)!;
      expect(deadline).toBeGreaterThanOrEqual(before + ms);
      expect(deadline).toBeLessThanOrEqual(after + ms);
    };
    await within({}, LIMITS.defaultDeadlineMs);
    await within({ "connect-timeout-ms": "5000" }, 5000);
    await within({ "grpc-timeout": "7S" }, 7000);
    await within({ "connect-timeout-ms": "9999999" }, LIMITS.maxDeadlineMs);
    const bad = await call(base, { agentId: "a", task: "x" }, { "connect-timeout-ms": "soon" });
    expect(bad.status).toBe(400);
    expect(errorOf(bad.events).message).toContain("invalid connect timeout");
  });

  it("aborts a call past its deadline: the service's signal says DEADLINE_EXCEEDED, and so does the last event", async () => {
    const reasons: unknown[] = [];
    const { base } = await serve(async function* (_req, ctx) {
      yield started();
      reasons.push(await aborted(ctx.signal));
    });
    const got = await call(base, { agentId: "a", task: "x" }, { "connect-timeout-ms": "50" });
    expect(errorOf(got.events)).toMatchObject({ code: "DEADLINE_EXCEEDED", reason: "DEADLINE_EXCEEDED" });
    await vi.waitFor(() => expect(reasons).toHaveLength(1), EVENTUALLY);
    expect((reasons[0] as ConnectError).code).toBe(Code.DeadlineExceeded);
  });

  it("counts the call while it runs, refuses new calls while draining, and ends calls at shutdown with UNAVAILABLE", async () => {
    const { base, tracker } = await serve(async function* (_req, ctx) {
      yield started();
      await aborted(ctx.signal);
    });
    const res = await postEventStream(base, { agentId: "a", task: "x" });
    const reader = new EventStreamReader(res);
    expect((await reader.next())?.event).toBe("started");
    expect(tracker.inFlight).toBe(1);
    tracker.drain();
    const refused = await call(base, { agentId: "a", task: "late" });
    expect(refused.status).toBe(503);
    expect(errorOf(refused.events)).toMatchObject({ code: "UNAVAILABLE", reason: "SHUTTING_DOWN" });
    tracker.cancelAll();
    expect(errorOf(await reader.rest())).toMatchObject({ code: "UNAVAILABLE", reason: "SHUTTING_DOWN" });
    expect(tracker.inFlight).toBe(0);
  });

  it("cancels the call when the client goes away: the service's signal aborts with CANCELLED and its generator is closed", async () => {
    let closed = false;
    const reasons: unknown[] = [];
    const { base, tracker } = await serve(async function* (_req, ctx) {
      try {
        yield started();
        reasons.push(await aborted(ctx.signal));
        yield delta("never sent");
      } finally {
        closed = true;
      }
    });
    const client = new AbortController();
    const reader = new EventStreamReader(await postEventStream(base, { agentId: "a", task: "x" }, {}, client.signal));
    expect((await reader.next())?.event).toBe("started");
    client.abort();
    await vi.waitFor(() => expect(closed).toBe(true), EVENTUALLY);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toMatchObject({ code: Code.Canceled, rawMessage: "the client cancelled the call" });
    await vi.waitFor(() => expect(tracker.inFlight).toBe(0), EVENTUALLY);
  });
});

describe("a client that stops reading", () => {
  /** A POST whose response is never read: its socket fills, and stays full. */
  async function stalledClient(base: string): Promise<IncomingMessage> {
    const req = request(`${base}${EXECUTE_STREAM_PATH}`, { method: "POST", headers: { accept: "text/event-stream", "content-type": "application/json" } });
    // Reset by the server or closed by the test's end: nothing to report.
    req.on("error", () => undefined);
    req.end(JSON.stringify({ agentId: "a", task: "x" }));
    const [res] = (await once(req, "response")) as [IncomingMessage];
    res.pause();
    return res;
  }

  /** Resolves once `count()` has stopped growing (the service is parked), however long that takes. */
  async function settled(count: () => number): Promise<number> {
    let last = -1;
    let still = 0;
    while (still < 5) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      const now = count();
      still = now === last ? still + 1 : 0;
      last = now;
    }
    return last;
  }

  const CHUNK = "x".repeat(256 * 1024);

  it("holds the run rather than buffering: the service is not asked for more until the client reads", async () => {
    let pulled = 0;
    let closed = false;
    const { base, tracker } = await serve(async function* () {
      try {
        for (;;) {
          pulled++;
          yield delta(CHUNK);
        }
      } finally {
        closed = true;
      }
    });
    const res = await stalledClient(base);
    // Without the wait for 'drain' the loop above would run without end; with it, what is buffered
    // is the sockets' and Node's buffers (a few MiB on loopback) and one message.
    const held = await settled(() => pulled);
    expect(held).toBeLessThan(100);
    expect(tracker.inFlight).toBe(1);
    res.destroy();
    await vi.waitFor(() => expect(closed).toBe(true), EVENTUALLY);
    await vi.waitFor(() => expect(tracker.inFlight).toBe(0), EVENTUALLY);
  });

  it("resets the connection of a call that ended while its client does not read, once the grace is over", async () => {
    const { base, tracker, connections } = await serve(async function* (_req, ctx) {
      for (;;) {
        if (ctx.signal.aborted) return;
        yield delta(CHUNK);
      }
    });
    await stalledClient(base);
    await settled(() => tracker.inFlight);
    // The server's end of the connection: the client's, paused, would not notice a reset until it reads.
    const [socket] = connections;
    const reset = once(socket!, "close");
    tracker.cancelAll();
    // The call is over for the server at once; the connection, with what it buffers, when the grace is.
    await vi.waitFor(() => expect(tracker.inFlight).toBe(0), EVENTUALLY);
    await reset;
  });
});
