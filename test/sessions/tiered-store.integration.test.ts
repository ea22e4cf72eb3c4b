import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import pino from "pino";
import { HotCopy } from "../../src/sessions/hot-copy.ts";
import { PostgresSessionStore } from "../../src/sessions/postgres-store.ts";
import { TieredSessionStore } from "../../src/sessions/tiered-store.ts";
import { EVENTUALLY } from "../support/limits.ts";
import { countingPool, countingRedis, isolation, roundTrips } from "../support/store-backends.ts";
import { storeContract } from "./store-contract.ts";
import { boundsContract } from "./store-bounds-contract.ts";
import { toolMessagesContract, toolTurn } from "./store-tool-messages-contract.ts";

const log = pino({ level: "silent" });
const iso = isolation();
const pool = countingPool();
const redis = countingRedis();
const stores: TieredSessionStore[] = [];

async function tiered(client = redis, window = 50, hot = new HotCopy(client, iso.prefix, window), maxPageBytes?: number): Promise<TieredSessionStore> {
  const truth = await PostgresSessionStore.open(pool, { schema: iso.schema, sweepIntervalMs: 60_000, log, maxPageBytes });
  const store = new TieredSessionStore(truth, hot, { retryAfterMs: 200 }, log);
  stores.push(store);
  return store;
}

beforeAll(() => iso.create(pool));
afterAll(async () => {
  await Promise.all(stores.map((s) => s.close()));
  await iso.remove(pool, redis);
  redis.disconnect();
  await pool.end();
});

storeContract("redis+postgres", { make: () => tiered() });
boundsContract("redis+postgres", { make: (maxPageBytes) => tiered(redis, 50, undefined, maxPageBytes) });
toolMessagesContract("redis+postgres", { make: () => tiered() });

// What a Redis that takes no writes (OOM, paused, read-only) answers a write.
const refuse = () => Promise.reject(new Error("OOM command not allowed when used memory > 'maxmemory'"));
const turn = (i: number) => [
  { role: "user" as const, content: `q${i}` },
  { role: "assistant" as const, content: `a${i}` },
];
const input = { userId: "u-tiered", agentId: "helper", metadata: {}, ttlSeconds: 600 };

describe("redis+postgres: PostgreSQL is the truth, Redis the hot copy", () => {
  it("serves a turn's read from Redis checked against PostgreSQL's version (one GET, one primary-key read, in parallel) and commits its write to PostgreSQL, then to the copy", async () => {
    const store = await tiered();
    const s = await store.create(input);
    for (let i = 0; i < 250; i++) await store.appendMessages(s.id, turn(i));
    const read = await roundTrips(() => store.get(s.id, { messages: 20 }));
    expect(read).toEqual({ redis: ["get"], pg: 1 });
    const write = await roundTrips(() => store.appendMessages(s.id, turn(250)));
    expect(write).toEqual({ redis: ["evalsha"], pg: 1 });
    const got = await store.get(s.id, { messages: 4 });
    expect(got!.messages.map((m) => m.content)).toEqual(["q249", "a249", "q250", "a250"]);
    expect(got).toMatchObject({ version: 251, messageCount: 502 });
  });

  it("answers a read Redis lost from PostgreSQL and warms the copy again", async () => {
    const store = await tiered();
    const s = await store.create(input);
    await store.appendMessages(s.id, turn(0));
    await redis.del(`${iso.prefix}hot:{${s.id}}`); // evicted, flushed, restarted
    const miss = await roundTrips(() => store.get(s.id, { messages: 20 }));
    expect(miss.pg).toBe(2); // the version, then the session
    await vi.waitFor(async () => expect(await redis.exists(`${iso.prefix}hot:{${s.id}}`)).toBe(1), EVENTUALLY); // the warm-up is not awaited by the read
    const hit = await roundTrips(() => store.get(s.id, { messages: 20 }));
    expect(hit).toEqual({ redis: ["get"], pg: 1 });
    expect((await store.get(s.id, { messages: 20 }))!.messages.map((m) => m.content)).toEqual(["q0", "a0"]);
  });

  it("reads past the copy's window from PostgreSQL", async () => {
    const store = await tiered(redis, 4);
    const s = await store.create(input);
    for (let i = 0; i < 5; i++) await store.appendMessages(s.id, turn(i));
    expect((await roundTrips(() => store.get(s.id, { messages: 4 }))).pg).toBe(1);
    const wide = await roundTrips(async () => expect((await store.get(s.id, { messages: 10 }))!.messages).toHaveLength(10));
    expect(wide.pg).toBe(2);
  });

  it("keeps serving, and committing every write, with Redis unreachable", async () => {
    const dead = countingRedis("redis://127.0.0.1:1", { maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 200, retryStrategy: () => null });
    dead.on("error", () => undefined);
    try {
      const store = await tiered(dead);
      const s = await store.create(input);
      const versions: number[] = [];
      for (let i = 0; i < 3; i++) versions.push(await store.appendMessages(s.id, turn(i)));
      const cp = await store.saveCheckpoint(s.id, { data: { n: 1 }, expectedVersion: 3, keep: 5 });
      expect(versions).toEqual([1, 2, 3]);
      expect(cp.version).toBe(4);
      const got = await store.get(s.id, { messages: 10 });
      expect(got!.messages.map((m) => m.content)).toEqual(["q0", "a0", "q1", "a1", "q2", "a2"]);
      // And the truth has it, whoever reads it next.
      const healthy = await tiered();
      expect((await healthy.get(s.id, { messages: 10 }))!.version).toBe(4);
    } finally {
      dead.disconnect();
    }
  });

  it("lets a delete win over a copy: the session is gone for every reader", async () => {
    const store = await tiered();
    const s = await store.create(input);
    await store.appendMessages(s.id, turn(0));
    await store.get(s.id, { messages: 20 });
    expect(await store.delete(s.id)).toBe(true);
    expect(await store.get(s.id, { messages: 20 })).toBeUndefined();
    expect(await (await tiered()).get(s.id, { messages: 20 })).toBeUndefined();
  });

  it("keeps a second process's copy exact: its writes apply, a missed one forces a re-read", async () => {
    const a = await tiered();
    const b = await tiered();
    const s = await a.create(input);
    await a.appendMessages(s.id, turn(0));
    await b.appendMessages(s.id, turn(1));
    await a.saveCheckpoint(s.id, { data: { x: 1 }, expectedVersion: 2, keep: 5 });
    for (const store of [a, b]) {
      const got = await store.get(s.id, { messages: 20 });
      expect(got!.messages.map((m) => m.content)).toEqual(["q0", "a0", "q1", "a1"]);
      expect(got!.version).toBe(3);
    }
  });

  it("a process that dies between its commit and the copy's update leaves a copy no process serves", async () => {
    const a = await tiered();
    const s = await a.create(input);
    await a.appendMessages(s.id, turn(0));
    expect((await a.get(s.id, { messages: 20 }))!.version).toBe(1); // A's copy at version 1
    // The process dies after committing, before the update (HotCopy.apply never runs).
    const dying = await tiered(redis, 50, Object.assign(new HotCopy(redis, iso.prefix, 50), { apply: () => new Promise<void>(() => {}) }));
    void dying.appendMessages(s.id, turn(1));
    await vi.waitFor(
      async () => expect((await pool.query(`select version from ${iso.schema}.sessions where id = $1`, [s.id])).rows[0].version).toBe("2"),
      EVENTUALLY,
    );
    expect(await redis.get(`${iso.prefix}hot:{${s.id}}`)).toContain('"version":1'); // the stale copy is still there
    for (const store of [a, await tiered()]) {
      const got = await store.get(s.id, { messages: 20 });
      expect(got!.messages.map((m) => m.content)).toEqual(["q0", "a0", "q1", "a1"]);
      expect(got!.version).toBe(2);
    }
  });

  it("a write Redis refused to apply (OOM, paused, read-only) is seen by the very next read on every process: the old copy fails its version check", async () => {
    const b = await tiered();
    const s = await b.create(input);
    await b.appendMessages(s.id, turn(0));
    expect(await roundTrips(() => b.get(s.id, { messages: 20 }))).toEqual({ redis: ["get"], pg: 1 }); // served from B's copy
    // Process A's Redis takes no writes: the commit lands, the copy's update does not.
    const a = await tiered(redis, 50, Object.assign(new HotCopy(redis, iso.prefix, 50), { apply: refuse, warm: refuse }));
    expect(await a.appendMessages(s.id, turn(1))).toBe(2);
    expect(await redis.get(`${iso.prefix}hot:{${s.id}}`)).toContain('"version":1');
    for (const store of [b, a]) {
      const got = await store.get(s.id, { messages: 20 });
      expect(got!.messages.map((m) => m.content)).toEqual(["q0", "a0", "q1", "a1"]);
      expect(got!.version).toBe(2);
    }
    // B's read warmed the copy to the truth's version: served from Redis again.
    await vi.waitFor(async () => expect(await redis.get(`${iso.prefix}hot:{${s.id}}`)).toContain('"version":2'), EVENTUALLY);
    expect(await roundTrips(() => b.get(s.id, { messages: 20 }))).toEqual({ redis: ["get"], pg: 1 });
  });

  it("a copy Redis brings back from an older snapshot (a restart) is not served", async () => {
    const store = await tiered();
    const s = await store.create(input);
    await store.appendMessages(s.id, turn(0));
    await store.get(s.id, { messages: 20 });
    const key = `${iso.prefix}hot:{${s.id}}`;
    const snapshot = (await redis.get(key))!;
    await store.appendMessages(s.id, turn(1));
    await store.appendMessages(s.id, turn(2));
    await redis.set(key, snapshot, "PX", 60_000); // what an RDB taken at version 1 restores
    const got = await store.get(s.id, { messages: 20 });
    expect(got!.version).toBe(3);
    expect(got!.messages).toHaveLength(6);
  });

  it("one session, one copy, whatever the case of its id: a turn written through the upper-case form is in the next read through the lower-case one", async () => {
    const store = await tiered();
    const s = await store.create(input);
    await store.appendMessages(s.id, turn(0));
    await store.get(s.id, { messages: 20 });
    expect(await store.appendMessages(s.id.toUpperCase(), turn(1))).toBe(2);
    const got = await store.get(s.id, { messages: 20 });
    expect(got!.messages.map((m) => m.content)).toEqual(["q0", "a0", "q1", "a1"]);
    expect(await redis.keys(`${iso.prefix}hot:{${s.id.toUpperCase()}}`)).toEqual([]);
  });

  it("a session deleted, or expired, in PostgreSQL is gone even while its copy is in Redis", async () => {
    const store = await tiered();
    const s = await store.create(input);
    await store.appendMessages(s.id, turn(0));
    await store.get(s.id, { messages: 20 });
    await pool.query(`update ${iso.schema}.sessions set expires_at = now() - interval '1 second' where id = $1`, [s.id]);
    expect(await redis.get(`${iso.prefix}hot:{${s.id}}`)).toContain('"version":1');
    expect(await store.get(s.id, { messages: 20 })).toBeUndefined();
  });
});

describe("redis+postgres: tool turns in the copy and in PostgreSQL", () => {
  it("serves a tool turn exactly from the Redis copy, from PostgreSQL after the copy is lost, and from the copy that read warms", async () => {
    const store = await tiered();
    const s = await store.create(input);
    await store.appendMessages(s.id, toolTurn(0));
    await store.appendMessages(s.id, toolTurn(1));
    const both = [...toolTurn(0), ...toolTurn(1)];
    let got: Awaited<ReturnType<typeof store.get>>;
    expect(await roundTrips(async () => (got = await store.get(s.id, { messages: 20 })))).toEqual({ redis: ["get"], pg: 1 });
    expect(got!.messages).toStrictEqual(both);
    await redis.del(`${iso.prefix}hot:{${s.id}}`);
    expect((await roundTrips(async () => (got = await store.get(s.id, { messages: 20 })))).pg).toBe(2);
    expect(got!.messages).toStrictEqual(both);
    await vi.waitFor(async () => expect(await redis.exists(`${iso.prefix}hot:{${s.id}}`)).toBe(1), EVENTUALLY);
    expect(await roundTrips(async () => (got = await store.get(s.id, { messages: 20 })))).toEqual({ redis: ["get"], pg: 1 });
    expect(got!.messages).toStrictEqual(both);
  });

  it("reads rows written before tool use unchanged, from PostgreSQL and then from the copy", async () => {
    const store = await tiered();
    const s = await store.create(input);
    // As the release before wrote a turn: role and content only.
    await pool.query(
      `with m as (insert into ${iso.schema}.messages (session_id, role, content) values ($1, 'user', 'q0'), ($1, 'assistant', 'a0'))
       update ${iso.schema}.sessions set version = 1, message_count = 2 where id = $1`,
      [s.id],
    );
    await store.appendMessages(s.id, toolTurn(1));
    const expected = [{ role: "user", content: "q0" }, { role: "assistant", content: "a0" }, ...toolTurn(1)];
    await redis.del(`${iso.prefix}hot:{${s.id}}`);
    expect((await store.get(s.id, { messages: 20 }))!.messages).toStrictEqual(expected);
    await vi.waitFor(async () => expect(await redis.get(`${iso.prefix}hot:{${s.id}}`)).toContain('"version":2'), EVENTUALLY);
    let got: Awaited<ReturnType<typeof store.get>>;
    expect(await roundTrips(async () => (got = await store.get(s.id, { messages: 20 })))).toEqual({ redis: ["get"], pg: 1 });
    expect(got!.messages).toStrictEqual(expected);
  });
});
