import { definePlugin, type PluginDefinition } from "@qingyu/plugin-api";
import { afterAll, describe, it, expect } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { z } from "zod";
import { instantiate, type HostBase } from "../../src/plugin-host/instantiate.ts";
import { defaultExport, discoverPlugins, PluginError, type CatalogEntry } from "../../src/plugin-host/loader.ts";
import { loadFailureReason } from "../../src/plugin-host/load-error.ts";
import { builtinPlugins } from "../../src/plugins/builtin/index.ts";
import { AgentRegistry } from "../../src/agents/registry.ts";
import { MemoryEventBus } from "../../src/events/memory-bus.ts";
import { noTelemetry } from "../support/plugin-context.ts";

const DEFINE_URL = import.meta.resolve("@qingyu/plugin-api");

const root = mkdtempSync(join(tmpdir(), "qingyu-plugins-test-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

let counter = 0;
/** A fresh plugin directory holding `files` (relative path → contents). */
function pluginDir(files: Record<string, string>): string {
  const dir = join(root, `dir-${++counter}`);
  for (const [name, text] of Object.entries(files)) {
    const path = join(dir, name);
    mkdirSync(join(path, ".."), { recursive: true });
    writeFileSync(path, text);
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Source of a middleware plugin module named `name`. */
function middlewareModule(name: string): string {
  return `import { definePlugin } from ${JSON.stringify(DEFINE_URL)};
export default definePlugin({
  name: ${JSON.stringify(name)},
  kind: "middleware",
  setup() {
    return { name: ${JSON.stringify(name)}, process(ctx, next) { return next(); } };
  },
});
`;
}

async function pluginError(run: Promise<unknown>): Promise<PluginError> {
  const err = await run.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(PluginError);
  return err as PluginError;
}

describe("discoverPlugins", () => {
  it("finds the built-ins and each .mjs and .ts plugin file, recording where each came from", async () => {
    const dir = pluginDir({
      "alpha.mjs": middlewareModule("alpha"),
      "beta.ts": `import { definePlugin } from ${JSON.stringify(DEFINE_URL)};
import type { ProviderChunk } from ${JSON.stringify(new URL("../../src/providers/types.ts", import.meta.url).href)};
export default definePlugin({
  name: "beta",
  kind: "llm-provider",
  setup() {
    return {
      async *stream(): AsyncIterable<ProviderChunk> {
        yield { type: "delta", text: "beta" };
      },
    };
  },
});
`,
    });
    const catalog = await discoverPlugins(builtinPlugins, [dir]);
    for (const builtin of builtinPlugins) expect(catalog.get(builtin.name)?.source).toBe("builtin");
    expect(catalog.get("alpha")?.source).toBe(join(dir, "alpha.mjs"));
    expect(catalog.get("alpha")?.definition.kind).toBe("middleware");
    expect(catalog.get("beta")?.source).toBe(join(dir, "beta.ts"));
    expect(catalog.get("beta")?.definition.kind).toBe("llm-provider");
    expect(catalog.size).toBe(builtinPlugins.length + 2);
  });

  it("scans every configured directory", async () => {
    const one = pluginDir({ "one.mjs": middlewareModule("one") });
    const two = pluginDir({ "two.mjs": middlewareModule("two") });
    const catalog = await discoverPlugins([], [one, two]);
    expect([...catalog.keys()].sort()).toEqual(["one", "two"]);
  });

  it("skips non-modules, hidden, underscored, test and declaration files, and folders without package.json", async () => {
    const broken = "this is not javascript {";
    const dir = pluginDir({
      "real.mjs": middlewareModule("real"),
      "README.md": "# plugins",
      "notes.txt": broken,
      ".hidden.mjs": broken,
      "_shared.mjs": broken,
      "real.test.mjs": broken,
      "types.d.ts": broken,
      "helpers/index.mjs": broken,
    });
    const catalog = await discoverPlugins([], [dir]);
    expect([...catalog.keys()]).toEqual(["real"]);
  });

  it("a directory that does not exist contributes nothing", async () => {
    const catalog = await discoverPlugins(builtinPlugins, [join(root, "no-such-dir")]);
    expect(catalog.size).toBe(builtinPlugins.length);
  });

  it("loads a folder whose package.json names its main module", async () => {
    const dir = pluginDir({
      "folder-plugin/package.json": JSON.stringify({ name: "folder-plugin", main: "lib/entry.mjs" }),
      "folder-plugin/lib/entry.mjs": middlewareModule("from-folder"),
    });
    const catalog = await discoverPlugins([], [dir]);
    expect(catalog.get("from-folder")?.source).toBe(join(dir, "folder-plugin", "lib", "entry.mjs"));
  });

  it("a folder whose package.json names no module is a PluginError naming the package.json", async () => {
    const dir = pluginDir({ "empty-pkg/package.json": JSON.stringify({ name: "empty-pkg" }) });
    const err = await pluginError(discoverPlugins([], [dir]));
    expect(err.message).toContain(join(dir, "empty-pkg", "package.json"));
  });

  it("a folder whose package.json is not JSON is a PluginError naming it", async () => {
    const dir = pluginDir({ "bad-pkg/package.json": "{ nope" });
    const err = await pluginError(discoverPlugins([], [dir]));
    expect(err.message).toContain(join(dir, "bad-pkg", "package.json"));
  });

  it("a file with a syntax error is a PluginError naming the file, with the cause kept", async () => {
    const dir = pluginDir({ "broken.mjs": "export default {{ definitely not valid" });
    const err = await pluginError(discoverPlugins([], [dir]));
    expect(err.message).toContain(join(dir, "broken.mjs"));
    expect(err.cause).toBeInstanceOf(Error);
  });

  it("a module that throws while loading is a PluginError naming the file and the reason", async () => {
    const dir = pluginDir({ "throws.mjs": 'throw new Error("missing API key at import time");\nexport default 1;\n' });
    const err = await pluginError(discoverPlugins([], [dir]));
    expect(err.message).toContain(join(dir, "throws.mjs"));
    expect(err.message).toContain("missing API key at import time");
  });

  it.each([
    ["a number", "export default 42;"],
    ["nothing (no default export)", "export const plugin = {};"],
  ])("a default export that is %s is a PluginError naming the file and definePlugin", async (_label, source) => {
    const dir = pluginDir({ "not-plugin.mjs": source });
    const err = await pluginError(discoverPlugins([], [dir]));
    expect(err.message).toContain(join(dir, "not-plugin.mjs"));
    expect(err.message).toContain("definePlugin");
  });

  it("an unknown kind is a PluginError naming the file and the kind", async () => {
    const dir = pluginDir({
      "weird.mjs": `export default { name: "weird", kind: "database", setup() { return {}; } };`,
    });
    const err = await pluginError(discoverPlugins([], [dir]));
    expect(err.message).toContain(join(dir, "weird.mjs"));
    expect(err.message).toContain('"database"');
    expect(err.message).toContain("middleware");
  });

  it("a plugin without a name is a PluginError naming the file", async () => {
    const dir = pluginDir({
      "anon.mjs": `import { definePlugin } from ${JSON.stringify(DEFINE_URL)};
export default definePlugin({ name: "", kind: "middleware", setup() { return {}; } });`,
    });
    const err = await pluginError(discoverPlugins([], [dir]));
    expect(err.message).toContain(join(dir, "anon.mjs"));
    expect(err.message).toContain("no name");
  });

  it("a plugin without setup is a PluginError", async () => {
    const dir = pluginDir({ "lazy.mjs": `export default { name: "lazy", kind: "middleware" };` });
    const err = await pluginError(discoverPlugins([], [dir]));
    expect(err.message).toContain(join(dir, "lazy.mjs"));
    expect(err.message).toContain("setup");
  });

  it("two files with the same plugin name is a PluginError naming both", async () => {
    const dir = pluginDir({ "a-first.mjs": middlewareModule("twin"), "b-second.mjs": middlewareModule("twin") });
    const err = await pluginError(discoverPlugins([], [dir]));
    expect(err.message).toContain('"twin"');
    expect(err.message).toContain(join(dir, "a-first.mjs"));
    expect(err.message).toContain(join(dir, "b-second.mjs"));
  });

  it("the same name in two directories is a PluginError naming both files", async () => {
    const one = pluginDir({ "dup.mjs": middlewareModule("dup") });
    const two = pluginDir({ "dup.mjs": middlewareModule("dup") });
    const err = await pluginError(discoverPlugins([], [one, two]));
    expect(err.message).toContain(join(one, "dup.mjs"));
    expect(err.message).toContain(join(two, "dup.mjs"));
  });

  it("a file that takes a built-in's name is a PluginError naming the file and the built-in", async () => {
    const dir = pluginDir({ "my-echo.mjs": middlewareModule("echo") });
    const err = await pluginError(discoverPlugins(builtinPlugins, [dir]));
    expect(err.message).toContain(join(dir, "my-echo.mjs"));
    expect(err.message).toContain('"echo"');
    expect(err.message).toContain("builtin");
  });
});

describe("why a plugin did not load", () => {
  // The errors as each runtime throws them for `  setup() { return {; },` on line 5 (seen on
  // Node 20.20 with tsx 4.23 and on Deno 2.9): the message must be the same kind of line for all.
  const transformError = (message: string, extra: Record<string, unknown> = {}) => Object.assign(new Error(message), { name: "TransformError", ...extra });
  it.each([
    [
      "tsx (Node, a .ts file): esbuild's message, 0-based column",
      "/p/plugins/x.ts",
      transformError('Transform failed with 1 error:\n/p/plugins/x.ts:5:20: ERROR: Expected identifier but found ";"'),
      'syntax error at /p/plugins/x.ts:5:21: Expected identifier but found ";"',
    ],
    [
      "tsx (Node, a .mts file, which its message calls .ts)",
      "/p/plugins/x.mts",
      transformError('Transform failed with 1 error:\n/p/plugins/x.ts:5:20: ERROR: Expected identifier but found ";"'),
      'syntax error at /p/plugins/x.mts:5:21: Expected identifier but found ";"',
    ],
    [
      "tsx (Node): a syntax error in a module the plugin imports",
      "/p/plugins/x.ts",
      transformError('Transform failed with 1 error:\n/p/plugins/lib/util.ts:2:6: ERROR: Expected identifier but found "="'),
      'syntax error at /p/plugins/lib/util.ts:2:7: Expected identifier but found "="',
    ],
    [
      "esbuild's own error, with errors[].location",
      "/p/plugins/x.ts",
      Object.assign(new Error("Transform failed with 1 error:\n..."), {
        errors: [{ text: 'Expected identifier but found ";"', location: { file: "/p/plugins/x.ts", line: 5, column: 20 } }],
      }),
      'syntax error at /p/plugins/x.ts:5:21: Expected identifier but found ";"',
    ],
    [
      "V8 as Node decorates it (CommonJS): the file, the line, a caret",
      "/p/plugins/x.js",
      Object.assign(new SyntaxError("Unexpected token ';'"), {
        stack:
          "/p/plugins/x.js:5\n  setup() { return {; },\n                    ^\n\nSyntaxError: Unexpected token ';'\n    at wrapSafe (node:internal/modules/cjs/loader:1464:18)",
      }),
      "syntax error at /p/plugins/x.js:5:21: Unexpected token ';'",
    ],
    [
      "V8 with a file URL and no caret",
      "/p/plugins/x.mjs",
      Object.assign(new SyntaxError("Unexpected token ';'"), {
        stack: "file:///p/plugins/x.mjs:5\nSyntaxError: Unexpected token ';'\n    at compileSourceTextModule (node:internal/modules/esm/utils:346:16)",
      }),
      "syntax error at /p/plugins/x.mjs:5: Unexpected token ';'",
    ],
    [
      "Deno: a TypeError carrying the parser's message and the location",
      "/p/plugins/x.ts",
      new TypeError(
        "SyntaxError: Unexpected token `;`. Expected identifier, string literal, numeric literal or [ for the computed key\n  |\n5 |   setup() { return {; },\n  |                     ~\n    at file:///p/plugins/x.ts:5:21",
      ),
      "syntax error at /p/plugins/x.ts:5:21: Unexpected token `;`. Expected identifier, string literal, numeric literal or [ for the computed key",
    ],
    [
      "Deno, with more after the location and the error in an imported module",
      "/p/plugins/x.mjs",
      new TypeError(
        "SyntaxError: Unexpected token `=`. Expected yield, an identifier, [ or {\n   |\n3 | const = ;\n   |       ~\n    at file:///p/plugins/lib.mjs:3:7 at ext:core/01_core.js:405:7",
      ),
      "syntax error at /p/plugins/lib.mjs:3:7: Unexpected token `=`. Expected yield, an identifier, [ or {",
    ],
  ])("a syntax error as %s names the file, line and column", async (_label, file, err, reason) => {
    expect(await loadFailureReason(err, file)).toBe(reason);
  });

  /** What Node 20's import() rejects with for an ES module V8 cannot parse: no file, no line, only the loader's frames. */
  const unparsable = (message: string) =>
    Object.assign(new SyntaxError(message), {
      stack: `SyntaxError: ${message}\n    at compileSourceTextModule (node:internal/modules/esm/utils:346:16)\n    at ModuleLoader.moduleStrategy (node:internal/modules/esm/translators:146:18)\n    at async ModuleJob._link (node:internal/modules/esm/module_job:148:19)`,
    });

  it("top-level await in a file Node loads as CommonJS says so, and what to do", async () => {
    const err = transformError(
      'Transform failed with 1 error:\n/p/plugins/x.ts:1:18: ERROR: Top-level await is currently not supported with the "cjs" output format',
      {
        code: "ERR_REQUIRE_ASYNC_MODULE",
      },
    );
    const reason = await loadFailureReason(err, "/p/plugins/x.ts");
    expect(reason).toContain("top-level await at /p/plugins/x.ts:1:19");
    expect(reason).toContain('"type": "module"');
  });

  it.runIf(!("Deno" in globalThis))(
    "a V8 SyntaxError without a location (Node 20's import() of an ES module) is located by the runtime's own parser",
    async () => {
      const dir = pluginDir({ "broken.mjs": 'const a = 1;\nexport default {\n  name: "x",\n  kind: "middleware",\n  setup() { return {; },\n};\n' });
      const file = join(dir, "broken.mjs");
      expect(await loadFailureReason(unparsable("Unexpected token ';'"), file)).toBe(`syntax error at ${file}:5:21: Unexpected token ';'`);
    },
  );

  it.runIf(!("Deno" in globalThis))("when the plugin's own file parses, the syntax error is in a module it imports", async () => {
    const dir = pluginDir({ "entry.mjs": 'import "./lib.mjs";\nexport default {};\n' });
    expect(await loadFailureReason(unparsable("Unexpected token '='"), join(dir, "entry.mjs"))).toBe(
      "syntax error in a module it imports: Unexpected token '='",
    );
  });

  it("a SyntaxError the module's code threw while it ran (JSON.parse at import) is not called a syntax error in the file", async () => {
    const thrown = Object.assign(new SyntaxError("Expected property name or '}' in JSON at position 1"), {
      stack:
        "SyntaxError: Expected property name or '}' in JSON at position 1\n    at JSON.parse (<anonymous>)\n    at file:///p/plugins/x.mjs:1:18\n    at ModuleJob.run (node:internal/modules/esm/module_job:271:25)",
    });
    expect(await loadFailureReason(thrown, "/p/plugins/x.mjs")).toBe("Expected property name or '}' in JSON at position 1");
  });

  it("other failures keep their message, with a hint where one helps", async () => {
    expect(await loadFailureReason(new Error("missing API key at import time"), "/p/plugins/x.ts")).toBe("missing API key at import time");
    expect(await loadFailureReason("a thrown string", "/p/plugins/x.ts")).toBe("a thrown string");
    const commonJs = await loadFailureReason(new ReferenceError("module is not defined"), "/p/plugins/x.js");
    expect(commonJs).toContain("module is not defined");
    expect(commonJs).toContain('"type": "commonjs"');
    const cycle = Object.assign(new Error("Cannot require() ES Module /p/plugins/x.ts in a cycle."), { code: "ERR_REQUIRE_CYCLE_MODULE" });
    expect(await loadFailureReason(cycle, "/p/plugins/x.ts")).toContain("node --import tsx");
  });
});

describe("a module's default export", () => {
  const plugin = { name: "p", kind: "middleware", setup() {} };

  it("unwraps CommonJS compiled from ES modules (exports.__esModule, exports.default): default.default", () => {
    const compiled = Object.defineProperty({ default: plugin }, "__esModule", { value: true });
    expect(defaultExport({ default: compiled })).toBe(plugin);
  });

  it("unwraps nothing else: a plain default, an object that merely has a default key, __esModule without a default", () => {
    expect(defaultExport({ default: plugin })).toBe(plugin);
    const withDefaultKey = { default: plugin };
    expect(defaultExport({ default: withDefaultKey })).toBe(withDefaultKey);
    const namedOnly = { __esModule: true, plugin };
    expect(defaultExport({ default: namedOnly })).toBe(namedOnly);
    const falsy = { __esModule: false, default: plugin };
    expect(defaultExport({ default: falsy })).toBe(falsy);
    expect(defaultExport({})).toBeUndefined();
  });

  it("loads a tsc-compiled CommonJS folder plugin", async () => {
    const dir = pluginDir({
      "compiled/package.json": JSON.stringify({ name: "compiled", type: "commonjs", main: "dist/index.js" }),
      "compiled/dist/index.js": `"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
const plugin = { name: "tsc-made", kind: "middleware", setup() { return { name: "tsc-made", process: (_ctx, next) => next() }; } };
exports.default = plugin;
`,
    });
    const catalog = await discoverPlugins([], [dir]);
    expect(catalog.get("tsc-made")?.definition.kind).toBe("middleware");
    expect(catalog.get("tsc-made")?.source).toBe(join(dir, "compiled/dist/index.js"));
  });
});

describe("instantiate", () => {
  function base(lines: Record<string, unknown>[] = []): HostBase {
    const logger = pino({ level: "info" }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    return {
      logger,
      events: new MemoryEventBus(pino({ level: "silent" })),
      agents: new AgentRegistry([]),
      env: { TOKEN: "t" },
      redis: () => {
        throw new Error("no Redis in this test");
      },
      postgres: () => {
        throw new Error("no PostgreSQL in this test");
      },
      provider: async (name) => {
        throw new Error(`no provider ${name} in this test`);
      },
      resolvePath: (p) => p,
      ...noTelemetry,
    };
  }

  function catalogOf(...defs: PluginDefinition[]): Map<string, CatalogEntry> {
    return new Map(defs.map((definition) => [definition.name, { definition, source: `/plugins/${definition.name}.ts`, disabled: false }]));
  }

  const limiter = definePlugin({
    name: "limiter",
    kind: "middleware",
    configSchema: z.strictObject({
      limit: z.int().positive(),
      window: z.strictObject({ seconds: z.int().positive().default(60) }).prefault({}),
    }),
    setup({ options }) {
      return { name: `limiter:${options.limit}/${options.window.seconds}s`, process: (_ctx, next) => next() };
    },
  }) as unknown as PluginDefinition;

  it("validates options with the plugin's schema, applies its defaults and runs setup", async () => {
    const { product, entry } = await instantiate(catalogOf(limiter), { plugin: "limiter", options: { limit: 5 } }, "middleware", "pipeline[0]", base());
    expect(product.name).toBe("limiter:5/60s");
    expect(entry.source).toBe("/plugins/limiter.ts");
  });

  it.each([
    ["a missing option", {}, "pipeline[2].options.limit"],
    // No options at all: the schema sees {} and names the required key.
    ["no options at all", undefined, "pipeline[2].options.limit"],
    ["a wrong type", { limit: "many" }, "pipeline[2].options.limit"],
    ["a nested bad value", { limit: 1, window: { seconds: -5 } }, "pipeline[2].options.window.seconds"],
    ["an unknown option", { limit: 1, burst: 3 }, 'pipeline[2].options: unknown key "burst"'],
  ])("rejects %s with a PluginError naming the option path", async (_label, options, path) => {
    const err = await pluginError(instantiate(catalogOf(limiter), { plugin: "limiter", options }, "middleware", "pipeline[2]", base()));
    expect(err.message).toContain(path);
    expect(err.message).toContain('"limiter"');
    expect(err.message).toContain("/plugins/limiter.ts");
  });

  it("passes options through untouched when the plugin has no schema, and gives the host's pieces", async () => {
    let seen: unknown;
    let env: unknown;
    const raw = definePlugin({
      name: "raw",
      kind: "event-handler",
      setup(host) {
        seen = host.options;
        env = host.env;
        return { types: "any", handle() {} };
      },
    }) as unknown as PluginDefinition;
    const { product } = await instantiate(catalogOf(raw), { plugin: "raw", options: { anything: [1, 2] } }, "event-handler", "eventHandlers[0]", base());
    expect(seen).toEqual({ anything: [1, 2] });
    expect(env).toEqual({ TOKEN: "t" });
    expect(product.types).toBe("any");
  });

  it("a bare-string reference gives the plugin {} as its options", async () => {
    let seen: unknown = "unset";
    const raw = definePlugin({
      name: "bare",
      kind: "middleware",
      setup(host) {
        seen = host.options;
        return { name: "bare", process: (_ctx, next) => next() };
      },
    }) as unknown as PluginDefinition;
    await instantiate(catalogOf(raw), "bare", "middleware", "pipeline[0]", base());
    expect(seen).toEqual({});
  });

  it("gives the plugin a logger bound to its name", async () => {
    const lines: Record<string, unknown>[] = [];
    const chatty = definePlugin({
      name: "chatty",
      kind: "middleware",
      setup({ logger }) {
        logger.info("ready");
        return { name: "chatty", process: (_ctx, next) => next() };
      },
    }) as unknown as PluginDefinition;
    await instantiate(catalogOf(chatty), "chatty", "middleware", "pipeline[0]", base(lines));
    expect(lines).toContainEqual(expect.objectContaining({ plugin: "chatty", msg: "ready" }));
  });

  it("a plugin of the wrong kind is a PluginError naming both kinds", async () => {
    const err = await pluginError(instantiate(catalogOf(limiter), "limiter", "llm-provider", "providers.main", base()));
    expect(err.message).toContain("providers.main");
    expect(err.message).toContain("middleware");
    expect(err.message).toContain("llm-provider");
  });

  it("an unknown plugin is a PluginError listing the known ones of that kind", async () => {
    const err = await pluginError(instantiate(catalogOf(...builtinPlugins), "nope", "middleware", "pipeline[1]", base()));
    expect(err.message).toContain('"nope"');
    expect(err.message).toContain("pipeline[1]");
    expect(err.message).toContain("logging");
    expect(err.message).toContain("validation");
    expect(err.message).not.toContain("echo");
  });

  it.each([
    [
      "throws",
      () => {
        throw new Error("cannot reach license server");
      },
    ],
    [
      "rejects",
      async () => {
        throw new Error("cannot reach license server");
      },
    ],
  ])("a setup that %s is a PluginError naming the plugin, with the cause kept", async (_label, setup) => {
    const failing = definePlugin({ name: "fragile", kind: "middleware", setup }) as unknown as PluginDefinition;
    const err = await pluginError(instantiate(catalogOf(failing), "fragile", "middleware", "pipeline[0]", base()));
    expect(err.message).toContain('"fragile"');
    expect(err.message).toContain("pipeline[0]");
    expect(err.message).toContain("cannot reach license server");
    expect(err.cause).toBeInstanceOf(Error);
    expect((err.cause as Error).message).toBe("cannot reach license server");
  });

  it("instantiates a plugin discovered from a file", async () => {
    const dir = pluginDir({ "found.mjs": middlewareModule("found") });
    const catalog = await discoverPlugins(builtinPlugins, [dir]);
    const { product, entry } = await instantiate(catalog, "found", "middleware", "pipeline[0]", base());
    expect(product.name).toBe("found");
    expect(typeof product.process).toBe("function");
    expect(entry.source).toBe(join(dir, "found.mjs"));
  });
});
