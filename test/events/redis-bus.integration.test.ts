// Two RedisEventBus instances on separate clients stand for two server processes
// sharing one real Redis. Each test has its own key prefix, deleted after.
import type { EventType, RuntimeEvent, SubscribeOptions } from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";
import { Redis } from "ioredis";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { SharedClients } from "../../src/clients/shared.ts";
import { RedisEventBus, type RedisEventBusInput } from "../../src/events/redis-bus.ts";
import { REDIS_URL } from "../sessions/redis-support.ts";
import { addressOf, throughPort } from "../support/services.ts";
import { settlesBefore } from "../support/settles-before.ts";

type Line = Record<string, unknown> & { level: number; msg: string };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until `check` holds; fails with `what` after `ms`. */
async function until(what: string, check: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A TCP proxy to Redis that the test can cut (Redis unreachable) and restore. */
async function redisProxy(): Promise<{ url: string; cut(): void; restore(): void; close(): Promise<void> }> {
  const open = new Set<Socket>();
  const upstreamAt = addressOf(REDIS_URL);
  let down = false;
  const server: Server = createServer((client) => {
    if (down) return void client.destroy();
    const upstream = connect(upstreamAt.port, upstreamAt.host);
    const end = () => {
      for (const s of [client, upstream]) {
        s.destroy();
        open.delete(s);
      }
    };
    open.add(client).add(upstream);
    client.pipe(upstream).pipe(client);
    for (const s of [client, upstream]) s.on("error", end).on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: throughPort(REDIS_URL, port),
    cut() {
      down = true;
      for (const s of open) s.destroy();
    },
    restore() {
      down = false;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const cleanup: (() => Promise<unknown> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** A fresh key prefix whose keys are deleted after the test. */
function freshPrefix(): string {
  const prefix = `qingyu:test:events:${randomUUID()}:`;
  cleanup.push(async () => {
    const admin = new Redis(REDIS_URL);
    const keys = await admin.keys(`${prefix}*`);
    if (keys.length) await admin.del(...keys);
    await admin.quit();
  });
  return prefix;
}

/** One "server process": its own shared client (as the app makes it), a bus on it, and the bus's log lines. */
async function proc(keyPrefix: string, options: RedisEventBusInput = {}, url = REDIS_URL) {
  const lines: Line[] = [];
  const log = pino({ level: "debug" }, { write: (l: string) => void lines.push(JSON.parse(l) as Line) });
  const clients = await SharedClients.open(
    { redis: { url, commandTimeoutMs: 2000, connectTimeoutMs: 2000 }, postgres: { poolSize: 1, connectTimeoutMs: 1000, statementTimeoutMs: 1000 } },
    pino({ level: "silent" }),
  );
  const bus = new RedisEventBus(clients.redis(), log, { keyPrefix, warnIntervalMs: 60_000, ...options });
  cleanup.push(() => clients.close());
  cleanup.push(() => bus.close());
  await bus.start();
  const collect = (types: readonly EventType[] | "any" = "any", opts?: SubscribeOptions) => {
    const seen: RuntimeEvent[] = [];
    bus.subscribe(types, (e) => void seen.push(e), opts);
    return seen;
  };
  return { bus, lines, collect, redis: clients.redis() };
}

const REMOTE = { remote: true } as const;

/** Waits until `publisher` has learned that another process listens to these types (it appends only then). */
const heard = (publisher: { bus: RedisEventBus }, ...types: EventType[]) =>
  until(`the publisher to learn of a listener to ${types.join(", ")}`, () => types.every((t) => publisher.bus.shares(t)));

/** The stream's event entries (not the control entries processes tell each other about subscriptions with). */
const eventEntries = (entries: [string, string[]][]) => entries.filter(([, f]) => f.includes("t"));
const ns = (events: RuntimeEvent[]) => events.map((e) => e.data.n);
const range = (n: number) => Array.from({ length: n }, (_, i) => i);

/** The id of the reader connection named `name`, from CLIENT LIST. */
async function readerId(admin: Redis, name: string): Promise<string | undefined> {
  const list = (await admin.client("LIST")) as string;
  const line = list.split("\n").find((l) => l.includes(` name=${name} `));
  return line ? /(?:^|\s)id=(\d+)/.exec(line)?.[1] : undefined;
}

describe("RedisEventBus across processes", () => {
  it("delivers A's events to B's remote subscriber in publish order, intact and marked remote", async () => {
    const prefix = freshPrefix();
    const a = await proc(prefix);
    const b = await proc(prefix);
    const published = a.collect();
    const received = b.collect("any", REMOTE);
    const types: EventType[] = ["AGENT_STARTED", "MIDDLEWARE_EXECUTED", "AGENT_COMPLETED", "SESSION_CREATED"];
    await heard(a, ...types);
    for (const n of range(40)) {
      a.bus.publish({ type: types[n % 4]!, agentId: "helper", sessionId: `s${n}`, userId: "u1", data: { n, nested: { ok: true, list: [1, "two"] } } });
    }
    await until("40 events on B", () => received.length >= 40);
    expect(ns(received)).toEqual(range(40));
    expect(published).toHaveLength(40);
    received.forEach((event, i) => {
      const original = published[i]!;
      expect(event.remote).toBe(true);
      expect(original.remote).toBeUndefined();
      expect(event.time).toBeInstanceOf(Date);
      expect(event.time.getTime()).toBe(original.time.getTime());
      const { remote: _r, ...rest } = event;
      expect(rest).toEqual(original);
    });
  });

  it("B's plain subscriber gets B's own events only; A's own remote subscriber gets A's events exactly once", async () => {
    const prefix = freshPrefix();
    const a = await proc(prefix);
    const b = await proc(prefix);
    const aRemote = a.collect("any", REMOTE);
    const bPlain = b.collect();
    const bRemote = b.collect("any", REMOTE);
    await heard(a, "SESSION_CREATED");
    await heard(b, "SESSION_DELETED");
    for (const n of range(5)) a.bus.publish({ type: "SESSION_CREATED", data: { n } });
    await until("A's events on B", () => bRemote.length >= 5);
    // A marker from B: once A's reader has it, it has read past A's own entries (one stream, read in order).
    b.bus.publish({ type: "SESSION_DELETED", data: { n: 99 } });
    await until("B's marker on A", () => aRemote.some((e) => e.data.n === 99));
    await sleep(100);
    expect(ns(aRemote)).toEqual([0, 1, 2, 3, 4, 99]);
    expect(aRemote.slice(0, 5).every((e) => e.remote === undefined)).toBe(true);
    expect(aRemote[5]!.remote).toBe(true);
    expect(ns(bPlain)).toEqual([99]);
    expect(bPlain[0]!.remote).toBeUndefined();
    expect(ns(bRemote)).toEqual([0, 1, 2, 3, 4, 99]);
  });

  it("a remote subscriber's types filter remote events too", async () => {
    const prefix = freshPrefix();
    const a = await proc(prefix);
    const b = await proc(prefix);
    const onlyErrors = b.collect(["ERROR_OCCURRED"], REMOTE);
    const all = b.collect("any", REMOTE);
    await heard(a, "AGENT_STARTED", "ERROR_OCCURRED", "AGENT_COMPLETED");
    a.bus.publish({ type: "AGENT_STARTED", data: { n: 1 } });
    a.bus.publish({ type: "ERROR_OCCURRED", data: { n: 2 } });
    a.bus.publish({ type: "AGENT_COMPLETED", data: { n: 3 } });
    await until("all three on B", () => all.length >= 3);
    await sleep(50);
    expect(ns(onlyErrors)).toEqual([2]);
  });

  it("a subscriber that throws or rejects is logged and does not stop the others or the reader", async () => {
    const prefix = freshPrefix();
    const a = await proc(prefix);
    const b = await proc(prefix);
    b.bus.subscribe(
      "any",
      () => {
        throw new Error("sync boom");
      },
      REMOTE,
    );
    b.bus.subscribe(
      ["AGENT_COMPLETED"],
      async () => {
        throw new Error("async boom");
      },
      REMOTE,
    );
    const received = b.collect("any", REMOTE);
    await heard(a, "AGENT_COMPLETED");
    for (const n of range(3)) a.bus.publish({ type: "AGENT_COMPLETED", data: { n } });
    await until("3 events on B", () => received.length >= 3);
    a.bus.publish({ type: "AGENT_COMPLETED", data: { n: 3 } });
    await until("the 4th event on B", () => received.length >= 4);
    await sleep(50);
    expect(ns(received)).toEqual([0, 1, 2, 3]);
    const failures = b.lines.filter((l) => l.msg === "event handler failed");
    expect(failures).toHaveLength(8);
    expect(failures.map((l) => (l.err as { message: string }).message).sort()).toEqual([...Array(4).fill("async boom"), ...Array(4).fill("sync boom")]);
    expect(failures.every((l) => received.some((e) => e.id === l.eventId))).toBe(true);
  });

  it("the types option decides what is shared, and hasSubscribers says so", async () => {
    const prefix = freshPrefix();
    const a = await proc(prefix, { types: ["SESSION_CREATED"] });
    const b = await proc(prefix);
    const received = b.collect("any", REMOTE);
    await heard(a, "SESSION_CREATED");
    expect(a.bus.hasSubscribers("SESSION_CREATED")).toBe(true);
    expect(a.bus.hasSubscribers("AGENT_STARTED")).toBe(false);
    const aLocal = a.collect(["AGENT_STARTED"]);
    expect(a.bus.hasSubscribers("AGENT_STARTED")).toBe(true);
    a.bus.publish({ type: "AGENT_STARTED", data: { n: 1 } });
    a.bus.publish({ type: "SESSION_CREATED", data: { n: 2 } });
    await until("the shared event on B", () => received.length >= 1);
    await sleep(100);
    expect(ns(received)).toEqual([2]);
    expect(ns(aLocal)).toEqual([1]);
    const entries = eventEntries(await b.redis.xrange(`${prefix}events`, "-", "+"));
    expect(entries.map(([, f]) => f[f.indexOf("t") + 1])).toEqual(["SESSION_CREATED"]);
  });

  it("a type this process does not share is not delivered from other processes either", async () => {
    const prefix = freshPrefix();
    const a = await proc(prefix);
    const b = await proc(prefix, { types: ["SESSION_DELETED"] });
    const received = b.collect("any", REMOTE);
    await heard(a, "SESSION_DELETED");
    a.bus.publish({ type: "SESSION_CREATED", data: { n: 1 } });
    a.bus.publish({ type: "SESSION_DELETED", data: { n: 2 } });
    await until("the shared event on B", () => received.length >= 1);
    await sleep(100);
    expect(ns(received)).toEqual([2]);
  });

  it("the reader survives its connection being killed and loses nothing published meanwhile", async () => {
    const prefix = freshPrefix();
    const a = await proc(prefix);
    const b = await proc(prefix);
    const admin = new Redis(REDIS_URL);
    cleanup.push(() => admin.quit());
    const received = b.collect("any", REMOTE);
    await heard(a, "AGENT_STARTED");
    a.bus.publish({ type: "AGENT_STARTED", data: { n: 0 } });
    await until("the first event", () => received.length >= 1);
    for (let round = 1; round <= 3; round++) {
      const id = await readerId(admin, b.bus.readerName);
      expect(id).toBeDefined();
      await admin.client("KILL", "ID", id!);
      for (const n of range(10)) a.bus.publish({ type: "AGENT_STARTED", data: { n: round * 100 + n } });
      await until(`round ${round}`, () => received.length >= 1 + round * 10);
      const again = await readerId(admin, b.bus.readerName);
      expect(again).toBeDefined();
      expect(again).not.toBe(id);
    }
    expect(ns(received)).toEqual([0, ...[1, 2, 3].flatMap((r) => range(10).map((n) => r * 100 + n))]);
  });

  it("an outage: reads resume from the last id, each side logs it once, and publishing never waits", async () => {
    const prefix = freshPrefix();
    const proxy = await redisProxy();
    cleanup.push(() => proxy.close());
    const a = await proc(prefix);
    const b = await proc(prefix, { retryMaxMs: 500 }, proxy.url);
    // A's events only: a remote subscription also gets this process's own events.
    const received = b.collect(["AGENT_STARTED"], REMOTE);
    const bLocal = b.collect(["CHECKPOINT_SAVED"]);
    // Someone on A listens to B's checkpoints: B's appends of them are what fail during the outage.
    a.collect(["CHECKPOINT_SAVED"], REMOTE);
    await heard(a, "AGENT_STARTED");
    await heard(b, "CHECKPOINT_SAVED");
    a.bus.publish({ type: "AGENT_STARTED", data: { n: 0 } });
    await until("the first event", () => received.length >= 1);

    proxy.cut();
    await until("B's reader to notice", () => b.lines.some((l) => l.msg.startsWith("event stream reader failed")));
    for (const n of range(20)) a.bus.publish({ type: "AGENT_STARTED", data: { n: n + 1 } });
    // Never waits: each publish returns nothing to await, and B's own subscribers have every event by the
    // next turn of the event loop (delivery is one setImmediate), with no Redis reply in between.
    for (const n of range(30)) expect(b.bus.publish({ type: "CHECKPOINT_SAVED", data: { n } })).toBeUndefined();
    await new Promise((resolve) => setImmediate(resolve));
    expect(ns(bLocal)).toEqual(range(30));
    await sleep(1500);
    proxy.restore();

    await until("the events of the outage", () => received.length >= 21);
    expect(ns(received)).toEqual(range(21));
    await until("the reconnect line", () => b.lines.some((l) => l.msg === "event stream reader reconnected"));
    expect(b.lines.filter((l) => l.msg.startsWith("event stream reader failed"))).toHaveLength(1);
    expect(b.lines.some((l) => l.msg.includes("trimmed"))).toBe(false);

    // B's events during the outage were delivered here, and their failed appends logged in two lines, not thirty.
    expect(ns(bLocal)).toEqual(range(30));
    await until("B's client to reconnect", () => b.redis.status === "ready");
    b.bus.publish({ type: "CHECKPOINT_SAVED", data: { n: 30 } });
    await until("the recovery line", () => b.lines.some((l) => l.msg === "events are shared with other processes again"));
    const notShared = b.lines.filter((l) => l.msg.startsWith("event not shared"));
    expect(notShared).toHaveLength(2);
    expect(notShared[0]!.eventId).toBe(bLocal[0]!.id);
    expect(notShared[1]).toMatchObject({ count: 29, byType: { CHECKPOINT_SAVED: 29 } });
    expect(notShared[1]!.sampleEventIds).toEqual(bLocal.slice(1, 21).map((e) => e.id));
  });

  it("events trimmed by maxLen while a reader was away are lost, and that is logged", async () => {
    const prefix = freshPrefix();
    const proxy = await redisProxy();
    cleanup.push(() => proxy.close());
    const a = await proc(prefix, { maxLen: 10 });
    const b = await proc(prefix, { retryMaxMs: 500 }, proxy.url);
    const received = b.collect("any", REMOTE);
    await heard(a, "AGENT_STARTED");
    a.bus.publish({ type: "AGENT_STARTED", data: { n: 0 } });
    await until("the first event", () => received.length >= 1);
    proxy.cut();
    await until("B's reader to notice", () => b.lines.some((l) => l.msg.startsWith("event stream reader failed")));
    for (const n of range(500)) a.bus.publish({ type: "AGENT_STARTED", data: { n: n + 1 } });
    await until("A's appends", async () => {
      const [last] = await a.redis.xrevrange(`${prefix}events`, "+", "-", "COUNT", 1);
      return last?.[1].some((f) => f.includes('"n":500')) ?? false;
    });
    expect(received).toHaveLength(1);
    proxy.restore();
    await until("the trim warning", () => b.lines.some((l) => l.msg.includes("trimmed")));
    await until("the newest event", () => received.at(-1)?.data.n === 500);
    const got = ns(received) as number[];
    expect(got.length).toBeLessThan(501);
    // What survived arrives in order, ending with the newest.
    expect(got).toEqual([...got].sort((x, y) => x - y));
  });

  it("an event over maxEventBytes is cut before it reaches the stream, and one written larger is cut when read", async () => {
    const prefix = freshPrefix();
    const a = await proc(prefix, { maxEventBytes: 4096 });
    const b = await proc(prefix, { maxEventBytes: 4096 });
    const received = b.collect("any", REMOTE);
    await heard(a, "ERROR_OCCURRED");
    a.bus.publish({ type: "ERROR_OCCURRED", agentId: "echo", sessionId: "s".repeat(4_194_200), data: { message: "m".repeat(4_000_000), code: "NOT_FOUND" } });
    await until("the event on B", () => received.length === 1);
    const [[, fields]] = eventEntries(await a.redis.xrange(`${prefix}events`, "-", "+")) as [[string, string[]]];
    expect(Buffer.byteLength(fields[fields.indexOf("e") + 1]!)).toBeLessThanOrEqual(4096);
    expect(received[0]).toMatchObject({ type: "ERROR_OCCURRED", agentId: "echo", data: { code: "NOT_FOUND", truncated: true } });
    // An entry some other writer made (an older process, a larger bound) is cut on the way in.
    const foreign = {
      id: "x-1",
      type: "ERROR_OCCURRED",
      time: new Date().toISOString(),
      userId: "u".repeat(10_000),
      data: { big: "b".repeat(1_000_000), n: 7 },
    };
    await a.redis.xadd(`${prefix}events`, "*", "o", "elsewhere", "t", "ERROR_OCCURRED", "e", JSON.stringify(foreign));
    await until("the foreign entry on B", () => received.length === 2);
    expect(received[1]).toMatchObject({ id: "x-1", data: { n: 7, truncated: true } });
    expect(Buffer.byteLength(JSON.stringify(received[1]))).toBeLessThanOrEqual(4096);
  });

  it("appends an event only while another process listens to its type, and stops when it no longer does", async () => {
    const prefix = freshPrefix();
    const a = await proc(prefix, { interestRefreshMs: 200 });
    const b = await proc(prefix, { interestRefreshMs: 200 });
    const local = a.collect("any");
    const stream = async () => eventEntries(await a.redis.xrange(`${prefix}events`, "-", "+")).map(([, f]) => f[f.indexOf("t") + 1]);
    // Nobody elsewhere listens: delivered here, nothing appended.
    a.bus.publish({ type: "AGENT_STARTED", data: { n: 1 } });
    expect(a.bus.shares("AGENT_STARTED")).toBe(false);
    const received: RuntimeEvent[] = [];
    const off = b.bus.subscribe(["AGENT_COMPLETED"], (e) => void received.push(e), REMOTE);
    await heard(a, "AGENT_COMPLETED");
    expect(a.bus.shares("AGENT_STARTED")).toBe(false);
    a.bus.publish({ type: "AGENT_STARTED", data: { n: 2 } });
    a.bus.publish({ type: "AGENT_COMPLETED", data: { n: 3 } });
    await until("the listened-to event on B", () => received.length >= 1);
    off();
    await until("A to learn nobody listens any more", () => !a.bus.shares("AGENT_COMPLETED"));
    a.bus.publish({ type: "AGENT_COMPLETED", data: { n: 4 } });
    await sleep(100);
    expect(ns(received)).toEqual([3]);
    expect(await stream()).toEqual(["AGENT_COMPLETED"]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(ns(local)).toEqual([1, 2, 3, 4]);
  });

  it("a listener's process that died stops counting once its announcement expires", async () => {
    const prefix = freshPrefix();
    const a = await proc(prefix, { interestRefreshMs: 100 });
    const b = await proc(prefix, { interestTtlMs: 300, interestRefreshMs: 100 });
    b.collect(["AGENT_STARTED"], REMOTE);
    await heard(a, "AGENT_STARTED");
    // Gone without a word: no withdrawal, no renewal (its client is cut, as by kill -9).
    b.redis.disconnect();
    await until("A to stop appending for the dead listener", () => !a.bus.shares("AGENT_STARTED"), 5_000);
  });

  it("close() stops the reader promptly, also during an outage, without unhandled rejections", async () => {
    const rejections: unknown[] = [];
    const onRejection = (r: unknown) => void rejections.push(r);
    process.on("unhandledRejection", onRejection);
    cleanup.push(() => void process.off("unhandledRejection", onRejection));
    const prefix = freshPrefix();
    const admin = new Redis(REDIS_URL);
    cleanup.push(() => admin.quit());
    const a = await proc(prefix);
    const b = await proc(prefix, { blockMs: 10_000 });
    const received = b.collect("any", REMOTE);
    await sleep(100); // the reader is inside its 10 s XREAD BLOCK
    // Promptly: close() settles before the block it interrupts would have ended on its own.
    expect(await settlesBefore(b.bus.close(), 10_000)).toBe(true);
    await until("the reader connection to go", async () => (await readerId(admin, b.bus.readerName)) === undefined);
    a.bus.publish({ type: "AGENT_STARTED", data: { n: 1 } });
    await sleep(300);
    expect(received).toEqual([]);
    expect(b.bus.hasSubscribers("AGENT_STARTED")).toBe(true); // its local subscriber is still there

    const proxy = await redisProxy();
    cleanup.push(() => proxy.close());
    const c = await proc(prefix, { retryMaxMs: 5000 }, proxy.url);
    proxy.cut();
    await until("C's reader to notice", () => c.lines.some((l) => l.msg.startsWith("event stream reader failed")));
    // ...and during an outage, before the pending read would have timed out on its own (blockMs, 5 s).
    expect(await settlesBefore(c.bus.close(), 5_000)).toBe(true);
    await sleep(200);
    expect(rejections).toEqual([]);
  });
});
