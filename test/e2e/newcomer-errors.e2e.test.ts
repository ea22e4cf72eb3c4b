// The errors a newcomer meets in the first hour, as they see them: an agent whose
// key is not set, a typo, an OpenAI-compatible server's base URL without /v1, a
// plugin that refuses to set up, a port already taken, a variable the config
// needs. Each message is asserted whole: it is what the user reads.
import * as grpc from "@grpc/grpc-js";
import { createServer as createHttpServer, type Server } from "node:http";
import { createServer, type Server as NetServer } from "node:net";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { statusOf, TestClient } from "../support/grpc-client.ts";
import { logged, publicApi, writeFiles } from "../support/plugin-fixtures.ts";
import { runCli, runtime, startServer, writeConfig, type ServerProcess } from "../support/server-process.ts";
import { tempDir } from "../support/temp-dirs.ts";

const UNAVAILABLE = 'agent "assistant" is unavailable: OPENAI_API_KEY is not set (the agent requires it for provider "openai")';

/** The agents and providers of config/example.yaml, and one on a local server whose base URL lacks /v1. */
function config(pipeline: unknown[], localUrl: string): Record<string, unknown> {
  return {
    log: { level: "info" },
    plugins: { dirs: [] },
    pipeline,
    providers: { echo: { plugin: "echo" }, openai: { plugin: "openai" }, local: { plugin: "openai", options: { baseUrl: localUrl, apiKey: "local" } } },
    agents: [
      { id: "echo", provider: "echo", model: "echo-1" },
      { id: "assistant", provider: "openai", model: "gpt-4o-mini", requireEnv: ["OPENAI_API_KEY"] },
      { id: "local", provider: "local", model: "llama3.2" },
    ],
    executor: { retry: { maxAttempts: 1 } },
  };
}

describe("an agent configured but unavailable (OPENAI_API_KEY not set) is not a typo", () => {
  let ollama: Server;
  let localUrl: string;
  // With the validation plugin (the default pipeline), and without it (the agent call answers).
  const servers: ServerProcess[] = [];
  const clients: TestClient[] = [];
  beforeAll(async () => {
    // What Ollama answers on its root's unknown paths.
    ollama = createHttpServer((req, res) => {
      req.resume();
      res.writeHead(404, { "content-type": "text/plain" }).end("404 page not found");
    });
    await new Promise<void>((resolve) => ollama.listen(0, "127.0.0.1", resolve));
    localUrl = `http://127.0.0.1:${(ollama.address() as AddressInfo).port}`;
    servers.push(
      ...(await Promise.all([
        startServer(config(["logging", "validation"], localUrl), { OPENAI_API_KEY: "" }),
        startServer(config([], localUrl), { OPENAI_API_KEY: "" }),
      ])),
    );
    clients.push(...servers.map((s) => new TestClient(s.grpcPort)));
  });
  afterAll(async () => {
    for (const c of clients) c.close();
    await Promise.all(servers.map((s) => s.stop()));
    ollama?.closeAllConnections();
    await new Promise((resolve) => ollama?.close(resolve));
  });

  it("Execute and ExecuteStream answer FAILED_PRECONDITION naming the variable, reason AGENT_UNAVAILABLE, with or without the validation plugin", async () => {
    for (const client of clients) {
      for (const call of [
        client.unary(AgentService, AgentService.method.execute, { agentId: "assistant", task: "hello" }),
        client.collect(client.stream(AgentService, AgentService.method.executeStream, { agentId: "assistant", task: "hello" })),
      ]) {
        const { code, details, metadata } = await statusOf(call);
        expect(code).toBe(grpc.status.FAILED_PRECONDITION);
        expect(details).toBe(UNAVAILABLE);
        expect(metadata.get("qingyu-reason")).toEqual(["AGENT_UNAVAILABLE"]);
      }
    }
  });

  it("CreateSession for it says the same", async () => {
    const { code, details } = await statusOf(clients[0]!.unary(SessionService, SessionService.method.createSession, { agentId: "assistant", userId: "u1" }));
    expect(code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(details).toBe(UNAVAILABLE);
  });

  it("a typo is still NOT_FOUND, reason AGENT_NOT_FOUND", async () => {
    for (const client of clients) {
      const { code, details, metadata } = await statusOf(client.unary(AgentService, AgentService.method.execute, { agentId: "asistant", task: "hello" }));
      expect(code).toBe(grpc.status.NOT_FOUND);
      expect(details).toBe('agent "asistant" not found');
      expect(metadata.get("qingyu-reason")).toEqual(["AGENT_NOT_FOUND"]);
    }
  });

  it("curl on the HTTP port (Connect JSON) reads the same message", async () => {
    const res = await fetch(`http://127.0.0.1:${servers[0]!.httpPort}/qingyu.agent.v1.AgentService/Execute`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ agentId: "assistant", task: "hello" }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ code: "failed_precondition", message: UNAVAILABLE });
  });

  it("start-up logs it at warn, and the serving line lists it with what it misses", () => {
    const [warning] = logged(servers[0]!, UNAVAILABLE);
    expect(warning).toMatchObject({ level: 40, agent: "assistant", provider: "openai", missing: ["OPENAI_API_KEY"] });
    const [serving] = logged(servers[0]!, "serving");
    expect(serving).toMatchObject({
      level: 30,
      agents: ["echo", "local"],
      unavailableAgents: { assistant: ["OPENAI_API_KEY"] },
      providers: { echo: "echo", local: "openai" },
      pipeline: ["logging", "validation"],
      eventHandlers: [],
    });
  });

  it("qingyu check and qingyu plugins say it", async () => {
    const file = writeConfig(config(["logging", "validation"], localUrl));
    const check = await runCli(["check", "--config", file], { OPENAI_API_KEY: "" });
    expect(check.code).toBe(0);
    expect(check.stderr).toBe(`warning: ${UNAVAILABLE}; its callers get FAILED_PRECONDITION\n`);
    const plugins = await runCli(["plugins", "--config", file], { OPENAI_API_KEY: "" });
    expect(plugins.code).toBe(0);
    expect(plugins.stdout).toContain(
      "agents:\n  - echo (provider echo, model echo-1)\n  - assistant (provider openai, model gpt-4o-mini): unavailable, OPENAI_API_KEY not set\n  - local (provider local, model llama3.2)\n",
    );
    expect(plugins.stderr).toBe(`warning: ${UNAVAILABLE}; its callers get FAILED_PRECONDITION\n`);
  });

  it("an upstream 404 from a base URL without /v1 names the URL not found and the fix, not like an unknown agent", async () => {
    const { code, details, metadata } = await statusOf(clients[0]!.unary(AgentService, AgentService.method.execute, { agentId: "local", task: "hello" }));
    expect(code).toBe(grpc.status.NOT_FOUND);
    expect(details).toBe(
      `openai provider: upstream answered 404 Not Found for model "llama3.2" at POST ${localUrl}/chat/completions: 404 page not found` +
        ` (the base URL ${localUrl} has no /v1, where OpenAI-compatible servers serve the API: set the provider's baseUrl or OPENAI_BASE_URL to ${localUrl}/v1)`,
    );
    expect(metadata.get("qingyu-reason")).toEqual(["PROVIDER_REJECTED"]);
  });
});

describe("start-up failures a newcomer meets: one line, exit status 2", () => {
  let holder: NetServer;
  let taken: number;
  beforeAll(async () => {
    holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    taken = (holder.address() as AddressInfo).port;
  });
  afterAll(async () => {
    await new Promise((resolve) => holder?.close(resolve));
  });

  it("a gRPC port in use names the port and what sets it", async () => {
    const file = writeConfig({ plugins: { dirs: [] } });
    const { code, stdout, stderr } = await runCli(["serve", "--config", file, "--port", String(taken), "--http-port", "0"]);
    const line = `qingyu: port ${taken} (gRPC) is already in use on 127.0.0.1: stop what holds it, or choose another with --port, PORT or server.port\n`;
    // On Deno grpc-js binds the gRPC port itself, and logs its own "E No address added..." line first.
    if (runtime === "node") expect(stderr).toBe(line);
    else expect(stderr.endsWith(`\n${line}`)).toBe(true);
    expect(code).toBe(2);
    expect(stdout).not.toContain('"listening"');
  });

  it("an HTTP port in use, set by HTTP_PORT, says the same of the HTTP port", async () => {
    const file = writeConfig({ plugins: { dirs: [] }, server: { port: 0 } });
    const { code, stderr } = await runCli(["serve", "--config", file], { HTTP_PORT: String(taken) });
    expect(stderr).toBe(
      `qingyu: port ${taken} (HTTP) is already in use on 127.0.0.1: stop what holds it, or choose another with --http-port, HTTP_PORT or server.httpPort\n`,
    );
    expect(code).toBe(2);
  });

  it("a plugin whose setup throws a ConnectError is named in its own words, without connect's [code] prefix", async () => {
    const dir = tempDir("qingyu-e2e-");
    writeFiles(dir, {
      "plugins/needs-url.mjs": `import { Code, ConnectError, definePlugin } from ${JSON.stringify(publicApi)};
export default definePlugin({
  name: "needs-url",
  kind: "middleware",
  setup() {
    throw new ConnectError("set NEEDS_URL to the service's address", Code.FailedPrecondition);
  },
});
`,
    });
    const file = writeConfig({ server: { port: 0, httpPort: 0 }, plugins: { dirs: [join(dir, "plugins")] }, pipeline: ["needs-url"] });
    const { code, stderr } = await runCli(["serve", "--config", file]);
    expect(stderr).toBe(
      `qingyu: pipeline.0: plugin "needs-url" (${join(dir, "plugins", "needs-url.mjs")}) failed to set up: set NEEDS_URL to the service's address\n`,
    );
    expect(code).toBe(2);
  });

  it("a variable the config needs and nobody set names the key and the variable", async () => {
    const dir = tempDir("qingyu-e2e-");
    writeFiles(dir, { "config.yaml": "server:\n  host: 127.0.0.1\n  port: 0\nredis:\n  url: ${QINGYU_E2E_NEVER_SET}\n" });
    const { code, stderr } = await runCli(["serve", "--config", join(dir, "config.yaml")]);
    expect(stderr).toBe(
      `qingyu: invalid config (${join(dir, "config.yaml")}):\n  redis.url: environment variable QINGYU_E2E_NEVER_SET is not set (the value says \${QINGYU_E2E_NEVER_SET}): set it, or give a default with \${QINGYU_E2E_NEVER_SET:-default}\n`,
    );
    expect(code).toBe(2);
  });
});
