// The server's log as a person and a collector read it: LOG_FORMAT=pretty (what a
// terminal gets), JSON otherwise, and the start-up line saying what is served.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { afterAll, describe, expect, it } from "vitest";
import { parseConfigText } from "../../src/config/interpolate.mjs";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { statusOf, TestClient } from "../support/grpc-client.ts";
import { logged, waitFor } from "../support/plugin-fixtures.ts";
import { runtime, spawnTracked, startServer, writeConfig, type ServerProcess } from "../support/server-process.ts";

const repo = resolve(import.meta.dirname, "../..");
const bin = join(repo, "bin/qingyu.mjs");

const config = {
  log: { level: "info" },
  plugins: { dirs: [] },
  pipeline: ["logging", "validation"],
  eventHandlers: ["alerting"],
  providers: { echo: { plugin: "echo" } },
  agents: [
    { id: "echo", provider: "echo", model: "echo-1" },
    { id: "assistant", provider: "openai", model: "gpt-4o-mini", requireEnv: ["OPENAI_API_KEY"] },
  ],
};

describe("the server's log", () => {
  const servers: ServerProcess[] = [];
  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
  });

  it("in a pipe it is JSON lines, and start-up says what it serves before listening", async () => {
    const server = await startServer(config, { OPENAI_API_KEY: "" });
    servers.push(server);
    const msgs = server.lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    expect(msgs.indexOf("serving")).toBeLessThan(msgs.indexOf("listening"));
    expect(logged(server, "serving")).toEqual([
      expect.objectContaining({
        level: 30,
        generation: 1,
        agents: ["echo"],
        unavailableAgents: { assistant: ["OPENAI_API_KEY"] },
        providers: { echo: "echo" },
        pipeline: ["logging", "validation"],
        eventHandlers: ["alerting"],
      }),
    ]);
  });

  it.runIf(runtime === "node")("LOG_FORMAT=pretty writes lines a person reads: time, level, message, then the fields", async () => {
    const child = spawnTracked(process.execPath, [bin, "serve", "--config", writeConfig(config), "--port", "0", "--http-port", "0"], {
      env: { ...process.env, LOG_FORMAT: "pretty", OPENAI_API_KEY: "" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const lines: string[] = [];
    const exited = new Promise((res) => child.once("exit", res));
    await new Promise<void>((res, rej) => {
      createInterface({ input: child.stdout! }).on("line", (line) => {
        lines.push(line);
        if (line.includes("INFO: listening")) res();
      });
      void exited.then(() => rej(new Error(`the server exited before listening:\n${lines.join("\n")}`)));
    });
    child.kill("SIGTERM");
    await exited;
    const [warn, serving, listening] = lines;
    expect(warn).toMatch(
      /^\[\d\d:\d\d:\d\d\.\d{3}\] WARN: agent "assistant" is unavailable: OPENAI_API_KEY is not set \(the agent requires it for provider "openai"\) \{"agent":"assistant","provider":"openai","missing":\["OPENAI_API_KEY"\]\}$/,
    );
    expect(serving).toMatch(/^\[[\d:.]+\] INFO: serving \{"generation":1,"agents":\["echo"\],"unavailableAgents":\{"assistant":\["OPENAI_API_KEY"\]\}/);
    expect(listening).toMatch(/^\[[\d:.]+\] INFO: listening \{"grpcPort":\d+,"httpPort":\d+,"host":"127\.0\.0\.1","runtime":"node"\}$/);
  });

  it("config/example.yaml alerts at error on the server's trouble, not on a client's cancel", async () => {
    // npm start's config as it is, but for an echo slow enough to be cancelled mid-answer.
    const example = parseConfigText(readFileSync(join(repo, "config/example.yaml"), "utf8"), "yaml", {}) as Record<string, any>;
    example.providers.echo.options = { tokenDelayMs: 200 };
    example.plugins.dirs = [];
    const server = await startServer(example, { OPENAI_API_KEY: "" });
    servers.push(server);
    const client = new TestClient(server.grpcPort);
    try {
      const call = client.stream(AgentService, AgentService.method.executeStream, { agentId: "echo", task: "one two three four five six" });
      call.on("data", () => call.cancel());
      await statusOf(client.collect(call));
      const cancelLine = await waitFor("the logging plugin's line for the cancel", () =>
        logged(server, "call cancelled").find((l) => l.status === "CANCELLED"),
      );
      // A client hanging up is not the server's failure: logged at the level of a call that succeeded (info), not warn.
      expect(cancelLine.level).toBe(30);
      // A failure of the server's own (the agent's key is not set): alerting logs it at error. Events are
      // handled in order, so once it is logged the cancel's event has been handled too.
      await statusOf(client.unary(AgentService, AgentService.method.execute, { agentId: "assistant", task: "x" }));
      await waitFor("the alert", () => logged(server, "agent call failed: FAILED_PRECONDITION")[0]);
      const errors = server.lines.map((l) => JSON.parse(l) as { level: number; msg: string; code?: string }).filter((l) => l.level >= 50);
      expect(errors).toEqual([expect.objectContaining({ msg: "agent call failed: FAILED_PRECONDITION", code: "FAILED_PRECONDITION" })]);
    } finally {
      client.close();
    }
  });
});
