import { type ChatMessage, Code } from "@qingyu/plugin-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import pg from "pg";
import pino from "pino";
import { PostgresSessionStore } from "../../src/sessions/postgres-store.ts";
import { storeContract } from "./store-contract.ts";
import { boundsContract } from "./store-bounds-contract.ts";
import { toolMessagesContract } from "./store-tool-messages-contract.ts";
import { databaseUrl } from "../support/services.ts";

const URL = databaseUrl();
const log = pino({ level: "silent" });
const schema = `sess_${Math.random().toString(36).slice(2, 10)}`;
const extraSchemas: string[] = [];
let pool: pg.Pool;

const open = (p: pg.Pool, s = schema, sweepIntervalMs = 60_000, maxPageBytes?: number) =>
  PostgresSessionStore.open(p, { schema: s, sweepIntervalMs, log, maxPageBytes });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const turn = (i: number): ChatMessage[] => [
  { role: "user", content: `q${i}` },
  { role: "assistant", content: `a${i}` },
];
const input = { userId: "u-pg", agentId: "helper", metadata: {}, ttlSeconds: 600 };

/** Every statement any connection of the pool sends, whether through pool.query or a checked-out client. */
const sent = { queries: 0 };
class CountingClient extends pg.Client {
  override query(...args: any[]): any {
    sent.queries++;
    return (pg.Client.prototype.query as (...a: unknown[]) => unknown).apply(this, args);
  }
}

/** A fresh, empty schema, dropped with the suite. */
async function freshSchema(): Promise<string> {
  const name = `${schema}_${extraSchemas.length}`;
  await pool.query(`create schema ${name}`);
  extraSchemas.push(name);
  return name;
}

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: URL, max: 10 });
  await pool.query(`create schema ${schema}`);
});

afterAll(async () => {
  const all = [schema, ...extraSchemas];
  for (const s of all) await pool.query(`drop schema if exists ${s} cascade`);
  await pool.query("delete from qingyu_schema_migrations where component = any($1)", [all.map((s) => `sessions:${s}`)]);
  await pool.end();
});

storeContract("postgres", { make: () => open(pool) });
boundsContract("postgres", { make: (maxPageBytes) => open(pool, schema, 60_000, maxPageBytes) });
toolMessagesContract("postgres", { make: () => open(pool) });

describe("PostgreSQL session store", () => {
  it("migrates once when two processes open a fresh schema together, and again changes nothing", async () => {
    const fresh = await freshSchema();
    const other = new pg.Pool({ connectionString: URL });
    try {
      const [a, b] = await Promise.all([open(pool, fresh), open(other, fresh)]);
      const applied = async () =>
        (await pool.query("select version, applied_at from qingyu_schema_migrations where component = $1", [`sessions:${fresh}`])).rows;
      const first = await applied();
      expect(first.map((r) => r.version)).toEqual([1, 2, 3, 4]);
      const s = await a.create(input);
      expect((await b.get(s.id, { messages: 0 }))?.id).toBe(s.id);
      const again = await open(pool, fresh);
      expect(await applied()).toEqual(first);
      await Promise.all([a.close(), b.close(), again.close()]);
    } finally {
      await other.end();
    }
  });

  it("refuses a schema that does not exist, saying so", async () => {
    await expect(open(pool, `${schema}_missing`)).rejects.toThrow(/schema "sess_\w+_missing" does not exist/);
  });

  it("sweeps expired sessions with their messages and checkpoints, and leaves live ones", async () => {
    const store = await open(pool, schema, 100);
    try {
      const doomed = await store.create({ ...input, ttlSeconds: 1 });
      const live = await store.create(input);
      for (const s of [doomed, live]) {
        await store.appendMessages(s.id, turn(1));
        await store.saveCheckpoint(s.id, { data: { n: 1 }, expectedVersion: -1, keep: 5 });
      }
      const count = async (table: string, id: string) =>
        Number((await pool.query(`select count(*) from ${schema}.${table} where ${table === "sessions" ? "id" : "session_id"} = $1`, [id])).rows[0].count);
      expect(await count("messages", doomed.id)).toBe(2);
      const deadline = Date.now() + 5000;
      while ((await count("sessions", doomed.id)) > 0 && Date.now() < deadline) await sleep(100);
      for (const table of ["sessions", "messages", "checkpoints"]) expect(await count(table, doomed.id)).toBe(0);
      for (const table of ["sessions", "checkpoints"]) expect(await count(table, live.id)).toBe(1);
      expect(await count("messages", live.id)).toBe(2);
    } finally {
      await store.close();
    }
  });

  // Round trips are counted at the connection: a pool whose clients are a
  // pg.Client subclass counting each query() they send. Unlike counting
  // pool.query calls, this also sees a store that checks out a client and runs
  // several statements (begin/select/insert/commit) on it.
  it("spends one query on get, appendMessages and saveCheckpoint (with pruning), for 2 or 500 messages", async () => {
    const counted = new pg.Pool({ connectionString: URL, Client: CountingClient as unknown as new () => pg.ClientBase });
    const store = await open(counted);
    const queriesOf = async (run: () => Promise<unknown>) => {
      const before = sent.queries;
      await run();
      return sent.queries - before;
    };
    try {
      const short = await store.create(input);
      const long = await store.create(input);
      expect(await queriesOf(() => store.appendMessages(short.id, turn(0)))).toBe(1);
      const many = Array.from({ length: 250 }, (_, i) => turn(i)).flat();
      expect(await queriesOf(() => store.appendMessages(long.id, many))).toBe(1);
      for (const s of [short, long]) {
        let got: Awaited<ReturnType<typeof store.get>>;
        expect(await queriesOf(async () => (got = await store.get(s.id, { messages: 10_000 })))).toBe(1);
        expect(got!.messages).toHaveLength(s === short ? 2 : 500);
        expect(got!.messages.at(-1)!.content).toBe(s === short ? "a0" : "a249");
      }
      for (let i = 0; i < 5; i++) await store.saveCheckpoint(long.id, { data: { i }, expectedVersion: -1, keep: 10 });
      let saved: Awaited<ReturnType<typeof store.saveCheckpoint>>;
      expect(await queriesOf(async () => (saved = await store.saveCheckpoint(long.id, { data: { i: 5 }, expectedVersion: 6, keep: 3 })))).toBe(1);
      expect(saved!.version).toBe(7);
      const kept = (await store.listCheckpoints(long.id, 10, "")).items.map((c) => c.data.i);
      expect(kept).toEqual([5, 4, 3]);
      await store.close();
    } finally {
      await counted.end();
    }
  });

  it("lets exactly one of writers on two pools (two processes) win each version, gap-free", async () => {
    const other = new pg.Pool({ connectionString: URL });
    const [a, b] = await Promise.all([open(pool), open(other)]);
    try {
      const s = await a.create(input);
      // Expected version 0 means no check, so the races start from version 1.
      await a.saveCheckpoint(s.id, { data: { round: 0 }, expectedVersion: -1, keep: 100 });
      for (let round = 1; round <= 5; round++) {
        const racing = await Promise.allSettled(
          Array.from({ length: 8 }, (_, i) => (i % 2 ? a : b).saveCheckpoint(s.id, { data: { round, i }, expectedVersion: round, keep: 100 })),
        );
        const won = racing.filter((o) => o.status === "fulfilled");
        expect(won).toHaveLength(1);
        expect((won[0] as PromiseFulfilledResult<{ version: number }>).value.version).toBe(round + 1);
        for (const lost of racing.filter((o) => o.status === "rejected")) {
          expect((lost as PromiseRejectedResult).reason.code).toBe(Code.Aborted);
        }
      }
      const chain = (await b.listCheckpoints(s.id, 100, "")).items.reverse();
      expect(chain.map((c) => c.version)).toEqual([1, 2, 3, 4, 5, 6]);
      expect(chain.map((c) => c.parentId)).toEqual(["", ...chain.slice(0, -1).map((c) => c.id)]);
      expect((await a.get(s.id, { messages: 0 }))!.version).toBe(6);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await other.end();
    }
  });

  it("prunes exactly to `keep` when fewer than `keep` saves race on two pools", async () => {
    const other = new pg.Pool({ connectionString: URL });
    const [a, b] = await Promise.all([open(pool), open(other)]);
    try {
      const s = await a.create(input);
      for (let round = 0; round < 5; round++) {
        await Promise.all(Array.from({ length: 4 }, (_, i) => (i % 2 ? a : b).saveCheckpoint(s.id, { data: { round, i }, expectedVersion: -1, keep: 5 })));
        const rows = await pool.query(`select count(*)::int as n from ${schema}.checkpoints where session_id = $1`, [s.id]);
        expect(rows.rows[0].n).toBe(Math.min(5, 4 * (round + 1)));
      }
    } finally {
      await Promise.all([a.close(), b.close()]);
      await other.end();
    }
  });

  it("chains parents correctly under unchecked concurrent saves and appends", async () => {
    const other = new pg.Pool({ connectionString: URL });
    const [a, b] = await Promise.all([open(pool), open(other)]);
    try {
      const s = await a.create(input);
      await Promise.all(
        Array.from({ length: 12 }, (_, i) =>
          i % 3 === 0 ? b.appendMessages(s.id, turn(i)) : (i % 2 ? a : b).saveCheckpoint(s.id, { data: { i }, expectedVersion: -1, keep: 100 }),
        ),
      );
      const chain = (await a.listCheckpoints(s.id, 100, "")).items.reverse();
      expect(chain).toHaveLength(8);
      expect(chain.map((c) => c.parentId)).toEqual(["", ...chain.slice(0, -1).map((c) => c.id)]);
      expect(await a.get(s.id, { messages: 0 })).toMatchObject({ version: 12, messageCount: 8 });
    } finally {
      await Promise.all([a.close(), b.close()]);
      await other.end();
    }
  });
});
