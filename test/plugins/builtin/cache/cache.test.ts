import type { AgentContext, Middleware, RunEvent } from "@qingyu/plugin-api";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { cacheKey } from "../../../../src/plugins/builtin/cache/key.ts";
import { MemoryCache } from "../../../../src/plugins/builtin/cache/memory-cache.ts";
import { cacheMiddleware } from "../../../../src/plugins/builtin/cache/middleware.ts";
import cachePlugin from "../../../../src/plugins/builtin/cache/plugin.ts";
import { agentContext, collect, parseOptions, runResult, setUpPlugin, terminal, type ContextInit } from "../../../support/plugin-context.ts";

const silent = pino({ level: "silent" });

async function cache(options: Record<string, unknown> = {}): Promise<Middleware> {
  return setUpPlugin(cachePlugin, options);
}

/** Runs one call through the cache with its own context. */
function call(mw: Middleware, next: () => AsyncIterable<RunEvent>, init: ContextInit = {}, edit?: (ctx: AgentContext) => void) {
  const ctx = agentContext(init);
  edit?.(ctx);
  return collect(mw.process(ctx, next));
}

function completed(events: RunEvent[]) {
  const last = events.at(-1);
  if (last?.type !== "completed") throw new Error(`last event is ${last?.type}`);
  return last.result;
}

/** A terminal that yields part of a run and then fails, like a provider dropping mid-stream. */
function failingTerminal() {
  const t = {
    calls: 0,
    next: async function* (): AsyncIterable<RunEvent> {
      t.calls++;
      yield { type: "started", model: "echo-1" };
      yield { type: "delta", text: "partial" };
      throw new Error("provider went away");
    },
  };
  return t;
}

describe("cache middleware (memory)", () => {
  it("misses first, then answers the same call without running the agent, replaying the same chunks", async () => {
    const mw = await cache();
    const t = terminal("one two three", ["one ", "two ", "three"]);
    const first = await call(mw, t.next, { task: "count" });
    const second = await call(mw, t.next, { task: "count" });

    expect(t.calls).toBe(1);
    expect(completed(first).metadata.cache).toBe("miss");
    expect(completed(second).metadata.cache).toBe("hit");
    expect(second.filter((e) => e.type !== "completed")).toEqual(first.filter((e) => e.type !== "completed"));
    expect(second.slice(0, 4)).toEqual([
      { type: "started", model: "echo-1" },
      { type: "delta", text: "one " },
      { type: "delta", text: "two " },
      { type: "delta", text: "three" },
    ]);
    const { metadata, durationMs, ...rest } = completed(second);
    const { metadata: _m, durationMs: _d, ...original } = completed(first);
    expect(rest).toEqual(original);
  });

  it("keeps the original metadata on a hit and reports this call's duration", async () => {
    const mw = await cache();
    const next = async function* (): AsyncIterable<RunEvent> {
      yield { type: "started", model: "gpt-x" };
      yield { type: "delta", text: "ok" };
      yield { type: "completed", result: { ...runResult("ok"), model: "gpt-x", durationMs: 1, metadata: { trace: "t-1" } } };
    };
    await call(mw, next);
    const hit = await call(mw, next, {}, (ctx) => Object.assign(ctx, { startTime: Date.now() - 5000 }));
    expect(hit[0]).toEqual({ type: "started", model: "gpt-x" });
    expect(completed(hit).metadata).toEqual({ trace: "t-1", cache: "hit" });
    expect(completed(hit).durationMs).toBeGreaterThanOrEqual(5000);
  });

  it("misses when the task, history, model or generation options differ", async () => {
    const mw = await cache();
    const t = terminal();
    await call(mw, t.next, { task: "a" });
    await call(mw, t.next, { task: "b" });
    await call(mw, t.next, { task: "a", history: [{ role: "user", content: "earlier" }] });
    await call(mw, t.next, { task: "a", history: [{ role: "assistant", content: "earlier" }] });
    await call(mw, t.next, { task: "a" }, (ctx) => (ctx.options.model = "echo-2"));
    await call(mw, t.next, { task: "a" }, (ctx) => (ctx.options.temperature = 0.3));
    await call(mw, t.next, { task: "a" }, (ctx) => (ctx.options.maxTokens = 10));
    expect(t.calls).toBe(7);
    // Each of them is now cached under its own key.
    await call(mw, t.next, { task: "a" }, (ctx) => (ctx.options.temperature = 0.3));
    await call(mw, t.next, { task: "a", history: [{ role: "user", content: "earlier" }] });
    expect(t.calls).toBe(7);
  });

  it("treats the agent's own model as the model when the call names none", async () => {
    const mw = await cache();
    const t = terminal();
    await call(mw, t.next, { task: "a" });
    const events = await call(mw, t.next, { task: "a" }, (ctx) => (ctx.options.model = "echo-1"));
    expect(t.calls).toBe(1);
    expect(completed(events).metadata.cache).toBe("hit");
  });

  it("keeps answers per user by default: bob's call is no hit on alice's answer", async () => {
    const perUser = await cache();
    const t1 = terminal();
    await call(perUser, t1.next, { userId: "alice" });
    const bob = await call(perUser, t1.next, { userId: "bob" });
    expect(completed(bob).metadata.cache).toBe("miss");
    expect(completed(await call(perUser, t1.next, { userId: "alice" })).metadata.cache).toBe("hit");
    expect(t1.calls).toBe(2);
  });

  it("shares answers between users with perUser: false", async () => {
    const shared = await cache({ perUser: false });
    const t2 = terminal();
    await call(shared, t2.next, { userId: "alice" });
    expect(completed(await call(shared, t2.next, { userId: "bob" })).metadata.cache).toBe("hit");
    expect(t2.calls).toBe(1);
  });

  it("expires entries after ttlSeconds", async () => {
    let now = 1_000_000;
    const mw = cacheMiddleware(
      new MemoryCache({ maxEntries: 10, maxBytes: 1 << 20, now: () => now }),
      { ttlSeconds: 60, maxEntryBytes: 1 << 20, perUser: false },
      silent,
    );
    const t = terminal();
    await call(mw, t.next);
    now += 59_000;
    expect(completed(await call(mw, t.next)).metadata.cache).toBe("hit");
    now += 1_000;
    expect(completed(await call(mw, t.next)).metadata.cache).toBe("miss");
    expect(t.calls).toBe(2);
  });

  it("evicts the least recently used entry beyond maxEntries", async () => {
    const mw = await cache({ maxEntries: 2 });
    const t = terminal();
    await call(mw, t.next, { task: "a" });
    await call(mw, t.next, { task: "b" });
    await call(mw, t.next, { task: "a" }); // a is now the most recent
    await call(mw, t.next, { task: "c" }); // evicts b
    expect(t.calls).toBe(3);
    await call(mw, t.next, { task: "a" });
    await call(mw, t.next, { task: "c" });
    expect(t.calls).toBe(3);
    await call(mw, t.next, { task: "b" });
    expect(t.calls).toBe(4);
  });

  it("does not cache a run that fails, reports failure, or is abandoned", async () => {
    const mw = await cache();
    const failing = failingTerminal();
    await expect(call(mw, failing.next)).rejects.toThrow("provider went away");
    const t = terminal();
    expect(completed(await call(mw, t.next)).metadata.cache).toBe("miss");

    const unsuccessful = async function* (): AsyncIterable<RunEvent> {
      yield { type: "started", model: "echo-1" };
      yield { type: "completed", result: { ...runResult(""), success: false, finishReason: "error" } };
    };
    await call(mw, unsuccessful, { task: "x" });
    const t2 = terminal();
    await call(mw, t2.next, { task: "x" });
    expect(t2.calls).toBe(1);

    // The client goes away after the first chunk: the run never completes.
    const t3 = terminal();
    for await (const event of mw.process(agentContext({ task: "y" }), t3.next)) {
      if (event.type === "delta") break;
    }
    await call(mw, t3.next, { task: "y" });
    expect(t3.calls).toBe(2);
  });

  it("does not cache a run whose call was aborted before it completed", async () => {
    const mw = await cache();
    const abort = new AbortController();
    const next = async function* (): AsyncIterable<RunEvent> {
      yield { type: "started", model: "echo-1" };
      abort.abort();
      yield { type: "completed", result: runResult("late") };
    };
    await call(mw, next, { signal: abort.signal });
    const t = terminal();
    await call(mw, t.next);
    expect(t.calls).toBe(1);
  });

  it("passes events through as they arrive on a miss", async () => {
    const mw = await cache();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const next = async function* (): AsyncIterable<RunEvent> {
      yield { type: "started", model: "echo-1" };
      yield { type: "delta", text: "first" };
      await gate;
      yield { type: "delta", text: "second" };
      yield { type: "completed", result: runResult("firstsecond") };
    };
    const it = mw.process(agentContext(), next)[Symbol.asyncIterator]();
    expect((await it.next()).value).toEqual({ type: "started", model: "echo-1" });
    expect((await it.next()).value).toEqual({ type: "delta", text: "first" });
    release();
    expect((await it.next()).value).toEqual({ type: "delta", text: "second" });
  });

  it("has the entry stored by the time the client receives the result", async () => {
    const mw = await cache();
    const t = terminal();
    const it = mw.process(agentContext(), t.next)[Symbol.asyncIterator]();
    let event = await it.next();
    while (!event.done && event.value.type !== "completed") event = await it.next();
    expect(event.value?.type).toBe("completed");
    // The first stream has not been drained further; a second call must already hit.
    expect(completed(await call(mw, t.next)).metadata.cache).toBe("hit");
    expect(t.calls).toBe(1);
  });

  it("cache-control: no-cache skips the lookup but stores the fresh answer", async () => {
    const mw = await cache();
    const stale = terminal("old", ["old"]);
    await call(mw, stale.next);
    const fresh = terminal("new", ["new"]);
    const refreshed = await call(mw, fresh.next, { headers: { "cache-control": "no-cache" } });
    expect(fresh.calls).toBe(1);
    expect(completed(refreshed).metadata.cache).toBe("miss");
    const after = await call(mw, stale.next);
    expect(stale.calls).toBe(1);
    expect(completed(after).output).toBe("new");
    expect(completed(after).metadata.cache).toBe("hit");
  });

  it("cache-control: no-store neither looks up nor stores", async () => {
    const mw = await cache();
    const t = terminal();
    const bypassed = await call(mw, t.next, { headers: { "cache-control": "max-age=0, No-Store" } });
    expect(completed(bypassed).metadata.cache).toBe("bypass");
    await call(mw, t.next);
    expect(t.calls).toBe(2); // nothing was stored by the no-store call
    await call(mw, t.next, { headers: { "cache-control": "no-store" } });
    expect(t.calls).toBe(3); // an entry exists now, but no-store does not read it
  });

  it("does not cache results larger than maxEntryBytes", async () => {
    const mw = await cache({ maxEntryBytes: 2048 });
    const big = "x".repeat(4096);
    const t = terminal(big, [big]);
    await call(mw, t.next, { task: "big" });
    await call(mw, t.next, { task: "big" });
    expect(t.calls).toBe(2);
    const small = terminal("small", ["small"]);
    await call(mw, small.next, { task: "small" });
    await call(mw, small.next, { task: "small" });
    expect(small.calls).toBe(1);
  });

  it("runs the agent when the stored entry is unreadable", async () => {
    const store = new MemoryCache({ maxEntries: 10, maxBytes: 1 << 20 });
    const mw = cacheMiddleware(store, { ttlSeconds: 60, maxEntryBytes: 1 << 20, perUser: false }, silent);
    await store.set(await cacheKey(agentContext(), false), "{not json", 60_000);
    const t = terminal();
    const events = await call(mw, t.next);
    expect(t.calls).toBe(1);
    expect(completed(events).output).toBe("hi there");
  });

  it("rejects unknown options", async () => {
    expect(await parseOptions(cachePlugin, { ttl: 5 })).toMatchObject({ success: false });
    expect(await parseOptions(cachePlugin, undefined)).toEqual({
      success: true,
      data: {
        backend: "memory",
        ttlSeconds: 300,
        maxEntries: 1000,
        maxBytes: 67108864,
        maxEntryBytes: 1048576,
        keyPrefix: "qingyu:cache:",
        perUser: true,
      },
    });
  });
});
