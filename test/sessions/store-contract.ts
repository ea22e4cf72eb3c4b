// The behaviour every SessionStore must have, run against each store by its own
// test file (memory here; Redis, PostgreSQL and tiered against the real servers).
import { Code, reasonOf } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import type { CreateSessionInput, SessionStore } from "../../src/sessions/types.ts";
import { rejection } from "../support/rejection.ts";

/** How a test file provides its store: a fresh one per call, closed by the suite. */
export interface StoreFactory {
  make(): Promise<SessionStore>;
}

const ALL = { messages: 10_000 };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
let users = 0;
/** A user id no other test (or earlier run sharing the backend) has used. */
const freshUser = () => `user-${process.pid}-${Date.now()}-${++users}`;

const input = (overrides: Partial<CreateSessionInput> = {}): CreateSessionInput => ({
  userId: freshUser(),
  agentId: "helper",
  metadata: { team: "a" },
  ttlSeconds: 600,
  ...overrides,
});

/** Registers the contract suite for one store. */
export function storeContract(name: string, factory: StoreFactory): void {
  const withStore = (fn: (store: SessionStore) => Promise<void>) => async () => {
    const store = await factory.make();
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  };

  describe(`${name}: the SessionStore contract`, () => {
    it(
      "creates a session at version 0 with no messages, expiring ttl ahead, and reads it back",
      withStore(async (store) => {
        const before = Date.now();
        const s = await store.create(input({ metadata: { team: "a", "x-y": "z" } }));
        expect(s).toMatchObject({ agentId: "helper", version: 0, messages: [], messageCount: 0, metadata: { team: "a", "x-y": "z" } });
        expect(s.expireTime.getTime() - s.updateTime.getTime()).toBe(600_000);
        expect(s.createTime.getTime()).toBeGreaterThanOrEqual(before - 1000);
        const got = await store.get(s.id, ALL);
        expect(got).toEqual(s);
        expect(await store.get("00000000-0000-4000-8000-000000000000", ALL)).toBeUndefined();
      }),
    );

    it(
      "appends atomically with the version bump and reads the latest N messages in order",
      withStore(async (store) => {
        const s = await store.create(input());
        expect(
          await store.appendMessages(s.id, [
            { role: "user", content: "q1" },
            { role: "assistant", content: "a1" },
          ]),
        ).toBe(1);
        expect(
          await store.appendMessages(s.id, [
            { role: "user", content: "q2 ünïcode 🚀" },
            { role: "assistant", content: "a2" },
          ]),
        ).toBe(2);
        const all = await store.get(s.id, ALL);
        expect(all!.messages.map((m) => m.content)).toEqual(["q1", "a1", "q2 ünïcode 🚀", "a2"]);
        expect(all!.messages[0]!.role).toBe("user");
        expect(all).toMatchObject({ version: 2, messageCount: 4 });
        expect((await store.get(s.id, { messages: 3 }))!.messages.map((m) => m.content)).toEqual(["a1", "q2 ünïcode 🚀", "a2"]);
        const none = await store.get(s.id, { messages: 0 });
        expect(none).toMatchObject({ messages: [], messageCount: 4, version: 2 });
        expect((await rejection(store.appendMessages("00000000-0000-4000-8000-000000000000", [{ role: "user", content: "x" }]))).code).toBe(Code.NotFound);
      }),
    );

    it(
      "refreshes the expiry on every write",
      withStore(async (store) => {
        const s = await store.create(input());
        await sleep(20);
        await store.appendMessages(s.id, [{ role: "user", content: "hi" }]);
        const after = await store.get(s.id, ALL);
        expect(after!.expireTime.getTime()).toBeGreaterThan(s.expireTime.getTime());
        expect(after!.updateTime.getTime()).toBeGreaterThan(s.updateTime.getTime());
      }),
    );

    it(
      "keeps concurrent turns whole: every message stored, each turn's pair adjacent",
      withStore(async (store) => {
        const s = await store.create(input());
        const versions = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            store.appendMessages(s.id, [
              { role: "user", content: `q${i}` },
              { role: "assistant", content: `a${i}` },
            ]),
          ),
        );
        expect([...versions].sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
        const { messages, messageCount, version } = (await store.get(s.id, ALL))!;
        expect([messageCount, version]).toEqual([40, 20]);
        for (let i = 0; i < 40; i += 2) expect(messages[i + 1]!.content).toBe(messages[i]!.content.replace("q", "a"));
      }),
    );

    it(
      "lists one user's sessions newest first, page by page, without messages or expired ones",
      withStore(async (store) => {
        const user = freshUser();
        const ids: string[] = [];
        for (let i = 0; i < 5; i++) {
          const s = await store.create(input({ userId: user }));
          await store.appendMessages(s.id, [{ role: "user", content: "x" }]);
          ids.push(s.id);
          await sleep(3);
        }
        await store.create(input()); // someone else's
        const seen: string[] = [];
        let token = "";
        let pages = 0;
        do {
          const page = await store.list(user, 2, token);
          expect(page.items.length).toBeLessThanOrEqual(2);
          for (const item of page.items) {
            expect(item.userId).toBe(user);
            expect(item.messages).toEqual([]);
            seen.push(item.id);
          }
          token = page.nextPageToken;
          pages++;
        } while (token && pages < 10);
        expect(seen).toEqual([...ids].reverse());
        expect((await rejection(store.list(user, 2, "not-a-token"))).code).toBe(Code.InvalidArgument);
        expect((await store.list(freshUser(), 10, "")).items).toEqual([]);
      }),
    );

    it(
      "deletes a session and its checkpoints; a second delete finds nothing",
      withStore(async (store) => {
        const user = freshUser();
        const s = await store.create(input({ userId: user }));
        await store.saveCheckpoint(s.id, { data: { n: 1 }, expectedVersion: -1, keep: 10 });
        expect(await store.delete(s.id)).toBe(true);
        expect(await store.get(s.id, ALL)).toBeUndefined();
        expect((await rejection(store.getCheckpoint(s.id, ""))).code).toBe(Code.NotFound);
        expect((await store.list(user, 10, "")).items).toEqual([]);
        expect(await store.delete(s.id)).toBe(false);
      }),
    );

    it(
      "saves checkpoints with gap-free versions and parents, reads the latest or by id, lists newest first",
      withStore(async (store) => {
        const s = await store.create(input());
        const data = { step: 1, nested: { list: [1, "two", null, true], empty: {} }, text: "ünï 🚀" };
        const first = await store.saveCheckpoint(s.id, { data, expectedVersion: -1, keep: 10 });
        expect(first).toMatchObject({ sessionId: s.id, version: 1, parentId: "", data });
        await store.appendMessages(s.id, [{ role: "user", content: "between" }]);
        const second = await store.saveCheckpoint(s.id, { data: { step: 2 }, expectedVersion: 2, keep: 10 });
        expect(second).toMatchObject({ version: 3, parentId: first.id });
        expect(await store.getCheckpoint(s.id, "")).toEqual(second);
        expect(await store.getCheckpoint(s.id, first.id)).toEqual(first);
        expect(await store.getCheckpoint(s.id, "00000000-0000-4000-8000-000000000000")).toBeUndefined();
        const third = await store.saveCheckpoint(s.id, { data: { step: 3 }, expectedVersion: -1, keep: 10 });
        const p1 = await store.listCheckpoints(s.id, 2, "");
        expect(p1.items.map((c) => c.id)).toEqual([third.id, second.id]);
        const p2 = await store.listCheckpoints(s.id, 2, p1.nextPageToken);
        expect(p2.items.map((c) => c.id)).toEqual([first.id]);
        expect(p2.nextPageToken).toBe("");
        expect((await store.get(s.id, ALL))!.version).toBe(4);
      }),
    );

    it(
      "takes expected version 0 to mean a session nothing was written to yet",
      withStore(async (store) => {
        const s = await store.create(input());
        expect((await store.saveCheckpoint(s.id, { data: { first: true }, expectedVersion: 0, keep: 10 })).version).toBe(1);
        expect((await rejection(store.saveCheckpoint(s.id, { data: { again: true }, expectedVersion: 0, keep: 10 }))).code).toBe(Code.Aborted);
      }),
    );

    it(
      "refuses a stale expected version with ABORTED and changes nothing",
      withStore(async (store) => {
        const s = await store.create(input());
        await store.saveCheckpoint(s.id, { data: { a: 1 }, expectedVersion: -1, keep: 10 });
        const stale = await rejection(store.saveCheckpoint(s.id, { data: { a: 2 }, expectedVersion: 5, keep: 10 }));
        expect(stale.code).toBe(Code.Aborted);
        expect(reasonOf(stale)).toEqual({ reason: "STALE_VERSION", metadata: { session_id: s.id, current_version: "1", expected_version: "5" } });
        expect((await store.get(s.id, ALL))!.version).toBe(1);
        expect((await store.listCheckpoints(s.id, 10, "")).items).toHaveLength(1);
        expect((await rejection(store.saveCheckpoint("00000000-0000-4000-8000-000000000000", { data: {}, expectedVersion: -1, keep: 10 }))).code).toBe(
          Code.NotFound,
        );
      }),
    );

    it(
      "lets exactly one of racing writers with the same expected version win",
      withStore(async (store) => {
        const s = await store.create(input());
        const outcomes = await Promise.allSettled(
          Array.from({ length: 10 }, (_, i) => store.saveCheckpoint(s.id, { data: { writer: i }, expectedVersion: -1, keep: 100 })),
        );
        // expectedVersion 0 means no check: all succeed, with distinct versions 1..10.
        const versions = outcomes.map((o) => (o.status === "fulfilled" ? o.value.version : -1)).sort((a, b) => a - b);
        expect(versions).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
        const racing = await Promise.allSettled(
          Array.from({ length: 10 }, (_, i) => store.saveCheckpoint(s.id, { data: { racer: i }, expectedVersion: 10, keep: 100 })),
        );
        const won = racing.filter((o) => o.status === "fulfilled");
        expect(won).toHaveLength(1);
        for (const lost of racing.filter((o) => o.status === "rejected")) expect((lost as PromiseRejectedResult).reason.code).toBe(Code.Aborted);
        expect((await store.get(s.id, ALL))!.version).toBe(11);
      }),
    );

    it(
      "keeps only the latest `keep` checkpoints",
      withStore(async (store) => {
        const s = await store.create(input());
        for (let i = 0; i < 6; i++) await store.saveCheckpoint(s.id, { data: { i }, expectedVersion: -1, keep: 3 });
        const kept = (await store.listCheckpoints(s.id, 10, "")).items;
        expect(kept.map((c) => c.data.i)).toEqual([5, 4, 3]);
        // The parent chain still names the pruned one: a checkpoint records what it followed.
        expect(kept.at(-1)!.parentId).not.toBe("");
      }),
    );

    it(
      "expires an idle session after its TTL, and a write extends it",
      withStore(async (store) => {
        const user = freshUser();
        const idle = await store.create(input({ userId: user, ttlSeconds: 1 }));
        const busy = await store.create(input({ userId: user, ttlSeconds: 1 }));
        await sleep(600);
        await store.appendMessages(busy.id, [{ role: "user", content: "still here" }]);
        await sleep(700);
        expect(await store.get(idle.id, ALL)).toBeUndefined();
        expect((await rejection(store.appendMessages(idle.id, [{ role: "user", content: "late" }]))).code).toBe(Code.NotFound);
        expect(await store.get(busy.id, ALL)).toBeDefined();
        expect((await store.list(user, 10, "")).items.map((s) => s.id)).toEqual([busy.id]);
      }),
    );

    it(
      "answers ping",
      withStore(async (store) => {
        await store.ping();
      }),
    );
  });
}
