import { randomUUID } from "node:crypto";
import type { RunFeed } from "../../src/runs/feed.ts";
import { Redis } from "ioredis";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryRunStore } from "../../src/runs/memory-store.ts";
import { RedisRunFeed } from "../../src/runs/redis-feed.ts";
import { RunLog } from "../../src/runs/run-log.ts";
import type { RunRecord, RunStore, SequencedEvent } from "../../src/runs/types.ts";
import { watchRun, type WatchSources } from "../../src/runs/watch.ts";
import { deleteKeys, REDIS_URL } from "../sessions/redis-support.ts";
import { accepted, newRun, OWNER, sleep } from "./run-fixtures.ts";

/** A store whose journal reads wait for `open()`: events published meanwhile reach the watcher's queue first. */
function slowJournal(store: RunStore) {
  let open!: () => void;
  const gate = new Promise<void>((resolve) => (open = resolve));
  const wrapped: RunStore = Object.assign(Object.create(store) as RunStore, {
    events: async (runId: string, afterSeq: number, limit: number) => {
      await gate;
      return store.events(runId, afterSeq, limit);
    },
  });
  return { store: wrapped, open };
}

async function collect(it: AsyncIterable<SequencedEvent>): Promise<number[]> {
  const seqs: number[] = [];
  for await (const e of it) seqs.push(e.seq);
  return seqs;
}

describe("watchRun on the replica running the run", () => {
  it("sees every event once, deltas included, when events are published while it reads the journal", async () => {
    const memory = new MemoryRunStore();
    const { run } = await memory.create(newRun(), accepted());
    const { store, open } = slowJournal(memory);
    // Not seeded with `accepted`: the watcher from seq 0 must read the journal.
    const log = new RunLog(run.id, OWNER, memory, run.lastSeq);
    const watching = collect(watchRun(run as RunRecord, 0, new AbortController().signal, { store, local: () => log, pollMs: 10 }));
    await new Promise((r) => setImmediate(r));
    await log.push({ type: "delta", text: "a" });
    await log.push({ type: "delta", text: "b" });
    await log.push({ type: "step_finished", step: 1, finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1 }, toolCalls: 0 });
    open();
    await new Promise((r) => setImmediate(r));
    await log.push({
      type: "completed",
      result: { success: true, output: "ab", model: "m", finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1 }, durationMs: 1, metadata: {} },
    });
    log.end();
    expect(await watching).toEqual([1, 2, 3, 4, 5]);
  });

  it("a log that holds the run's first events answers a watch from seq 0 without the journal", async () => {
    const memory = new MemoryRunStore();
    const first = accepted();
    const { run } = await memory.create(newRun(), first);
    const { store } = slowJournal(memory); // never opened: reading the journal would hang
    const log = new RunLog(run.id, OWNER, memory, run.lastSeq, first);
    await log.push({ type: "delta", text: "a" });
    const watching = collect(watchRun(run as RunRecord, 0, new AbortController().signal, { store, local: () => log, pollMs: 10 }));
    await new Promise((r) => setImmediate(r));
    await log.push({ type: "failed", error: { code: 13, message: "x", reason: "INTERNAL" } });
    log.end();
    expect(await watching).toEqual([1, 2, 3]);
  });
});

const cleanup: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const undo of cleanup.splice(0).reverse()) await undo();
});

const silent = pino({ level: "silent" });
const result = { success: true, output: "ab", model: "m", finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1 }, durationMs: 1, metadata: {} };

/** A run owned by a RunLog publishing to a feed on the run's Redis (a prefix of its own), and how a watcher on another replica sees it. */
async function remoteRun(
  feedOf: (redis: Redis, prefix: string) => RedisRunFeed = (redis, prefix) => new RedisRunFeed(redis, silent, { keyPrefix: prefix }),
  /** What the owner publishes through (default: the feed itself). */
  ownerFeed: (feed: RedisRunFeed) => RunFeed = (feed) => feed,
) {
  const prefix = `qingyu:test:watch:${randomUUID()}:`;
  const redis = new Redis(REDIS_URL);
  const feed = new RedisRunFeed(redis, silent, { keyPrefix: prefix });
  const watcherFeed = feedOf(redis, prefix);
  cleanup.push(async () => {
    await Promise.all([feed.close(), watcherFeed.close()]);
    await deleteKeys(redis, prefix);
    redis.disconnect();
  });
  const store = new MemoryRunStore();
  const first = accepted();
  const { run } = await store.create(newRun(), first);
  const log = new RunLog(run.id, OWNER, store, run.lastSeq, first, Date.now, ownerFeed(feed));
  const sources: WatchSources = { store, local: () => undefined, pollMs: 10, feed: watcherFeed };
  const watch = (afterSeq: number, signal = new AbortController().signal) => collect(watchRun(run as RunRecord, afterSeq, signal, sources));
  /** One step of text: step_started, two deltas, step_finished. */
  const step = async (n: number) => {
    await log.push({ type: "step_started", step: n });
    await log.push({ type: "delta", text: `${n}a` });
    await log.push({ type: "delta", text: `${n}b` });
    await log.push({ type: "step_finished", step: n, finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1 }, toolCalls: 0 });
  };
  return { store, run, log, feed, watch, step };
}

const upTo = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("watchRun on another replica, with the runs' feed in Redis", () => {
  it("sees every event once and in order, text deltas too, while the run goes on and after it ended", async () => {
    const { log, watch, step } = await remoteRun();
    await step(1);
    const fromStart = watch(0);
    await sleep(30);
    await step(2);
    const midRun = watch(0);
    await sleep(30);
    await step(3);
    await log.push({ type: "completed", result }, { status: "completed", release: true });
    log.end();
    expect(await fromStart).toEqual(upTo(14));
    expect(await midRun).toEqual(upTo(14));
    expect(await watch(0)).toEqual(upTo(14));
  });

  it("a watcher that comes while the feed lags the journal gets the deltas between, from the feed", async () => {
    // The owner's publishes reach the feed 100 ms late, in order: the journal has a step's barriers before the feed has them.
    const lagging = (feed: RedisRunFeed): RunFeed => ({
      publish: (runId, event) => void setTimeout(() => feed.publish(runId, event), 100),
      end: (runId) => void setTimeout(() => feed.end(runId), 100),
      read: (runId, afterSeq, limit) => feed.read(runId, afterSeq, limit),
      follow: (runId, afterSeq, signal) => feed.follow(runId, afterSeq, signal),
      lastSeq: (runId) => feed.lastSeq(runId),
      close: () => feed.close(),
    });
    const { log, watch, step } = await remoteRun(undefined, lagging);
    await step(1);
    await sleep(150);
    // The feed holds step 1. Step 2 and the tool call after it are journaled (its deltas as bare seqs) before the feed has any of it.
    await step(2);
    await log.push({ type: "tool_call", step: 2, call: { id: "c1", name: "t", arguments: "{}" } });
    const watching = watch(0);
    await sleep(150);
    await log.push({ type: "completed", result }, { status: "completed", release: true });
    log.end();
    expect(await watching).toEqual(upTo(11));
  });

  it("from a cursor: what comes after it, live and ended", async () => {
    const { log, watch, step } = await remoteRun();
    await step(1);
    const live = watch(3);
    await sleep(30);
    await step(2);
    await log.push({ type: "failed", error: { code: 13, message: "x", reason: "INTERNAL" } }, { status: "failed", release: true });
    log.end();
    expect(await live).toEqual([4, 5, 6, 7, 8, 9, 10]);
    expect(await watch(7)).toEqual([8, 9, 10]);
    expect(await watch(10)).toEqual([]);
  });

  it("a run that ends without its feed hearing of it (the last publish lost) ends its watchers from the journal", async () => {
    const { store, run, log, watch, step } = await remoteRun();
    await step(1);
    const watching = watch(0);
    await sleep(30);
    // Ended by a replica with no feed, as a parked run cancelled elsewhere might be.
    const other = new RunLog(run.id, OWNER, store, log.lastSeq);
    await other.push({ type: "cancelled", mode: "rollback" }, { status: "cancelled", release: true });
    expect(await watching).toEqual(upTo(6));
  });

  it("stops when its signal aborts, mid-run", async () => {
    const { watch, step } = await remoteRun();
    await step(1);
    const stop = new AbortController();
    const watching = watch(0, stop.signal);
    await sleep(30);
    stop.abort();
    expect(await watching).toEqual(upTo(5));
  });

  it("a Redis that fails: the journal, polled, as without a feed (no deltas)", async () => {
    const dead = new Redis("redis://127.0.0.1:1", { lazyConnect: true, enableOfflineQueue: false, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    dead.on("error", () => {});
    cleanup.push(() => dead.disconnect());
    const { log, watch, step } = await remoteRun(() => new RedisRunFeed(dead, silent));
    await step(1);
    const watching = watch(0);
    await sleep(30);
    await step(2);
    await log.push({ type: "completed", result }, { status: "completed", release: true });
    log.end();
    expect(await watching).toEqual([1, 2, 5, 6, 9, 10]);
  });
});
