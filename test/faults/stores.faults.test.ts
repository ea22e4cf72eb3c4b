// Issue #6, cases 7 and 8: the stores fail under the server, and the server itself is killed.
//
// - Redis SIGKILLed while ExecuteStreams are in flight, then restarted on its append-only
//   file; PostgreSQL crash-restarted (`pg_ctl -m immediate`) under streams: the calls end
//   UNAVAILABLE (fast), health says NOT_SERVING, the same process serves again once the
//   store is back, and every acknowledged turn is there exactly once.
// - A write whose Redis connection dropped while it waited is not replayed once the
//   connection is back (ioredis's autoResendUnfulfilledCommands): the caller was told
//   UNAVAILABLE, so a retry must not make it count twice (rate-limit charge, session turn).
// - The server SIGKILLed mid-conversation (stores redis+postgres, postgres and redis): a new
//   process finds every acknowledged turn and checkpoint, each once and in order; what was in
//   flight is there whole or not at all; for redis+postgres also while Redis refuses writes.
//
// The Redis and PostgreSQL that are killed, frozen or paused are the test's own
// (test/support/own-services.ts); the SIGKILL cases use the machine's shared ones, each run under its
// own key prefix and schema.
// durable-faults.e2e covers Redis killed *between* calls; that is not repeated here.
import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { HealthCheckResponse_ServingStatus as Serving } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { runtime, startServer, type ServerProcess } from "../support/server-process.ts";
import { healthBecomes, timed } from "../support/health.ts";
import { OwnPostgres, OwnRedis } from "../support/own-services.ts";
import { crashLines, expectServing } from "./support.ts";
import { databaseUrl, redisUrl } from "../support/services.ts";

const A = AgentService.method;
const S = SessionService.method;
const SHARED_REDIS = redisUrl();
const SHARED_DATABASE = databaseUrl();
const runId = randomUUID().replaceAll("-", "").slice(0, 12);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How fast a call must fail while its store is down: well under any client deadline, generous for a loaded 2-core VM. */
const FAST_MS = 3000;

/** What every case's server shares: one echo agent whose streams last a while (30 ms a word). */
function baseConfig(sessions: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  return {
    log: { level: "warn" },
    // One second to answer: a command waiting on a frozen Redis fails after that.
    redis: { url: SHARED_REDIS, commandTimeoutMs: 1000, connectTimeoutMs: 1000 },
    postgres: { url: SHARED_DATABASE, connectTimeoutMs: 1000, statementTimeoutMs: 2000 },
    // historyMessages above what any conversation here reaches, so each answer counts the whole history.
    sessions: { healthCheckIntervalMs: 200, historyMessages: 200, getMessagesLimit: 400, ...sessions },
    pipeline: ["validation"],
    providers: { echo: { plugin: "echo", options: { tokenDelayMs: 30 } } },
    agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
    plugins: { dirs: [] },
    ...extra,
  };
}

interface StreamOutcome {
  code: string;
  details: string;
  output?: string;
  deltas: number;
}

/** One ExecuteStream to its end; `onDelta` hears each delta. Never rejects: the status is the outcome. */
function streamTurn(client: TestClient, req: { sessionId: string; userId: string; task: string }, onDelta: () => void = () => {}): Promise<StreamOutcome> {
  return new Promise((resolve) => {
    const out: StreamOutcome = { code: "", details: "", deltas: 0 };
    const call = client.stream(AgentService, A.executeStream, req, { timeoutMs: 15_000 });
    call.on("data", (m) => {
      if (m.event.case === "delta") {
        out.deltas++;
        onDelta();
      } else if (m.event.case === "completed") out.output = m.event.value.output;
    });
    call.on("error", () => {}); // the same status comes as "status"
    call.on("status", (s: grpc.StatusObject) => {
      out.code = grpc.status[s.code]!;
      out.details = s.details;
      resolve(out);
    });
  });
}

/** The messages of a history of whole turns, as the echo agent answers them. */
function turnsOf(tasks: readonly string[]): string[][] {
  return tasks.flatMap((task, j) => [
    ["user", task],
    ["assistant", `[history=${2 * j}] ${task}`],
  ]);
}

interface SavedCheckpoint {
  id: string;
  version: bigint;
  turn: number;
}

/**
 * One session's conversation, turn after turn (each streamed), optionally saving a
 * checkpoint after each with expected_version, until a call fails or it is stopped. It
 * records exactly what the client was told: the acknowledged turns and checkpoints, and
 * the operation under way when it stopped.
 */
class Conversation {
  readonly acked: string[] = [];
  readonly checkpoints: SavedCheckpoint[] = [];
  /** The operation that failed and how; a turn whose answer never came may or may not be stored. */
  failed: { op: "turn" | "checkpoint"; task: string; code: string; details: string; at: number } | undefined;
  /** Between this turn's first delta and its status. */
  streaming = false;
  stopped = false;
  readonly done: Promise<void>;

  constructor(
    private readonly client: TestClient,
    readonly sessionId: string,
    readonly userId: string,
    readonly name: string,
    private readonly withCheckpoints = false,
    firstTurn = 1,
  ) {
    this.done = this.run(firstTurn);
  }

  private async run(first: number): Promise<void> {
    for (let k = first; k < first + 60 && !this.stopped; k++) {
      const task = `${this.name} turn ${k} says hello`;
      const turn = await streamTurn(this.client, { sessionId: this.sessionId, userId: this.userId, task }, () => (this.streaming = true));
      this.streaming = false;
      if (turn.code !== "OK" || turn.output === undefined) {
        this.failed = { op: "turn", task, code: turn.code, details: turn.details, at: Date.now() };
        return;
      }
      this.acked.push(task);
      // What the client was told: the answer saw every turn acknowledged before it, whole.
      if (turn.output !== `[history=${2 * (this.acked.length - 1)}] ${task}`)
        throw new Error(`${this.name}: answer ${turn.output} after ${this.acked.length - 1} turns`);
      if (!this.withCheckpoints) continue;
      const version = BigInt(this.acked.length + this.checkpoints.length);
      try {
        const { checkpoint } = await this.client.unary(
          SessionService,
          S.saveCheckpoint,
          { sessionId: this.sessionId, userId: this.userId, data: { turn: k, name: this.name }, expectedVersion: version },
          { timeoutMs: 10_000 },
        );
        this.checkpoints.push({ id: checkpoint!.checkpointId, version: checkpoint!.version, turn: k });
      } catch (err) {
        const e = err as grpc.ServiceError;
        this.failed = { op: "checkpoint", task, code: grpc.status[e.code]!, details: e.details, at: Date.now() };
        return;
      }
    }
  }

  /** The task that may or may not be stored: the turn under way when the calls began to fail. */
  get inFlightTurn(): string | undefined {
    return this.failed?.op === "turn" ? this.failed.task : undefined;
  }
}

/** Waits until every conversation has `turns` acknowledged turns and at least `streaming` of them are mid-stream. */
async function midStream(conversations: Conversation[], turns: number, streaming: number, withinMs = 15_000): Promise<number> {
  const deadline = Date.now() + withinMs;
  for (;;) {
    const failed = conversations.find((c) => c.failed);
    if (failed) throw new Error(`${failed.name} failed before the fault: ${failed.failed!.code} ${failed.failed!.details}`);
    const now = conversations.filter((c) => c.streaming).length;
    if (conversations.every((c) => c.acked.length >= turns) && now >= streaming) return now;
    if (Date.now() > deadline) throw new Error(`conversations never reached ${turns} turns with ${streaming} mid-stream`);
    await sleep(2);
  }
}

/**
 * The session as stored is the acknowledged turns, each once and in order, plus the turn
 * that was in flight when the calls failed, whole, or nothing of it; message_count and
 * version agree with it. Returns how many turns it holds.
 */
async function expectTurns(client: TestClient, c: Conversation, otherWrites = 0): Promise<number> {
  const { session } = await client.unary(SessionService, S.getSession, { sessionId: c.sessionId, userId: c.userId }, { timeoutMs: 10_000 });
  const got = session!.messages.map((m) => [m.role, m.content]);
  const allowed = [turnsOf(c.acked)];
  if (c.inFlightTurn) allowed.push(turnsOf([...c.acked, c.inFlightTurn]));
  expect(allowed, `${c.name}: the stored history`).toContainEqual(got);
  expect(session!.messageCount, `${c.name}: message_count`).toBe(BigInt(got.length));
  expect(session!.version, `${c.name}: version`).toBe(BigInt(got.length / 2 + otherWrites));
  return got.length / 2;
}

describe(`stores under the server fail and come back (${runtime})`, () => {
  const servers: ServerProcess[] = [];
  const clients: TestClient[] = [];
  const redises: OwnRedis[] = [];
  const connections: Redis[] = [];
  let ownPg: OwnPostgres | undefined;
  let sharedPool: pg.Pool | undefined;
  const sharedSchema = `faults_stores_${runId}`;
  const sharedPrefix = `qingyu:faults:stores:${runId}:`;

  async function serve(config: unknown, env: Record<string, string> = {}): Promise<[ServerProcess, TestClient]> {
    // Explicit, so REDIS_URL / DATABASE_URL in the caller's environment cannot point the server elsewhere.
    const server = await startServer(config, { REDIS_URL: SHARED_REDIS, DATABASE_URL: SHARED_DATABASE, ...env });
    servers.push(server);
    const client = new TestClient(server.grpcPort);
    clients.push(client);
    return [server, client];
  }
  async function ownRedis(): Promise<OwnRedis> {
    const r = await OwnRedis.create();
    redises.push(r);
    return r;
  }
  /** The test's own connection to a Redis (not the server's). */
  function connect(url: string): Redis {
    const r = new Redis(url, { maxRetriesPerRequest: 1, retryStrategy: () => 200 });
    r.on("error", () => {});
    connections.push(r);
    return r;
  }
  function noCrash(server: ServerProcess): void {
    expect(crashLines(server), server.stderr()).toEqual([]);
  }

  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.stop("SIGKILL")));
    for (const c of connections) c.disconnect();
    await Promise.all(redises.map((r) => r.destroy()));
    await ownPg?.destroy();
    if (sharedPool) {
      await sharedPool.query(`drop schema if exists ${sharedSchema} cascade`);
      await sharedPool.query("delete from qingyu_schema_migrations where component = $1", [`sessions:${sharedSchema}`]);
      await sharedPool.end();
    }
    const shared = new Redis(SHARED_REDIS, { lazyConnect: true, maxRetriesPerRequest: 1 });
    shared.on("error", () => {});
    const keys = await shared.keys(`${sharedPrefix}*`).catch(() => [] as string[]);
    if (keys.length > 0) await shared.del(...keys).catch(() => 0);
    shared.disconnect();
  });

  it("store redis: Redis SIGKILLed with streams in flight, restarted on its AOF: UNAVAILABLE fast, NOT_SERVING, then served again; acknowledged turns there exactly once", async () => {
    const own = await ownRedis();
    const [server, client] = await serve(
      baseConfig({ store: "redis", redisKeyPrefix: "q:" }, { redis: { url: own.url, commandTimeoutMs: 1000, connectTimeoutMs: 1000 } }),
      {
        REDIS_URL: own.url,
      },
    );
    const userId = "kill-redis";
    const ids = await Promise.all(
      Array.from({ length: 8 }, async () => (await client.unary(SessionService, S.createSession, { userId, agentId: "echo" })).session!.sessionId),
    );
    const conversations = ids.map((id, i) => new Conversation(client, id, userId, `s${i}`));

    const inFlight = await midStream(conversations, 2, 5);
    await own.kill();
    const killedAt = Date.now();
    await Promise.all(conversations.map((c) => c.done));
    // Every conversation stopped at the kill, each with a named status, in time.
    for (const c of conversations) {
      expect(c.failed?.code, `${c.name}: ${c.failed?.details}`).toBe("UNAVAILABLE");
      expect(c.failed!.details).toContain("session store unavailable");
      expect(c.failed!.at - killedAt, c.name).toBeLessThan(FAST_MS);
    }
    const streamsEnded = Math.max(...conversations.map((c) => c.failed!.at)) - killedAt;

    // While it is down: new calls fail fast, and readiness says so.
    const down = await Promise.all([
      timed(client.unary(AgentService, A.execute, { sessionId: ids[0]!, userId, task: "down" }, { timeoutMs: 10_000 })),
      timed(client.unary(SessionService, S.getSession, { sessionId: ids[1]!, userId }, { timeoutMs: 10_000 })),
      timed(client.unary(SessionService, S.createSession, { userId, agentId: "echo" }, { timeoutMs: 10_000 })),
      (async () => {
        const started = Date.now();
        const s = await streamTurn(client, { sessionId: ids[2]!, userId, task: "down" });
        expect(s.deltas).toBe(0);
        return { ...s, ms: Date.now() - started };
      })(),
    ]);
    for (const d of down) {
      expect(d.code, d.details).toBe("UNAVAILABLE");
      expect(d.ms).toBeLessThan(FAST_MS);
    }
    const notServing = await healthBecomes(client, Serving.NOT_SERVING, FAST_MS);
    expect(server.child.exitCode).toBeNull();

    await own.start();
    const serving = await healthBecomes(client, Serving.SERVING, 10_000);
    console.info(
      `[${runtime}] redis SIGKILL with ${inFlight} streams in flight: all 8 ended UNAVAILABLE within ${streamsEnded} ms; new calls UNAVAILABLE in ${down
        .map((d) => d.ms)
        .join("/")} ms; NOT_SERVING after ${notServing} ms; SERVING ${serving} ms after the restart`,
    );

    // Every acknowledged turn came back with Redis (from its AOF), once; the same process then
    // goes on with every conversation, its prompts seeing exactly that history.
    const resumed = await Promise.all(
      conversations.map(async (c) => {
        const turns = await expectTurns(client, c);
        const task = `${c.name} after the restart`;
        const s = await streamTurn(client, { sessionId: c.sessionId, userId, task });
        expect(s.code, s.details).toBe("OK");
        expect(s.output).toBe(`[history=${2 * turns}] ${task}`);
        return turns;
      }),
    );
    expect(resumed.every((n) => n >= 2)).toBe(true);
    await expectServing(server);
    noCrash(server);
  });

  it("a write waiting on Redis when its connection drops is not replayed after the reconnect: the UNAVAILABLE call's retry counts once (rate-limit backend redis, session turn)", async () => {
    const own = await ownRedis();
    const limit = 3;
    const rateLimit = { plugin: "rate-limit", options: { backend: "redis", keyPrefix: "rl:", perPrincipal: { requestsPerMinute: limit } } };
    const [server, client] = await serve(
      baseConfig(
        { store: "redis", redisKeyPrefix: "q:" },
        { redis: { url: own.url, commandTimeoutMs: 1000, connectTimeoutMs: 1000 }, pipeline: [rateLimit, "validation"] },
      ),
      { REDIS_URL: own.url },
    );
    const admin = connect(own.url);
    // A bucket holds `limit` and refills `limit` a minute: within 60 s / limit of the first charge,
    // less than one token has come back, so exactly `limit` calls can pass in all.
    const firstChargeAt = Date.now();
    const rl = (task: string) => client.unary(AgentService, A.execute, { agentId: "echo", userId: "rl", task }, { timeoutMs: 10_000 });
    const admitted: string[] = [];
    admitted.push((await rl("one")).result!.output);

    const userId = "turns";
    const sessionId = (await client.unary(SessionService, S.createSession, { userId, agentId: "echo" })).session!.sessionId;
    // 1. Redis SIGKILLed and restarted on its AOF: calls in the outage are refused without a charge,
    //    and the charges made before survive.
    await own.kill();
    const outage = await Promise.all([timed(rl("two")), timed(rl("two again"))]);
    for (const o of outage) {
      expect(o.code, o.details).toBe("UNAVAILABLE");
      expect(o.details).toContain("rate-limit redis backend unavailable");
      expect(o.ms).toBeLessThan(FAST_MS);
    }
    await healthBecomes(client, Serving.NOT_SERVING, FAST_MS);
    await own.start();
    const recovery = await healthBecomes(client, Serving.SERVING, 10_000);
    admitted.push((await rl("two")).result!.output);
    // A turn after the restart, so Redis has the append script cached again (after a restart a
    // script is unknown until run once; an EVALSHA re-sent blindly would then fail with NOSCRIPT).
    const first = await streamTurn(client, { sessionId, userId, task: "first turn" });
    expect(first.code, first.details).toBe("OK");

    // 2. Redis stops executing writes (CLIENT PAUSE WRITE: scripts wait, PING is answered) while a
    //    turn's append and a charge are waiting on it; both time out as UNAVAILABLE. Then the
    //    server's connection is dropped and writes resume.
    let paused: Promise<unknown> | undefined;
    const second = streamTurn(client, { sessionId, userId, task: "second turn" }, () => {
      paused ??= admin.call("CLIENT", "PAUSE", 20_000, "WRITE");
    });
    while (!paused) await sleep(2);
    await paused;
    const [turn, charge] = await Promise.all([second.then((s) => ({ ...s, ms: 0 })), timed(rl("three"))]);
    expect(turn.code, turn.details).toBe("UNAVAILABLE");
    expect(turn.deltas).toBeGreaterThan(0); // it failed storing the answer, not before
    expect(charge.code, charge.details).toBe("UNAVAILABLE");
    expect(charge.ms).toBeLessThan(FAST_MS);
    const killed = Number(await admin.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"));
    expect(killed).toBeGreaterThan(0);
    await admin.call("CLIENT", "UNPAUSE");
    // Back once a session read goes through the server's new connection (anything it would
    // replay is sent before that read, on the same connection).
    for (const deadline = Date.now() + 10_000; ; await sleep(50)) {
      const ok = await client.unary(SessionService, S.listSessions, { userId }, { timeoutMs: 2000 }).then(
        () => true,
        () => false,
      );
      if (ok) break;
      if (Date.now() > deadline) throw new Error("the server never reached Redis again");
    }

    // Before anyone retries, Redis holds neither write the callers were told had failed
    // (ioredis would re-send both on the new connection, autoResendUnfulfilledCommands).
    const bucket = `rl:p:user:rl:req`;
    const beforeRetry = await client.unary(SessionService, S.getSession, { sessionId, userId });
    expect
      .soft(
        beforeRetry.session!.messages.map((m) => m.content),
        "the turn that failed UNAVAILABLE was stored after all",
      )
      .toEqual(["first turn", "[history=0] first turn"]);
    expect.soft(Number(await admin.hget(bucket, "l")), "the charge refused UNAVAILABLE was made after all").toBeGreaterThanOrEqual(limit - admitted.length);

    // The callers do what UNAVAILABLE invites: they retry, once each.
    const retryCharge = await rl("three").then(
      (res) => (admitted.push(res.result!.output), "OK"),
      (err: grpc.ServiceError) => `${grpc.status[err.code]}: ${err.details}`,
    );
    const retried = await streamTurn(client, { sessionId, userId, task: "second turn" });
    expect.soft(retryCharge, "the retry of the refused call").toBe("OK");
    expect.soft(retried.code, retried.details).toBe("OK");
    expect.soft(retried.output, "the retried turn's history").toBe("[history=2] second turn");

    // Exactly `limit` calls were let through in all, so the next is refused...
    const refused = await timed(rl("four"));
    expect(refused.code, refused.details).toBe("RESOURCE_EXHAUSTED");
    expect(admitted).toEqual(["[history=0] one", "[history=0] two", "[history=0] three"]);
    // ...and the bucket in Redis holds what `limit` charges leave, read without the server:
    // less than one token (the refill since the first charge), not the debt of a fourth charge.
    const level = Number(await admin.hget(bucket, "l"));
    const elapsed = Date.now() - firstChargeAt;
    expect(elapsed, "the case must run within one token's refill time").toBeLessThan(60_000 / limit);
    expect(level).toBeGreaterThanOrEqual(0);
    expect(level).toBeLessThan(1);
    // The turn that failed is not there; its retry is, once.
    const { session } = await client.unary(SessionService, S.getSession, { sessionId, userId });
    expect(session!.messages.map((m) => [m.role, m.content])).toEqual(turnsOf(["first turn", "second turn"]));
    expect(session!.messageCount).toBe(4n);
    expect(session!.version).toBe(2n);
    console.info(
      `[${runtime}] rate-limit: outage calls UNAVAILABLE in ${outage.map((o) => o.ms).join("/")} ms, SERVING ${recovery} ms after the restart; paused charge UNAVAILABLE in ${charge.ms} ms; bucket level ${level.toFixed(3)} after ${elapsed} ms`,
    );
    await expectServing(server);
    noCrash(server);
  });

  describe.each(["postgres", "redis+postgres"] as const)("PostgreSQL crash-restarted under store %s", (store) => {
    const schema = `faults_${store.replace("+", "_")}`;
    beforeAll(async () => {
      ownPg ??= await OwnPostgres.create();
      // A case before this one may have failed during its outage.
      if (!ownPg.running) await ownPg.start();
      const pool = new pg.Pool({ connectionString: ownPg.url, max: 1 });
      await pool.query(`create schema ${schema}`);
      await pool.end();
    });

    it("UNAVAILABLE fast and NOT_SERVING while it is down; served again without a restart, acknowledged turns there exactly once", async () => {
      const dbUrl = ownPg!.url;
      const [server, client] = await serve(
        baseConfig(
          { store, postgresSchema: schema, redisKeyPrefix: `${sharedPrefix}${store}:` },
          { postgres: { url: dbUrl, connectTimeoutMs: 1000, statementTimeoutMs: 2000 } },
        ),
        { DATABASE_URL: dbUrl },
      );
      const userId = `pg-${store}`;
      const ids = await Promise.all(
        Array.from({ length: 6 }, async () => (await client.unary(SessionService, S.createSession, { userId, agentId: "echo" })).session!.sessionId),
      );
      const conversations = ids.map((id, i) => new Conversation(client, id, userId, `${store} s${i}`));

      const inFlight = await midStream(conversations, 2, 3);
      await ownPg!.crash();
      const crashedAt = Date.now();
      await Promise.all(conversations.map((c) => c.done));
      for (const c of conversations) {
        expect(c.failed?.code, `${c.name}: ${c.failed?.details}`).toBe("UNAVAILABLE");
        expect(c.failed!.details).toBe("session store unavailable");
        expect(c.failed!.at - crashedAt, c.name).toBeLessThan(FAST_MS);
      }
      const streamsEnded = Math.max(...conversations.map((c) => c.failed!.at)) - crashedAt;

      const writes = await Promise.all([
        timed(client.unary(AgentService, A.execute, { sessionId: ids[0]!, userId, task: "down" }, { timeoutMs: 10_000 })),
        timed(client.unary(SessionService, S.saveCheckpoint, { sessionId: ids[1]!, userId, data: { down: true } }, { timeoutMs: 10_000 })),
        timed(client.unary(SessionService, S.createSession, { userId, agentId: "echo" }, { timeoutMs: 10_000 })),
      ]);
      for (const w of writes) {
        expect(w.code, w.details).toBe("UNAVAILABLE");
        expect(w.ms).toBeLessThan(FAST_MS);
      }
      // With store postgres a read fails the same way; with redis+postgres it may be answered by the hot copy.
      if (store === "postgres") {
        const read = await timed(client.unary(SessionService, S.getSession, { sessionId: ids[2]!, userId }, { timeoutMs: 10_000 }));
        expect(read.code, read.details).toBe("UNAVAILABLE");
        expect(read.ms).toBeLessThan(FAST_MS);
      }
      const notServing = await healthBecomes(client, Serving.NOT_SERVING, FAST_MS);

      await ownPg!.start();
      const serving = await healthBecomes(client, Serving.SERVING, 10_000);
      console.info(
        `[${runtime}] postgres crash under ${store} with ${inFlight} streams in flight: all ended UNAVAILABLE within ${streamsEnded} ms; writes UNAVAILABLE in ${writes
          .map((w) => w.ms)
          .join("/")} ms; NOT_SERVING after ${notServing} ms; SERVING ${serving} ms after the restart`,
      );

      const turns = await Promise.all(conversations.map((c) => expectTurns(client, c)));
      // The truth itself holds the same, each message once.
      const truth = new pg.Pool({ connectionString: dbUrl, max: 1 });
      try {
        for (const [i, c] of conversations.entries()) {
          const rows = await truth.query(`select content from ${schema}.messages where session_id = $1 order by id`, [c.sessionId]);
          expect(rows.rows.length, c.name).toBe(2 * turns[i]!);
        }
      } finally {
        await truth.end();
      }
      // The same process goes on with every conversation, its prompts seeing exactly that history.
      await Promise.all(
        conversations.map(async (c, i) => {
          const task = `${c.name} after the restart`;
          const s = await streamTurn(client, { sessionId: c.sessionId, userId, task });
          expect(s.code, s.details).toBe("OK");
          expect(s.output).toBe(`[history=${2 * turns[i]!}] ${task}`);
        }),
      );
      await expectServing(server);
      noCrash(server);
    });
  });

  async function sharedSchemaReady(): Promise<void> {
    if (sharedPool) return;
    sharedPool = new pg.Pool({ connectionString: SHARED_DATABASE, max: 1 });
    // The server migrates tables into the schema but never creates the schema itself.
    await sharedPool.query(`create schema ${sharedSchema}`);
  }

  describe.each(["redis+postgres", "postgres", "redis"] as const)("the server SIGKILLed mid-conversation, store %s", (store) => {
    beforeAll(sharedSchemaReady);

    // redis+postgres: the SIGKILL can land between a write's PostgreSQL commit and its Redis copy
    // update (about one run in three here); the copy's version no longer matches the row's, so
    // the new process reads the truth instead of a stale copy.
    it("a new process finds every acknowledged turn and checkpoint, each once and in order; the one in flight whole or not at all", async () => {
      const config = baseConfig({ store, postgresSchema: sharedSchema, redisKeyPrefix: `${sharedPrefix}kill:${store}:`, checkpointsKept: 100 });
      const [first, firstClient] = await serve(config);
      const userId = `sigkill-${store}`;
      const ids = await Promise.all(
        Array.from({ length: 8 }, async () => (await firstClient.unary(SessionService, S.createSession, { userId, agentId: "echo" })).session!.sessionId),
      );
      const conversations = ids.map((id, i) => new Conversation(firstClient, id, userId, `${store} s${i}`, true));

      const inFlight = await midStream(conversations, 3, 3);
      noCrash(first);
      expect(await first.stop("SIGKILL")).toBe("SIGKILL");
      await Promise.all(conversations.map((c) => c.done));
      for (const c of conversations) expect(c.failed, `${c.name} kept going after the kill`).toBeDefined();

      const [second, client] = await serve(config);
      const restartedAt = Date.now();
      await Promise.all(
        conversations.map(async (c) => {
          // The in-flight checkpoint (if any) may have been stored: it is one more write on the version.
          const { checkpoints } = await client.unary(SessionService, S.listCheckpoints, { sessionId: c.sessionId, userId, pageSize: 100 });
          const listed = [...checkpoints].reverse(); // oldest first
          const ackedIds = c.checkpoints.map((k) => k.id);
          const extra = c.failed?.op === "checkpoint" ? 1 : 0;
          expect(listed.length, c.name).toBeGreaterThanOrEqual(ackedIds.length);
          expect(listed.length, c.name).toBeLessThanOrEqual(ackedIds.length + extra);
          // Every acknowledged checkpoint, once, in order, with its data and version, each the parent of the next.
          expect(
            listed.slice(0, ackedIds.length).map((k) => k.checkpointId),
            c.name,
          ).toEqual(ackedIds);
          listed.forEach((k, j) => {
            expect(k.data, c.name).toEqual({ turn: j + 1, name: c.name });
            expect(k.version, c.name).toBe(BigInt(2 * (j + 1)));
            expect(k.parentCheckpointId, c.name).toBe(j === 0 ? "" : listed[j - 1]!.checkpointId);
          });
          for (const k of c.checkpoints) expect(listed.find((l) => l.checkpointId === k.id)?.version).toBe(k.version);
          const turns = await expectTurns(client, c, listed.length);
          // A checkpoint follows its turn: never more checkpoints than turns, never a turn stored past an unsaved checkpoint.
          expect(turns - listed.length, c.name).toBeGreaterThanOrEqual(0);
          expect(turns - listed.length, c.name).toBeLessThanOrEqual(1);

          // The new process goes on: the next turn sees exactly that history, and a checkpoint at the version read.
          const task = `${c.name} on the new process`;
          const s = await streamTurn(client, { sessionId: c.sessionId, userId, task });
          expect(s.code, s.details).toBe("OK");
          expect(s.output).toBe(`[history=${2 * turns}] ${task}`);
          const saved = await client.unary(SessionService, S.saveCheckpoint, {
            sessionId: c.sessionId,
            userId,
            data: { after: "restart" },
            expectedVersion: BigInt(turns + 1 + listed.length),
          });
          expect(saved.checkpoint?.parentCheckpointId).toBe(listed.at(-1)?.checkpointId ?? "");
        }),
      );
      const acked = conversations.reduce((n, c) => n + c.acked.length + c.checkpoints.length, 0);
      console.info(
        `[${runtime}] SIGKILL under store ${store} with ${inFlight} streams in flight: ${acked} acknowledged writes, all found by the new process, checked and continued in ${Date.now() - restartedAt} ms`,
      );
      await expectServing(second);
      noCrash(second);
    });
  });

  // A write is committed to PostgreSQL, then its Redis copy is updated. Here Redis takes no
  // writes for longer than commandTimeoutMs, so the copy's update never lands, and the process
  // is SIGKILLed: the next process finds the copy a version behind the row and does not serve it.
  it("store redis+postgres: a turn acknowledged while Redis took no writes is there after a SIGKILL", async () => {
    await sharedSchemaReady();
    const own = await ownRedis();
    const config = baseConfig(
      { store: "redis+postgres", postgresSchema: sharedSchema, redisKeyPrefix: "q:" },
      { redis: { url: own.url, commandTimeoutMs: 1000, connectTimeoutMs: 1000 } },
    );
    const [first, firstClient] = await serve(config, { REDIS_URL: own.url });
    const admin = connect(own.url);
    const userId = "stale-copy";
    const sessionId = (await firstClient.unary(SessionService, S.createSession, { userId, agentId: "echo" })).session!.sessionId;
    const one = await streamTurn(firstClient, { sessionId, userId, task: "one" });
    expect(one.code, one.details).toBe("OK");

    // Redis answers reads but runs no script: the copy's update waits, times out, and is given up.
    await admin.call("CLIENT", "PAUSE", 20_000, "WRITE");
    const two = await streamTurn(firstClient, { sessionId, userId, task: "two" });
    expect(two.code, two.details).toBe("OK");
    expect(two.output).toBe("[history=2] two");
    expect(await first.stop("SIGKILL")).toBe("SIGKILL");
    await admin.call("CLIENT", "UNPAUSE");

    const [, client] = await serve(config, { REDIS_URL: own.url });
    const { session } = await client.unary(SessionService, S.getSession, { sessionId, userId });
    expect(
      session!.messages.map((m) => m.content),
      "GetSession on the new process",
    ).toEqual(["one", "[history=0] one", "two", "[history=2] two"]);
    expect(session!.version, "its version").toBe(2n);
    const three = await streamTurn(client, { sessionId, userId, task: "three" });
    expect(three.output, "the next turn's prompt").toBe("[history=4] three");
  });
});
