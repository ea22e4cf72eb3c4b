// Plugins as an operator ships them: a project folder outside this repository
// (in the OS temp dir) with the SDK installed from its npm tarball, its own zod
// (3, where the server has 4), a bare .ts middleware, a CommonJS folder plugin
// and an npm package plugin; served through the CLI the way users start it, on
// Node (bin/qingyu.mjs) and on Deno (QINGYU_E2E_RUNTIME=deno).
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { logged, pluginRows, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { killAll, runCli, runtime, serveFile, spawnTracked, type ServerProcess } from "../support/server-process.ts";
import { HOOK_TIMEOUT_MS } from "../support/limits.ts";

const A = AgentService.method;
const repo = resolve(import.meta.dirname, "../..");
const sdkFolder = join(repo, "packages/plugin-api");

/** A bare .ts middleware (its folder has no package.json: Node loads it as CommonJS through tsx). */
const shoutSource = (mark: string) => `import { definePlugin, type RunEvent } from "@qingyu/plugin-api";
import { z } from "zod";

const MARK: string = ${JSON.stringify(mark)};

export default definePlugin({
  name: "shout",
  kind: "middleware",
  // Named bare in the pipeline: the options are {}, and the schema's default fills them in.
  configSchema: z.object({ suffix: z.string().default("!") }).strict(),
  setup({ options }) {
    return {
      name: "shout",
      async *process(_ctx, next): AsyncIterable<RunEvent> {
        for await (const e of next()) {
          yield e.type === "completed" ? { type: "completed", result: { ...e.result, metadata: { ...e.result.metadata, shout: MARK + options.suffix } } } : e;
        }
      },
    };
  },
});
`;

/** A CommonJS folder plugin: require() and module.exports. */
const tallySource = (mark: string) => `"use strict";
const { definePlugin } = require("@qingyu/plugin-api");
const { z } = require("zod");

const MARK = ${JSON.stringify(mark)};

module.exports = definePlugin({
  name: "tally",
  kind: "event-handler",
  configSchema: z.object({ label: z.string().min(1) }).strict(),
  setup({ options, logger }) {
    let seen = 0;
    return {
      types: ["AGENT_COMPLETED"],
      handle(event) {
        seen += 1;
        logger.warn({ label: options.label, mark: MARK, seen, agent: event.agentId }, "tally");
      },
    };
  },
});
`;

/** An npm package as tsc compiles `export default definePlugin(...)` to CommonJS. */
const greeterSource = (mark: string) => `"use strict";
Object.defineProperty(exports, "__esModule", { value: true });
const plugin_api_1 = require("@qingyu/plugin-api");
const zod_1 = require("zod");
const MARK = ${JSON.stringify(mark)};
exports.default = (0, plugin_api_1.definePlugin)({
  name: "greeter",
  kind: "llm-provider",
  configSchema: zod_1.z.object({ greeting: zod_1.z.string().min(1) }).strict(),
  setup({ options }) {
    return {
      async *stream(req) {
        const text = options.greeting + " from " + MARK + ": " + req.messages[req.messages.length - 1].content;
        for (const word of text.split(/(?<= )/)) yield { type: "delta", text: word };
        yield { type: "finish", finishReason: "stop", model: req.model, usage: { inputTokens: 1, outputTokens: 1 } };
      },
    };
  },
});
`;

/** Where `needle` starts in `text`: line and column, 1-based. */
function position(text: string, needle: string): { line: number; column: number } {
  const at = text.indexOf(needle);
  if (at < 0) throw new Error(`"${needle}" is not in the text`);
  const before = text.slice(0, at);
  return { line: before.split("\n").length, column: at - before.lastIndexOf("\n") };
}

/** Runs a command to completion (npm), in its own process group so afterAll can end it; rejects with its output. */
function run(cmd: string, args: string[], cwd: string, timeoutMs: number): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const child = spawnTracked(cmd, args, { cwd, env: { ...process.env, npm_config_update_notifier: "false" }, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout!.on("data", (d) => (output += d));
    child.stderr!.on("data", (d) => (output += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolvePromise(output);
      else reject(new Error(`${cmd} ${args.join(" ")} (in ${cwd}) ended with ${code ?? signal}:\n${output}`));
    });
  });
}

let project = "";
let files: { shout: string; tally: string; greeter: string };
const config = (name: string, body: Record<string, unknown>): string => {
  const file = join(project, name);
  writeFileSync(file, JSON.stringify(body, null, 2));
  return file;
};

beforeAll(async () => {
  project = mkdtempSync(join(tmpdir(), "qingyu-external-"));
  if (!existsSync(join(sdkFolder, "dist/index.js"))) throw new Error("packages/plugin-api/dist is missing: run `npm run build:packages`");
  // The SDK tarball users install. --ignore-scripts: its prepack rebuilds dist/ in place (deleting it
  // first), which would pull the SDK from under the servers of the suites running beside this one;
  // dist/ is already built (`prepare` on install, `pretest`).
  const packed = await run("npm", ["pack", "--ignore-scripts", "--pack-destination", project], sdkFolder, 60_000);
  const tgz = readdirSync(project).find((f) => f.endsWith(".tgz"));
  if (!tgz) throw new Error(`npm pack made no tarball:\n${packed}`);
  const tarball = join(project, tgz);

  // The npm package plugin's own folder: it depends on the SDK tarball and on zod.
  writeFiles(project, {
    "greeter-src/package.json": JSON.stringify({
      name: "qingyu-plugin-greeter",
      version: "1.0.0",
      main: "index.js",
      dependencies: { "@qingyu/plugin-api": `file:${tarball}`, zod: "^3.25.0" },
    }),
    "greeter-src/index.js": greeterSource("greeter-1"),
  });
  // Installed as copies (--install-links), as from a registry: node_modules/qingyu-plugin-greeter is a folder, not a link.
  await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--install-links", tarball, "zod@3", "./greeter-src"], project, 150_000);

  writeFiles(project, {
    "plugins/shout.ts": shoutSource("shout-1"),
    "plugins/tally/package.json": JSON.stringify({ name: "tally", type: "commonjs", main: "index.js" }),
    "plugins/tally/index.js": tallySource("tally-1"),
  });
  files = {
    shout: join(project, "plugins/shout.ts"),
    tally: join(project, "plugins/tally/index.js"),
    greeter: join(project, "node_modules/qingyu-plugin-greeter/index.js"),
  };
}, 2 * HOOK_TIMEOUT_MS);

afterAll(() => {
  // A test that timed out may have left its server running: end every process group this file started.
  killAll();
  if (project) rmSync(project, { recursive: true, force: true });
});

const serveConfig = () => ({
  server: { host: "127.0.0.1" },
  // info: the "reloaded" line tells the test that the new generation is in.
  log: { level: "info" },
  pipeline: ["shout"],
  providers: { greeter: { plugin: "greeter", options: { greeting: "Hello" } } },
  eventHandlers: [{ plugin: "tally", options: { label: "ext" } }],
  agents: [{ id: "ext", provider: "greeter", model: "greeter-1" }],
  plugins: { dirs: ["plugins"], packages: ["qingyu-plugin-greeter"] },
});

describe(`plugins as an operator ships them (${runtime})`, () => {
  it("the project has its own SDK from the tarball and its own zod 3", () => {
    const sdk = JSON.parse(readFileSync(join(project, "node_modules/@qingyu/plugin-api/package.json"), "utf8")) as { version: string };
    expect(sdk.version).toBe("1.0.0");
    const zod = JSON.parse(readFileSync(join(project, "node_modules/zod/package.json"), "utf8")) as { version: string };
    const ours = JSON.parse(readFileSync(join(repo, "node_modules/zod/package.json"), "utf8")) as { version: string };
    expect(zod.version).toMatch(/^3\./);
    expect(ours.version).not.toMatch(/^3\./);
  });

  it("serves a bare .ts middleware, a CommonJS event handler and an npm provider; SIGHUP picks up edits; a broken edit keeps the old ones serving", async () => {
    const server: ServerProcess = await serveFile(config("config.json", serveConfig()), ["--port", "0", "--http-port", "0"], {}, { cwd: project });
    const client = new TestClient(server.grpcPort);
    const call = async (task: string) => {
      const res = await client.unary(AgentService, A.execute, { agentId: "ext", task });
      return { output: res.result?.output, shout: res.result?.metadata.shout };
    };
    const tallied = (count: number) =>
      waitFor(`${count} tally log lines`, () => {
        const lines = logged(server, "tally");
        return lines.length >= count ? lines[count - 1] : undefined;
      });
    const sighup = async (msg: "reloaded" | "reload failed; the running config and plugins stay") => {
      const before = logged(server, msg).length;
      server.child.kill("SIGHUP");
      return waitFor(`"${msg}" log line`, () => logged(server, msg)[before]);
    };
    try {
      // Generation 1: each plugin as installed. shout's options are {} (bare name) and its zod 3 default applied.
      expect(await call("hi there")).toEqual({ output: "Hello from greeter-1: hi there", shout: "shout-1!" });
      expect(await tallied(1)).toMatchObject({ plugin: "tally", label: "ext", mark: "tally-1", seen: 1, agent: "ext" });

      // The operator edits each plugin in place and sends SIGHUP.
      writeFileSync(files.shout, shoutSource("shout-2"));
      writeFileSync(files.tally, tallySource("tally-2"));
      writeFileSync(files.greeter, greeterSource("greeter-2"));
      expect(await sighup("reloaded")).toMatchObject({ generation: 2, pipeline: ["shout"] });
      // Deno resolves every file under node_modules as part of its npm package and drops the
      // query a reload adds to the import URL, so an npm package plugin keeps its code until a
      // restart there (src/runtime/module-cache.ts). Node imports it afresh.
      const greeterAfterReload = runtime === "deno" ? "greeter-1" : "greeter-2";
      expect(await call("again")).toEqual({ output: `Hello from ${greeterAfterReload}: again`, shout: "shout-2!" });
      // The new handler counts from its own setup.
      expect(await tallied(2)).toMatchObject({ mark: "tally-2", seen: 1 });

      // An edit with a syntax error: the reload fails naming the file, line and column; generation 2 keeps serving.
      const broken = tallySource("tally-3").replace("let seen = 0;", "let seen = ;");
      writeFileSync(files.tally, broken);
      const at = position(broken, ";\n    return {");
      const failed = await sighup("reload failed; the running config and plugins stay");
      expect(failed.generation).toBe(2);
      expect(failed.err).toContain(`${files.tally}: cannot be loaded: syntax error at ${files.tally}:${at.line}:${at.column}`);
      expect(await call("still there?")).toEqual({ output: `Hello from ${greeterAfterReload}: still there?`, shout: "shout-2!" });
      expect(await tallied(3)).toMatchObject({ mark: "tally-2", seen: 2 });
    } finally {
      client.close();
      await server.stop();
      // The CLI cases below use the plugins as installed.
      writeFileSync(files.shout, shoutSource("shout-1"));
      writeFileSync(files.tally, tallySource("tally-1"));
      writeFileSync(files.greeter, greeterSource("greeter-1"));
    }
    expect(await server.exited).toBe(0);
  });

  describe.concurrent("the CLI in the operator's folder", () => {
    /** A plugin folder of its own beside the project's, and a config using it. */
    const variant = (name: string, plugins: Record<string, string>, body: Record<string, unknown>) => {
      writeFiles(project, Object.fromEntries(Object.entries(plugins).map(([file, text]) => [`${name}/${file}`, text])));
      return config(`${name}.json`, { log: { level: "warn" }, plugins: { dirs: [name] }, ...body });
    };
    const refused = async (file: string) => {
      const { code, stdout, stderr } = await runCli(["serve", "--config", file, "--port", "0", "--http-port", "0"], {}, { cwd: project });
      expect(stdout).not.toContain('"msg":"listening"');
      expect(code).toBe(2);
      return stderr;
    };

    it("`qingyu plugins` lists each plugin with the file it came from", async () => {
      const { code, stdout, stderr } = await runCli(["plugins", "--config", config("list.json", serveConfig())], {}, { cwd: project });
      expect(stderr).toBe("");
      expect(code).toBe(0);
      const rows = pluginRows(stdout);
      expect(rows.get("shout")).toEqual({ kind: "middleware", status: "in use", source: join(project, "plugins/shout.ts") });
      expect(rows.get("tally")).toEqual({ kind: "event-handler", status: "in use", source: join(project, "plugins/tally/index.js") });
      expect(rows.get("greeter")).toEqual({
        kind: "llm-provider",
        status: "in use",
        source: `npm:qingyu-plugin-greeter (${join(project, "node_modules/qingyu-plugin-greeter/index.js")})`,
      });
    });

    it("a syntax error in a bare .ts plugin stops start-up, reported as a syntax error with the file, line and column", async () => {
      const broken = shoutSource("oops").replace("return {\n      name", "return {;\n      name");
      const file = variant("broken", { "oops.ts": broken }, { pipeline: ["oops"] });
      const at = position(broken, ";\n      name");
      const stderr = await refused(file);
      const oops = join(project, "broken/oops.ts");
      expect(stderr).toContain(`${oops}: cannot be loaded: syntax error at ${oops}:${at.line}:${at.column}`);
      expect(stderr).not.toContain("cycle");
    });

    it("a plugin made for plugin API 2 is refused, naming both versions", async () => {
      const future = `export default { apiVersion: 2, name: "future", kind: "middleware", setup() { return { name: "future", process: (_c: unknown, next: () => AsyncIterable<unknown>) => next() }; } };\n`;
      const file = variant("future", { "future.ts": future }, { pipeline: ["future"] });
      const stderr = await refused(file);
      expect(stderr).toContain(
        `${join(project, "future/future.ts")}: plugin "future" was made for plugin API 2 (@qingyu/plugin-api 2.x); this server implements plugin API 1`,
      );
    });

    it("options the npm plugin's own zod 3 schema rejects stop start-up, each key named", async () => {
      const body = { ...serveConfig(), log: { level: "warn" }, providers: { greeter: { plugin: "greeter", options: { greeting: "", tone: "loud" } } } };
      const stderr = await refused(config("bad-options.json", body));
      expect(stderr).toContain('invalid options for plugin "greeter"');
      expect(stderr).toMatch(/providers\.greeter\.options\.greeting: .*(at least 1|too small|>=1)/i);
      expect(stderr).toContain('providers.greeter.options: unknown key "tone"');
    });
  });
});
