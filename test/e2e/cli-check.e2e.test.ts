// `qingyu check` and `qingyu plugins` through the real CLI, on configs a user
// writes: the README's shout plugin named bare, a bare openai provider entry,
// bad options, a missing plugin; and check's promise to set nothing up.
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient } from "../support/grpc-client.ts";
import { TEST_TIMEOUT_MS } from "../support/limits.ts";
import { runCli, serveFile } from "../support/server-process.ts";

const repo = resolve(import.meta.dirname, "../..");
const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

// The README's plugin, verbatim.
const SHOUT = `import { definePlugin, type RunEvent } from "@qingyu/plugin-api";
import { z } from "zod";

export default definePlugin({
  name: "shout",
  kind: "middleware",                       // or "llm-provider", "event-handler"
  configSchema: z.object({ suffix: z.string().default("!") }),
  setup({ options }) {
    return {
      name: "shout",
      async *process(ctx, next): AsyncIterable<RunEvent> {
        // before next(): pre-processing (ctx.task, ctx.principal, ctx.header("x")...)
        for await (const event of next()) {
          if (event.type === "delta") yield { type: "delta", text: event.text.toUpperCase() };
          else if (event.type === "completed") {
            // Execute answers with completed's output: keep it equal to what was streamed.
            yield { type: "delta", text: options.suffix };
            yield { type: "completed", result: { ...event.result, output: event.result.output.toUpperCase() + options.suffix } };
          } else yield event;
        }
        // after: post-processing. Not calling next() short-circuits (a cache hit).
      },
    };
  },
});
`;

/** A project folder outside the repository whose node_modules has the SDK and zod (linked to ours). */
function project(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "qingyu-check-e2e-"));
  dirs.push(dir);
  mkdirSync(join(dir, "node_modules/@qingyu"), { recursive: true });
  symlinkSync(join(repo, "node_modules/zod"), join(dir, "node_modules/zod"), "dir");
  symlinkSync(join(repo, "packages/plugin-api"), join(dir, "node_modules/@qingyu/plugin-api"), "dir");
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true });
    writeFileSync(join(dir, name), text);
  }
  return dir;
}

// Each case starts the CLI two or three times; on a busy 2-core machine one start can take seconds.
describe("qingyu check", { timeout: 2 * TEST_TIMEOUT_MS }, () => {
  it("passes the README's shout plugin named bare and a bare openai entry, and serve runs that config", async () => {
    const dir = project({
      "plugins/shout.ts": SHOUT,
      "qingyu.yaml":
        "server: { host: 127.0.0.1 }\npipeline: [logging, shout, validation]\nproviders: { echo: { plugin: echo }, openai: { plugin: openai } }\nagents: [{ id: echo, provider: echo, model: echo-1 }]\n",
    });
    const config = join(dir, "qingyu.yaml");
    const check = await runCli(["check", "--config", config]);
    expect(check.stderr).toBe("");
    expect(check.stdout).toMatch(/qingyu\.yaml: ok \(.*pipeline: logging → shout → validation\)/);
    expect(check.code).toBe(0);
    const server = await serveFile(config, ["--port", "0", "--http-port", "0"]);
    try {
      const client = new TestClient(server.grpcPort);
      const res = await client.unary(AgentService, AgentService.method.execute, { agentId: "echo", task: "hello there" }, { timeoutMs: 10_000 });
      expect(res.result?.output).toBe("[HISTORY=0] HELLO THERE!");
      const events = await client.collect(
        client.stream(AgentService, AgentService.method.executeStream, { agentId: "echo", task: "hello there" }, { timeoutMs: 10_000 }),
      );
      const streamed = events.flatMap((e) => (e.event.case === "delta" ? [e.event.value.text] : [])).join("");
      const completed = events.at(-1)?.event;
      expect(streamed).toBe("[HISTORY=0] HELLO THERE!");
      expect(completed?.case === "completed" && completed.value.output).toBe(streamed);
      client.close();
    } finally {
      await server.stop();
    }
  });

  it("names bad options, a missing plugin and a plugin of the wrong kind, all in one run, where `plugins` used to list the config as fine", async () => {
    const dir = project({
      "plugins/shout.ts": SHOUT,
      "qingyu.yaml": [
        "pipeline:",
        "  - logging",
        "  - { plugin: shout, options: { suffix: 7 } }",
        "  - redactor",
        "  - echo",
        "eventHandlers: [{ plugin: alerting, options: { level: shouting } }]",
        "",
      ].join("\n"),
    });
    const config = join(dir, "qingyu.yaml");
    const check = await runCli(["check", "--config", config]);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain(
      `qingyu: pipeline.1: invalid options for plugin "shout" (${join(dir, "plugins/shout.ts")}):\n  pipeline.1.options.suffix: Invalid input: expected string, received number`,
    );
    expect(check.stderr).toMatch(/qingyu: pipeline\.2: no middleware plugin named "redactor" \(known: .*shout/);
    expect(check.stderr).toContain('qingyu: pipeline.3: plugin "echo" (builtin) is a llm-provider, not a middleware');
    expect(check.stderr).toMatch(/qingyu: eventHandlers\.0: invalid options for plugin "alerting" \(builtin\):\n {2}eventHandlers\.0\.options\.level: /);
    expect(check.stderr).toContain("4 problems; serve would not start");

    // serve stops at the first of them, in the same words.
    const serve = await runCli(["serve", "--config", config, "--port", "0", "--http-port", "0"]);
    expect(serve.code).toBe(2);
    expect(serve.stderr).toContain(
      `qingyu: pipeline.1: invalid options for plugin "shout" (${join(dir, "plugins/shout.ts")}):\n  pipeline.1.options.suffix: Invalid input: expected string, received number`,
    );

    const plugins = await runCli(["plugins", "--config", config]);
    expect(plugins.code).toBe(2);
    expect(plugins.stdout).toMatch(/shout\s+middleware\s+in use/);
    expect(plugins.stderr).toContain('no middleware plugin named "redactor"');
  });

  it("reports every plugin file that does not load, a syntax error with its file and line, where serve stops at the first", async () => {
    const dir = project({
      "plugins/a-broken.ts": `import { definePlugin } from "@qingyu/plugin-api";\nexport default definePlugin({ name: "broken", kind: "middleware", setup() { return {; } });\n`,
      "plugins/b-shapeless.mjs": "export default { kind: 'middleware' };\n",
      "plugins/shout.ts": SHOUT,
      "qingyu.yaml": "plugins: { dirs: [plugins] }\npipeline: [shout]\n",
    });
    const check = await runCli(["check", "--config", join(dir, "qingyu.yaml")]);
    expect(check.code).toBe(2);
    expect(check.stderr).toContain(`qingyu: ${join(dir, "plugins/a-broken.ts")}: cannot be loaded: syntax error at ${join(dir, "plugins/a-broken.ts")}:2:`);
    expect(check.stderr).toContain(`qingyu: ${join(dir, "plugins/b-shapeless.mjs")}: plugin has no name`);
    expect(check.stderr).toContain("2 problems; serve would not start");
  });

  it("passes the configurations the repository ships: npm start's, compose's with the environment compose.yaml gives it, and durable's", async () => {
    // Its openai agent needs OPENAI_API_KEY: without one it is unavailable, a warning, not an error.
    const example = await runCli(["check", "--config", join(repo, "config/example.yaml")], { OPENAI_API_KEY: "" });
    expect(example.stderr).toBe(
      'warning: agent "assistant" is unavailable: OPENAI_API_KEY is not set (the agent requires it for provider "openai"); its callers get FAILED_PRECONDITION\n',
    );
    expect(example.code).toBe(0);
    // Host names that resolve only inside compose: check connects to nothing, so it does not care.
    const env = { REDIS_URL: "redis://redis:6379", DATABASE_URL: "postgres://qingyu:qingyu@postgres:5432/qingyu", OPENAI_API_KEY: "sk-test" };
    const compose = await runCli(["check", "--config", join(repo, "config/compose.yaml")], env);
    expect(compose.stderr).toBe("");
    expect(compose.stdout).toContain("ok (");
    expect(compose.code).toBe(0);
    // The durable one, with the two URLs its README lines give it.
    const durable = await runCli(["check", "--config", join(repo, "config/durable.yaml")], env);
    expect(durable.stderr).toBe("");
    expect(durable.stdout).toContain("ok (");
    expect(durable.code).toBe(0);
  });

  it("sets nothing up and connects to nothing: a setup with side effects does not run, unreachable stores do not matter", async () => {
    const dir = project({
      "plugins/marker.mjs": `import { writeFileSync } from "node:fs";
import { definePlugin } from "@qingyu/plugin-api";
export default definePlugin({ name: "marker", kind: "middleware", setup({ resolvePath }) {
  writeFileSync(resolvePath("set-up"), "yes");
  return { name: "marker", process: (ctx, next) => next() };
} });
`,
      "qingyu.yaml":
        "pipeline: [marker]\nsessions: { store: redis+postgres }\nredis: { url: 'redis://127.0.0.1:1' }\npostgres: { url: 'postgres://postgres@127.0.0.1:1/test' }\n",
      "tls.yaml": "server: { tls: { cert: missing.pem, key: missing.key } }\n",
    });
    const check = await runCli(["check", "--config", join(dir, "qingyu.yaml")]);
    expect(check.stderr).toBe("");
    expect(check.code).toBe(0);
    expect(existsSync(join(dir, "set-up"))).toBe(false);
    // What serve reads before anything else, check reads too: a certificate file that is not there.
    const tls = await runCli(["check", "--config", join(dir, "tls.yaml")]);
    expect(tls.code).toBe(2);
    expect(tls.stderr).toContain(`qingyu: invalid config: server.tls.cert: cannot read ${join(dir, "missing.pem")}`);
  });
});
