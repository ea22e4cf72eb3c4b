import type { Middleware, RunEvent } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import { encodeEntry, entryBytes } from "../../../../src/plugins/builtin/cache/entry.ts";
import { MemoryCache } from "../../../../src/plugins/builtin/cache/memory-cache.ts";
import cachePlugin from "../../../../src/plugins/builtin/cache/plugin.ts";
import { agentContext, collect, parseOptions, runResult, setUpPlugin, terminal, type ContextInit } from "../../../support/plugin-context.ts";

/** The stored size of the entry `terminal(output, [output])` leaves: what `maxBytes` counts. */
const storedSize = (output: string) => entryBytes(encodeEntry({ model: "echo-1", chunks: [output], result: runResult(output) }));

function call(mw: Middleware, next: () => AsyncIterable<RunEvent>, init: ContextInit = {}) {
  return collect(mw.process(agentContext(init), next));
}

function cacheOf(events: RunEvent[]): string | undefined {
  const last = events.at(-1);
  return last?.type === "completed" ? last.result.metadata.cache : undefined;
}

describe("cache middleware (memory): byte cap", () => {
  const answer = "y".repeat(4000);
  const size = storedSize(answer);

  it("evicts the least recently used answers once their bytes would pass maxBytes, whatever maxEntries allows", async () => {
    // Room for three of these answers by bytes, for a thousand by count.
    const mw = await setUpPlugin(cachePlugin, { maxEntries: 1000, maxBytes: 3 * size + Math.floor(size / 2) });
    const t = terminal(answer, [answer]);
    for (const task of ["a", "b", "c"]) await call(mw, t.next, { task });
    expect(cacheOf(await call(mw, t.next, { task: "a" }))).toBe("hit"); // a is now the most recent
    await call(mw, t.next, { task: "d" }); // b is the least recent: evicted to make room
    expect(t.calls).toBe(4);

    for (const task of ["a", "c", "d"]) expect(cacheOf(await call(mw, t.next, { task })), task).toBe("hit");
    expect(t.calls).toBe(4);
    expect(cacheOf(await call(mw, t.next, { task: "b" }))).toBe("miss");
    expect(t.calls).toBe(5);
  });

  it("does not store an answer larger than maxBytes, and keeps what it holds", async () => {
    const big = "z".repeat(20_000);
    const mw = await setUpPlugin(cachePlugin, { maxBytes: 2 * size + 100, maxEntryBytes: 1 << 20 });
    const small = terminal(answer, [answer]);
    await call(mw, small.next, { task: "small-1" });
    await call(mw, small.next, { task: "small-2" });
    const huge = terminal(big, [big]);
    await call(mw, huge.next, { task: "big" });
    expect(cacheOf(await call(mw, huge.next, { task: "big" }))).toBe("miss");
    expect(huge.calls).toBe(2);
    // Refusing the large answer evicted nothing.
    expect(cacheOf(await call(mw, small.next, { task: "small-1" }))).toBe("hit");
    expect(cacheOf(await call(mw, small.next, { task: "small-2" }))).toBe("hit");
    expect(small.calls).toBe(2);
  });

  it("a refreshed answer too large to keep does not leave the old one to be served", async () => {
    const mw = await setUpPlugin(cachePlugin, { maxBytes: 2 * size, perUser: false });
    const old = terminal("old", ["old"]);
    await call(mw, old.next);
    const big = "n".repeat(3 * size);
    const fresh = terminal(big, [big]);
    await call(mw, fresh.next, { headers: { "cache-control": "no-cache" } });
    const after = await call(mw, old.next);
    expect(cacheOf(after)).toBe("miss");
    expect(old.calls).toBe(2);
  });

  it("defaults maxBytes to 64 MiB and refuses a cap that is not a positive integer", async () => {
    expect(await parseOptions(cachePlugin, {})).toMatchObject({ success: true, data: { maxBytes: 64 * 1024 * 1024 } });
    for (const maxBytes of [0, -1, 1.5, "1mb"]) expect(await parseOptions(cachePlugin, { maxBytes }), String(maxBytes)).toMatchObject({ success: false });
  });
});

describe("MemoryCache: bytes held", () => {
  it("counts each entry as its UTF-8 size and never holds more than maxBytes", async () => {
    const store = new MemoryCache({ maxEntries: 10_000, maxBytes: 10_000 });
    // Three bytes a character in UTF-8: a cap counted in characters would hold three times too much.
    await store.set("wide", "中".repeat(1000), 60_000);
    expect(store.bytes).toBe(3000);
    let seed = 7;
    for (let i = 0; i < 500; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      await store.set(`k${i % 40}`, "é".repeat(seed % 1500), 60_000);
      expect(store.bytes).toBeLessThanOrEqual(10_000);
    }
    let sum = 0;
    for (let i = 0; i < 40; i++) sum += entryBytes((await store.get(`k${i}`)) ?? "");
    sum += entryBytes((await store.get("wide")) ?? "");
    expect(store.bytes).toBe(sum);
  });

  it("frees expired entries before evicting live ones", async () => {
    let now = 0;
    const store = new MemoryCache({ maxEntries: 100, maxBytes: 300, now: () => now });
    await store.set("live-old", "a".repeat(100), 60_000); // least recent, but live
    await store.set("short", "b".repeat(100), 1_000);
    await store.set("live", "c".repeat(100), 60_000);
    now = 2_000; // "short" has expired
    await store.set("new", "d".repeat(100), 60_000);
    expect(await store.get("live-old")).toBe("a".repeat(100));
    expect(await store.get("live")).toBe("c".repeat(100));
    expect(await store.get("new")).toBe("d".repeat(100));
    expect(await store.get("short")).toBeUndefined();
    expect(store.bytes).toBe(300);
  });

  it("holds nothing after dispose", async () => {
    const store = new MemoryCache({ maxEntries: 10, maxBytes: 1000 });
    await store.set("a", "x".repeat(500), 60_000);
    store.dispose();
    expect(store.bytes).toBe(0);
    expect(await store.get("a")).toBeUndefined();
  });
});
