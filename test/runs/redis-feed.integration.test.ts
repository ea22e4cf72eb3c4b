// RedisRunFeed on the run's real Redis: each test has a key prefix of its own,
// its keys deleted after. A watcher "on another replica" is watchRun with no
// local log, reading the feed and a MemoryRunStore journal.
import { randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryRunStore } from "../../src/runs/memory-store.ts";
import { followerName, RedisRunFeed, type RedisRunFeedOptions } from "../../src/runs/redis-feed.ts";
import { RunLog } from "../../src/runs/run-log.ts";
import type { RunLogEvent, RunRecord, SequencedEvent } from "../../src/runs/types.ts";
import { watchRun } from "../../src/runs/watch.ts";
import { deleteKeys, REDIS_URL } from "../sessions/redis-support.ts";
import { accepted, newRun, OWNER, seq, sleep } from "./run-fixtures.ts";

type Line = { level: number; msg: string };

const cleanup: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const undo of cleanup.splice(0).reverse()) await undo();
});

/** A feed on a fresh prefix of the run's Redis, with the log lines it wrote. */
function setup(options: RedisRunFeedOptions = {}) {
  const prefix = `qingyu:test:feed:${randomUUID()}:`;
  const redis = new Redis(REDIS_URL);
  const lines: Line[] = [];
  const log = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
  const feed = new RedisRunFeed(redis, log, { keyPrefix: prefix, batchMs: BATCH_MS, ...options });
  cleanup.push(async () => {
    await feed.close();
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });
  return { feed, redis, prefix, lines };
}

const delta = (text: string): RunLogEvent => ({ type: "delta", text });
const deltas = (from: number, n: number) =>
  seq(
    from,
    Array.from({ length: n }, (_, i) => delta(`t${from + i}`)),
  );
const seqs = (events: readonly SequencedEvent[]) => events.map((e) => e.seq);
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

/** How long the feed batches publishes in these tests (its default). */
const BATCH_MS = 5;

/** Resolves once everything published so far has reached Redis: its batch is sent (batchMs), and a read on the same client queues behind it. */
const settled = async (feed: RedisRunFeed) => {
  await new Promise((r) => setTimeout(r, BATCH_MS + 5));
  await feed.lastSeq("none");
};

async function followerConnections(redis: Redis, prefix: string): Promise<number> {
  const list = (await redis.call("client", "list")) as string;
  return list.split("\n").filter((l) => l.includes(` name=${followerName(prefix)} `)).length;
}

describe("RedisRunFeed", () => {
  it("reads and follows what is published, in seq order", async () => {
    const { feed } = setup();
    const run = randomUUID();
    for (const e of deltas(1, 5)) feed.publish(run, e);
    await settled(feed);
    expect(seqs(await feed.read(run, 0, 100))).toEqual([1, 2, 3, 4, 5]);
    expect(seqs(await feed.read(run, 3, 100))).toEqual([4, 5]);
    expect(seqs(await feed.read(run, 0, 2))).toEqual([1, 2]);
    expect((await feed.read(run, 0, 1))[0]).toEqual(deltas(1, 1)[0]);

    const stop = new AbortController();
    const got: number[] = [];
    const following = (async () => {
      for await (const e of feed.follow(run, 2, stop.signal)) {
        got.push(e.seq);
        if (e.seq === 9) stop.abort();
      }
    })();
    await sleep(50);
    for (const e of deltas(6, 4)) feed.publish(run, e);
    await following;
    expect(got).toEqual([3, 4, 5, 6, 7, 8, 9]);
  });

  it("a publish made twice is refused by Redis without a warning, and the feed goes on", async () => {
    const { feed, lines } = setup();
    const run = randomUUID();
    for (const e of deltas(1, 5)) feed.publish(run, e);
    await settled(feed);
    feed.publish(run, deltas(3, 1)[0]!);
    feed.publish(run, { ...deltas(5, 1)[0]!, event: delta("other") });
    feed.publish(run, deltas(6, 1)[0]!);
    await settled(feed);
    const held = await feed.read(run, 0, 100);
    expect(seqs(held)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(held[4]!.event).toEqual(delta("t5"));
    expect(lines.filter((l) => l.level >= 40)).toEqual([]);
  });

  it("lastSeq is the top of the feed, 0 for none, and stays after trimming", async () => {
    const { feed } = setup({ maxLen: 100 });
    const run = randomUUID();
    expect(await feed.lastSeq(run)).toBe(0);
    for (const e of deltas(1, 1000)) feed.publish(run, e);
    await settled(feed);
    expect(await feed.lastSeq(run)).toBe(1000);
    const held = await feed.read(run, 0, 10_000);
    expect(held.length).toBeLessThan(1000);
    expect(held.at(-1)!.seq).toBe(1000);
  });

  it("a feed lives a day while its run goes on, an hour once it ended", async () => {
    const { feed, redis } = setup();
    const run = randomUUID();
    feed.publish(run, deltas(1, 1)[0]!);
    await settled(feed);
    expect(await redis.ttl(feed.key(run))).toBeGreaterThan(3600);
    feed.end(run);
    await settled(feed);
    const ttl = await redis.ttl(feed.key(run));
    expect(ttl).toBeGreaterThan(3000);
    expect(ttl).toBeLessThanOrEqual(3600);
  });

  it("a follower stops at once on abort, mid-read, and its connection goes", async () => {
    const { feed, redis, prefix } = setup({ blockMs: 10_000 });
    const run = randomUUID();
    feed.publish(run, deltas(1, 1)[0]!);
    const stop = new AbortController();
    const got: number[] = [];
    const following = (async () => {
      for await (const e of feed.follow(run, 0, stop.signal)) got.push(e.seq);
    })();
    // Seq 1 read: the follower now blocks in XREAD for up to 10 s.
    while (!got.length) await sleep(10);
    expect(await followerConnections(redis, prefix)).toBe(1);
    const started = Date.now();
    stop.abort();
    await following;
    expect(Date.now() - started).toBeLessThan(1000);
    for (let i = 0; i < 50 && (await followerConnections(redis, prefix)) > 0; i++) await sleep(20);
    expect(await followerConnections(redis, prefix)).toBe(0);
    expect(got).toEqual([1]);
  });

  it("a Redis that does not answer costs one warning per outage, not one per event, and never reaches the run", async () => {
    const lines: Line[] = [];
    const log = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s) as Line) });
    // Nothing listens on port 1; no offline queue, no reconnect: each pipeline fails at once.
    const dead = new Redis("redis://127.0.0.1:1", { lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    dead.on("error", () => {});
    const feed = new RedisRunFeed(dead, log, { keyPrefix: `qingyu:test:feed:${randomUUID()}:` });
    cleanup.push(async () => {
      await feed.close();
      dead.disconnect();
    });
    const run = randomUUID();
    for (let i = 1; i <= 50; i++) {
      expect(() => feed.publish(run, deltas(i, 1)[0]!)).not.toThrow();
      if (i % 10 === 0) await new Promise((r) => setImmediate(r));
    }
    await feed.close();
    expect(lines.filter((l) => l.level === 40)).toHaveLength(1);
    await expect(feed.read(run, 0, 10)).rejects.toThrow();
  });
});

describe("watchRun with a feed, on another replica", () => {
  it("a feed trimmed below the cursor: the journal fills its barriers, the deltas trimmed are gone", async () => {
    const { feed } = setup({ maxLen: 100 });
    const store = new MemoryRunStore();
    const first = accepted();
    const { run } = await store.create(newRun(), first);
    const log = new RunLog(run.id, OWNER, store, run.lastSeq, first, Date.now, feed);
    // 100 steps of 10 events: step_started, 8 deltas, step_finished; 1,000 events past what ~100 entries hold.
    for (let step = 1; step <= 100; step++) {
      await log.push({ type: "step_started", step });
      for (let i = 0; i < 8; i++) await log.push(delta(`${step}.${i}`));
      await log.push({ type: "step_finished", step, finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1 }, toolCalls: 0 });
    }
    await log.push({ type: "failed", error: { code: 13, message: "x", reason: "INTERNAL" } });
    log.end();
    await settled(feed);
    const held = seqs(await feed.read(run.id, 0, 10_000));
    expect(held[0]).toBeGreaterThan(2);

    const got: SequencedEvent[] = [];
    for await (const e of watchRun(run as RunRecord, 0, new AbortController().signal, { store, local: () => undefined, pollMs: 10, feed })) got.push(e);
    const journal = seqs(await store.events(run.id, 0, 10_000));
    // Before the feed's first entry: the journal's events (no deltas); from it on: every event.
    const expected = [...journal.filter((s) => s < held[0]!), ...range(held[0]!, log.lastSeq)];
    expect(seqs(got)).toEqual(expected);
    expect(got.at(-1)!.event.type).toBe("failed");
  });
});
