import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import pino from "pino";
import { HotCopy } from "../../src/sessions/hot-copy.ts";
import { HotSuspects } from "../../src/sessions/hot-suspects.ts";
import { PostgresSessionStore } from "../../src/sessions/postgres-store.ts";
import { TieredSessionStore } from "../../src/sessions/tiered-store.ts";
import { countingPool, countingRedis, isolation, roundTrips } from "../support/store-backends.ts";
import { storeContract } from "./store-contract.ts";
import { boundsContract } from "./store-bounds-contract.ts";

const log = pino({ level: "silent" });
const iso = isolation();
const pool = countingPool();
const redis = countingRedis();
const stores: TieredSessionStore[] = [];

async function tiered(client = redis, window = 50, hot = new HotCopy(client, iso.prefix, window), suspectsPerPoll = 500, maxPageBytes?: number): Promise<TieredSessionStore> {
  const truth = await PostgresSessionStore.open(pool, { schema: iso.schema, sweepIntervalMs: 60_000, log, maxPageBytes });
  // Polls rarely: a test that wants the list read again calls ready().
  const options = { retryAfterMs: 200, maxDirty: 1000, suspectPollMs: 600_000, suspectsPerPoll };
  const store = new TieredSessionStore(truth, hot, client, new HotSuspects(pool, iso.schema, iso.prefix), options, log);
  stores.push(store);
  await store.ready();
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
boundsContract("redis+postgres", { make: (maxPageBytes) => tiered(redis, 50, undefined, 500, maxPageBytes) });

// What a Redis that takes no writes (OOM, paused, read-only) answers a write.
const refuse = () => Promise.reject(new Error("OOM command not allowed when used memory > 'maxmemory'"));
const turn = (i: number) => [{ role: "user" as const, content: `q${i}` }, { role: "assistant" as const, content: `a${i}` }];
const input = { userId: "u-tiered", agentId: "helper", metadata: {}, ttlSeconds: 600 };

describe("redis+postgres: PostgreSQL is the truth, Redis the hot copy", () => {
  it("serves a turn's read from Redis and commits its write to PostgreSQL: one read; one commit between the copy's mark and its update", async () => {
    const store = await tiered();
    const s = await store.create(input);
    for (let i = 0; i < 250; i++) await store.appendMessages(s.id, turn(i));
    const read = await roundTrips(() => store.get(s.id, { messages: 20 }));
    expect(read).toEqual({ redis: ["get"], pg: 0 });
    const write = await roundTrips(() => store.appendMessages(s.id, turn(250)));
    expect(write).toEqual({ redis: ["evalsha", "evalsha"], pg: 1 });
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
    expect(miss.pg).toBe(1);
    await new Promise((r) => setTimeout(r, 20)); // the warm-up is not awaited by the read
    const hit = await roundTrips(() => store.get(s.id, { messages: 20 }));
    expect(hit).toEqual({ redis: ["get"], pg: 0 });
    expect((await store.get(s.id, { messages: 20 }))!.messages.map((m) => m.content)).toEqual(["q0", "a0"]);
  });

  it("reads past the copy's window from PostgreSQL", async () => {
    const store = await tiered(redis, 4);
    const s = await store.create(input);
    for (let i = 0; i < 5; i++) await store.appendMessages(s.id, turn(i));
    expect((await roundTrips(() => store.get(s.id, { messages: 4 }))).pg).toBe(0);
    const wide = await roundTrips(async () => expect((await store.get(s.id, { messages: 10 }))!.messages).toHaveLength(10));
    expect(wide.pg).toBe(1);
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

  it("a process that dies between its commit and the copy's update leaves a miss behind, not a stale copy", async () => {
    const a = await tiered();
    const s = await a.create(input);
    await a.appendMessages(s.id, turn(0));
    // The process dies after marking the copy and committing, before the update (HotCopy.apply never runs).
    const dying = await tiered(redis, 50, Object.assign(new HotCopy(redis, iso.prefix, 50), { apply: () => new Promise<void>(() => {}) }));
    void dying.appendMessages(s.id, turn(1));
    await vi.waitFor(async () => expect((await pool.query(`select version from ${iso.schema}.sessions where id = $1`, [s.id])).rows[0].version).toBe("2"));
    const got = await (await tiered()).get(s.id, { messages: 20 });
    expect(got!.messages.map((m) => m.content)).toEqual(["q0", "a0", "q1", "a1"]);
    expect(got!.version).toBe(2);
  });

  it("a write Redis would not let it mark (reads still answered) is listed in PostgreSQL: no process serves the old copy once it has read the list", async () => {
    const b = await tiered();
    const s = await b.create(input);
    await b.appendMessages(s.id, turn(0));
    expect((await b.get(s.id, { messages: 20 }))!.version).toBe(1); // served from B's copy
    // Process A's Redis takes no writes (OOM, a paused or read-only Redis): neither the mark nor the update lands.
    const a = await tiered(redis, 50, Object.assign(new HotCopy(redis, iso.prefix, 50), { mark: refuse, apply: refuse }));
    expect(await a.appendMessages(s.id, turn(1))).toBe(2);
    const listed = async () => (await pool.query(`select session_id from ${iso.schema}.hot_suspects where session_id = $1`, [s.id])).rowCount;
    expect(await listed()).toBe(1);
    expect(await redis.get(`${iso.prefix}hot:{${s.id}}`)).toContain('"version":1'); // the stale copy is still there
    // Another process whose Redis refuses writes too: it cannot retire the copy, and does not serve it.
    const c = await tiered(redis, 50, Object.assign(new HotCopy(redis, iso.prefix, 50), { retire: refuse }));
    expect((await c.get(s.id, { messages: 20 }))!.messages.map((m) => m.content)).toEqual(["q0", "a0", "q1", "a1"]);
    expect(await listed()).toBe(1);
    // B, once it has read the list, neither.
    await b.ready();
    expect((await b.get(s.id, { messages: 20 }))!.version).toBe(2);
    // A process whose Redis takes writes retires the copy and unlists the session.
    await (await tiered()).ready();
    expect(await listed()).toBe(0);
    expect((await b.get(s.id, { messages: 20 }))!.version).toBe(2);
  });

  it("serves no copy while more sessions are listed than one poll reads: the unread ones may be stale too", async () => {
    // Copies still at version 1, the version B cached before A's unmarked writes.
    const stale = async (list: { id: string }[]) => (await Promise.all(list.map((s) => redis.get(`${iso.prefix}hot:{${s.id}}`)))).filter((v) => v && /"version":1[,}]/.test(v)).length;
    const b = await tiered();
    const sessions = [await b.create(input), await b.create(input)];
    for (const s of sessions) {
      await b.appendMessages(s.id, turn(0));
      expect((await b.get(s.id, { messages: 20 }))!.version).toBe(1); // B's copy of each
    }
    const a = await tiered(redis, 50, Object.assign(new HotCopy(redis, iso.prefix, 50), { mark: refuse, apply: refuse }));
    for (const s of sessions) expect(await a.appendMessages(s.id, turn(1))).toBe(2);
    // A process that reads one suspect per poll: it retires that one's copy, and serves neither
    // copy, though the other's it has not read about is still the stale one.
    const c = await tiered(redis, 50, undefined, 1);
    expect(await stale(sessions)).toBe(1);
    for (const s of sessions) expect((await c.get(s.id, { messages: 20 }))!.version).toBe(2);
    // The next poll retires the other; the one after reads the whole (empty) list and serves copies again.
    await c.ready();
    await c.ready();
    expect(await stale(sessions)).toBe(0);
    for (const s of sessions) expect((await c.get(s.id, { messages: 20 }))!.version).toBe(2);
  });
});
