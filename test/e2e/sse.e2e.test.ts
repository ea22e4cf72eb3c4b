import { toJson } from "@bufbuild/protobuf";
import { randomBytes, createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { AgentService, ExecuteStreamResponseSchema } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { EventService, EventType, type SubscribeResponse } from "../../src/gen/qingyu/agent/v1/event_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.ts";
import { EVENTUALLY } from "../support/limits.ts";
import { TestClient, statusOf, type CallOptions } from "../support/grpc-client.ts";
import { runProcess, runtime, startServer, type ServerProcess } from "../support/server-process.ts";
import { EXECUTE_STREAM_PATH, EventStreamReader, parseEventStream, postEventStream, type SseEvent } from "../support/sse-client.ts";

const A = AgentService.method;
const S = SessionService.method;
const MAX_MESSAGE_BYTES = 64 * 1024;

/**
 * The commands of the README's section on streaming over HTTP, verbatim: each run of
 * lines that are not comments in its `sh` blocks, with the port as $PORT.
 */
function readmeCommands(): string[] {
  const readme = readFileSync(resolve(import.meta.dirname, "../../README.md"), "utf8");
  const from = readme.indexOf("### Streaming over HTTP");
  const section = readme.slice(from, readme.indexOf("\n### ", from + 1));
  const commands: string[] = [];
  for (const [, block] of section.matchAll(/```sh\n([\s\S]*?)```/g)) {
    let lines: string[] = [];
    for (const line of `${block}\n`.split("\n")) {
      if (line && !line.startsWith("#")) {
        lines.push(line);
      } else if (lines.length) {
        commands.push(lines.join("\n").replaceAll("localhost:8080", "localhost:$PORT"));
        lines = [];
      }
    }
  }
  return commands;
}

/** Runs a README line with `sh`, the port in $PORT. */
async function shell(line: string, port: number): Promise<string> {
  const { code, stdout, stderr } = await runProcess("sh", ["-c", line], { PORT: String(port) });
  expect({ code, stderr: code === 0 ? "" : stderr }).toEqual({ code: 0, stderr: "" });
  return stdout;
}

/** The error event's data, which must end the stream. */
function errorOf(events: SseEvent[]) {
  const last = events.at(-1);
  expect(last?.event).toBe("error");
  return JSON.parse(last!.data) as { code: string; message: string; reason: string; metadata: Record<string, string> };
}

// durationMs is measured per run; the rest of an echo run is the same every time.
const withoutDuration = (json: unknown) => JSON.stringify(json).replace(/,"durationMs":"\d+"/, "");

describe(`ExecuteStream as Server-Sent Events on the HTTP port (server on ${runtime})`, () => {
  let fake: FakeOpenAI;
  let server: ServerProcess;
  let client: TestClient;
  let base: string;

  beforeAll(async () => {
    fake = await startFakeOpenAI();
    server = await startServer({
      log: { level: "warn" },
      server: { limits: { maxMessageBytes: MAX_MESSAGE_BYTES, maxMapEntries: 8 } },
      providers: {
        echo: { plugin: "echo" },
        slow: { plugin: "echo", options: { tokenDelayMs: 200 } },
        llm: { plugin: "openai", options: { baseUrl: fake.url, apiKey: "sk-test" } },
      },
      agents: [
        { id: "echo", provider: "echo", model: "echo-1" },
        { id: "slow", provider: "slow", model: "echo-slow" },
        { id: "gpt", provider: "llm", model: "fake-model" },
      ],
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
    base = `http://127.0.0.1:${server.httpPort}`;
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
    await fake?.close();
  });

  it("streams an echo run as started, deltas, completed: the messages the gRPC port streams, as their JSON", async () => {
    const request = { agentId: "echo", task: "stream this please" };
    const res = await postEventStream(base, request);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    const events = await new EventStreamReader(res).rest();
    const grpc = await client.collect(client.stream(AgentService, A.executeStream, request));
    expect(events.map((e) => e.event)).toEqual(["started", "delta", "delta", "delta", "delta", "completed"]);
    expect(events.map((e) => e.id)).toEqual(["1", "2", "3", "4", "5", "6"]);
    expect(events.map((e) => withoutDuration(JSON.parse(e.data)))).toEqual(grpc.map((m) => withoutDuration(toJson(ExecuteStreamResponseSchema, m))));
    expect(JSON.parse(events.at(-1)!.data).completed.output).toBe("[history=0] stream this please");
  });

  it("the README's curl lines stream it too: Connect frames, the SSE POST and the EventSource GET", async () => {
    const [connect, ssePost, sseGet, ...more] = readmeCommands();
    expect(more).toEqual([]);
    expect(connect).toContain("application/connect+json");
    const frames = (await shell(connect!, server.httpPort)).trim().split("\n");
    expect(frames[0]).toBe('{"started":{"agentId":"echo","model":"echo-1"}}');
    expect(frames.slice(1, 5)).toEqual(["[history=0] ", "stream ", "this ", "please"].map((text) => JSON.stringify({ delta: { text } })));
    expect(JSON.parse(frames[5]!).completed.output).toBe("[history=0] stream this please");
    expect(frames.at(-1)).toBe("{}"); // Connect's end-of-stream message: no error
    expect(sseGet).toContain("-G");
    for (const line of [ssePost!, sseGet!]) {
      const { events, rest } = parseEventStream(await shell(line, server.httpPort));
      expect(rest).toBe("");
      expect(events.map((e) => e.event)).toEqual(["started", "delta", "delta", "delta", "delta", "completed"]);
      expect(JSON.parse(events.at(-1)!.data).completed.output).toBe("[history=0] stream this please");
    }
  });

  it("runs a session's turns: each is stored, and the next sees the history", async () => {
    const user = `sse-${randomBytes(4).toString("hex")}`;
    const { session } = await client.unary(SessionService, S.createSession, { userId: user, agentId: "echo" });
    const sessionId = session!.sessionId;
    const turn = async (task: string) => {
      const events = await new EventStreamReader(await postEventStream(base, { sessionId, userId: user, task })).rest();
      expect(JSON.parse(events[0]!.data)).toEqual({ started: { agentId: "echo", sessionId, model: "echo-1" } });
      return JSON.parse(events.at(-1)!.data).completed.output as string;
    };
    expect(await turn("first")).toBe("[history=0] first");
    expect(await turn("second")).toBe("[history=2] second");
    const stored = await client.unary(SessionService, S.getSession, { sessionId, userId: user });
    expect(stored.session!.messages.map((m) => m.content)).toEqual(["first", "[history=0] first", "second", "[history=2] second"]);
  });

  it("cancels the run when the client disconnects mid-stream: CANCELLED is recorded and the turn is not stored", async () => {
    const user = `gone-${randomBytes(4).toString("hex")}`;
    const { session } = await client.unary(SessionService, S.createSession, { userId: user, agentId: "slow" });
    const sessionId = session!.sessionId;
    const seen: SubscribeResponse[] = [];
    const types = [EventType.AGENT_STARTED, EventType.AGENT_COMPLETED, EventType.ERROR_OCCURRED];
    const sub = client.stream(EventService, EventService.method.subscribe, { userId: user, types });
    sub.on("data", (m: SubscribeResponse) => seen.push(m));
    const subEnded = statusOf(client.collect(sub));
    try {
      // The subscription registers asynchronously: probe until it sees the user's own calls.
      for (let i = 0; i < 200 && seen.length === 0; i++) {
        await statusOf(client.unary(AgentService, A.execute, { agentId: "ghost", task: "probe", userId: user }));
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(seen.length).toBeGreaterThan(0);
      seen.length = 0;
      // 20 words at 200 ms each: the run is far from its end when the client leaves.
      const task = Array.from({ length: 20 }, (_, i) => `w${i}`).join(" ");
      const leave = new AbortController();
      const reader = new EventStreamReader(await postEventStream(base, { sessionId, userId: user, task }, {}, leave.signal));
      expect((await reader.next())?.event).toBe("started");
      expect((await reader.next())?.event).toBe("delta");
      leave.abort();
      // The run ends one way or the other: failed (cancelled), or completed had the cancel not reached it.
      const ended = () => seen.find((m) => m.event!.type === EventType.ERROR_OCCURRED || m.event!.type === EventType.AGENT_COMPLETED);
      await vi.waitFor(() => expect(ended()).toBeDefined(), EVENTUALLY);
      const failed = ended()!.event!;
      expect(failed).toMatchObject({ type: EventType.ERROR_OCCURRED, userId: user, sessionId, agentId: "slow" });
      expect(failed.data).toMatchObject({ code: "CANCELLED" });
      // The turn is stored only before `completed`; a cancelled run never gets there.
      const stored = await client.unary(SessionService, S.getSession, { sessionId, userId: user });
      expect(stored.session!.messageCount).toBe(0n);
    } finally {
      sub.cancel();
      await subEnded;
    }
  });

  it("a client that disconnects closes the model's upstream request before the answer's end", async () => {
    const index = fake.requests.length;
    const chunks = Array.from({ length: 40 }, (_, i) => `w${i} `);
    fake.enqueue({ kind: "stream", chunks, delayMs: 50 });
    const leave = new AbortController();
    const reader = new EventStreamReader(await postEventStream(base, { agentId: "gpt", task: "long answer" }, {}, leave.signal));
    expect((await reader.next())?.event).toBe("started");
    expect((await reader.next())?.event).toBe("delta");
    expect((await reader.next())?.event).toBe("delta");
    leave.abort();
    await fake.waitForClose(index, 30_000);
    expect(fake.requests[index]!.chunksWritten).toBeLessThan(chunks.length);
  });

  it("refuses what is over the limits with the code every port gives, before anything runs", async () => {
    const big = await postEventStream(base, { agentId: "echo", task: "x".repeat(MAX_MESSAGE_BYTES) });
    expect(big.status).toBe(429);
    expect(errorOf(parseEventStream(await big.text()).events).code).toBe("RESOURCE_EXHAUSTED");
    const metadata = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`k${i}`, "v"]));
    const map = await postEventStream(base, { agentId: "echo", task: "x", metadata });
    expect(map.status).toBe(400);
    expect(errorOf(parseEventStream(await map.text()).events)).toMatchObject({
      code: "INVALID_ARGUMENT",
      reason: "LIMIT_EXCEEDED",
      metadata: { field: "metadata", limit: "server.limits.maxMapEntries" },
    });
    const missing = await postEventStream(base, { agentId: "ghost", task: "x" });
    expect(missing.status).toBe(404);
    expect(errorOf(parseEventStream(await missing.text()).events)).toMatchObject({
      code: "NOT_FOUND",
      reason: "AGENT_NOT_FOUND",
      metadata: { agent_id: "ghost" },
    });
  });

  it("ends a run at the client's deadline (connect-timeout-ms) with DEADLINE_EXCEEDED as the last event", async () => {
    const res = await postEventStream(base, { agentId: "slow", task: "a b c d e f g h i j k l m n o p" }, { "connect-timeout-ms": "500" });
    const events = await new EventStreamReader(res).rest();
    expect(events[0]!.event).toBe("started");
    expect(errorOf(events)).toMatchObject({ code: "DEADLINE_EXCEEDED", reason: "DEADLINE_EXCEEDED" });
  });
});

// Fresh secrets per run: the config holds only their hashes.
const KEYS = { alice: `alice-${randomBytes(12).toString("hex")}`, root: `root-${randomBytes(12).toString("hex")}` };
const sha256 = (k: string) => createHash("sha256").update(k).digest("hex");
const as = (key: string): CallOptions => ({ metadata: { authorization: `Bearer ${key}` } });

describe(`the SSE form behind the auth plugin (server on ${runtime})`, () => {
  let server: ServerProcess;
  let client: TestClient;
  let base: string;

  beforeAll(async () => {
    server = await startServer({
      log: { level: "warn" },
      pipeline: [
        "logging",
        {
          plugin: "auth",
          options: {
            apiKeys: [
              { id: "alice", sha256: sha256(KEYS.alice) },
              { id: "root", sha256: sha256(KEYS.root), admin: true },
            ],
          },
        },
        "validation",
      ],
      providers: { echo: { plugin: "echo" } },
      agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
      plugins: { dirs: [] },
    });
    client = new TestClient(server.grpcPort);
    base = `http://127.0.0.1:${server.httpPort}`;
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  it("refuses a caller without credentials or with a wrong key (401, an error event) and runs nothing; a key streams", async () => {
    const seen: SubscribeResponse[] = [];
    const types = [EventType.AGENT_STARTED, EventType.AGENT_COMPLETED, EventType.ERROR_OCCURRED];
    const sub = client.stream(EventService, EventService.method.subscribe, { types }, as(KEYS.root));
    sub.on("data", (m: SubscribeResponse) => seen.push(m));
    const subEnded = statusOf(client.collect(sub));
    const completedBy = (user: string) => seen.some((m) => m.event!.type === EventType.AGENT_COMPLETED && m.event!.userId === user);
    try {
      for (let i = 0; i < 200 && !completedBy("alice"); i++) {
        await client.unary(AgentService, A.execute, { agentId: "echo", task: "probe" }, as(KEYS.alice));
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(completedBy("alice")).toBe(true);
      seen.length = 0;

      const anonymous = await postEventStream(base, { agentId: "echo", task: "no key" });
      expect(anonymous.status).toBe(401);
      expect(anonymous.headers.get("qingyu-reason")).toBe("UNAUTHENTICATED");
      expect(errorOf(parseEventStream(await anonymous.text()).events)).toMatchObject({ code: "UNAUTHENTICATED", reason: "UNAUTHENTICATED" });
      const wrong = await postEventStream(base, { agentId: "echo", task: "wrong key" }, { authorization: "Bearer not-a-key" });
      expect(wrong.status).toBe(401);
      expect(errorOf(parseEventStream(await wrong.text()).events)).toMatchObject({ code: "UNAUTHENTICATED", reason: "TOKEN_INVALID" });
      // EventSource cannot send a header: its GET is refused the same way.
      const get = await fetch(`${base}${EXECUTE_STREAM_PATH}?message=${encodeURIComponent('{"agentId":"echo","task":"get"}')}`, {
        headers: { accept: "text/event-stream" },
      });
      expect(get.status).toBe(401);
      await get.text();

      const allowed = await postEventStream(base, { agentId: "echo", task: "with a key" }, { authorization: `Bearer ${KEYS.alice}` });
      expect(allowed.status).toBe(200);
      const events = await new EventStreamReader(allowed).rest();
      expect(events.map((e) => e.event)).toEqual(["started", "delta", "delta", "delta", "delta", "completed"]);
      // Events are published in order: everything since the probe is alice's one run, none of the refused calls'.
      await vi.waitFor(() => expect(completedBy("alice")).toBe(true), EVENTUALLY);
      expect(seen.map((m) => [m.event!.type, m.event!.userId])).toEqual([
        [EventType.AGENT_STARTED, "alice"],
        [EventType.AGENT_COMPLETED, "alice"],
      ]);
    } finally {
      sub.cancel();
      await subEnded;
    }
  });
});

describe(`the SSE form while the server drains (server on ${runtime})`, () => {
  it("counts a stream in flight: a new one is refused with 503 UNAVAILABLE, the one in flight finishes, exit 0", async () => {
    const server = await startServer({
      log: { level: "warn" },
      server: { shutdownGraceMs: 60_000 },
      providers: { slow: { plugin: "echo", options: { tokenDelayMs: 100 } } },
      agents: [{ id: "slow", provider: "slow", model: "m" }],
      plugins: { dirs: [] },
    });
    const base = `http://127.0.0.1:${server.httpPort}`;
    try {
      const reader = new EventStreamReader(await postEventStream(base, { agentId: "slow", task: "one two three four five six" }));
      expect((await reader.next())?.event).toBe("started");
      expect((await reader.next())?.event).toBe("delta");
      server.child.kill("SIGTERM");
      // Draining begins at the signal; until then a call may still be taken. The first refusal is the drain's.
      let refused: Response | undefined;
      for (let i = 0; i < 200 && !refused; i++) {
        const res = await postEventStream(base, { agentId: "slow", task: "late" });
        if (res.status === 503) refused = res;
        else await res.text();
      }
      expect(errorOf(parseEventStream(await refused!.text()).events)).toMatchObject({ code: "UNAVAILABLE", reason: "SHUTTING_DOWN" });
      const rest = await reader.rest();
      expect(rest.at(-1)?.event).toBe("completed");
      expect(JSON.parse(rest.at(-1)!.data).completed.output).toBe("[history=0] one two three four five six");
      expect(await server.exited).toBe(0);
    } finally {
      await server.stop("SIGKILL");
    }
  });
});
