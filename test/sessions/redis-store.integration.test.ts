import { type ChatMessage, Code } from "@qingyu/plugin-api";
import { createServer, type Server, type Socket } from "node:net";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { RedisSessionStore } from "../../src/sessions/redis-store.ts";
import type { SessionStore } from "../../src/sessions/types.ts";
import { rejection } from "../support/rejection.ts";
import { settlesBefore } from "../support/settles-before.ts";
import { deleteKeys, freshPrefix, REDIS_URL, serverScriptCalls } from "./redis-support.ts";
import { recordCommands } from "../support/store-backends.ts";
import { storeContract } from "./store-contract.ts";
import { boundsContract } from "./store-bounds-contract.ts";
import { toolMessagesContract, toolTurn } from "./store-tool-messages-contract.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ALL = { messages: 10_000 };
const turn = (i: number): ChatMessage[] => [
  { role: "user", content: `q${i}` },
  { role: "assistant", content: `a${i}` },
];
const input = (userId = "u1", ttlSeconds = 600) => ({ userId, agentId: "helper", metadata: {}, ttlSeconds });

// One prefix for the whole file: the contract and the tests below share it, and it is emptied at the end.
const prefix = freshPrefix();
let redis: Redis;

beforeAll(() => {
  redis = new Redis(REDIS_URL);
});

afterAll(async () => {
  await deleteKeys(redis, prefix);
  await redis.quit();
});

storeContract("redis", { make: async () => new RedisSessionStore(redis, { keyPrefix: prefix }) });
boundsContract("redis", { make: async (maxPageBytes) => new RedisSessionStore(redis, { keyPrefix: prefix, maxPageBytes }) });
toolMessagesContract("redis", { make: async () => new RedisSessionStore(redis, { keyPrefix: prefix }) });

describe("RedisSessionStore", () => {
  let store: SessionStore;
  const extra: Redis[] = [];
  const keysOf = (id: string) => [`${prefix}s:{${id}}`, `${prefix}s:{${id}}:m`, `${prefix}s:{${id}}:c`, `${prefix}s:{${id}}:cv`];

  beforeEach(() => {
    store = new RedisSessionStore(redis, { keyPrefix: prefix });
  });

  afterEach(async () => {
    await store.close();
    for (const c of extra.splice(0)) c.disconnect();
  });

  it("gives every key of a session a TTL no longer than the session's, moved by each write", async () => {
    // The full 600 s less no more than the time since the test began, however long a busy machine made that.
    const started = Date.now();
    const full = () => 600_000 - (Date.now() - started);
    const s = await store.create(input("ttl-user"));
    await store.appendMessages(s.id, turn(1));
    await store.saveCheckpoint(s.id, { data: { a: 1 }, expectedVersion: -1, keep: 5 });
    for (const key of keysOf(s.id)) {
      const pttl = await redis.pttl(key);
      expect(pttl).toBeLessThanOrEqual(600_000);
      expect(pttl).toBeGreaterThanOrEqual(full());
    }
    expect(await redis.pttl(`${prefix}u:ttl-user`)).toBeGreaterThanOrEqual(full());

    // Shorten everything by hand: the next write of either kind puts the full TTL back.
    for (const write of [() => store.appendMessages(s.id, turn(2)), () => store.saveCheckpoint(s.id, { data: { a: 2 }, expectedVersion: -1, keep: 5 })]) {
      for (const key of [...keysOf(s.id), `${prefix}u:ttl-user`]) await redis.pexpire(key, 5_000);
      await write();
      for (const key of [...keysOf(s.id), `${prefix}u:ttl-user`]) expect(await redis.pttl(key)).toBeGreaterThanOrEqual(full());
    }
  });

  it("keeps a user's index alive as long as its longest session", async () => {
    const started = Date.now();
    const long = await store.create(input("index-user", 600));
    await store.create(input("index-user", 1)); // a shorter one must not shorten the index
    expect(await redis.pttl(`${prefix}u:index-user`)).toBeGreaterThanOrEqual(600_000 - (Date.now() - started));
    expect((await store.list("index-user", 10, "")).items.map((s) => s.id)).toContain(long.id);
  });

  it("drops index entries of expired sessions while listing", async () => {
    const live = await store.create(input("lazy-user", 600));
    const dead = await store.create(input("lazy-user", 1));
    await sleep(1_100);
    expect(await redis.zscore(`${prefix}u:lazy-user`, dead.id)).not.toBeNull();
    expect((await store.list("lazy-user", 10, "")).items.map((s) => s.id)).toEqual([live.id]);
    expect(await redis.zscore(`${prefix}u:lazy-user`, dead.id)).toBeNull();
    expect(await redis.zscore(`${prefix}u:lazy-user`, live.id)).not.toBeNull();
  });

  it("lists sessions created in the same millisecond by id, page by page, none twice", async () => {
    // Same create ms forced by hand: ties must page by id, as the token says.
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await store.create(input("tie-user"))).id);
    for (const id of ids) {
      await redis.zadd(`${prefix}u:tie-user`, 1_000, id);
      await redis.hset(`${prefix}s:{${id}}`, "ct", 1_000);
    }
    const seen: string[] = [];
    let token = "";
    do {
      const page = await store.list("tie-user", 2, token);
      seen.push(...page.items.map((s) => s.id));
      token = page.nextPageToken;
    } while (token);
    expect(seen).toEqual([...ids].sort().reverse());
  });

  it("reads messages stored before tool use (JSON of role and content) unchanged, next to a tool turn", async () => {
    const s = await store.create(input());
    // As the release before wrote them, straight into the session's message list.
    await redis.rpush(`${prefix}s:{${s.id}}:m`, '{"role":"user","content":"q0"}', '{"role":"assistant","content":"a0"}');
    await store.appendMessages(s.id, toolTurn(1));
    expect((await store.get(s.id, ALL))!.messages).toStrictEqual([{ role: "user", content: "q0" }, { role: "assistant", content: "a0" }, ...toolTurn(1)]);
  });

  it("appends more messages in one call than Lua can unpack at once", async () => {
    const s = await store.create(input());
    const many = Array.from({ length: 10_000 }, (_, i) => ({ role: "user" as const, content: `m${i}` }));
    await store.appendMessages(s.id, many);
    const got = await store.get(s.id, { messages: 2 });
    expect(got).toMatchObject({ messageCount: 10_000, version: 1 });
    expect(got!.messages.map((m) => m.content)).toEqual(["m9998", "m9999"]);
  });

  it("costs one round trip (one EVALSHA) for get, appendMessages and saveCheckpoint, however long the history", async () => {
    // The store's own client, so its commands can be told apart from everyone else's.
    const client = new Redis(REDIS_URL);
    extra.push(client);
    await client.ping();
    const counted = new RedisSessionStore(client, { keyPrefix: prefix });
    const sent = recordCommands(client);
    const admin = new Redis(REDIS_URL);
    extra.push(admin);

    for (const history of [2, 500]) {
      const s = await counted.create(input("rt-user"));
      await counted.appendMessages(
        s.id,
        Array.from({ length: history }, (_, i) => ({ role: "user" as const, content: `m${i}` })),
      );
      await counted.saveCheckpoint(s.id, { data: { warm: true }, expectedVersion: -1, keep: 3 }); // scripts now cached
      const ops: [string, () => Promise<unknown>][] = [
        ["get", () => counted.get(s.id, { messages: 500 })],
        ["appendMessages", () => counted.appendMessages(s.id, turn(1))],
        ["saveCheckpoint", () => counted.saveCheckpoint(s.id, { data: { n: history }, expectedVersion: -1, keep: 3 })],
      ];
      for (const [name, op] of ops) {
        sent.length = 0;
        await op();
        expect({ name, history, sent }).toEqual({ name, history, sent: ["evalsha"] });
        expect({ name, history, server: await serverScriptCalls(admin, op) }).toEqual({ name, history, server: { evalsha: 1, eval: 0 } });
      }
      // The measured reads did read the history: all of it, up to 500.
      const read = (await counted.get(s.id, { messages: 500 }))!;
      expect(read.messageCount).toBeGreaterThanOrEqual(history + 4);
      expect(read.messages).toHaveLength(Math.min(500, read.messageCount));
    }
  });

  it("answers UNAVAILABLE quickly on every method when Redis cannot be reached", async () => {
    const down = new Redis({ host: "127.0.0.1", port: 1, maxRetriesPerRequest: 0, enableOfflineQueue: false, connectTimeout: 200 });
    down.on("error", () => {});
    extra.push(down);
    await expectUnavailableEverywhere(new RedisSessionStore(down, { keyPrefix: prefix }));
  });

  it("answers UNAVAILABLE within the command timeout when Redis accepts but never replies", async () => {
    // A socket that swallows everything: a hung server, not a refused one.
    const sockets: Socket[] = [];
    const blackHole: Server = createServer((s) => sockets.push(s));
    await new Promise<void>((r) => blackHole.listen(0, "127.0.0.1", r));
    const port = (blackHole.address() as { port: number }).port;
    const hung = new Redis({ host: "127.0.0.1", port, enableReadyCheck: false, commandTimeout: 200, maxRetriesPerRequest: 0 });
    hung.on("error", () => {});
    extra.push(hung);
    try {
      await expectUnavailableEverywhere(new RedisSessionStore(hung, { keyPrefix: prefix }), 1_000);
    } finally {
      for (const s of sockets) s.destroy();
      blackHole.close();
    }
  });

  it("lets exactly one of two processes racing with the same expected version win", async () => {
    const [a, b] = [new Redis(REDIS_URL), new Redis(REDIS_URL)];
    extra.push(a, b);
    const storeA = new RedisSessionStore(a, { keyPrefix: prefix });
    const storeB = new RedisSessionStore(b, { keyPrefix: prefix });
    const s = await storeA.create(input());
    await storeB.appendMessages(s.id, turn(1));
    const racing = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? storeA : storeB).saveCheckpoint(s.id, { data: { racer: i }, expectedVersion: 1, keep: 100 })),
    );
    expect(racing.filter((o) => o.status === "fulfilled")).toHaveLength(1);
    for (const lost of racing.filter((o) => o.status === "rejected")) {
      expect((lost as PromiseRejectedResult).reason.code).toBe(Code.Aborted);
    }
    expect((await storeB.get(s.id, ALL))!.version).toBe(2);
    expect((await storeA.listCheckpoints(s.id, 100, "")).items).toHaveLength(1);
  });

  it("keeps a failing command INTERNAL: a reply error is a bug, not an outage", async () => {
    const s = await store.create(input());
    await redis.set(`${prefix}s:{${s.id}}:m`, "not a list");
    expect((await rejection(store.appendMessages(s.id, turn(1)))).code).toBe(Code.Internal);
    expect((await rejection(store.get(s.id, ALL))).code).toBe(Code.Internal);
  });
});

/** Every method rejects with UNAVAILABLE, each within `withinMs`. */
async function expectUnavailableEverywhere(store: SessionStore, withinMs = 500): Promise<void> {
  const id = "00000000-0000-4000-8000-000000000000";
  const calls: [string, () => Promise<unknown>][] = [
    ["create", () => store.create(input())],
    ["get", () => store.get(id, ALL)],
    ["list", () => store.list("u1", 10, "")],
    ["delete", () => store.delete(id)],
    ["appendMessages", () => store.appendMessages(id, turn(1))],
    ["saveCheckpoint", () => store.saveCheckpoint(id, { data: {}, expectedVersion: -1, keep: 1 })],
    ["getCheckpoint", () => store.getCheckpoint(id, "")],
    ["listCheckpoints", () => store.listCheckpoints(id, 10, "")],
    ["ping", () => store.ping()],
  ];
  for (const [name, call] of calls) {
    const pending = call();
    // An order, not a speed: the answer comes before a timer of withinMs, longer than every client timeout here.
    expect(await settlesBefore(pending, withinMs), name).toBe(true);
    const err = await rejection(pending);
    // The driver's message (host, port, errno) is the operator's, not the client's.
    expect({ name, code: err.code, message: err.rawMessage }).toEqual({ name, code: Code.Unavailable, message: "session store unavailable" });
  }
}
