// What only the PostgreSQL run store has to show: migrations shared by replicas,
// races between replicas (two pools on one database), one round trip per write,
// and how it fails.
import { Code, ErrorReason, reasonOf } from "@qingyu/plugin-api";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PostgresRunStore } from "../../src/runs/postgres-store.ts";
import { rejection } from "../support/rejection.ts";
import { databaseUrl } from "../support/services.ts";
import { countingPool, roundTrips } from "../support/store-backends.ts";
import { accepted, freshUser, newRun, OWNER, Schemas, seq, silentLog } from "./run-fixtures.ts";

let pool: pg.Pool;
let other: pg.Pool;
let schemas: Schemas;

beforeAll(async () => {
  pool = new pg.Pool({ connectionString: databaseUrl(), max: 10 });
  // A second replica: its own connections to the same database.
  other = new pg.Pool({ connectionString: databaseUrl(), max: 10 });
  schemas = new Schemas(pool);
});

afterAll(async () => {
  await schemas.dropAll();
  await Promise.all([pool.end(), other.end()]);
});

const open = (p: pg.Pool, schema: string) => PostgresRunStore.open(p, { schema, log: silentLog });

describe("PostgreSQL run store", () => {
  it("migrates once when two replicas open a fresh schema together, and again changes nothing", async () => {
    const schema = await schemas.fresh();
    const [a, b] = await Promise.all([open(pool, schema), open(other, schema)]);
    const applied = async () => (await pool.query("select version, applied_at from qingyu_schema_migrations where component = $1", [`runs:${schema}`])).rows;
    const first = await applied();
    expect(first.map((r) => r.version)).toEqual([1, 2, 3]);
    const run = newRun();
    await a.create(run, accepted());
    expect((await b.get(run.id))?.id).toBe(run.id);
    await open(pool, schema);
    expect(await applied()).toEqual(first);
  });

  it("refuses a schema that does not exist, saying so", async () => {
    await expect(open(pool, "runs_no_such_schema")).rejects.toThrow(/schema "runs_no_such_schema" does not exist/);
  });

  it("gives a run that two replicas race to acquire to exactly one of them", async () => {
    const schema = await schemas.fresh();
    const [a, b] = await Promise.all([open(pool, schema), open(other, schema)]);
    const orphans = Array.from({ length: 20 }, () => newRun({ owner: "replica-dead", leaseMs: -1000 }));
    for (const r of orphans) await a.create(r, accepted());
    expect((await a.orphans(100)).map((r) => r.id).sort()).toEqual(orphans.map((r) => r.id).sort());
    const outcomes = await Promise.all(orphans.map((r) => Promise.all([a.acquire(r.id, "replica-a", 60_000), b.acquire(r.id, "replica-b", 60_000)])));
    for (const [i, [wonA, wonB]] of outcomes.entries()) {
      expect(wonA !== wonB).toBe(true);
      expect((await a.get(orphans[i]!.id))!.owner).toBe(wonA ? "replica-a" : "replica-b");
    }
    expect(await b.orphans(100)).toEqual([]);
  });

  it("gives a key that two replicas race to create with to one run", async () => {
    const schema = await schemas.fresh();
    const [a, b] = await Promise.all([open(pool, schema), open(other, schema)]);
    const userId = freshUser();
    const races = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        Promise.all([a.create(newRun({ userId, idempotencyKey: `k${i}` }), accepted()), b.create(newRun({ userId, idempotencyKey: `k${i}` }), accepted())]),
      ),
    );
    for (const [x, y] of races) {
      expect([x.created, y.created].sort()).toEqual([false, true]);
      expect(y.run).toEqual(x.run);
      expect(await a.events(x.run.id, 0, 10)).toEqual(accepted());
    }
    expect((await a.list({ userId }, 100, "")).items).toHaveLength(20);
  });

  it("spends one round trip on each create, append (refused too), acquire and renew", async () => {
    const counted = countingPool(databaseUrl(), 2);
    try {
      const store = await open(counted, await schemas.fresh());
      const run = newRun({ idempotencyKey: "k" });
      const trips = async (write: () => Promise<unknown>) => (await roundTrips(write)).pg;
      expect(await trips(() => store.create(run, accepted()))).toBe(1);
      expect(await trips(() => store.create(newRun({ userId: run.userId, idempotencyKey: "k" }), accepted()))).toBe(1);
      const step = seq(2, [
        { type: "step_started", step: 1 },
        { type: "delta", text: "a" },
        { type: "tool_call", step: 1, call: { id: "c1", name: "add", arguments: "{}" } },
        { type: "step_finished", step: 1, finishReason: "tool_calls", usage: { inputTokens: 1, outputTokens: 1 }, toolCalls: 1 },
      ]);
      expect(await trips(() => store.append(run.id, OWNER, 5, step, { status: "waiting", pending: [] }))).toBe(1);
      expect(
        await trips(() =>
          store.append(
            run.id,
            OWNER,
            7,
            seq(6, [
              { type: "delta", text: "b" },
              { type: "delta", text: "c" },
            ]),
          ),
        ),
      ).toBe(1);
      expect(await trips(() => rejection(store.append(run.id, "replica-b", 8, seq(8, [{ type: "step_started", step: 2 }]))))).toBe(1);
      expect(await trips(() => store.acquire(run.id, OWNER, 60_000))).toBe(1);
      expect(await trips(() => store.renew(OWNER, [run.id, newRun().id], 60_000))).toBe(1);
      expect((await store.events(run.id, 0, 10)).map((e) => e.seq)).toEqual([1, 2, 4, 5]);
      expect((await store.get(run.id))!.lastSeq).toBe(7);
    } finally {
      await counted.end();
    }
  });

  it("refuses an append that journals a seq twice (a bug) and writes nothing of it", async () => {
    const store = await schemas.store();
    const run = newRun();
    await store.create(run, accepted());
    const before = await store.get(run.id);
    const err = await rejection(
      store.append(
        run.id,
        OWNER,
        2,
        seq(1, [
          { type: "step_started", step: 1 },
          { type: "step_started", step: 2 },
        ]),
        { status: "failed" },
      ),
    );
    expect(err.code).toBe(Code.Internal);
    expect(await store.get(run.id)).toEqual(before);
    expect(await store.events(run.id, 0, 10)).toEqual(accepted());
  });

  it("answers UNAVAILABLE (STORE_UNAVAILABLE) when PostgreSQL cannot be reached", async () => {
    const schema = await schemas.fresh();
    await open(pool, schema);
    const gone = new pg.Pool({ connectionString: databaseUrl() });
    await gone.end();
    const store = new PostgresRunStore(gone, { schema, log: silentLog });
    const err = await rejection(store.get(newRun().id));
    expect(err.code).toBe(Code.Unavailable);
    expect(reasonOf(err).reason).toBe(ErrorReason.STORE_UNAVAILABLE);
    expect(err.message).toMatch(/run store unavailable/);
  });
});
