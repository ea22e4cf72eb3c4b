// config/durable.yaml as the README starts it: its two commands create the database
// and the schema, REDIS_URL and DATABASE_URL name the servers, and a conversation
// survives a restart, its events on the Redis stream.
import * as grpc from "@grpc/grpc-js";
import { randomUUID } from "node:crypto";
import { join, resolve } from "node:path";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { statusOf, TestClient } from "../support/grpc-client.ts";
import { runCli, runProcess, serveFile, type ServerProcess } from "../support/server-process.ts";
import { databaseUrl, redisUrl } from "../support/services.ts";

const durable = join(resolve(import.meta.dirname, "../.."), "config/durable.yaml");
const admin = new URL(databaseUrl());
const database = `qingyu_durable_${randomUUID().replace(/-/g, "").slice(0, 10)}`;
// A Redis database of its own: the config's key prefix is the default one, qingyu:.
const redis = new URL(redisUrl());
redis.pathname = "/11";
const dbUrl = new URL(admin);
dbUrl.pathname = `/${database}`;
// Explicit, so nothing in the caller's environment points the server elsewhere.
const env = { REDIS_URL: redis.toString(), DATABASE_URL: dbUrl.toString(), HOST: "127.0.0.1", OPENAI_API_KEY: "" };
const connection = ["-h", admin.hostname, "-p", admin.port || "5432", "-U", decodeURIComponent(admin.username) || "postgres"];

describe("config/durable.yaml, started as the README says", () => {
  const servers: ServerProcess[] = [];
  beforeAll(async () => {
    // The README's two lines, with the test cluster's host, port and user.
    for (const [cmd, args] of [
      ["createdb", [...connection, database]],
      ["psql", [...connection, "-d", database, "-c", "create schema if not exists qingyu"]],
    ] as const) {
      const { code, stderr } = await runProcess(cmd, [...args]);
      expect(stderr).toBe("");
      expect(code).toBe(0);
    }
  });
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await runProcess("dropdb", [...connection, "--if-exists", "--force", database]);
    const client = new Redis(redis.toString());
    const keys = await client.keys("qingyu:*");
    if (keys.length) await client.del(...keys);
    client.disconnect();
  });

  it("without DATABASE_URL it does not start, and says so", async () => {
    const { code, stderr } = await runCli(["serve", "--config", durable, "--port", "0", "--http-port", "0"], { ...env, DATABASE_URL: "" });
    expect(code).toBe(2);
    expect(stderr).toContain("postgres.url");
  });

  it("serves sessions from PostgreSQL (tables in the schema qingyu) that survive a restart, with events on Redis", async () => {
    const first = await serveFile(durable, ["--port", "0", "--http-port", "0"], env);
    servers.push(first);
    let client = new TestClient(first.grpcPort);
    const { session } = await client.unary(SessionService, SessionService.method.createSession, { agentId: "echo", userId: "u1" });
    await client.unary(AgentService, AgentService.method.execute, { sessionId: session!.sessionId, userId: "u1", task: "first turn" });
    client.close();
    await first.stop();

    const second = await serveFile(durable, ["--port", "0", "--http-port", "0"], env);
    servers.push(second);
    client = new TestClient(second.grpcPort);
    // Another replica listens to AGENT_COMPLETED (as its Subscribe streams announce it): this one appends them to the stream.
    const events = new Redis(env.REDIS_URL);
    const replica = `durable-config-${process.pid}`;
    await events.hset("qingyu:events:interest", replica, `${Date.now() + 60_000} AGENT_COMPLETED`);
    await events.xadd("qingyu:events", "*", "o", replica, "c", "interest");
    await new Promise((resolve) => setTimeout(resolve, 300));
    const res = await client.unary(AgentService, AgentService.method.execute, { sessionId: session!.sessionId, userId: "u1", task: "second turn" });
    // echo prefixes the history length it was given: the first turn's two messages.
    expect(res.result?.output).toBe("[history=2] second turn");
    // The assistant agent is there, unavailable without its key, not missing.
    expect((await statusOf(client.unary(AgentService, AgentService.method.execute, { agentId: "assistant", task: "x" }))).code).toBe(
      grpc.status.FAILED_PRECONDITION,
    );
    client.close();

    const pool = new pg.Pool({ connectionString: env.DATABASE_URL, max: 1 });
    try {
      const { rows } = await pool.query<{ n: string }>("select count(*) as n from qingyu.messages");
      expect(Number(rows[0]!.n)).toBe(4);
    } finally {
      await pool.end();
    }
    try {
      const entries = await events.xrange("qingyu:events", "-", "+");
      expect(entries.some(([, fields]) => fields.includes("AGENT_COMPLETED"))).toBe(true);
    } finally {
      await events.hdel("qingyu:events:interest", replica);
      events.disconnect();
    }
  });
});
