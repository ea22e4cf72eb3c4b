import * as grpc from "@grpc/grpc-js";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AdminService } from "../../src/gen/qingyu/agent/v1/admin_pb.ts";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { EventService, EventType } from "../../src/gen/qingyu/agent/v1/event_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { TestClient, statusOf, type CallOptions } from "../support/grpc-client.ts";
import { runCli, runtime, startServer, type ServerProcess } from "../support/server-process.ts";

const A = AgentService.method;
const S = SessionService.method;
const { UNAUTHENTICATED, PERMISSION_DENIED } = grpc.status;

// Fresh secrets per run: the config only ever holds hashes of the keys.
const key = (name: string) => `${name}-${randomBytes(12).toString("hex")}`;
const KEYS = { alice: key("alice"), bob: key("bob"), olga: key("olga"), root: key("root") };
const sha256 = (k: string) => createHash("sha256").update(k).digest("hex");
const SECRET = randomBytes(32).toString("hex");
const ISSUER = "https://issuer.e2e.test";
const AUDIENCE = "qingyu-e2e";

const config = {
  log: { level: "warn" },
  pipeline: [
    "logging",
    {
      plugin: "auth",
      options: {
        apiKeys: [
          { id: "alice", sha256: sha256(KEYS.alice) },
          { id: "bob", sha256: sha256(KEYS.bob) },
          { id: "olga", sha256: sha256(KEYS.olga), roles: ["ops"] },
          // Upper-case hex is accepted as the same hash.
          { id: "root", sha256: sha256(KEYS.root).toUpperCase(), admin: true },
        ],
        jwt: { algorithms: ["HS256"], secret: SECRET, issuer: ISSUER, audience: AUDIENCE },
      },
    },
    {
      plugin: "authorization",
      options: {
        rules: [
          { principals: ["*"], agents: ["echo"] },
          { principals: ["role:ops", "carol"], agents: ["restricted"] },
        ],
      },
    },
    "validation",
  ],
  providers: { echo: { plugin: "echo" } },
  agents: [
    { id: "echo", provider: "echo", model: "echo-1" },
    { id: "restricted", provider: "echo", model: "echo-r" },
  ],
  plugins: { dirs: [] },
};

const now = () => Math.floor(Date.now() / 1000);

/** A token as an identity provider would issue it; `o` bends one claim for the negative cases. */
function mint(sub: string, roles: string[] = [], o: { iss?: string; aud?: string; exp?: number; secret?: string } = {}): Promise<string> {
  return new SignJWT({ roles })
    .setProtectedHeader({ alg: "HS256" })
    .setSubject(sub)
    .setIssuer(o.iss ?? ISSUER)
    .setAudience(o.aud ?? AUDIENCE)
    .setIssuedAt(o.exp !== undefined ? o.exp - 60 : now())
    .setExpirationTime(o.exp ?? now() + 600)
    .sign(new TextEncoder().encode(o.secret ?? SECRET));
}

const as = (credential: string): CallOptions => ({ metadata: { authorization: `Bearer ${credential}` }, timeoutMs: 10_000 });

describe(`auth and authorization over grpc-js (server on ${runtime})`, () => {
  let server: ServerProcess;
  let client: TestClient;
  const jwt: Record<string, string> = {};

  beforeAll(async () => {
    server = await startServer(config);
    client = new TestClient(server.grpcPort);
    jwt.dave = await mint("dave");
    jwt.carol = await mint("carol");
    jwt.erin = await mint("erin", ["ops"]);
    jwt.admin = await mint("sam", ["admin"]);
  });
  afterAll(async () => {
    client?.close();
    expect(await server?.stop()).toBe(0);
  });

  it("qingyu hash-key prints the same SHA-256 the config stores", async () => {
    const { code, stdout } = await runCli(["hash-key", KEYS.alice]);
    expect(code).toBe(0);
    expect(stdout.trim()).toBe(sha256(KEYS.alice));
  });

  // The message says what was wrong; the reason (qingyu-reason) is what a client branches on.
  const refusals: Array<[string, () => Promise<CallOptions>, string, string]> = [
    ["no credentials", async () => ({ timeoutMs: 10_000 }), "missing credentials", "UNAUTHENTICATED"],
    ["a wrong API key", async () => as(key("alice")), "unknown API key", "TOKEN_INVALID"],
    ["an expired JWT", async () => as(await mint("dave", [], { exp: now() - 3600 })), "token expired", "TOKEN_EXPIRED"],
    ["a JWT for another audience", async () => as(await mint("dave", [], { aud: "someone-else" })), "token audience is not accepted", "TOKEN_INVALID"],
    ["a JWT from another issuer", async () => as(await mint("dave", [], { iss: "https://evil.test" })), "token issuer is not accepted", "TOKEN_INVALID"],
    [
      "a JWT signed with another secret",
      async () => as(await mint("dave", [], { secret: randomBytes(32).toString("hex") })),
      "token signature is invalid",
      "TOKEN_INVALID",
    ],
    [
      "an unsigned alg:none JWT",
      async () => as(new UnsecuredJWT({ roles: ["admin"] }).setSubject("dave").setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime("10m").encode()),
      "unsupported token algorithm",
      "TOKEN_INVALID",
    ],
    [
      "a malformed authorization header",
      async () => ({ metadata: { authorization: `Basic ${KEYS.alice}` } }),
      "malformed authorization header",
      "TOKEN_INVALID",
    ],
    [
      "a bearer header with two tokens",
      async () => ({ metadata: { authorization: `Bearer ${KEYS.alice} ${KEYS.root}` } }),
      "malformed authorization header",
      "TOKEN_INVALID",
    ],
  ];

  it.each(refusals)("refuses %s with UNAUTHENTICATED on Execute, ExecuteStream and SessionService", async (_name, opts, message, reason) => {
    const o = await opts();
    const outcomes = [
      await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", task: "hi" }, o)),
      await statusOf(client.collect(client.stream(AgentService, A.executeStream, { agentId: "echo", task: "hi" }, o))),
      await statusOf(client.unary(SessionService, S.createSession, { agentId: "echo" }, o)),
      await statusOf(client.unary(SessionService, S.listSessions, {}, o)),
    ];
    for (const s of outcomes) {
      expect(s.code).toBe(UNAUTHENTICATED);
      expect(s.details).toContain(message);
      expect(s.metadata.get("qingyu-reason")).toEqual([reason]);
    }
  });

  it("an API key caller acts as its principal: Execute answers, and a session without user_id is theirs", async () => {
    const res = await client.unary(AgentService, A.execute, { agentId: "echo", task: "hello there" }, as(KEYS.alice));
    expect(res.result?.output).toBe("[history=0] hello there");
    const { session } = await client.unary(SessionService, S.createSession, { agentId: "echo" }, as(KEYS.alice));
    expect(session?.userId).toBe("alice");
    await client.unary(AgentService, A.execute, { sessionId: session!.sessionId, task: "first turn" }, as(KEYS.alice));
    // Naming yourself is the same as naming nobody.
    await client.unary(AgentService, A.execute, { sessionId: session!.sessionId, userId: "alice", task: "second" }, as(KEYS.alice));
    const got = await client.unary(SessionService, S.getSession, { sessionId: session!.sessionId }, as(KEYS.alice));
    expect(got.session?.userId).toBe("alice");
    expect(got.session?.messages.map((m) => m.content)).toEqual(["first turn", "[history=0] first turn", "second", "[history=2] second"]);
  });

  it("a JWT caller acts as its sub claim on Execute and ExecuteStream", async () => {
    const { session } = await client.unary(SessionService, S.createSession, { agentId: "echo" }, as(jwt.dave!));
    expect(session?.userId).toBe("dave");
    const events = await client.collect(client.stream(AgentService, A.executeStream, { sessionId: session!.sessionId, task: "streamed" }, as(jwt.dave!)));
    const done = events.at(-1)?.event;
    expect(done?.case === "completed" && done.value.output).toBe("[history=0] streamed");
    const listed = await client.unary(SessionService, S.listSessions, {}, as(jwt.dave!));
    expect(listed.sessions.map((s) => [s.sessionId, s.userId])).toEqual([[session!.sessionId, "dave"]]);
  });

  it("refuses a user_id naming another user with PERMISSION_DENIED; an admin may name anyone", async () => {
    for (const [who, cred] of [
      ["bob", KEYS.bob],
      ["dave", jwt.dave!],
    ] as const) {
      const denied = [
        await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", userId: "alice", task: "hi" }, as(cred))),
        await statusOf(client.collect(client.stream(AgentService, A.executeStream, { agentId: "echo", userId: "alice", task: "hi" }, as(cred)))),
        await statusOf(client.unary(SessionService, S.createSession, { agentId: "echo", userId: "alice" }, as(cred))),
      ];
      for (const s of denied) {
        expect(s.code).toBe(PERMISSION_DENIED);
        expect(s.details).toContain(`principal "${who}" may not act as user "alice"`);
      }
    }
    const byKey = await client.unary(SessionService, S.createSession, { agentId: "echo", userId: "alice" }, as(KEYS.root));
    expect(byKey.session?.userId).toBe("alice");
    const byToken = await client.unary(SessionService, S.createSession, { agentId: "echo", userId: "zed" }, as(jwt.admin!));
    expect(byToken.session?.userId).toBe("zed");
    // The admin's turn lands in alice's session, as alice.
    await client.unary(AgentService, A.execute, { sessionId: byKey.session!.sessionId, userId: "alice", task: "on behalf" }, as(KEYS.root));
    const mine = await client.unary(SessionService, S.getSession, { sessionId: byKey.session!.sessionId }, as(KEYS.alice));
    expect(mine.session?.messages.map((m) => m.content)).toEqual(["on behalf", "[history=0] on behalf"]);
  });

  it("lets only role ops, carol and admins call the restricted agent", async () => {
    for (const [who, cred] of [
      ["bob", KEYS.bob],
      ["dave", jwt.dave!],
    ] as const) {
      const unary = await statusOf(client.unary(AgentService, A.execute, { agentId: "restricted", task: "hi" }, as(cred)));
      const stream = await statusOf(client.collect(client.stream(AgentService, A.executeStream, { agentId: "restricted", task: "hi" }, as(cred))));
      for (const s of [unary, stream]) {
        expect(s.code).toBe(PERMISSION_DENIED);
        expect(s.details).toContain(`principal "${who}" may not call agent "restricted"`);
      }
    }
    for (const cred of [KEYS.olga, jwt.erin!, jwt.carol!, KEYS.root, jwt.admin!]) {
      const res = await client.unary(AgentService, A.execute, { agentId: "restricted", task: "allowed" }, as(cred));
      expect(res.result?.model).toBe("echo-r");
    }
  });

  it("keeps one user's sessions from another: every SessionService RPC and Execute are PERMISSION_DENIED", async () => {
    const alice = as(KEYS.alice);
    const bob = as(KEYS.bob);
    const { session } = await client.unary(SessionService, S.createSession, { agentId: "echo" }, alice);
    const sessionId = session!.sessionId;
    await client.unary(AgentService, A.execute, { sessionId, task: "secret plan" }, alice);
    const { checkpoint } = await client.unary(SessionService, S.saveCheckpoint, { sessionId, data: { step: 1 } }, alice);
    const before = (await client.unary(SessionService, S.getSession, { sessionId }, alice)).session!;

    const attempts = {
      GetSession: client.unary(SessionService, S.getSession, { sessionId }, bob),
      SaveCheckpoint: client.unary(SessionService, S.saveCheckpoint, { sessionId, data: { step: 666 } }, bob),
      GetCheckpoint: client.unary(SessionService, S.getCheckpoint, { sessionId, checkpointId: checkpoint!.checkpointId }, bob),
      GetLatestCheckpoint: client.unary(SessionService, S.getCheckpoint, { sessionId }, bob),
      ListCheckpoints: client.unary(SessionService, S.listCheckpoints, { sessionId }, bob),
      DeleteSession: client.unary(SessionService, S.deleteSession, { sessionId }, bob),
      Execute: client.unary(AgentService, A.execute, { agentId: "echo", sessionId, task: "leak it" }, bob),
      ExecuteSessionOnly: client.unary(AgentService, A.execute, { sessionId, task: "leak it" }, bob),
      ExecuteStream: client.collect(client.stream(AgentService, A.executeStream, { sessionId, task: "leak it" }, bob)),
    };
    for (const [rpc, call] of Object.entries(attempts)) {
      const s = await statusOf(call);
      expect([rpc, s.code]).toEqual([rpc, PERMISSION_DENIED]);
      expect([rpc, s.metadata.get("qingyu-reason")]).toEqual([rpc, ["NOT_SESSION_OWNER"]]);
    }
    const named = await statusOf(client.unary(SessionService, S.listSessions, { userId: "alice" }, bob));
    expect(named.code).toBe(PERMISSION_DENIED);
    expect(named.details).toContain('principal "bob" may not act as user "alice"');
    const bobs = await client.unary(SessionService, S.listSessions, {}, bob);
    expect(bobs.sessions.map((s) => s.userId).filter((u) => u !== "bob")).toEqual([]);
    expect(bobs.sessions.map((s) => s.sessionId)).not.toContain(sessionId);

    // Nothing bob tried changed it.
    const after = (await client.unary(SessionService, S.getSession, { sessionId }, alice)).session!;
    expect(after.version).toBe(before.version);
    expect(after.messages.map((m) => m.content)).toEqual(["secret plan", "[history=0] secret plan"]);
    const checkpoints = await client.unary(SessionService, S.listCheckpoints, { sessionId }, alice);
    expect(checkpoints.checkpoints.map((c) => c.data)).toEqual([{ step: 1 }]);

    // An admin reads it, with or without naming the owner.
    for (const userId of ["", "alice"]) {
      const seen = await client.unary(SessionService, S.getSession, { sessionId, userId }, as(KEYS.root));
      expect(seen.session?.messages).toHaveLength(2);
      expect(seen.session?.userId).toBe("alice");
    }
    const listed = await client.unary(SessionService, S.listSessions, { userId: "alice" }, as(jwt.admin!));
    expect(listed.sessions.map((s) => s.sessionId)).toContain(sessionId);
  });

  type Seen = { type: EventType; userId: string; agentId: string };

  /**
   * What alice's subscription (AGENT_COMPLETED and ERROR_OCCURRED) receives while `act` runs.
   * Alice's own refused call on "restricted" closes the window: once its event is in,
   * every earlier call's event has been published (one process, one bus, in order).
   */
  async function aliceSeesDuring(act: () => Promise<void>): Promise<Seen[]> {
    const seen: Seen[] = [];
    const sub = client.stream(EventService, EventService.method.subscribe, { types: [EventType.AGENT_COMPLETED, EventType.ERROR_OCCURRED] }, as(KEYS.alice));
    sub.on("data", (m) => seen.push({ type: m.event!.type, userId: m.event!.userId, agentId: m.event!.agentId }));
    const ended = statusOf(client.collect(sub));
    const closed = () => seen.some((e) => e.agentId === "restricted");
    try {
      // The subscription registers asynchronously: alice calls until she sees her own event.
      for (let i = 0; i < 100 && seen.length === 0; i++) {
        await client.unary(AgentService, A.execute, { agentId: "echo", task: "sync" }, as(KEYS.alice));
        await new Promise((r) => setTimeout(r, 20));
      }
      expect(seen[0]).toEqual({ type: EventType.AGENT_COMPLETED, userId: "alice", agentId: "echo" });
      seen.length = 0;
      await act();
      await statusOf(client.unary(AgentService, A.execute, { agentId: "restricted", task: "alice's own failure" }, as(KEYS.alice)));
      for (let i = 0; i < 100 && !closed(); i++) await new Promise((r) => setTimeout(r, 20));
      return seen.slice();
    } finally {
      sub.cancel();
      await ended; // the stream is closed before the next test starts
    }
  }

  it("EventService.Subscribe: UNAUTHENTICATED without credentials; a user sees their own calls, not others'", async () => {
    const anonymous = await statusOf(client.collect(client.stream(EventService, EventService.method.subscribe, {}, { timeoutMs: 5000 })));
    expect(anonymous.code).toBe(UNAUTHENTICATED);
    expect(anonymous.details).toContain("missing credentials");

    const seen = await aliceSeesDuring(async () => {
      await client.unary(AgentService, A.execute, { agentId: "echo", task: "bob's own" }, as(KEYS.bob));
      await statusOf(client.unary(AgentService, A.execute, { agentId: "restricted", task: "bob denied" }, as(KEYS.bob)));
      await client.unary(AgentService, A.execute, { agentId: "restricted", task: "the admin's own" }, as(KEYS.root));
      await client.unary(AgentService, A.execute, { agentId: "echo", task: "dave's own" }, as(jwt.dave!));
    });
    expect(seen).toEqual([{ type: EventType.ERROR_OCCURRED, userId: "alice", agentId: "restricted" }]);
  });

  // A refused call's events belong to its principal (or to nobody), never to the user_id it
  // merely claimed or the owner of the session it named.
  it("a call refused by auth is not published as alice's event", async () => {
    const { session } = await client.unary(SessionService, S.createSession, { agentId: "echo" }, as(KEYS.alice));
    const seen = await aliceSeesDuring(async () => {
      await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", userId: "alice", task: "bob as alice" }, as(KEYS.bob)));
      await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", userId: "alice", task: "anonymous as alice" }));
      await statusOf(client.unary(AgentService, A.execute, { sessionId: session!.sessionId, task: "anonymous in alice's session" }));
    });
    expect(seen).toEqual([{ type: EventType.ERROR_OCCURRED, userId: "alice", agentId: "restricted" }]);
  });

  // Were the session looked up before auth ran, NOT_FOUND vs UNAUTHENTICATED would tell an
  // anonymous caller which session ids exist (fixed in 2d280aa).
  it("refuses an anonymous call naming only a session as UNAUTHENTICATED, whether or not the session exists", async () => {
    const { session } = await client.unary(SessionService, S.createSession, { agentId: "echo" }, as(KEYS.alice));
    for (const sessionId of [session!.sessionId, randomUUID()]) {
      const unary = await statusOf(client.unary(AgentService, A.execute, { sessionId, task: "probe" }));
      const stream = await statusOf(client.collect(client.stream(AgentService, A.executeStream, { sessionId, task: "probe" })));
      for (const s of [unary, stream])
        expect([sessionId, s.code, s.details]).toEqual([sessionId, UNAUTHENTICATED, expect.stringContaining("missing credentials")]);
    }
  });

  it("AdminService.Reload: UNAUTHENTICATED without credentials, PERMISSION_DENIED for a non-admin, OK for an admin", async () => {
    const anonymous = await statusOf(client.unary(AdminService, AdminService.method.reload, {}, { timeoutMs: 10_000 }));
    expect(anonymous.code).toBe(UNAUTHENTICATED);
    expect(anonymous.details).toContain("missing credentials");
    for (const [who, cred] of [
      ["bob", KEYS.bob],
      ["erin", jwt.erin!],
    ] as const) {
      const denied = await statusOf(client.unary(AdminService, AdminService.method.reload, {}, as(cred)));
      expect(denied.code).toBe(PERMISSION_DENIED);
      expect(denied.details).toContain(`principal "${who}" is not an admin`);
    }
    const first = await client.unary(AdminService, AdminService.method.reload, {}, as(KEYS.root));
    expect(first.pipeline).toEqual(["logging", "auth", "authorization", "validation"]);
    const second = await client.unary(AdminService, AdminService.method.reload, {}, as(jwt.admin!));
    expect(second.generation).toBe(first.generation + 1n);
    // The reloaded pipeline still authenticates.
    expect((await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", task: "hi" }))).code).toBe(UNAUTHENTICATED);
  });
});
