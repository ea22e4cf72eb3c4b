// The bounds every SessionStore enforces itself (issue #13, item 5): the
// per-user cap on live sessions, and listing pages cut by bytes. Run against
// each store by its own test file, like store-contract.ts.
import { Code } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import type { CreateSessionInput, SessionRecord, SessionStore } from "../../src/sessions/types.ts";
import { rejection } from "../support/rejection.ts";

/** How a test file provides its store, with a listing page byte budget. */
export interface BoundedStoreFactory {
  make(maxPageBytes?: number): Promise<SessionStore>;
}

let users = 0;
const freshUser = () => `bounds-${process.pid}-${Date.now()}-${++users}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const input = (userId: string, overrides: Partial<CreateSessionInput> = {}): CreateSessionInput => ({
  userId,
  agentId: "helper",
  metadata: {},
  ttlSeconds: 600,
  ...overrides,
});

/** Every page of a user's listing, following tokens. */
async function allPages(store: SessionStore, userId: string, pageSize: number): Promise<SessionRecord[][]> {
  const pages: SessionRecord[][] = [];
  let token = "";
  do {
    const page = await store.list(userId, pageSize, token);
    pages.push(page.items);
    token = page.nextPageToken;
  } while (token && pages.length < 100);
  return pages;
}

export function boundsContract(name: string, factory: BoundedStoreFactory): void {
  const withStore = (fn: (store: SessionStore) => Promise<void>, maxPageBytes?: number) => async () => {
    const store = await factory.make(maxPageBytes);
    try {
      await fn(store);
    } finally {
      await store.close();
    }
  };

  describe(`${name}: per-user bounds`, () => {
    it(
      "refuses a create past the user's live sessions with RESOURCE_EXHAUSTED, for that user only; a delete frees a place",
      withStore(async (store) => {
        const alice = freshUser();
        const made = [];
        for (let i = 0; i < 3; i++) made.push(await store.create(input(alice, { maxLive: 3 })));
        const refused = await rejection(store.create(input(alice, { maxLive: 3 })));
        expect(refused.code).toBe(Code.ResourceExhausted);
        expect(refused.rawMessage).toContain("3 live sessions");
        // Another user is not affected, and nothing was created by the refused call.
        await store.create(input(freshUser(), { maxLive: 3 }));
        expect((await store.list(alice, 10, "")).items).toHaveLength(3);
        expect(await store.delete(made[0]!.id)).toBe(true);
        await store.create(input(alice, { maxLive: 3 }));
        expect((await rejection(store.create(input(alice, { maxLive: 3 })))).code).toBe(Code.ResourceExhausted);
      }),
    );

    it(
      "does not count expired sessions",
      withStore(async (store) => {
        const alice = freshUser();
        await store.create(input(alice, { maxLive: 2, ttlSeconds: 1 }));
        await store.create(input(alice, { maxLive: 2, ttlSeconds: 1 }));
        expect((await rejection(store.create(input(alice, { maxLive: 2 })))).code).toBe(Code.ResourceExhausted);
        await sleep(1100);
        await store.create(input(alice, { maxLive: 2 }));
        await store.create(input(alice, { maxLive: 2 }));
        expect((await rejection(store.create(input(alice, { maxLive: 2 })))).code).toBe(Code.ResourceExhausted);
      }),
    );

    it(
      "counts a session kept alive by writes past its first TTL",
      withStore(async (store) => {
        const alice = freshUser();
        const s = await store.create(input(alice, { maxLive: 1, ttlSeconds: 1 }));
        await sleep(600);
        await store.appendMessages(s.id, [{ role: "user", content: "still here" }]);
        await sleep(600);
        // Past its first expiry, alive by the write: it still takes the only place.
        expect(await store.get(s.id, { messages: 0 })).toBeDefined();
        expect((await rejection(store.create(input(alice, { maxLive: 1 })))).code).toBe(Code.ResourceExhausted);
      }),
    );

    it(
      "keeps the cap exactly under 20 concurrent creates",
      withStore(async (store) => {
        const alice = freshUser();
        const outcomes = await Promise.allSettled(Array.from({ length: 20 }, () => store.create(input(alice, { maxLive: 5 }))));
        const created = outcomes.filter((o) => o.status === "fulfilled").length;
        for (const o of outcomes) if (o.status === "rejected") expect((o.reason as { code: Code }).code).toBe(Code.ResourceExhausted);
        expect(created).toBe(5);
        expect((await rejection(store.create(input(alice, { maxLive: 5 })))).code).toBe(Code.ResourceExhausted);
      }),
    );

    it(
      "cuts listing pages at the byte budget (at least one item), complete and in order across tokens",
      withStore(async (store) => {
        const alice = freshUser();
        const made: SessionRecord[] = [];
        for (let i = 0; i < 7; i++) {
          // About 1.2 KB listed each: two fit in 3,000 bytes, three do not.
          made.push(await store.create(input(alice, { metadata: { blob: "x".repeat(1000), i: String(i) } })));
          await sleep(3);
        }
        // One heavier than the whole budget: a page of its own.
        made.push(await store.create(input(alice, { metadata: { blob: "y".repeat(5000) } })));
        const pages = await allPages(store, alice, 100);
        const ids = pages.flat().map((s) => s.id);
        expect(ids).toEqual(made.map((s) => s.id).reverse());
        expect(pages.map((p) => p.length)).toEqual([1, 2, 2, 2, 1]);
        expect(pages[0]![0]!.metadata.blob).toHaveLength(5000);
        // The page size still bounds a page whose items are small.
        const small = freshUser();
        for (let i = 0; i < 5; i++) await store.create(input(small));
        expect((await allPages(store, small, 2)).map((p) => p.length)).toEqual([2, 2, 1]);
      }, 3000),
    );

    it(
      "cuts checkpoint pages at the byte budget too",
      withStore(async (store) => {
        const s = await store.create(input(freshUser()));
        const versions: number[] = [];
        for (let i = 0; i < 5; i++)
          versions.push((await store.saveCheckpoint(s.id, { data: { blob: "z".repeat(1000), i }, expectedVersion: -1, keep: 10 })).version);
        const pages: number[][] = [];
        let token = "";
        do {
          const page = await store.listCheckpoints(s.id, 100, token);
          pages.push(page.items.map((c) => c.version));
          token = page.nextPageToken;
        } while (token && pages.length < 20);
        expect(pages.flat()).toEqual(versions.reverse());
        expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
      }, 3000),
    );
  });
}
