import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { HealthCheckResponse_ServingStatus as Serving } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { health, healthBecomes, timed } from "../support/health.ts";
import { OwnRedis } from "../support/own-services.ts";
import { runCli, runtime, startServer, writeConfig, type ServerProcess } from "../support/server-process.ts";
import { databaseUrl } from "../support/services.ts";

const A = AgentService.method;
const S = SessionService.method;
const DATABASE_URL = databaseUrl();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const runId = randomUUID().replaceAll("-", "").slice(0, 12);

function serverConfig(store: string, redisUrl: string, schema = "public") {
  return {
    log: { level: "warn" },
    redis: { url: redisUrl, commandTimeoutMs: 1000, connectTimeoutMs: 1000 },
    postgres: { url: DATABASE_URL },
    // historyMessages above the 30 messages a conversation here reaches, so each answer counts them all.
    sessions: { store, redisKeyPrefix: `qingyu:e2e:faults:${runId}:`, postgresSchema: schema, healthCheckIntervalMs: 300, historyMessages: 40 },
    pipeline: ["validation"],
    agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
    plugins: { dirs: [] },
  };
}

describe(`session store faults with a Redis the test starts and stops (${runtime})`, () => {
  const redises: OwnRedis[] = [];
  const servers: ServerProcess[] = [];
  const clients: TestClient[] = [];
  const watchers: Redis[] = [];
  const schema = `e2e_faults_${runId}`;
  let pool: pg.Pool;

  async function ownRedis(): Promise<OwnRedis> {
    // Not durable: a restart comes back empty, the case these tests are about.
    const r = await OwnRedis.create({ durable: false });
    redises.push(r);
    return r;
  }
  async function serve(config: unknown, env: Record<string, string>): Promise<[ServerProcess, TestClient]> {
    const server = await startServer(config, env);
    servers.push(server);
    const client = new TestClient(server.grpcPort);
    clients.push(client);
    return [server, client];
  }

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: DATABASE_URL, max: 2 });
    await pool.query(`create schema ${schema}`);
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const w of watchers) w.disconnect();
    await Promise.all(servers.map((s) => s.stop()));
    await Promise.all(redises.map((r) => r.destroy()));
    if (pool) {
      await pool.query(`drop schema if exists ${schema} cascade`);
      await pool.query("delete from qingyu_schema_migrations where component = $1", [`sessions:${schema}`]);
      await pool.end();
    }
  });

  it("store redis: Redis dies → UNAVAILABLE fast and NOT_SERVING, no crash; Redis returns → SERVING and calls work, no restart", async () => {
    const own = await ownRedis();
    const [server, client] = await serve(serverConfig("redis", own.url), { REDIS_URL: own.url });
    const userId = "fault-redis";
    const before = (await client.unary(SessionService, S.createSession, { userId, agentId: "echo" })).session!.sessionId;
    expect((await client.unary(AgentService, A.execute, { sessionId: before, userId, task: "up" })).result?.output).toBe("[history=0] up");
    expect(await health(client)).toBe(Serving.SERVING);

    await own.kill();
    const killedAt = Date.now();
    // UNAVAILABLE, not DEADLINE_EXCEEDED: the store answered before a 10 s deadline rather than waiting for
    // Redis. How fast (and how soon NOT_SERVING) is timed in stores.faults, not here.
    const [turn, read] = await Promise.all([
      timed(client.unary(AgentService, A.execute, { sessionId: before, userId, task: "down" }, { timeoutMs: 10_000 })),
      timed(client.unary(SessionService, S.getSession, { sessionId: before, userId }, { timeoutMs: 10_000 })),
    ]);
    for (const failed of [turn, read]) {
      expect(failed.code, failed.details).toBe("UNAVAILABLE");
      expect(failed.details).toContain("session store unavailable");
    }
    // While ioredis reconnects, a ping waits for its next failed attempt or commandTimeoutMs (1 s),
    // whichever comes first; the next health tick (every 300 ms) then reports it.
    await healthBecomes(client, Serving.NOT_SERVING, 10_000);
    const notServingAfter = Date.now() - killedAt;
    // Nothing that needs no session is affected, and the process is still there.
    expect((await client.unary(AgentService, A.execute, { agentId: "echo", task: "stateless" })).result?.output).toBe("[history=0] stateless");
    expect(server.child.exitCode).toBeNull();

    await own.start();
    // ioredis reconnects with a backoff of at most 2 s, then the next health tick sees it.
    const servingAfter = await healthBecomes(client, Serving.SERVING, 6000);
    console.info(
      `store redis: calls UNAVAILABLE after ${turn.ms} / ${read.ms} ms, NOT_SERVING ${notServingAfter} ms after the kill, SERVING ${servingAfter} ms after the restart`,
    );
    const after = (await client.unary(SessionService, S.createSession, { userId, agentId: "echo" })).session!.sessionId;
    expect((await client.unary(AgentService, A.execute, { sessionId: after, userId, task: "back" })).result?.output).toBe("[history=0] back");
    expect((await client.unary(AgentService, A.execute, { sessionId: after, userId, task: "again" })).result?.output).toBe("[history=2] again");
    const got = await client.unary(SessionService, S.getSession, { sessionId: after, userId });
    expect(got.session?.messages.map((m) => m.content)).toEqual(["back", "[history=0] back", "again", "[history=2] again"]);
    // Still the first process, and it shuts down cleanly.
    expect(await server.stop()).toBe(0);
  });

  it("store redis+postgres: Redis killed, frozen or flushed mid-conversation loses nothing and never fails a call", async () => {
    const own = await ownRedis();
    const [server, client] = await serve(serverConfig("redis+postgres", own.url, schema), { REDIS_URL: own.url, DATABASE_URL });
    // The test's own view of that Redis; disconnected in afterAll even if the test fails.
    const watcher = new Redis(own.url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => 200 });
    watchers.push(watcher);
    watcher.on("error", () => {});
    const userId = "fault-tiered";
    const sessionId = (await client.unary(SessionService, S.createSession, { userId, agentId: "echo" })).session!.sessionId;
    const expected: string[] = [];
    let n = 0;
    // One turn: its answer must show every message acknowledged so far, and its own two are then acknowledged.
    async function turn(): Promise<void> {
      const task = `turn ${++n}`;
      const res = await client.unary(AgentService, A.execute, { sessionId, userId, task }, { timeoutMs: 8000 });
      expect(res.result?.output).toBe(`[history=${expected.length}] ${task}`);
      expected.push(task, res.result!.output);
    }
    async function everyMessage(): Promise<void> {
      const got = await client.unary(SessionService, S.getSession, { sessionId, userId }, { timeoutMs: 8000 });
      expect(got.session?.messages.map((m) => m.content)).toEqual(expected);
      expect(got.session?.version).toBe(BigInt(n));
      // The truth itself: exactly these rows, none twice.
      const rows = await pool.query(`select content from ${schema}.messages where session_id = $1 order by id`, [sessionId]);
      expect(rows.rows.map((r) => r.content)).toEqual(expected);
    }
    /** Waits until the hot copy of the session is back in this Redis (a read warmed it again). */
    async function warmAgain(): Promise<void> {
      for (const deadline = Date.now() + 8000; ; await sleep(100)) {
        await client.unary(SessionService, S.getSession, { sessionId, userId });
        const keys = await watcher.keys(`qingyu:e2e:faults:${runId}:*`).catch(() => []);
        if (keys.length > 0) return;
        if (Date.now() > deadline) throw new Error("the hot copy never came back to Redis");
      }
    }

    await turn();
    await turn();
    await everyMessage();
    await watcher.connect();
    await warmAgain();

    // 1. Redis dies: PostgreSQL serves every call, and readiness does not change since PostgreSQL is the truth.
    await own.kill();
    await turn();
    await everyMessage();
    await turn();
    await sleep(700);
    expect(await health(client)).toBe(Serving.SERVING);
    await everyMessage();
    // Back, empty: turns go on, and the copy is rebuilt from PostgreSQL.
    await own.start();
    await turn();
    await everyMessage();
    await warmAgain();
    await turn();
    await everyMessage();

    // 2. Redis frozen: it keeps the copy written before, which misses every write made meanwhile.
    own.freeze();
    await turn();
    await turn();
    await everyMessage();
    expect(await health(client)).toBe(Serving.SERVING);
    own.thaw();
    // Once thawed the old copy must never be served: reads and turns see the writes it missed.
    for (let i = 0; i < 5; i++) {
      await everyMessage();
      await turn();
      await sleep(300);
    }
    await everyMessage();

    // 3. Everything in Redis gone at once.
    await watcher.flushall();
    await turn();
    await everyMessage();
    await warmAgain();
    await turn();
    await everyMessage();

    expect(n).toBe(15);
    expect(await server.stop()).toBe(0);
  });

  it("store postgres: an unreachable database or a missing schema stops `qingyu serve` with status 1 and the reason", async () => {
    const dead = { ...serverConfig("postgres", "redis://127.0.0.1:1"), postgres: { url: "postgres://postgres@127.0.0.1:1/test", connectTimeoutMs: 1000 } };
    const missing = `no_such_schema_${runId}`;
    const args = (config: unknown) => ["serve", "--config", writeConfig(config), "--port", "0", "--http-port", "0"];
    const [down, noSchema] = await Promise.all([
      runCli(args(dead), { DATABASE_URL: "postgres://postgres@127.0.0.1:1/test" }),
      runCli(args(serverConfig("postgres", "redis://127.0.0.1:1", missing)), { DATABASE_URL }),
    ]);
    expect(down.code, down.stderr).toBe(1);
    expect(down.stderr).toContain("postgres session store");
    expect(noSchema.code, noSchema.stderr).toBe(1);
    expect(noSchema.stderr).toContain("postgres session store");
    expect(noSchema.stderr).toContain(`schema "${missing}" does not exist`);
    // Neither got as far as serving.
    expect(down.stdout + noSchema.stdout).not.toContain('"msg":"listening"');
  });
});
