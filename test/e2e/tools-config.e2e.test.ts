// Tool configuration a user can get wrong: the server refuses to start (exit status 2) with one
// message naming the key, and `qingyu check` reports the same without starting anything.
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { projectDir, publicApi, removeProjectDirs, writeFiles } from "../support/plugin-fixtures.ts";
import { runCli } from "../support/server-process.ts";

const api = JSON.stringify(publicApi);
afterAll(removeProjectDirs);

function project(config: Record<string, unknown>): string {
  const dir = projectDir();
  writeFiles(dir, {
    "plugins/weather.mjs": `import { definePlugin } from ${api};
export default definePlugin({ name: "weather", kind: "tool", setup: () => ({ name: "weather", description: "", inputSchema: { type: "object" }, execute: () => "sunny" }) });
`,
    // A provider that streams text but declares no capabilities: it cannot call tools.
    "plugins/plain.mjs": `import { definePlugin } from ${api};
export default definePlugin({ name: "plain", kind: "llm-provider", setup: () => ({ async *stream() { yield { type: "finish", finishReason: "stop" }; } }) });
`,
    "config.json": JSON.stringify({ server: { host: "127.0.0.1" }, log: { level: "warn" }, ...config }),
  });
  return join(dir, "config.json");
}

const serve = (config: string) => runCli(["serve", "--config", config, "--port", "0", "--http-port", "0"]);

describe.concurrent("tool config refused at start-up", () => {
  it("an agent with tools on a provider that cannot call them, naming both", async () => {
    const config = project({
      tools: { plugins: ["weather"] },
      providers: { plain: { plugin: "plain" } },
      agents: [{ id: "asker", provider: "plain", model: "p-1", tools: ["weather"] }],
    });
    const { code, stderr } = await serve(config);
    expect(code).toBe(2);
    expect(stderr).toContain('agents.0.tools: agent "asker" has tools, but its provider "plain" (plugin "plain") cannot call tools');
  });

  it("a tools pattern that matches no tool (a typo), listing the tools there are", async () => {
    const config = project({ tools: { plugins: ["weather"] }, agents: [{ id: "asker", provider: "echo", model: "echo-1", tools: ["wether", "weather"] }] });
    const { code, stderr } = await serve(config);
    expect(code).toBe(2);
    expect(stderr).toContain('agents.0.tools: "wether" matches no configured tool (tools: weather)');
  });

  it("defaults.extra smuggling tools past the loop, naming the key to use", async () => {
    const config = project({ agents: [{ id: "asker", provider: "echo", model: "echo-1", defaults: { extra: { tools: [], response_format: {} } } }] });
    const { code, stderr } = await serve(config);
    expect(code).toBe(2);
    expect(stderr).toContain("agents.0.defaults.extra.tools: is not passed through: use agents[].tools");
    expect(stderr).toContain("agents.0.defaults.extra.response_format: is not passed through: use agents[].outputSchema");
  });

  it("an MCP server section that is neither stdio nor HTTP; check reports it too", async () => {
    const config = project({ tools: { mcp: { files: { allow: ["*"] } } }, agents: [{ id: "asker", provider: "echo", model: "echo-1" }] });
    const served = await serve(config);
    expect(served.code).toBe(2);
    expect(served.stderr).toContain("tools.mcp.files");
    const checked = await runCli(["check", "--config", config]);
    expect(checked.code).not.toBe(0);
    expect(checked.stdout + checked.stderr).toContain("tools.mcp.files");
  });

  it("an output schema that does not compile", async () => {
    const config = project({
      agents: [{ id: "asker", provider: "echo", model: "echo-1", outputSchema: { type: "object", properties: { a: { type: "no-such-type" } } } }],
    });
    const { code, stderr } = await serve(config);
    expect(code).toBe(2);
    expect(stderr).toMatch(/agents\.0\.outputSchema: is not a usable JSON Schema: .*type/);
  });

  it("a backend that cannot be listed at start-up, naming it", async () => {
    const config = project({
      tools: { backends: { billing: { address: "127.0.0.1:1" } } },
      agents: [{ id: "asker", provider: "echo", model: "echo-1", tools: ["billing__*"] }],
    });
    const { code, stderr } = await serve(config);
    expect(code).toBe(2);
    expect(stderr).toMatch(/backend "billing": listing its tools failed: .*UNAVAILABLE/);
  });
});
