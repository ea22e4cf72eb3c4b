// Two replicas on one redis+postgres store, their Redis misbehaving: no read and no turn on
// either process ever sees a version older than the last acknowledged write. Redis is the
// test's own (its writes refused, killed, restarted from an older snapshot); PostgreSQL is the
// machine's, under a schema of this run's own.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { OwnRedis } from "../support/own-services.ts";
import { runtime, startServer, type ServerProcess } from "../support/server-process.ts";
import { crashLines } from "./support.ts";
import { databaseUrl } from "../support/services.ts";

const A = AgentService.method;
const S = SessionService.method;
const DATABASE = databaseUrl();
const schema = `faults_replicas_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
const PREFIX = "q:";
const userId = "replicas";
// Both processes skip Redis for 1 s after it fails them: waiting that out between rounds makes
// every round read Redis again, so the stale copy is offered to each process, not only the first.
const PAST_REDIS_BACKOFF_MS = 1200;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function config(redisUrl: string) {
  return {
    log: { level: "warn" },
    redis: { url: redisUrl, commandTimeoutMs: 1000, connectTimeoutMs: 1000 },
    postgres: { url: DATABASE, connectTimeoutMs: 2000, statementTimeoutMs: 5000 },
    // historyMessages above what a conversation here reaches: each answer counts the whole history.
    sessions: { store: "redis+postgres", postgresSchema: schema, redisKeyPrefix: PREFIX, historyMessages: 200, getMessagesLimit: 400 },
    pipeline: ["validation"],
    providers: { echo: { plugin: "echo" } },
    agents: [{ id: "echo", provider: "echo", model: "echo-1" }],
    plugins: { dirs: [] },
  };
}

/** One replica as its callers see it: every answer checked against what was acknowledged before it was asked. */
class Replica {
  constructor(
    readonly name: string,
    readonly server: ServerProcess,
    readonly client: TestClient,
  ) {}

  /** A turn: its prompt must have held every message acknowledged before it. */
  async turn(sessionId: string, task: string, ackedTurns: number): Promise<void> {
    const res = await this.client.unary(AgentService, A.execute, { sessionId, userId, task }, { timeoutMs: 20_000 });
    expect(res.result!.output, `${this.name}: the prompt of turn ${task}`).toBe(`[history=${2 * ackedTurns}] ${task}`);
  }

  /** GetSession: the version and history of every acknowledged turn. */
  async read(sessionId: string, ackedTurns: number): Promise<void> {
    const { session } = await this.client.unary(SessionService, S.getSession, { sessionId, userId }, { timeoutMs: 20_000 });
    expect(session!.version, `${this.name}: GetSession's version after ${ackedTurns} turns`).toBe(BigInt(ackedTurns));
    expect(session!.messages.length, `${this.name}: GetSession's history`).toBe(2 * ackedTurns);
  }
}

describe(`two replicas, one redis+postgres store, Redis misbehaving (${runtime})`, () => {
  const servers: ServerProcess[] = [];
  const clients: TestClient[] = [];
  const redises: OwnRedis[] = [];
  const connections: Redis[] = [];
  const pool = new pg.Pool({ connectionString: DATABASE, max: 1 });

  beforeAll(async () => {
    // The server migrates tables into the schema but never creates the schema itself.
    await pool.query(`create schema ${schema}`);
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.stop("SIGKILL")));
    for (const c of connections) c.disconnect();
    await Promise.all(redises.map((r) => r.destroy()));
    await pool.query(`drop schema if exists ${schema} cascade`);
    await pool.query("delete from qingyu_schema_migrations where component = $1", [`sessions:${schema}`]);
    await pool.end();
  });

  /** A Redis of this test's own, persisting nothing but what SAVE writes. */
  async function ownRedis(): Promise<[OwnRedis, Redis]> {
    const own = await OwnRedis.create({ durable: false });
    redises.push(own);
    const admin = new Redis(own.url, { maxRetriesPerRequest: 1, retryStrategy: () => 200 });
    admin.on("error", () => {});
    connections.push(admin);
    return [own, admin];
  }

  async function replicas(redisUrl: string): Promise<[Replica, Replica]> {
    const started = await Promise.all(
      ["A", "B"].map((name) => startServer(config(redisUrl), { REDIS_URL: redisUrl, DATABASE_URL: DATABASE }).then((s) => [name, s] as const)),
    );
    return started.map(([name, server]) => {
      servers.push(server);
      const client = new TestClient(server.grpcPort);
      clients.push(client);
      return new Replica(name, server, client);
    }) as [Replica, Replica];
  }

  /** The version of the copy Redis holds now (undefined: none, or a stub). */
  async function copyVersion(admin: Redis, sessionId: string): Promise<number | undefined> {
    const raw = await admin.get(`${PREFIX}hot:{${sessionId}}`);
    const copy = raw ? (JSON.parse(raw) as { stub?: boolean; version: number }) : undefined;
    return copy && !copy.stub ? copy.version : undefined;
  }

  it("Redis refusing writes (maxmemory with noeviction): turns alternate between the replicas, each built on every acknowledged turn, while Redis holds a stale copy", async () => {
    const [own, admin] = await ownRedis();
    const [a, b] = await replicas(own.url);
    const sessionId = (await a.client.unary(SessionService, S.createSession, { userId, agentId: "echo" })).session!.sessionId;
    let acked = 0;
    await a.turn(sessionId, "t0", acked++);
    await b.read(sessionId, acked); // both have read through the copy: it is current
    expect(await copyVersion(admin, sessionId)).toBe(1);

    // Redis answers reads and refuses every write from here on.
    await admin.config("SET", "maxmemory-policy", "noeviction");
    await admin.config("SET", "maxmemory", "1");
    await expect(admin.set("probe", "x")).rejects.toThrow(/OOM/);

    for (let round = 0; round < 4; round++) {
      const [writer, reader] = round % 2 === 0 ? [a, b] : [b, a];
      await writer.turn(sessionId, `t${acked}`, acked);
      acked++;
      // Asked at once, the other replica answers with the turn just acknowledged, and builds on it.
      await reader.read(sessionId, acked);
      await reader.turn(sessionId, `t${acked}`, acked);
      acked++;
      await writer.read(sessionId, acked);
      await sleep(PAST_REDIS_BACKOFF_MS);
    }
    // The copy the replicas were offered all along is the one from before Redis refused writes.
    expect(await copyVersion(admin, sessionId)).toBe(1);

    // Writes allowed again: the next read warms the copy, and the one after is served from it, current.
    await admin.config("SET", "maxmemory", "0");
    await a.read(sessionId, acked);
    for (let i = 0; i < 50 && (await copyVersion(admin, sessionId)) !== acked; i++) await sleep(100);
    expect(await copyVersion(admin, sessionId)).toBe(acked);
    await b.turn(sessionId, `t${acked}`, acked);
    acked++;
    await a.read(sessionId, acked);
    for (const r of [a, b]) expect(crashLines(r.server), r.server.stderr()).toEqual([]);
  });

  it("Redis restarted from an older snapshot, then down again and noticed by one replica first: neither serves a restored copy", async () => {
    const [own, admin] = await ownRedis();
    const [a, b] = await replicas(own.url);
    const sessionId = (await a.client.unary(SessionService, S.createSession, { userId, agentId: "echo" })).session!.sessionId;
    let acked = 0;
    await a.turn(sessionId, "t0", acked++);
    await b.read(sessionId, acked);
    await admin.save(); // the snapshot Redis will come back with: the copy at version 1
    await b.turn(sessionId, "t1", acked++);
    await a.turn(sessionId, "t2", acked++);
    expect(await copyVersion(admin, sessionId)).toBe(3);
    const restored = async () => {
      for (let i = 0; i < 50; i++) {
        const v = await copyVersion(admin, sessionId).catch(() => undefined);
        if (v !== undefined) return v;
        await sleep(100);
      }
      return undefined;
    };

    // Killed and back between two calls: neither replica had a failed command, both are offered the old copy.
    await own.kill();
    await own.start();
    expect(await restored(), "the restored copy").toBe(1);
    for (const [x, y] of [
      [b, a],
      [a, b],
    ] as const) {
      await x.read(sessionId, acked);
      await x.turn(sessionId, `t${acked}`, acked);
      acked++;
      await y.read(sessionId, acked);
    }

    // Down again, A takes a turn meanwhile (and so knows); back with the same snapshot, B is asked first.
    await own.kill();
    await a.turn(sessionId, `t${acked}`, acked);
    acked++;
    await own.start();
    await b.read(sessionId, acked);
    await b.turn(sessionId, `t${acked}`, acked);
    acked++;
    await sleep(PAST_REDIS_BACKOFF_MS);
    await a.read(sessionId, acked);
    await a.turn(sessionId, `t${acked}`, acked);
    acked++;
    await b.read(sessionId, acked);
    for (const r of [a, b]) expect(crashLines(r.server), r.server.stderr()).toEqual([]);
  });
});
