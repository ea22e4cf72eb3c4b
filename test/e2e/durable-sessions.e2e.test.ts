import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService, type Checkpoint } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { runtime, startServer, type ServerProcess } from "../support/server-process.ts";
import { databaseUrl, redisUrl } from "../support/services.ts";

const A = AgentService.method;
const S = SessionService.method;
const REDIS_URL = redisUrl();
const DATABASE_URL = databaseUrl();
// Each racing writer saves this many checkpoints.
const K = 6;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// One schema and one key prefix per run, so Node and Deno runs (and reruns) never share sessions.
const runId = randomUUID().replaceAll("-", "").slice(0, 12);
const schema = `e2e_sessions_${runId}`;
const prefix = `qingyu:e2e:sessions:${runId}:`;

const stores = ["redis", "postgres", "redis+postgres"] as const;
type Store = (typeof stores)[number];

function config(store: Store) {
  return {
    log: { level: "warn" },
    redis: { url: REDIS_URL },
    postgres: { url: DATABASE_URL },
    // The seed checkpoint plus both writers' must all stay listed.
    sessions: { store, redisKeyPrefix: `${prefix}${store}:`, postgresSchema: schema, checkpointsKept: 2 * K + 5 },
    pipeline: ["validation"],
    agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
    plugins: { dirs: [] },
  };
}

// Explicit, so a REDIS_URL / DATABASE_URL in the caller's environment cannot point the servers elsewhere.
const env = { REDIS_URL, DATABASE_URL };

let pool: pg.Pool;
let redis: Redis;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
  redis = new Redis(REDIS_URL);
  // The server migrates tables into the schema but never creates the schema itself.
  await pool.query(`create schema ${schema}`);
});

afterAll(async () => {
  if (pool) {
    await pool.query(`drop schema if exists ${schema} cascade`);
    await pool.query("delete from qingyu_schema_migrations where component = $1", [`sessions:${schema}`]);
    await pool.end();
  }
  if (redis) {
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  }
});

describe.each(stores)(`durable sessions on store %s, two server processes (${runtime})`, (store) => {
  let a: ServerProcess | undefined;
  let b: ServerProcess | undefined;
  let ca: TestClient;
  let cb: TestClient;

  beforeAll(async () => {
    [a, b] = await Promise.all([startServer(config(store), env), startServer(config(store), env)]);
    ca = new TestClient(a.grpcPort);
    cb = new TestClient(b.grpcPort);
  });

  afterAll(async () => {
    ca?.close();
    cb?.close();
    await Promise.all([a?.stop(), b?.stop()]);
  });

  it("two processes saving checkpoints with expected_version: gap-free versions, one winner per version, a linked chain", async () => {
    const userId = `racer-${store}`;
    const { session } = await ca.unary(SessionService, S.createSession, { userId, agentId: "echo" });
    const sessionId = session!.sessionId;
    // A seed checkpoint first, so every writer starts from a written session.
    const seed = await ca.unary(SessionService, S.saveCheckpoint, { sessionId, userId, data: { writer: "seed" }, expectedVersion: 0n });
    expect(seed.checkpoint?.version).toBe(1n);

    async function writer(client: TestClient, name: string) {
      const saved: Array<{ expected: bigint; checkpoint: Checkpoint }> = [];
      let aborted = 0;
      while (saved.length < K) {
        const { session: current } = await client.unary(SessionService, S.getSession, { sessionId, userId });
        const expected = current!.version;
        try {
          const res = await client.unary(SessionService, S.saveCheckpoint, {
            sessionId,
            userId,
            data: { writer: name, n: saved.length + 1 },
            expectedVersion: expected,
          });
          saved.push({ expected, checkpoint: res.checkpoint! });
        } catch (err) {
          // Only a lost race may fail a save; anything else fails the test.
          if ((err as grpc.ServiceError).code !== grpc.status.ABORTED) throw err;
          aborted++;
        }
      }
      return { saved, aborted };
    }
    const results = await Promise.all([writer(ca, "a"), writer(cb, "b")]);
    const saves = results.flatMap((r) => r.saved);
    console.info(`${store}: ${results.map((r) => r.aborted).join(" + ")} saves ABORTED by the other writer`);

    // Each OK save produced exactly the version after the one it expected...
    for (const { expected, checkpoint } of saves) expect(checkpoint.version).toBe(expected + 1n);
    // ...and no two OK saves share a version: together they are 2..2K+1 with no gap.
    const versions = saves.map((s) => Number(s.checkpoint.version)).sort((x, y) => x - y);
    expect(versions).toEqual(Array.from({ length: 2 * K }, (_, i) => i + 2));

    const list = await ca.unary(SessionService, S.listCheckpoints, { sessionId, userId, pageSize: 100 });
    expect(list.nextPageToken).toBe("");
    expect(list.checkpoints.map((c) => Number(c.version))).toEqual(Array.from({ length: 2 * K + 1 }, (_, i) => 2 * K + 1 - i));
    // Newest first: each one's parent is the next one listed; the seed has none.
    const chain = list.checkpoints;
    for (let i = 0; i < chain.length - 1; i++) expect(chain[i]!.parentCheckpointId, `parent of version ${chain[i]!.version}`).toBe(chain[i + 1]!.checkpointId);
    expect(chain.at(-1)!.checkpointId).toBe(seed.checkpoint!.checkpointId);
    expect(chain.at(-1)!.parentCheckpointId).toBe("");
    // The stored checkpoints are the ones the writers were told they saved, with their data.
    const byId = new Map(saves.map((s) => [s.checkpoint.checkpointId, s.checkpoint]));
    for (const c of chain.slice(0, -1)) expect(c.data).toEqual(byId.get(c.checkpointId)?.data);
    for (const name of ["a", "b"]) {
      expect(chain.filter((c) => c.data?.writer === name).map((c) => c.data?.n)).toEqual(Array.from({ length: K }, (_, i) => K - i));
    }
    const final = await cb.unary(SessionService, S.getSession, { sessionId, userId });
    expect(final.session?.version).toBe(BigInt(2 * K + 1));
  });

  it("a conversation survives SIGKILL of the process that held it; another process continues it", async () => {
    const userId = `restart-${store}-${runId}`;
    const { session } = await ca.unary(SessionService, S.createSession, { userId, agentId: "echo", metadata: { store } });
    const sessionId = session!.sessionId;
    const answers: string[] = [];
    for (const task of ["one", "two", "three"]) {
      const res = await ca.unary(AgentService, A.execute, { sessionId, userId, task });
      answers.push(res.result!.output);
    }
    expect(answers).toEqual(["[history=0] one", "[history=2] two", "[history=4] three"]);
    const saved = await ca.unary(SessionService, S.saveCheckpoint, { sessionId, userId, data: { step: 3, notes: ["kept"] }, expectedVersion: 3n });
    expect(saved.checkpoint?.version).toBe(4n);

    // No graceful shutdown: whatever A acknowledged must already be in the shared store.
    expect(await a!.stop("SIGKILL")).toBe("SIGKILL");

    const fourth = await cb.unary(AgentService, A.execute, { sessionId, userId, task: "four" });
    expect(fourth.result?.output).toBe("[history=6] four");
    const got = await cb.unary(SessionService, S.getSession, { sessionId, userId });
    expect(got.session?.messages.map((m) => [m.role, m.content])).toEqual([
      ["user", "one"],
      ["assistant", "[history=0] one"],
      ["user", "two"],
      ["assistant", "[history=2] two"],
      ["user", "three"],
      ["assistant", "[history=4] three"],
      ["user", "four"],
      ["assistant", "[history=6] four"],
    ]);
    expect(got.session?.version).toBe(5n);
    expect(got.session?.metadata).toEqual({ store });
    const latest = await cb.unary(SessionService, S.getCheckpoint, { sessionId, userId });
    expect(latest.checkpoint?.checkpointId).toBe(saved.checkpoint?.checkpointId);
    expect(latest.checkpoint?.data).toEqual({ step: 3, notes: ["kept"] });
    expect(latest.checkpoint?.version).toBe(4n);
    const listed = await cb.unary(SessionService, S.listSessions, { userId });
    expect(listed.sessions.map((s) => [s.sessionId, s.version])).toEqual([[sessionId, 5n]]);
  });

  it("expires a session after ttl_seconds; a turn pushes the expiry back", async () => {
    const userId = `ttl-${store}`;
    const create = () => cb.unary(SessionService, S.createSession, { userId, agentId: "echo", ttlSeconds: 1 });
    const idle = (await create()).session!.sessionId;
    // The server set idle's expiry before this instant, so it is gone by t0 + 1 s.
    const t0 = Date.now();
    const touched = (await create()).session!.sessionId;
    const get = (sessionId: string) => cb.unary(SessionService, S.getSession, { sessionId, userId });

    await sleep(400);
    expect((await get(idle)).session?.sessionId).toBe(idle);
    await sleep(t0 + 700 - Date.now());
    // Sent at t0 + 0.7 s or later: touched now lives until t0 + 1.7 s at the earliest.
    await cb.unary(AgentService, A.execute, { sessionId: touched, userId, task: "still here" });

    await sleep(t0 + 1450 - Date.now());
    expect((await get(touched)).session?.messages.map((m) => m.content)).toEqual(["still here", "[history=0] still here"]);
    await sleep(t0 + 1500 - Date.now());
    const gone = await statusOf(get(idle));
    expect(grpc.status[gone.code]).toBe("NOT_FOUND");
    expect((await statusOf(cb.unary(AgentService, A.execute, { sessionId: idle, userId, task: "too late" }))).code).toBe(grpc.status.NOT_FOUND);
    // The turn extended the TTL by one second, not forever.
    await sleep(t0 + 2300 - Date.now());
    expect((await statusOf(get(touched))).code).toBe(grpc.status.NOT_FOUND);
  });
});
