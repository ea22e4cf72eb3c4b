import { definePlugin, type PluginDefinition } from "@qingyu/plugin-api";
import { describe, expect, it } from "vitest";
import pino from "pino";
import { Writable } from "node:stream";
import { SharedClients } from "../../src/clients/shared.ts";
import { ConfigSchema, type Config } from "../../src/config/schema.ts";
import { MemoryEventBus } from "../../src/events/memory-bus.ts";
import { assemble, type SharedRuntime } from "../../src/plugin-host/assemble.ts";
import { builtinPlugins } from "../../src/plugins/builtin/index.ts";
import { LiveRuntime } from "../../src/plugin-host/live-runtime.ts";
import { PluginError, type CatalogEntry } from "../../src/plugin-host/loader.ts";
import { SessionManager } from "../../src/sessions/manager.ts";
import { MemorySessionStore } from "../../src/sessions/memory-store.ts";

function runtime(lines: string[] = []): SharedRuntime {
  const log = pino({ level: "info" }, new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }));
  const config = ConfigSchema.parse({});
  const events = new MemoryEventBus(log);
  return {
    events,
    sessions: new SessionManager(new MemorySessionStore(60_000), events, config.sessions),
    clients: new SharedClients(config, log),
    env: {},
    log,
  };
}

function catalog(...extra: PluginDefinition[]): Map<string, CatalogEntry> {
  return new Map([...builtinPlugins, ...extra].map((definition) => [definition.name, { definition, source: "test", disabled: false }]));
}

/** A middleware plugin that records its setups and disposals under `label`. */
function recorder(log: string[]) {
  return definePlugin({
    name: "recorder",
    kind: "middleware",
    setup({ options }) {
      const label = String((options as { label?: string } | undefined)?.label ?? "?");
      log.push(`setup ${label}`);
      return { name: "recorder", process: (_ctx, next) => next(), dispose: () => void log.push(`dispose ${label}`) };
    },
  });
}

const config = (raw: unknown): Config => ConfigSchema.parse(raw);

describe("assemble", () => {
  it("refuses providers that refer to each other in a cycle", async () => {
    const cfg = config({
      providers: { a: { plugin: "fallback", options: { providers: ["b"] } }, b: { plugin: "fallback", options: { providers: ["a"] } } },
      agents: [{ id: "x", provider: "a", model: "m" }],
    });
    const err = await assemble(1, cfg, "/", catalog(), runtime()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PluginError);
    expect((err as Error).message).toMatch(/cycle/);
  });

  it("disposes what it had set up when a later plugin fails", async () => {
    const log: string[] = [];
    const failing = definePlugin({
      name: "failing",
      kind: "middleware",
      setup: () => {
        throw new Error("boom");
      },
    });
    const cfg = config({ pipeline: [{ plugin: "recorder", options: { label: "one" } }, "failing"] });
    await expect(assemble(1, cfg, "/", catalog(recorder(log), failing), runtime())).rejects.toThrow(/boom/);
    expect(log).toEqual(["setup one", "dispose one"]);
  });
});

describe("LiveRuntime", () => {
  it("swaps in the new generation at once and disposes the old one only when its calls have left", async () => {
    const log: string[] = [];
    const shared = runtime();
    const cat = catalog(recorder(log));
    const gen = (label: string, id: number) => assemble(id, config({ pipeline: [{ plugin: "recorder", options: { label } }] }), "/", cat, shared);
    const live = new LiveRuntime(await gen("v1", 1), (id) => gen(`v${id}`, id), shared.events, shared.log);
    const first = live.current;
    first.enter(); // a call in flight on v1
    const outcome = await live.reload();
    expect(outcome.generation).toBe(2);
    expect(live.current.id).toBe(2);
    expect(log).toEqual(["setup v1", "setup v2"]);
    first.leave();
    await new Promise((r) => setTimeout(r, 10));
    expect(log).toEqual(["setup v1", "setup v2", "dispose v1"]);
    await live.close();
    expect(log.at(-1)).toBe("dispose v2");
  });

  it("keeps the running generation when the next one fails to load, and logs why", async () => {
    const lines: string[] = [];
    const shared = runtime(lines);
    const first = await assemble(1, config({}), "/", catalog(), shared);
    const live = new LiveRuntime(
      first,
      async () => {
        throw new PluginError('pipeline.0: no middleware plugin named "nope"');
      },
      shared.events,
      shared.log,
    );
    await expect(live.reload()).rejects.toThrow(/nope/);
    expect(live.current).toBe(first);
    expect(lines.some((l) => l.includes("reload failed") && l.includes("nope"))).toBe(true);
    await live.close();
  });

  it("moves event subscriptions to the new generation's handlers", async () => {
    const seen: string[] = [];
    const shared = runtime();
    const handler = definePlugin({
      name: "tap",
      kind: "event-handler",
      setup: ({ options }) => ({ types: "any" as const, handle: () => void seen.push(String((options as unknown as { label: string }).label)) }),
    });
    const cat = catalog(handler);
    const gen = (label: string, id: number) => assemble(id, config({ eventHandlers: [{ plugin: "tap", options: { label } }] }), "/", cat, shared);
    const live = new LiveRuntime(await gen("v1", 1), (id) => gen(`v${id}`, id), shared.events, shared.log);
    shared.events.publish({ type: "SESSION_CREATED", data: {} });
    await new Promise((r) => setTimeout(r, 10));
    await live.reload();
    shared.events.publish({ type: "SESSION_CREATED", data: {} });
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual(["v1", "v2"]);
    await live.close();
  });

  it("runs reloads one at a time", async () => {
    const shared = runtime();
    let concurrent = 0;
    let most = 0;
    const live = new LiveRuntime(
      await assemble(1, config({}), "/", catalog(), shared),
      async (id) => {
        most = Math.max(most, ++concurrent);
        await new Promise((r) => setTimeout(r, 20));
        concurrent--;
        return assemble(id, config({}), "/", catalog(), shared);
      },
      shared.events,
      shared.log,
    );
    const outcomes = await Promise.all([live.reload(), live.reload(), live.reload()]);
    expect(outcomes.map((o) => o.generation)).toEqual([2, 3, 4]);
    expect(most).toBe(1);
    await live.close();
  });
});
