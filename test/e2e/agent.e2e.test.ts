import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { EventService, EventType } from "../../src/gen/qingyu/agent/v1/event_pb.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";

const A = AgentService.method;
const S = SessionService.method;

const config = {
  log: { level: "info" },
  pipeline: ["logging", { plugin: "validation", options: { maxTaskBytes: 1000 } }],
  providers: { echo: { plugin: "echo" }, slow: { plugin: "echo", options: { tokenDelayMs: 50 } } },
  agents: [
    { id: "echo", description: "echoes", provider: "echo", model: "echo-1" },
    { id: "slow", description: "slow echo", provider: "slow", model: "echo-slow" },
  ],
  plugins: { dirs: [] },
};

describe(`AgentService and SessionService over grpc-js (server on ${process.env.QINGYU_E2E_RUNTIME ?? "node"})`, () => {
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    server = await startServer(config);
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
  });

  it("lists the configured agents", async () => {
    const res = await client.unary(AgentService, A.listAgents, {});
    expect(res.agents.map((a) => [a.agentId, a.provider, a.model])).toEqual([
      ["echo", "echo", "echo-1"],
      ["slow", "slow", "echo-slow"],
    ]);
  });

  it("executes a task and reports usage", async () => {
    const res = await client.unary(AgentService, A.execute, { agentId: "echo", task: "hello brave new world" });
    expect(res.result?.success).toBe(true);
    expect(res.result?.output).toBe("[history=0] hello brave new world");
    expect(res.result?.model).toBe("echo-1");
    expect(res.result?.finishReason).toBe("stop");
    expect(res.result?.usage).toMatchObject({ inputTokens: 4, outputTokens: 5 });
  });

  it("streams Started, one delta per chunk, then Completed", async () => {
    const events = await client.collect(client.stream(AgentService, A.executeStream, { agentId: "echo", task: "one two three" }));
    expect(events[0]?.event.case).toBe("started");
    expect(events.at(-1)?.event.case).toBe("completed");
    const deltas = events.slice(1, -1).map((e) => (e.event.case === "delta" ? e.event.value.text : "?"));
    expect(deltas).toEqual(["[history=0] ", "one ", "two ", "three"]);
    const done = events.at(-1)!.event;
    expect(done.case === "completed" && done.value.output).toBe(deltas.join(""));
  });

  it("runs a multi-turn conversation in a session, with checkpoints", async () => {
    const { session } = await client.unary(SessionService, S.createSession, { userId: "alice", agentId: "echo", metadata: { topic: "demo" } });
    const sid = session!.sessionId;
    expect(session!.version).toBe(0n);
    const first = await client.unary(AgentService, A.execute, { sessionId: sid, task: "first question", userId: "alice" });
    expect(first.result?.output).toBe("[history=0] first question");
    expect(first.sessionId).toBe(sid);
    const second = await client.unary(AgentService, A.execute, { sessionId: sid, task: "second question" });
    expect(second.result?.output).toBe("[history=2] second question");

    const got = await client.unary(SessionService, S.getSession, { sessionId: sid, userId: "alice" });
    expect(got.session?.messages.map((m) => [m.role, m.content])).toEqual([
      ["user", "first question"],
      ["assistant", "[history=0] first question"],
      ["user", "second question"],
      ["assistant", "[history=2] second question"],
    ]);
    expect(got.session?.metadata).toEqual({ topic: "demo" });
    const version = got.session!.version;
    expect(version).toBe(2n);

    const saved = await client.unary(SessionService, S.saveCheckpoint, {
      sessionId: sid,
      userId: "alice",
      data: { step: 1, notes: ["a"] },
      expectedVersion: version,
    });
    expect(saved.checkpoint?.version).toBe(3n);
    expect(saved.checkpoint?.parentCheckpointId).toBe("");
    const stale = await statusOf(client.unary(SessionService, S.saveCheckpoint, { sessionId: sid, data: { step: 2 }, expectedVersion: version }));
    expect(stale.code).toBe(grpc.status.ABORTED);
    const next = await client.unary(SessionService, S.saveCheckpoint, { sessionId: sid, data: { step: 2 }, expectedVersion: 3n });
    expect(next.checkpoint?.parentCheckpointId).toBe(saved.checkpoint?.checkpointId);

    const latest = await client.unary(SessionService, S.getCheckpoint, { sessionId: sid });
    expect(latest.checkpoint?.data).toEqual({ step: 2 });
    const byId = await client.unary(SessionService, S.getCheckpoint, { sessionId: sid, checkpointId: saved.checkpoint!.checkpointId });
    expect(byId.checkpoint?.data).toEqual({ step: 1, notes: ["a"] });
    const list = await client.unary(SessionService, S.listCheckpoints, { sessionId: sid });
    expect(list.checkpoints.map((c) => c.version)).toEqual([4n, 3n]);

    const streamed = await client.collect(client.stream(AgentService, A.executeStream, { sessionId: sid, task: "third" }));
    const started = streamed[0]!.event;
    expect(started.case === "started" && [started.value.agentId, started.value.sessionId]).toEqual(["echo", sid]);

    await client.unary(SessionService, S.deleteSession, { sessionId: sid, userId: "alice" });
    expect((await statusOf(client.unary(SessionService, S.getSession, { sessionId: sid }))).code).toBe(grpc.status.NOT_FOUND);
    expect((await statusOf(client.unary(SessionService, S.getCheckpoint, { sessionId: sid }))).code).toBe(grpc.status.NOT_FOUND);
  });

  it("expires an idle session after its TTL; a write extends it", async () => {
    const { session } = await client.unary(SessionService, S.createSession, { userId: "ttl", agentId: "echo", ttlSeconds: 1 });
    const sid = session!.sessionId;
    expect(Number(session!.expireTime!.seconds) - Number(session!.createTime!.seconds)).toBe(1);
    await new Promise((r) => setTimeout(r, 600));
    await client.unary(AgentService, A.execute, { sessionId: sid, task: "keep me alive" });
    await new Promise((r) => setTimeout(r, 600));
    expect((await client.unary(SessionService, S.getSession, { sessionId: sid })).session?.messages).toHaveLength(2);
    await new Promise((r) => setTimeout(r, 1100));
    expect((await statusOf(client.unary(SessionService, S.getSession, { sessionId: sid }))).code).toBe(grpc.status.NOT_FOUND);
    expect((await statusOf(client.unary(AgentService, A.execute, { sessionId: sid, task: "too late" }))).code).toBe(grpc.status.NOT_FOUND);
  });

  it("lists only the caller's sessions, newest first, page by page", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { session } = await client.unary(SessionService, S.createSession, { userId: "lister", agentId: "echo" });
      ids.push(session!.sessionId);
    }
    await client.unary(SessionService, S.createSession, { userId: "someone-else", agentId: "echo" });
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await client.unary(SessionService, S.listSessions, { userId: "lister", pageSize: 2, pageToken });
      expect(page.sessions.length).toBeLessThanOrEqual(2);
      seen.push(...page.sessions.map((s) => s.sessionId));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(new Set(seen)).toEqual(new Set(ids));
    expect(seen).toHaveLength(5);
    const bad = await statusOf(client.unary(SessionService, S.listSessions, { userId: "lister", pageToken: "garbage!" }));
    expect(bad.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(bad.details).toContain("page_token");
  });

  it("runs a batch in request order; one failing item does not fail the batch", async () => {
    const res = await client.unary(AgentService, A.executeBatch, {
      maxConcurrency: 2,
      requests: [
        { agentId: "echo", task: "alpha" },
        { agentId: "missing", task: "beta" },
        { agentId: "slow", task: "gamma" },
        { agentId: "echo", task: "" },
      ],
    });
    expect(res.items).toHaveLength(4);
    const [a, b, c, d] = res.items;
    expect(a!.outcome.case === "result" && a!.outcome.value.output).toBe("[history=0] alpha");
    expect(b!.outcome.case === "error" && b!.outcome.value.code).toBe(grpc.status.NOT_FOUND);
    expect(c!.outcome.case === "result" && c!.outcome.value.output).toBe("[history=0] gamma");
    expect(d!.outcome.case === "error" && d!.outcome.value.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect((await statusOf(client.unary(AgentService, A.executeBatch, { requests: [] }))).code).toBe(grpc.status.INVALID_ARGUMENT);
  });

  it("answers bad input with the named status codes", async () => {
    const unknownSession = randomUUID();
    const cases: Array<[Promise<unknown>, grpc.status, string]> = [
      [client.unary(AgentService, A.execute, { agentId: "nope", task: "x" }), grpc.status.NOT_FOUND, "nope"],
      [client.unary(AgentService, A.execute, { agentId: "echo", task: "   " }), grpc.status.INVALID_ARGUMENT, "task"],
      [client.unary(AgentService, A.execute, { agentId: "echo", task: "x".repeat(1001) }), grpc.status.INVALID_ARGUMENT, "task"],
      [client.unary(AgentService, A.execute, { task: "x" }), grpc.status.INVALID_ARGUMENT, "agent_id"],
      [client.unary(AgentService, A.execute, { agentId: "echo", task: "x", options: { temperature: 3 } }), grpc.status.INVALID_ARGUMENT, "temperature"],
      [client.unary(AgentService, A.execute, { agentId: "echo", task: "x", sessionId: unknownSession }), grpc.status.NOT_FOUND, unknownSession],
      // Ids are the server's own format, checked before anything else reads them (a UUID in any case).
      [client.unary(AgentService, A.execute, { agentId: "echo", task: "x", sessionId: "no-such" }), grpc.status.INVALID_ARGUMENT, "session_id"],
      [client.unary(AgentService, A.execute, { agentId: "echo", task: "x", userId: "u".repeat(129) }), grpc.status.INVALID_ARGUMENT, "user_id"],
      [client.unary(AgentService, A.execute, { agentId: "echo\nforged", task: "x" }), grpc.status.INVALID_ARGUMENT, "agent_id"],
      [client.unary(SessionService, S.getSession, { sessionId: "s".repeat(100_000) }), grpc.status.INVALID_ARGUMENT, "(100000 characters)"],
      [client.unary(SessionService, S.createSession, { userId: "u", agentId: "ghost" }), grpc.status.NOT_FOUND, "ghost"],
      [client.unary(SessionService, S.createSession, { agentId: "echo" }), grpc.status.INVALID_ARGUMENT, "user_id"],
      [client.unary(SessionService, S.getSession, { sessionId: "" }), grpc.status.INVALID_ARGUMENT, "session_id"],
    ];
    const statuses = await Promise.all(cases.map(([call]) => statusOf(call)));
    for (const [i, [, code, mention]] of cases.entries()) {
      const status = statuses[i]!;
      expect(grpc.status[status.code], status.details).toBe(grpc.status[code]);
      expect(status.details).toContain(mention);
    }
    const stream = await statusOf(client.collect(client.stream(AgentService, A.executeStream, { agentId: "nope", task: "x" })));
    expect(stream.code).toBe(grpc.status.NOT_FOUND);
  });

  it("keeps users out of each other's sessions", async () => {
    const { session } = await client.unary(SessionService, S.createSession, { userId: "owner", agentId: "echo" });
    const sid = session!.sessionId;
    const intruder = [
      client.unary(SessionService, S.getSession, { sessionId: sid, userId: "intruder" }),
      client.unary(AgentService, A.execute, { sessionId: sid, userId: "intruder", task: "let me in" }),
      client.unary(SessionService, S.deleteSession, { sessionId: sid, userId: "intruder" }),
      client.unary(SessionService, S.saveCheckpoint, { sessionId: sid, userId: "intruder", data: {} }),
    ];
    for (const status of await Promise.all(intruder.map(statusOf))) expect(status.code).toBe(grpc.status.PERMISSION_DENIED);
    const mismatch = await statusOf(client.unary(AgentService, A.execute, { sessionId: sid, agentId: "slow", task: "x" }));
    expect(mismatch.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(mismatch.details).toContain("agent_id");
  });

  it("rejects bytes that are not a protobuf message with INVALID_ARGUMENT", async () => {
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]);
    const status = await statusOf(
      new Promise((resolve, reject) =>
        client.raw.makeUnaryRequest(
          "/qingyu.agent.v1.AgentService/Execute",
          (b: Buffer) => b,
          (b: Buffer) => b,
          garbage,
          (err, res) => (err ? reject(err) : resolve(res)),
        ),
      ),
    );
    expect(status.code).toBe(grpc.status.INVALID_ARGUMENT);
    // agent_id "echo", task = the bytes ff fe: not UTF-8.
    const badUtf8 = Buffer.from([0x0a, 0x04, 0x65, 0x63, 0x68, 0x6f, 0x12, 0x02, 0xff, 0xfe]);
    const utf8 = await statusOf(
      new Promise((resolve, reject) =>
        client.raw.makeUnaryRequest(
          "/qingyu.agent.v1.AgentService/Execute",
          (b: Buffer) => b,
          (b: Buffer) => b,
          badUtf8,
          (err, res) => (err ? reject(err) : resolve(res)),
        ),
      ),
    );
    expect(utf8.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(utf8.details).toContain("qingyu.agent.v1.ExecuteRequest");
    const unknown = await statusOf(
      new Promise((resolve, reject) =>
        client.raw.makeUnaryRequest(
          "/qingyu.agent.v1.AgentService/Nope",
          (b: Buffer) => b,
          (b: Buffer) => b,
          Buffer.alloc(0),
          (err, res) => (err ? reject(err) : resolve(res)),
        ),
      ),
    );
    expect(unknown.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it("ends a call at its deadline with DEADLINE_EXCEEDED", async () => {
    // The slow agent would answer (OK) after 1.6 s: the status says the 200 ms deadline came first.
    const status = await statusOf(client.unary(AgentService, A.execute, { agentId: "slow", task: "a b c d e f g h i j k l m n o p" }, { timeoutMs: 200 }));
    expect(status.code).toBe(grpc.status.DEADLINE_EXCEEDED);
  });

  it("publishes events to EventService subscribers, filtered by agent", async () => {
    const sub = client.stream(EventService, EventService.method.subscribe, { agentId: "echo", types: [EventType.AGENT_STARTED, EventType.AGENT_COMPLETED] });
    const received: Array<{ type: EventType; agentId: string }> = [];
    const done = new Promise<void>((resolve) => {
      sub.on("data", (m) => {
        received.push({ type: m.event!.type, agentId: m.event!.agentId });
        if (received.length === 2) resolve();
      });
      sub.on("error", () => {});
    });
    // Give the subscription time to register before publishing.
    await new Promise((r) => setTimeout(r, 200));
    await client.unary(AgentService, A.execute, { agentId: "slow", task: "ignored" });
    await client.unary(AgentService, A.execute, { agentId: "echo", task: "seen" });
    await done;
    sub.cancel();
    expect(received).toEqual([
      { type: EventType.AGENT_STARTED, agentId: "echo" },
      { type: EventType.AGENT_COMPLETED, agentId: "echo" },
    ]);
  });

  it("writes one JSON log line per call with agent, session, status, duration and tokens", async () => {
    const { session } = await client.unary(SessionService, S.createSession, { userId: "logger", agentId: "echo" });
    await client.unary(AgentService, A.execute, { agentId: "echo", sessionId: session!.sessionId, task: "log me please" });
    const find = () => server.lines.map((l) => JSON.parse(l)).find((l) => l.msg === "call" && l.session === session!.sessionId);
    for (let i = 0; i < 50 && !find(); i++) await new Promise((r) => setTimeout(r, 20));
    expect(find()).toMatchObject({ agent: "echo", status: "OK", inputTokens: 3, outputTokens: 4, model: "echo-1" });
    expect(typeof find().durationMs).toBe("number");
  });
});
