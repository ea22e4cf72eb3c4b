// What a reload imports: an unchanged plugin file gives the plugin it gave
// last time (re-importing it kept another module record every reload, never
// freed), an edited one is imported afresh, and a plugin module shared by
// generations is disposed only once none of them uses it.
import { afterAll, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { SharedClients } from "../../src/clients/shared.ts";
import { ConfigSchema } from "../../src/config/schema.ts";
import { MemoryEventBus } from "../../src/events/memory-bus.ts";
import { assemble, type SharedRuntime } from "../../src/plugin-host/assemble.ts";
import { LiveRuntime } from "../../src/plugin-host/live-runtime.ts";
import { discoverPlugins } from "../../src/plugin-host/loader.ts";
import { builtinPlugins } from "../../src/plugins/builtin/index.ts";
import { SessionManager } from "../../src/sessions/manager.ts";
import { MemorySessionStore } from "../../src/sessions/memory-store.ts";

const DEFINE_URL = import.meta.resolve("@qingyu/plugin-api");
const root = mkdtempSync(join(tmpdir(), "qingyu-reload-imports-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
const LOG = Symbol.for("qingyu.test.reloadImports");
const journal = (): string[] => ((globalThis as Record<symbol, unknown>)[LOG] ??= []) as string[];

/** A plugin file that notes in the journal each time it is imported and each time its module is disposed. */
function pluginFile(version: string): { dir: string; file: string; write: (v: string) => void } {
  const dir = join(root, `dir-${++counter}`);
  const file = join(dir, "noted.mjs");
  const write = (v: string) =>
    writeFileSync(
      file,
      `import { definePlugin } from ${JSON.stringify(DEFINE_URL)};
const journal = (globalThis[Symbol.for("qingyu.test.reloadImports")] ??= []);
journal.push("import ${v}");
export default definePlugin({
  name: "noted",
  kind: "middleware",
  setup() {
    return { name: "noted", process: (_ctx, next) => next() };
  },
  dispose() {
    journal.push("dispose ${v}");
  },
});
`,
    );
  mkdirSync(dir);
  write(version);
  return { dir, file, write };
}

function shared(): SharedRuntime {
  const log = pino({ level: "silent" });
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

describe("reload imports", () => {
  it("an unchanged file is imported once for reloads, not on every reload; an edit (same size) is imported afresh", async () => {
    journal().length = 0;
    const { dir, write } = pluginFile("v1");
    const discover = (id: number) => discoverPlugins(builtinPlugins, [dir], { bust: `generation=${id}` });
    const first = (await discover(2)).get("noted")!.definition;
    for (let id = 3; id < 10; id++) expect((await discover(id)).get("noted")!.definition).toBe(first);
    expect(journal()).toEqual(["import v1"]);
    write("v2");
    const edited = (await discover(10)).get("noted")!.definition;
    expect(edited).not.toBe(first);
    expect(journal()).toEqual(["import v1", "import v2"]);
  });

  it("a plugin module is disposed only once no generation uses it, and imported afresh when used again after", async () => {
    journal().length = 0;
    const { dir } = pluginFile("v1");
    const runtime = shared();
    let pipeline: string[] = ["noted"];
    const load = async (id: number) => {
      const catalog = await discoverPlugins(builtinPlugins, [dir], { bust: `generation=${id}` });
      return assemble(id, ConfigSchema.parse({ pipeline }), dir, catalog, runtime);
    };
    const live = new LiveRuntime(await load(1), load, runtime.events, runtime.log);
    const gen1 = live.current;
    gen1.enter(); // a call still running on generation 1, which uses the plugin
    pipeline = [];
    await live.reload(); // 2: without it; disposed at once, as no call is on it
    pipeline = ["noted"];
    await live.reload(); // 3: with it again, while generation 1 still runs
    await new Promise((r) => setTimeout(r, 10));
    expect(journal()).toEqual(["import v1"]);
    gen1.leave();
    await new Promise((r) => setTimeout(r, 10));
    // Generation 3 uses it still.
    expect(journal()).toEqual(["import v1"]);
    pipeline = [];
    await live.reload(); // 4: without it; the last user is gone
    await new Promise((r) => setTimeout(r, 10));
    expect(journal()).toEqual(["import v1", "dispose v1"]);
    pipeline = ["noted"];
    await live.reload(); // 5: its module was disposed, so it is imported afresh
    expect(journal()).toEqual(["import v1", "dispose v1", "import v1"]);
    await live.close();
    expect(journal()).toEqual(["import v1", "dispose v1", "import v1", "dispose v1"]);
  });
});
