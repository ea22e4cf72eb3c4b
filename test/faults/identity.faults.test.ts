// Hostile identifiers and anonymous callers (issue #13 items 2 and 4), against the real
// server process on both ports:
// - a 4 MB session_id (and a 1 MB one, which once overflowed grpc-message so the grpc-js
//   client waited for its deadline) is refused with INVALID_ARGUMENT at once, quoted in a
//   short status message and in no log line;
// - the upper-case form of a session's UUID is the same session (one id, one copy);
// - with `allowAnonymous: true`, a caller without credentials can neither name a user nor
//   touch a named user's session by id, over any RPC.
import * as grpc from "@grpc/grpc-js";
import { createHash, randomUUID } from "node:crypto";
import { SignJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { killAll, startServer, type ServerProcess } from "../support/server-process.ts";
import { connectCall, expectServing } from "./support.ts";

const A = AgentService.method;
const S = SessionService.method;
const BOB_KEY = "bob-key-0123456789abcdef";
const sha256 = (k: string) => createHash("sha256").update(k).digest("hex");
const asBob = { metadata: { authorization: `Bearer ${BOB_KEY}` } };

afterAll(killAll);

describe("identifiers a caller sends", () => {
  let server: ServerProcess;
  let client: TestClient;
  beforeAll(async () => {
    server = await startServer({ server: { host: "127.0.0.1", port: 0, httpPort: 0 }, pipeline: ["logging", "validation"] });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  it.each([4_000_000, 1_000_000])("refuses a %i-byte session_id with a short INVALID_ARGUMENT on both ports, and logs none of it", async (size) => {
    const logBytes = () => server.lines.reduce((n, l) => n + l.length, 0) + server.stderr().length;
    const before = logBytes();
    const huge = "s".repeat(size);
    const grpcStatus = await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", task: "x", sessionId: huge }, { timeoutMs: 10_000 }));
    expect(grpc.status[grpcStatus.code]).toBe("INVALID_ARGUMENT");
    expect(grpcStatus.details).toContain("session_id");
    expect(grpcStatus.details.length).toBeLessThan(300);
    const stream = await statusOf(
      client.collect(client.stream(AgentService, A.executeStream, { agentId: "echo", task: "x", sessionId: huge }, { timeoutMs: 10_000 })),
    );
    expect(grpc.status[stream.code]).toBe("INVALID_ARGUMENT");
    for (const path of ["AgentService/Execute", "SessionService/GetSession", "SessionService/DeleteSession"]) {
      const http = await connectCall(server.httpPort, `qingyu.agent.v1.${path}`, JSON.stringify({ agentId: "echo", task: "x", sessionId: huge }));
      expect([path, http.status, (http.json as { code?: string }).code]).toEqual([path, 400, "invalid_argument"]);
      expect(http.text.length).toBeLessThan(400);
    }
    const grown = logBytes() - before;
    expect(grown).toBeLessThan(20_000);
    await expectServing(server);
  });

  it("refuses over-long and unprintable user and agent ids before they reach a store", async () => {
    for (const [req, field] of [
      [{ agentId: "echo", task: "x", userId: "u".repeat(129) }, "user_id"],
      [{ agentId: "echo", task: "x", userId: "alice\nlevel=admin" }, "user_id"],
      [{ agentId: "e".repeat(3_000_000), task: "x" }, "agent_id"],
      [{ agentId: "echo", task: "x", options: { model: "m".repeat(200) } }, "options.model"],
    ] as const) {
      const s = await statusOf(client.unary(AgentService, A.execute, req, { timeoutMs: 10_000 }));
      expect([field, grpc.status[s.code], s.details.length < 300]).toEqual([field, "INVALID_ARGUMENT", true]);
      expect(s.details).toContain(field);
    }
    const list = await statusOf(client.unary(SessionService, S.listSessions, { userId: "u".repeat(100_000) }, { timeoutMs: 10_000 }));
    expect(grpc.status[list.code]).toBe("INVALID_ARGUMENT");
    const batch = await statusOf(
      client.unary(
        AgentService,
        A.executeBatch,
        {
          requests: [
            { agentId: "echo", task: "a" },
            { agentId: "echo", task: "b", sessionId: "nope" },
          ],
        },
        { timeoutMs: 10_000 },
      ),
    );
    expect([grpc.status[batch.code], batch.details]).toEqual(["INVALID_ARGUMENT", expect.stringContaining("requests[1].session_id")]);
  });

  it("treats the upper-case form of a session id as the same session", async () => {
    const { session } = await client.unary(SessionService, S.createSession, { userId: "carol", agentId: "echo" });
    const lower = session!.sessionId;
    const upper = lower.toUpperCase();
    const first = await client.unary(AgentService, A.execute, { sessionId: upper, task: "one" });
    expect(first.sessionId).toBe(lower);
    const second = await client.unary(AgentService, A.execute, { sessionId: lower, task: "two" });
    expect(second.result?.output).toBe("[history=2] two");
    const read = await client.unary(SessionService, S.getSession, { sessionId: upper });
    expect([read.session?.sessionId, read.session?.messages.length]).toEqual([lower, 4]);
  });
});

describe("anonymous callers (allowAnonymous: true)", () => {
  let server: ServerProcess;
  let client: TestClient;
  let bobSession: string;
  beforeAll(async () => {
    server = await startServer({
      server: { host: "127.0.0.1", port: 0, httpPort: 0 },
      pipeline: [{ plugin: "auth", options: { apiKeys: [{ id: "bob", sha256: sha256(BOB_KEY) }], allowAnonymous: true } }, "validation"],
    });
    client = new TestClient(server.grpcPort);
    bobSession = (await client.unary(SessionService, S.createSession, { agentId: "echo" }, asBob)).session!.sessionId;
    await client.unary(AgentService, A.execute, { sessionId: bobSession, task: "secret plan" }, asBob);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  it("may run an agent without a session", async () => {
    const res = await client.unary(AgentService, A.execute, { agentId: "echo", task: "hello" });
    expect(res.result?.output).toBe("[history=0] hello");
  });

  it("cannot read, list, delete, checkpoint or continue bob's session, named or not", async () => {
    const attempts: Array<[string, Promise<unknown>]> = [
      ["GetSession by id", client.unary(SessionService, S.getSession, { sessionId: bobSession })],
      ["GetSession naming bob", client.unary(SessionService, S.getSession, { sessionId: bobSession, userId: "bob" })],
      ["ListSessions naming bob", client.unary(SessionService, S.listSessions, { userId: "bob" })],
      ["ListSessions", client.unary(SessionService, S.listSessions, {})],
      ["DeleteSession naming bob", client.unary(SessionService, S.deleteSession, { sessionId: bobSession, userId: "bob" })],
      ["SaveCheckpoint", client.unary(SessionService, S.saveCheckpoint, { sessionId: bobSession, data: { x: 1 } })],
      ["ListCheckpoints", client.unary(SessionService, S.listCheckpoints, { sessionId: bobSession, userId: "bob" })],
      ["CreateSession as bob", client.unary(SessionService, S.createSession, { agentId: "echo", userId: "bob" })],
      ["Execute in bob's session", client.unary(AgentService, A.execute, { sessionId: bobSession, task: "what was the plan?" })],
      ["Execute naming bob", client.unary(AgentService, A.execute, { agentId: "echo", userId: "bob", task: "x" })],
      ["ExecuteStream in bob's session", client.collect(client.stream(AgentService, A.executeStream, { sessionId: bobSession, userId: "bob", task: "x" }))],
    ];
    for (const [what, call] of attempts) {
      const s = await statusOf(call);
      expect([what, grpc.status[s.code]]).toEqual([what, "UNAUTHENTICATED"]);
      expect(s.details).not.toContain("secret plan");
    }
    const http = await connectCall(server.httpPort, "qingyu.agent.v1.SessionService/GetSession", JSON.stringify({ sessionId: bobSession, userId: "bob" }));
    expect([http.status, (http.json as { code?: string }).code]).toEqual([401, "unauthenticated"]);
    // Nothing was lost or changed: bob still has his session, with his one turn.
    const mine = await client.unary(SessionService, S.getSession, { sessionId: bobSession }, asBob);
    expect(mine.session?.messages.map((m) => m.content)).toEqual(["secret plan", "[history=0] secret plan"]);
    await expectServing(server);
  });

  it("refuses a session-bound call the same way whether or not the session exists", async () => {
    for (const sessionId of [bobSession, randomUUID()]) {
      const s = await statusOf(client.unary(AgentService, A.execute, { sessionId, task: "probe" }));
      expect([sessionId, grpc.status[s.code]]).toEqual([sessionId, "UNAUTHENTICATED"]);
    }
  });
});

// Item 10: a JWT whose subject equals an API key's id, and the cache as an oracle between users.
describe("one user's name in another namespace, and the cache between users", () => {
  const SECRET = "a-fault-test-hs256-secret-of-40-bytes-xx";
  const ALICE_KEY = "alice-key-0123456789abcdef";
  let server: ServerProcess;
  let client: TestClient;
  beforeAll(async () => {
    server = await startServer({
      server: { host: "127.0.0.1", port: 0, httpPort: 0 },
      pipeline: [
        {
          plugin: "auth",
          options: {
            apiKeys: [
              { id: "alice", sha256: sha256(ALICE_KEY) },
              { id: "bob", sha256: sha256(BOB_KEY) },
            ],
            jwt: { algorithms: ["HS256"], secret: SECRET, subjectPrefix: "jwt:" },
          },
        },
        "validation",
        "cache",
      ],
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  it('keeps a token whose subject is "alice" out of the API key alice\'s sessions with jwt.subjectPrefix', async () => {
    const asAlice = { metadata: { authorization: `Bearer ${ALICE_KEY}` } };
    const { session } = await client.unary(SessionService, S.createSession, { agentId: "echo" }, asAlice);
    const token = await new SignJWT({}).setProtectedHeader({ alg: "HS256" }).setSubject("alice").setExpirationTime("1h").sign(new TextEncoder().encode(SECRET));
    const asToken = { metadata: { authorization: `Bearer ${token}` } };
    const read = await statusOf(client.unary(SessionService, S.getSession, { sessionId: session!.sessionId }, asToken));
    const listed = await client.unary(SessionService, S.listSessions, {}, asToken);
    const named = await statusOf(client.unary(SessionService, S.listSessions, { userId: "alice" }, asToken));
    expect([grpc.status[read.code], listed.sessions.length, grpc.status[named.code]]).toEqual(["PERMISSION_DENIED", 0, "PERMISSION_DENIED"]);
  });

  it("does not tell bob that alice asked the same question (the cache is per user by default)", async () => {
    const ask = (key: string) =>
      client.unary(AgentService, A.execute, { agentId: "echo", task: "the merger terms?" }, { metadata: { authorization: `Bearer ${key}` } });
    const first = await ask(ALICE_KEY);
    const again = await ask(ALICE_KEY);
    const bob = await ask(BOB_KEY);
    expect([first.result?.metadata.cache, again.result?.metadata.cache, bob.result?.metadata.cache]).toEqual(["miss", "hit", "miss"]);
  });
});
