// Plugin discovery and loading through the real CLI and server process: every
// module form a user can ship, start-up refusals a user would see, the
// `qingyu plugins` listing, and the repository's example plugins.
import * as grpc from "@grpc/grpc-js";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { logged, pluginRows, projectDir, publicApi, removeProjectDirs, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { runCli, serveFile, startServer, type ServerProcess } from "../support/server-process.ts";

const A = AgentService.method;
const api = JSON.stringify(publicApi);
afterAll(removeProjectDirs);

/**
 * A middleware that notes its name on the way in (ctx.state) and on the way out
 * (result metadata), so one result shows the onion's order both ways.
 */
function tagMiddleware(name: string, typed = false): string {
  const t = (annotation: string) => (typed ? annotation : "");
  return `import { definePlugin${typed ? ", type RunEvent" : ""} } from ${api};
const NAME${t(": string")} = ${JSON.stringify(name)};
export default definePlugin({
  name: NAME,
  kind: "middleware",
  setup() {
    return {
      name: NAME,
      async *process(ctx, next)${t(": AsyncIterable<RunEvent>")} {
        ctx.state.set("in", [...((ctx.state.get("in") ?? [])${t(" as string[]")}), NAME]);
        for await (const e of next()) {
          if (e.type !== "completed") { yield e; continue; }
          const md = e.result.metadata;
          yield { type: "completed", result: { ...e.result, metadata: { ...md, in: (ctx.state.get("in")${t(" as string[]")}).join(","), out: md.out ? md.out + "," + NAME : NAME } } };
        }
      },
    };
  },
});
`;
}

const throwingSetup = (name: string) => `import { definePlugin } from ${api};
export default definePlugin({ name: ${JSON.stringify(name)}, kind: "middleware", setup() { throw new Error("license server unreachable"); } });
`;

/** The main fixture: one plugin of every module form, plus a broken file and a fragile plugin kept out of use. */
function fixtureProject(): { dir: string; config: string; configWithout: (change: Record<string, unknown>) => string } {
  const dir = projectDir();
  writeFiles(dir, {
    "plugins/ts-tag.ts": tagMiddleware("ts-tag", true),
    "plugins/folder-tag/package.json": JSON.stringify({ name: "folder-tag", type: "module", exports: { ".": { import: "./lib/main.mjs" } } }),
    "plugins/folder-tag/lib/main.mjs": tagMiddleware("folder-tag"),
    // Disabled by plugin name (not file name), so it is imported and listed as disabled.
    "plugins/spare.mjs": tagMiddleware("spare-tag"),
    "plugins/fragile.mjs": throwingSetup("fragile"),
    "plugins/broken.ts": `import { definePlugin } from ${api};\nexport default definePlugin({ name: "broken", kind: "middleware", setup() { return {; } });\n`,
    // A .js provider in a folder without package.json: plain ESM, as users write it.
    "plugins/js-provider.js": `import { definePlugin } from ${api};
export default definePlugin({
  name: "js-provider",
  kind: "llm-provider",
  setup() {
    return {
      async *stream(req) {
        for (const word of ("js-provider heard: " + req.messages.at(-1).content).split(/(?<= )/)) yield { type: "delta", text: word };
        yield { type: "finish", finishReason: "stop", model: req.model, usage: { inputTokens: 1, outputTokens: 3 } };
      },
    };
  },
});
`,
    // An event handler whose options are validated by its own zod schema. It reports through its
    // logger (stdout), so that this test does not depend on write permission (see the event-log test).
    "plugins/recorder.mjs": `import { z } from "zod";
import { definePlugin } from ${api};
export default definePlugin({
  name: "recorder",
  kind: "event-handler",
  configSchema: z.strictObject({ label: z.string() }),
  setup({ options, logger }) {
    return { types: ["AGENT_STARTED", "AGENT_COMPLETED"], handle(event) { logger.warn({ label: options.label, type: event.type, agent: event.agentId }, "recorded event"); } };
  },
});
`,
    // An npm package named in plugins.packages, resolved from the config's folder.
    "node_modules/qingyu-plugin-pkgtag/package.json": JSON.stringify({ name: "qingyu-plugin-pkgtag", version: "1.0.0", main: "index.mjs" }),
    "node_modules/qingyu-plugin-pkgtag/index.mjs": tagMiddleware("pkg-tag"),
  });
  const base = {
    server: { host: "127.0.0.1" },
    log: { level: "warn" },
    // Config order differs from discovery order (files, then packages) and from alphabetical order.
    pipeline: ["pkg-tag", { plugin: "fragile", enabled: false }, "ts-tag", "validation", "folder-tag"],
    providers: { js: { plugin: "js-provider" } },
    eventHandlers: [{ plugin: "recorder", options: { label: "rec-1" } }],
    agents: [{ id: "fixture", provider: "js", model: "js-1" }],
    plugins: { dirs: ["plugins"], packages: ["qingyu-plugin-pkgtag"], disabled: ["broken.ts", "spare-tag"] },
  };
  const config = join(dir, "config.json");
  writeFileSync(config, JSON.stringify(base));
  let variants = 0;
  const configWithout = (change: Record<string, unknown>) => {
    const file = join(dir, `variant-${++variants}.json`);
    writeFileSync(file, JSON.stringify({ ...base, ...change }));
    return file;
  };
  return { dir, config, configWithout };
}

describe("plugins from a user's folders and packages", () => {
  let fx: ReturnType<typeof fixtureProject>;
  beforeAll(() => {
    fx = fixtureProject();
  });

  it("serves with a .ts, a folder-package and an npm middleware in config order, a .js provider and a .mjs event handler", async () => {
    const server = await serveFile(fx.config, ["--port", "0", "--http-port", "0"]);
    const client = new TestClient(server.grpcPort);
    try {
      const res = await client.unary(AgentService, A.execute, { agentId: "fixture", task: "hello plugins" });
      expect(res.result?.output).toBe("js-provider heard: hello plugins");
      expect(res.result?.model).toBe("js-1");
      // In: outermost first, as configured; out: innermost first. The enabled: false entry (whose setup throws) is not set up.
      expect(res.result?.metadata.in).toBe("pkg-tag,ts-tag,folder-tag");
      expect(res.result?.metadata.out).toBe("folder-tag,ts-tag,pkg-tag");

      const recorded = await waitFor("two recorded events", () => {
        const found = logged(server, "recorded event");
        return found.length >= 2 ? found : undefined;
      });
      expect(recorded.map((e) => [e.plugin, e.label, e.type, e.agent])).toEqual([
        ["recorder", "rec-1", "AGENT_STARTED", "fixture"],
        ["recorder", "rec-1", "AGENT_COMPLETED", "fixture"],
      ]);
    } finally {
      client.close();
      await server.stop();
    }
  });

  it("`qingyu plugins` lists name, kind, status and source of each plugin, and the pipeline order", async () => {
    const { code, stdout, stderr } = await runCli(["plugins", "--config", fx.config]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const rows = pluginRows(stdout);
    const plugins = join(fx.dir, "plugins");
    expect(rows.get("pkg-tag")).toEqual({
      kind: "middleware",
      status: "in use",
      source: `npm:qingyu-plugin-pkgtag (${join(fx.dir, "node_modules/qingyu-plugin-pkgtag/index.mjs")})`,
    });
    expect(rows.get("ts-tag")).toEqual({ kind: "middleware", status: "in use", source: join(plugins, "ts-tag.ts") });
    expect(rows.get("folder-tag")).toEqual({ kind: "middleware", status: "in use", source: join(plugins, "folder-tag/lib/main.mjs") });
    expect(rows.get("js-provider")).toEqual({ kind: "llm-provider", status: "in use", source: join(plugins, "js-provider.js") });
    expect(rows.get("recorder")).toEqual({ kind: "event-handler", status: "in use", source: join(plugins, "recorder.mjs") });
    expect(rows.get("spare-tag")).toEqual({ kind: "middleware", status: "disabled", source: join(plugins, "spare.mjs") });
    expect(rows.get("fragile")).toEqual({ kind: "middleware", status: "available", source: join(plugins, "fragile.mjs") });
    expect(rows.get("validation")).toEqual({ kind: "middleware", status: "in use", source: "builtin" });
    expect(rows.get("openai")).toEqual({ kind: "llm-provider", status: "available", source: "builtin" });
    // A file disabled by name is not even imported: listed as such, its plugin name unknown.
    expect(rows.has("broken")).toBe(false);
    expect(rows.get("(not loaded)")).toEqual({ kind: "?", status: "disabled", source: join(plugins, "broken.ts") });
    expect(stdout).toContain(
      [
        "pipeline (outermost first):",
        "  1. pkg-tag",
        "  2. fragile (off)",
        "  3. ts-tag",
        "  4. validation",
        "  5. folder-tag",
        "event handlers:",
        "  - recorder",
      ].join("\n"),
    );
  });

  describe.concurrent("refuses to start with exit status 2, naming the file, the plugin and the reason", () => {
    const refused = async (config: string) => {
      const { code, stdout, stderr } = await runCli(["serve", "--config", config, "--port", "0", "--http-port", "0"]);
      expect(stdout).not.toContain('"msg":"listening"');
      expect(code).toBe(2);
      return stderr;
    };
    const project = (files: Record<string, string>, config: Record<string, unknown>) => {
      const dir = projectDir();
      writeFiles(dir, {
        ...files,
        "config.json": JSON.stringify({ server: { host: "127.0.0.1" }, log: { level: "warn" }, plugins: { dirs: ["plugins"] }, ...config }),
      });
      return { dir, config: join(dir, "config.json") };
    };

    it("a .ts file with a syntax error, once plugins.disabled no longer names it", async () => {
      const stderr = await refused(fx.configWithout({ plugins: { dirs: ["plugins"], packages: ["qingyu-plugin-pkgtag"], disabled: ["spare-tag"] } }));
      expect(stderr).toContain(`${join(fx.dir, "plugins/broken.ts")}: cannot be loaded:`);
    });

    it("a setup that throws, once its pipeline entry is enabled", async () => {
      const stderr = await refused(fx.configWithout({ pipeline: ["fragile", "ts-tag"] }));
      expect(stderr).toContain(`pipeline.0: plugin "fragile" (${join(fx.dir, "plugins/fragile.mjs")}) failed to set up: license server unreachable`);
    });

    it("a plugin with no kind", async () => {
      const p = project(
        { "plugins/kindless.mjs": `import { definePlugin } from ${api};\nexport default definePlugin({ name: "kindless", setup() { return {}; } });\n` },
        {},
      );
      const stderr = await refused(p.config);
      expect(stderr).toContain(
        `${join(p.dir, "plugins/kindless.mjs")}: plugin "kindless" has kind undefined; expected one of middleware, event-handler, llm-provider`,
      );
    });

    it("a plugin of an unknown kind", async () => {
      const p = project(
        {
          "plugins/store.ts": `import { definePlugin } from ${api};\nexport default definePlugin({ name: "store", kind: "database" as never, setup() { return {} as never; } });\n`,
        },
        {},
      );
      const stderr = await refused(p.config);
      expect(stderr).toContain(`${join(p.dir, "plugins/store.ts")}: plugin "store" has kind "database"; expected one of`);
    });

    it("two files claiming one name", async () => {
      const p = project({ "plugins/a-twin.mjs": tagMiddleware("twin"), "plugins/b-twin.ts": tagMiddleware("twin", true) }, {});
      const stderr = await refused(p.config);
      expect(stderr).toContain(`${join(p.dir, "plugins/b-twin.ts")}: plugin name "twin" is already taken by ${join(p.dir, "plugins/a-twin.mjs")}`);
    });

    it("options the plugin's own zod schema rejects", async () => {
      const versioned = `import { z } from "zod";
import { definePlugin } from ${api};
export default definePlugin({ name: "versioned", kind: "middleware", configSchema: z.strictObject({ version: z.string().regex(/^v\\d+$/) }),
  setup() { return { name: "versioned", process: (_ctx, next) => next() }; } });
`;
      const p = project({ "plugins/versioned.ts": versioned }, { pipeline: [{ plugin: "versioned", options: { version: "one" } }] });
      const stderr = await refused(p.config);
      expect(stderr).toContain(`pipeline.0: invalid options for plugin "versioned" (${join(p.dir, "plugins/versioned.ts")})`);
      expect(stderr).toContain("pipeline.0.options.version:");
    });

    it("an npm package in plugins.packages that is not installed", async () => {
      const p = project({}, { plugins: { dirs: [], packages: ["qingyu-plugin-absent"] } });
      const stderr = await refused(p.config);
      expect(stderr).toContain(`plugins.packages: npm package "qingyu-plugin-absent" is not installed (looked in node_modules from ${p.dir} upwards)`);
    });
  });
});

describe("the repository's example plugins", () => {
  const logFile = join(projectDir(), "events.jsonl");
  let server: ServerProcess;
  let client: TestClient;
  beforeAll(async () => {
    server = await startServer({
      log: { level: "warn" },
      pipeline: ["validation", { plugin: "word-filter", options: { words: ["secret", "password"], mask: "[redacted]" } }],
      providers: {
        canned: {
          plugin: "canned",
          options: { replies: { weather: "The secret forecast: sunny, no password needed" }, fallbackReply: "I only know the weather" },
        },
      },
      eventHandlers: [{ plugin: "event-log", options: { path: logFile, types: ["AGENT_COMPLETED", "ERROR_OCCURRED"] } }],
      agents: [{ id: "helper", provider: "canned", model: "canned-1" }],
      plugins: { dirs: [resolve(import.meta.dirname, "../../plugins/examples")] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
  });

  it("word-filter refuses a blocked task with INVALID_ARGUMENT and masks blocked words in answers; canned replies", async () => {
    const refused = await statusOf(client.unary(AgentService, A.execute, { agentId: "helper", task: "tell me the Password" }));
    expect(refused.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(refused.details).toContain("blocked word");

    const answer = await client.unary(AgentService, A.execute, { agentId: "helper", task: "What's the weather?" });
    expect(answer.result?.output).toBe("The [redacted] forecast: sunny, no [redacted] needed");
    // Masked as it streams, too: each word arrives as its own delta.
    const events = await client.collect(client.stream(AgentService, A.executeStream, { agentId: "helper", task: "weather again" }));
    const deltas = events.flatMap((e) => (e.event.case === "delta" ? [e.event.value.text] : []));
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join("")).toBe("The [redacted] forecast: sunny, no [redacted] needed");

    const fallback = await client.unary(AgentService, A.execute, { agentId: "helper", task: "hello" });
    expect(fallback.result?.output).toBe("I only know the weather");
  });

  // Fails under Deno as the server is started today: `deno run` gets no --allow-write
  // (package.json start:deno, test/support/server-process.ts), so event-log's stream
  // errors with NotCapable and the file is never written. Reported, not worked around.
  it("event-log appends the events of the types it was given as JSON lines", async () => {
    const user = "event-log-reader";
    await statusOf(client.unary(AgentService, A.execute, { agentId: "helper", task: "a secret task", userId: user }));
    await client.unary(AgentService, A.execute, { agentId: "helper", task: "weather", userId: user });
    await client.unary(AgentService, A.execute, { agentId: "helper", task: "anything", userId: user });
    const lines = await waitFor(
      "three event-log lines of this test's user",
      () => {
        const text = existsSync(logFile) ? readFileSync(logFile, "utf8") : "";
        const parsed = text
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { type: string; agentId: string; userId: string; data: Record<string, unknown> });
        const mine = parsed.filter((l) => l.userId === user);
        return mine.length >= 3 ? mine : undefined;
      },
      5000,
    );
    // Only the types it was given (no AGENT_STARTED), one line per event, in order.
    expect(lines.map((l) => l.type)).toEqual(["ERROR_OCCURRED", "AGENT_COMPLETED", "AGENT_COMPLETED"]);
    expect(lines.every((l) => l.agentId === "helper")).toBe(true);
    expect(lines[0]!.data.code).toMatch(/invalid.?argument/i);
    expect(lines[1]!.data.model).toBe("canned-1");
  });
});
