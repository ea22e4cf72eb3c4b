import { Code } from "@qingyu/plugin-api";
import { afterEach, describe, it, expect } from "vitest";
import { MemorySessionStore } from "../../src/sessions/memory-store.ts";
import type { CreateSessionInput, SessionRecord } from "../../src/sessions/types.ts";
import { rejection } from "../support/rejection.ts";

/** A clock the test moves by hand. */
function clock(start = 1_700_000_000_000) {
  let t = start;
  return {
    now: () => t,
    advance(ms: number) {
      t += ms;
    },
  };
}

/** Reads every message. */
const ALL = { messages: 10_000 };

const stores: MemorySessionStore[] = [];
function makeStore(now: () => number = Date.now): MemorySessionStore {
  const store = new MemorySessionStore(60_000, now);
  stores.push(store);
  return store;
}

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

const input = (overrides: Partial<CreateSessionInput> = {}): CreateSessionInput => ({
  userId: "alice",
  agentId: "helper",
  metadata: { team: "a" },
  ttlSeconds: 60,
  ...overrides,
});

describe("MemorySessionStore: create and get", () => {
  it("creates a session with the input, version 0, no messages and an expiry ttl ahead", async () => {
    const c = clock();
    const store = makeStore(c.now);
    const s = await store.create(input());
    expect(s.id).toMatch(/\S/);
    expect(s).toMatchObject({ userId: "alice", agentId: "helper", metadata: { team: "a" }, version: 0, messages: [] });
    expect(s.createTime.getTime()).toBe(c.now());
    expect(s.updateTime.getTime()).toBe(c.now());
    expect(s.expireTime.getTime()).toBe(c.now() + 60_000);
    expect(await store.get(s.id, ALL)).toEqual(s);
  });

  it("gives every session its own id", async () => {
    const store = makeStore();
    const a = await store.create(input());
    const b = await store.create(input());
    expect(a.id).not.toBe(b.id);
  });

  it("returns undefined for an unknown session", async () => {
    expect(await makeStore().get("no-such-session", ALL)).toBeUndefined();
  });

  it("returns copies: mutating a returned record does not change the store", async () => {
    const store = makeStore();
    const meta = { team: "a" };
    const created = await store.create(input({ metadata: meta }));
    meta.team = "changed-input";
    created.metadata.team = "changed-created";
    created.version = 99;
    created.userId = "mallory";

    await store.appendMessages(created.id, [{ role: "user", content: "hi" }]);
    const got = await store.get(created.id, ALL);
    got!.messages.push({ role: "assistant", content: "injected" });
    got!.messages[0]!.content = "rewritten";
    got!.metadata.team = "changed-got";

    const again = await store.get(created.id, ALL);
    expect(again).toMatchObject({ userId: "alice", version: 1, metadata: { team: "a" } });
    expect(again!.messages).toEqual([{ role: "user", content: "hi" }]);
  });

  it("copies the appended messages rather than keeping the caller's objects", async () => {
    const store = makeStore();
    const s = await store.create(input());
    const message = { role: "user" as const, content: "original" };
    await store.appendMessages(s.id, [message]);
    message.content = "mutated";
    expect((await store.get(s.id, ALL))!.messages).toEqual([{ role: "user", content: "original" }]);
  });

  it("copies tool calls in and out: the caller's or a reader's changes to them do not reach the store", async () => {
    const store = makeStore();
    const s = await store.create(input());
    const call = { id: "c1", name: "weather", arguments: '{"city":"Köln"}' };
    await store.appendMessages(s.id, [{ role: "assistant", content: "", toolCalls: [call] }]);
    call.arguments = "{}";
    const read = (await store.get(s.id, ALL))!.messages[0]!;
    read.toolCalls![0]!.name = "other";
    read.toolCalls!.push({ id: "c2", name: "x", arguments: "{}" });
    expect((await store.get(s.id, ALL))!.messages).toStrictEqual([
      { role: "assistant", content: "", toolCalls: [{ id: "c1", name: "weather", arguments: '{"city":"Köln"}' }] },
    ]);
  });

  it("returned Date fields are copies too", async () => {
    const store = makeStore();
    const s = await store.create(input());
    s.expireTime.setTime(0);
    expect(await store.get(s.id, ALL)).toBeDefined();
  });
});

describe("MemorySessionStore: appendMessages and TTL", () => {
  it("appends in order, bumps the version and refreshes updateTime and expireTime", async () => {
    const c = clock();
    const store = makeStore(c.now);
    const s = await store.create(input({ ttlSeconds: 10 }));
    c.advance(4_000);
    expect(
      await store.appendMessages(s.id, [
        { role: "user", content: "q1" },
        { role: "assistant", content: "a1" },
      ]),
    ).toBe(1);
    c.advance(4_000);
    expect(await store.appendMessages(s.id, [{ role: "user", content: "q2" }])).toBe(2);
    const got = (await store.get(s.id, ALL))!;
    expect(got.version).toBe(2);
    expect(got.messages.map((m) => m.content)).toEqual(["q1", "a1", "q2"]);
    expect(got.createTime.getTime()).toBe(s.createTime.getTime());
    expect(got.updateTime.getTime()).toBe(c.now());
    expect(got.expireTime.getTime()).toBe(c.now() + 10_000);
  });

  it("keeps a session alive past its first expiry while it is being written", async () => {
    const c = clock();
    const store = makeStore(c.now);
    const s = await store.create(input({ ttlSeconds: 10 }));
    c.advance(9_000);
    await store.appendMessages(s.id, [{ role: "user", content: "still here" }]);
    c.advance(9_000); // 18 s after creation, 9 s after the write
    expect(await store.get(s.id, ALL)).toBeDefined();
  });

  it("expires a session after its TTL: get is undefined, writes are NOT_FOUND", async () => {
    const c = clock();
    const store = makeStore(c.now);
    const s = await store.create(input({ ttlSeconds: 10 }));
    c.advance(9_999);
    expect(await store.get(s.id, ALL)).toBeDefined();
    c.advance(1);
    expect(await store.get(s.id, ALL)).toBeUndefined();
    const err = await rejection(store.appendMessages(s.id, [{ role: "user", content: "late" }]));
    expect(err.code).toBe(Code.NotFound);
    expect((await rejection(store.saveCheckpoint(s.id, { data: {}, expectedVersion: -1, keep: 100 }))).code).toBe(Code.NotFound);
    expect(await store.delete(s.id)).toBe(false);
  });

  it("appendMessages on an unknown session is NOT_FOUND naming it", async () => {
    const err = await rejection(makeStore().appendMessages("ghost", [{ role: "user", content: "x" }]));
    expect(err.code).toBe(Code.NotFound);
    expect(err.rawMessage).toContain("ghost");
  });

  it("an expired session drops out of listings", async () => {
    const c = clock();
    const store = makeStore(c.now);
    const short = await store.create(input({ ttlSeconds: 1 }));
    c.advance(1);
    const long = await store.create(input({ ttlSeconds: 100 }));
    c.advance(2_000);
    const page = await store.list("alice", 10, "");
    expect(page.items.map((s) => s.id)).toEqual([long.id]);
    expect(page.items.map((s) => s.id)).not.toContain(short.id);
  });
});

describe("MemorySessionStore: list", () => {
  it("lists only the user's own sessions, newest first, without messages", async () => {
    const c = clock();
    const store = makeStore(c.now);
    const a1 = await store.create(input({ userId: "alice" }));
    c.advance(10);
    await store.create(input({ userId: "bob" }));
    c.advance(10);
    const a2 = await store.create(input({ userId: "alice" }));
    await store.appendMessages(a1.id, [{ role: "user", content: "hello" }]);

    const page = await store.list("alice", 10, "");
    expect(page.items.map((s) => s.id)).toEqual([a2.id, a1.id]);
    expect(page.items.every((s) => s.userId === "alice")).toBe(true);
    expect(page.items.every((s) => s.messages.length === 0)).toBe(true);
    expect(page.items[1]!.version).toBe(1);
    expect(page.nextPageToken).toBe("");
    expect((await store.list("carol", 10, "")).items).toEqual([]);
  });

  it("pages cover every session exactly once, in order, including ties in create time", async () => {
    const c = clock();
    const store = makeStore(c.now);
    const ids: SessionRecord[] = [];
    for (let i = 0; i < 11; i++) {
      ids.push(await store.create(input()));
      if (i % 3 === 0) c.advance(5); // several sessions share a create time
    }
    await store.create(input({ userId: "bob" }));

    const all = await store.list("alice", 100, "");
    expect(all.items).toHaveLength(11);

    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await store.list("alice", 4, token);
      expect(page.items.length).toBeLessThanOrEqual(4);
      seen.push(...page.items.map((s) => s.id));
      token = page.nextPageToken;
      pages++;
    } while (token && pages < 10);

    expect(pages).toBe(3);
    expect(seen).toEqual(all.items.map((s) => s.id));
    expect(new Set(seen)).toEqual(new Set(ids.map((s) => s.id)));
    // Newest first by create time.
    const times = all.items.map((s) => s.createTime.getTime());
    expect([...times].sort((x, y) => y - x)).toEqual(times);
  });

  it("has no next page token when the last page is exactly full", async () => {
    const store = makeStore();
    for (let i = 0; i < 4; i++) await store.create(input());
    const first = await store.list("alice", 2, "");
    expect(first.nextPageToken).not.toBe("");
    const second = await store.list("alice", 2, first.nextPageToken);
    expect(second.items).toHaveLength(2);
    expect(second.nextPageToken).toBe("");
  });

  it.each(["garbage!", "bm90IGpzb24", Buffer.from('{"a":1}').toString("base64url"), Buffer.from('["x",1]').toString("base64url")])(
    "rejects a page token it did not issue (%s) with INVALID_ARGUMENT naming page_token",
    async (token) => {
      const err = await rejection(makeStore().list("alice", 10, token));
      expect(err.code).toBe(Code.InvalidArgument);
      expect(err.rawMessage).toContain("page_token");
    },
  );
});

describe("MemorySessionStore: the per-user index", () => {
  it("lists one user's sessions among many of another's, paged in order, and only theirs", async () => {
    const c = clock();
    const store = makeStore(c.now);
    const mine: SessionRecord[] = [];
    for (let i = 0; i < 20_000; i++) {
      await store.create(input({ userId: "mallory" }));
      if (i % 1000 === 0) mine.push(await store.create(input()));
      if (i % 7 === 0) c.advance(1);
    }
    const seen: string[] = [];
    let token = "";
    do {
      const page = await store.list("alice", 3, token);
      seen.push(...page.items.map((s) => s.id));
      token = page.nextPageToken;
    } while (token);
    expect(seen).toEqual(mine.map((s) => s.id).reverse());
  });

  it("keeps newest-first order when the clock steps back between creates", async () => {
    const c = clock();
    const store = makeStore(c.now);
    const a = await store.create(input());
    c.advance(-5_000);
    const b = await store.create(input());
    c.advance(10_000);
    const d = await store.create(input());
    expect((await store.list("alice", 10, "")).items.map((s) => s.id)).toEqual([d.id, a.id, b.id]);
    expect(await store.delete(a.id)).toBe(true);
    expect((await store.list("alice", 10, "")).items.map((s) => s.id)).toEqual([d.id, b.id]);
  });

  it("the sweep drops expired sessions from their user's listing and cap, and keeps the live ones", async () => {
    const c = clock();
    const store = new MemorySessionStore(10, c.now);
    stores.push(store);
    const short = await store.create(input({ ttlSeconds: 10, maxLive: 3 }));
    c.advance(1);
    const long = await store.create(input({ ttlSeconds: 100, maxLive: 3 }));
    c.advance(1);
    await store.create(input({ userId: "bob", ttlSeconds: 10 }));
    c.advance(50_000);
    await new Promise((r) => setTimeout(r, 50)); // a few sweeps
    expect(await store.get(short.id, ALL)).toBeUndefined();
    expect((await store.list("alice", 10, "")).items.map((s) => s.id)).toEqual([long.id]);
    expect((await store.list("bob", 10, "")).items).toEqual([]);
    // Two places free again out of three.
    await store.create(input({ maxLive: 3 }));
    await store.create(input({ maxLive: 3 }));
    expect((await rejection(store.create(input({ maxLive: 3 })))).code).toBe(Code.ResourceExhausted);
    expect(await store.delete(long.id)).toBe(true);
    expect(await store.delete(long.id)).toBe(false);
    await store.create(input({ maxLive: 3 }));
  });

  it("frees the places of expired sessions at the cap even before a sweep", async () => {
    const c = clock();
    const store = makeStore(c.now);
    await store.create(input({ ttlSeconds: 1, maxLive: 2 }));
    await store.create(input({ ttlSeconds: 1, maxLive: 2 }));
    expect((await rejection(store.create(input({ maxLive: 2 })))).code).toBe(Code.ResourceExhausted);
    c.advance(1_000);
    await store.create(input({ maxLive: 2 }));
    await store.create(input({ maxLive: 2 }));
    expect((await store.list("alice", 10, "")).items).toHaveLength(2);
  });
});

describe("MemorySessionStore: checkpoints", () => {
  it("saves checkpoints with increasing versions and parent ids, each save a session write", async () => {
    const c = clock();
    const store = makeStore(c.now);
    const s = await store.create(input({ ttlSeconds: 10 }));
    c.advance(5_000);
    const first = await store.saveCheckpoint(s.id, { data: { step: 1 }, expectedVersion: -1, keep: 100 });
    const second = await store.saveCheckpoint(s.id, { data: { step: 2, nested: { list: [1, "two", null] } }, expectedVersion: -1, keep: 100 });
    expect(first).toMatchObject({ sessionId: s.id, data: { step: 1 }, parentId: "", version: 1 });
    expect(second).toMatchObject({ sessionId: s.id, parentId: first.id, version: 2 });
    expect(second.data).toEqual({ step: 2, nested: { list: [1, "two", null] } });
    expect(first.createTime.getTime()).toBe(c.now());
    const session = (await store.get(s.id, ALL))!;
    expect(session.version).toBe(2);
    expect(session.expireTime.getTime()).toBe(c.now() + 10_000);
  });

  it("with an expected version: saves when current, ABORTED when stale, 0 skips the check", async () => {
    const store = makeStore();
    const s = await store.create(input());
    await store.appendMessages(s.id, [{ role: "user", content: "x" }]); // version 1
    const ok = await store.saveCheckpoint(s.id, { data: { a: 1 }, expectedVersion: 1, keep: 100 });
    expect(ok.version).toBe(2);

    const stale = await rejection(store.saveCheckpoint(s.id, { data: { a: 2 }, expectedVersion: 1, keep: 100 }));
    expect(stale.code).toBe(Code.Aborted);
    expect((await store.get(s.id, ALL))!.version).toBe(2);
    expect((await store.listCheckpoints(s.id, 10, "")).items).toHaveLength(1);

    const ahead = await rejection(store.saveCheckpoint(s.id, { data: { a: 2 }, expectedVersion: 7, keep: 100 }));
    expect(ahead.code).toBe(Code.Aborted);

    const unchecked = await store.saveCheckpoint(s.id, { data: { a: 3 }, expectedVersion: -1, keep: 100 });
    expect(unchecked.version).toBe(3);
    expect(unchecked.parentId).toBe(ok.id);
  });

  it("getCheckpoint returns the latest for an empty id, a given one by id, undefined for an unknown id", async () => {
    const store = makeStore();
    const s = await store.create(input());
    expect(await store.getCheckpoint(s.id, "")).toBeUndefined();
    const first = await store.saveCheckpoint(s.id, { data: { n: 1 }, expectedVersion: -1, keep: 100 });
    const second = await store.saveCheckpoint(s.id, { data: { n: 2 }, expectedVersion: -1, keep: 100 });
    expect(await store.getCheckpoint(s.id, "")).toEqual(second);
    expect(await store.getCheckpoint(s.id, first.id)).toEqual(first);
    expect(await store.getCheckpoint(s.id, "nope")).toBeUndefined();
  });

  it("checkpoint data is copied in and out", async () => {
    const store = makeStore();
    const s = await store.create(input());
    const data = { list: [1, 2] };
    const saved = await store.saveCheckpoint(s.id, { data: data, expectedVersion: -1, keep: 100 });
    data.list.push(3);
    (saved.data.list as number[]).push(4);
    const got = (await store.getCheckpoint(s.id, saved.id))!;
    expect(got.data).toEqual({ list: [1, 2] });
    (got.data.list as number[]).push(5);
    expect((await store.getCheckpoint(s.id, ""))!.data).toEqual({ list: [1, 2] });
  });

  it("a checkpoint of one session is not found through another", async () => {
    const store = makeStore();
    const a = await store.create(input());
    const b = await store.create(input());
    const cp = await store.saveCheckpoint(a.id, { data: { x: 1 }, expectedVersion: -1, keep: 100 });
    expect(await store.getCheckpoint(b.id, cp.id)).toBeUndefined();
    expect(await store.getCheckpoint(b.id, "")).toBeUndefined();
  });

  it("listCheckpoints pages newest first, covering each checkpoint once", async () => {
    const store = makeStore();
    const s = await store.create(input());
    const saved = [];
    for (let i = 0; i < 7; i++) saved.push(await store.saveCheckpoint(s.id, { data: { i }, expectedVersion: -1, keep: 100 }));
    const newestFirst = saved.map((c) => c.id).reverse();

    const seen: string[] = [];
    let token = "";
    let pages = 0;
    do {
      const page = await store.listCheckpoints(s.id, 3, token);
      seen.push(...page.items.map((c) => c.id));
      token = page.nextPageToken;
      pages++;
    } while (token && pages < 10);
    expect(pages).toBe(3);
    expect(seen).toEqual(newestFirst);
  });

  it("listCheckpoints rejects a garbage page token and a missing session", async () => {
    const store = makeStore();
    const s = await store.create(input());
    expect((await rejection(store.listCheckpoints(s.id, 3, "%%%"))).code).toBe(Code.InvalidArgument);
    expect((await rejection(store.listCheckpoints("ghost", 3, ""))).code).toBe(Code.NotFound);
    expect((await rejection(store.getCheckpoint("ghost", ""))).code).toBe(Code.NotFound);
  });
});

describe("MemorySessionStore: delete", () => {
  it("removes the session and its checkpoints", async () => {
    const store = makeStore();
    const s = await store.create(input());
    const keep = await store.create(input());
    await store.saveCheckpoint(s.id, { data: { x: 1 }, expectedVersion: -1, keep: 100 });
    expect(await store.delete(s.id)).toBe(true);
    expect(await store.get(s.id, ALL)).toBeUndefined();
    expect((await rejection(store.getCheckpoint(s.id, ""))).code).toBe(Code.NotFound);
    expect((await rejection(store.listCheckpoints(s.id, 10, ""))).code).toBe(Code.NotFound);
    expect((await store.list("alice", 10, "")).items.map((x) => x.id)).toEqual([keep.id]);
    expect(await store.get(keep.id, ALL)).toBeDefined();
  });

  it("returns false for a session that does not exist (or was already deleted)", async () => {
    const store = makeStore();
    const s = await store.create(input());
    expect(await store.delete(s.id)).toBe(true);
    expect(await store.delete(s.id)).toBe(false);
    expect(await store.delete("never-was")).toBe(false);
  });
});
