import { Code } from "@qingyu/plugin-api";
import { Writable } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import pino from "pino";
import { PostgresSessionStore } from "../../src/sessions/postgres-store.ts";
import type { SessionStore } from "../../src/sessions/types.ts";
import { rejection } from "../support/rejection.ts";
import { settlesBefore } from "../support/settles-before.ts";
import { databaseUrl } from "../support/services.ts";

const URL = databaseUrl();
const DEAD = "postgres://postgres@127.0.0.1:1/test";
const schema = `sessf_${Math.random().toString(36).slice(2, 10)}`;
const bare = `${schema}_bare`; // exists, never migrated: every statement is a bug
const silent = pino({ level: "silent" });
const ID = "00000000-0000-4000-8000-000000000000";
let pool: pg.Pool;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: URL });
  await pool.query(`create schema ${schema}; create schema ${bare}`);
});

afterAll(async () => {
  await pool.query(`drop schema if exists ${schema} cascade; drop schema if exists ${bare} cascade`);
  await pool.query("delete from qingyu_schema_migrations where component = $1", [`sessions:${schema}`]);
  await pool.end();
});

/** Every method once, each settled, and whether it settled before a timer of `withinMs` (an order, which load cannot fail). */
async function everyMethod(
  store: SessionStore,
  skip: string[] = [],
  withinMs = 2_500,
): Promise<{ name: string; code: Code | undefined; message: string; prompt: boolean }[]> {
  const calls: [string, () => Promise<unknown>][] = [
    ["create", () => store.create({ userId: "u", agentId: "a", metadata: {}, ttlSeconds: 60 })],
    ["get", () => store.get(ID, { messages: 10 })],
    ["list", () => store.list("u", 10, "")],
    ["delete", () => store.delete(ID)],
    ["appendMessages", () => store.appendMessages(ID, [{ role: "user", content: "x" }])],
    ["saveCheckpoint", () => store.saveCheckpoint(ID, { data: {}, expectedVersion: -1, keep: 3 })],
    ["getCheckpoint", () => store.getCheckpoint(ID, "")],
    ["listCheckpoints", () => store.listCheckpoints(ID, 10, "")],
    ["ping", () => store.ping()],
  ];
  const out = [];
  for (const [name, call] of calls.filter(([n]) => !skip.includes(n))) {
    const pending = call();
    const prompt = await settlesBefore(pending, withinMs);
    const err = await rejection(pending);
    out.push({ name, code: err.code, message: err.rawMessage, prompt });
  }
  return out;
}

describe("PostgreSQL session store failures", () => {
  it("answers UNAVAILABLE quickly on every method when PostgreSQL cannot be reached", async () => {
    const dead = new pg.Pool({ connectionString: DEAD, connectionTimeoutMillis: 500 });
    const store = new PostgresSessionStore(dead, { schema, sweepIntervalMs: 60_000, log: silent });
    try {
      for (const r of await everyMethod(store)) {
        // Not "connect ECONNREFUSED 127.0.0.1:1": the host and port are the operator's to know.
        // Prompt: before 5× the pool's 500 ms connect timeout, so no retry loop or hang behind it.
        expect(r, r.name).toMatchObject({ code: Code.Unavailable, message: "session store unavailable", prompt: true });
      }
      expect((await rejection(PostgresSessionStore.open(dead, { schema, sweepIntervalMs: 60_000, log: silent }))).code).toBe(Code.Unavailable);
    } finally {
      await store.close();
      await dead.end();
    }
  });

  it("logs a failed sweep as a warning and keeps going", async () => {
    const lines: { level: number; msg: string }[] = [];
    const sink = new Writable({ write: (chunk, _enc, done) => (lines.push(JSON.parse(String(chunk))), done()) });
    const dead = new pg.Pool({ connectionString: DEAD, connectionTimeoutMillis: 500 });
    const store = new PostgresSessionStore(dead, { schema, sweepIntervalMs: 50, log: pino({ level: "info" }, sink) });
    try {
      const deadline = Date.now() + 3000;
      while (lines.filter((l) => l.msg === "session sweep failed").length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      const warned = lines.filter((l) => l.msg === "session sweep failed");
      expect(warned.length).toBeGreaterThanOrEqual(2);
      expect(warned.every((l) => l.level === 40)).toBe(true);
    } finally {
      await store.close();
      await dead.end();
    }
  });

  it("answers UNAVAILABLE when a statement outlives statement_timeout", async () => {
    const slow = new pg.Pool({ connectionString: URL, statement_timeout: 300 });
    const store = await PostgresSessionStore.open(slow, { schema, sweepIntervalMs: 60_000, log: silent });
    const holder = await pool.connect();
    try {
      const s = await store.create({ userId: "u", agentId: "a", metadata: {}, ttlSeconds: 60 });
      // Another transaction holds the session's row, so the append waits on its lock.
      await holder.query("begin");
      await holder.query(`select 1 from ${schema}.sessions where id = $1 for update`, [s.id]);
      const append = store.appendMessages(s.id, [{ role: "user", content: "x" }]);
      // Ended by statement_timeout (300 ms), not by the lock, which is held until the rollback below.
      expect(await settlesBefore(append, 2000)).toBe(true);
      expect((await rejection(append)).code).toBe(Code.Unavailable);
      await holder.query("rollback");
      expect(await store.appendMessages(s.id, [{ role: "user", content: "x" }])).toBe(1);
    } finally {
      holder.release();
      await store.close();
      await slow.end();
    }
  });

  it("answers INTERNAL for a bug, such as tables that are not there", async () => {
    const store = new PostgresSessionStore(pool, { schema: bare, sweepIntervalMs: 60_000, log: silent });
    try {
      // ping touches no table, so it still answers.
      for (const r of await everyMethod(store, ["ping"])) expect(r, r.name).toMatchObject({ code: Code.Internal });
    } finally {
      await store.close();
    }
  });

  it("treats malformed ids as not found (not INTERNAL) and foreign page tokens as invalid", async () => {
    const store = await PostgresSessionStore.open(pool, { schema, sweepIntervalMs: 60_000, log: silent });
    try {
      expect(await store.get("not-a-uuid", { messages: 5 })).toBeUndefined();
      expect(await store.delete("not-a-uuid")).toBe(false);
      expect((await rejection(store.appendMessages("x", []))).code).toBe(Code.NotFound);
      const s = await store.create({ userId: "u", agentId: "a", metadata: {}, ttlSeconds: 60 });
      expect(await store.getCheckpoint(s.id, "not-a-uuid")).toBeUndefined();
      const forged = Buffer.from(JSON.stringify([Date.now(), "not-a-uuid"])).toString("base64url");
      expect((await rejection(store.list("u", 5, forged))).code).toBe(Code.InvalidArgument);
    } finally {
      await store.close();
    }
  });
});
