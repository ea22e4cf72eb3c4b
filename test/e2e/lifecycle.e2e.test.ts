import * as grpc from "@grpc/grpc-js";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/gen/grpc/health/v1/health_pb.ts";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { EventService } from "../../src/gen/qingyu/agent/v1/event_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { runCli, runtime, startServer, writeConfig } from "../support/server-process.ts";
import { tempDir } from "../support/temp-dirs.ts";

const A = AgentService.method;
const publicApi = pathToFileURL(resolve(import.meta.dirname, "../../src/index.ts")).href;

function pluginDir(files: Record<string, string>): string {
  const dir = tempDir("qingyu-plugins-");
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

describe("server lifecycle", () => {
  it("drains on SIGTERM: NOT_SERVING at once, new calls UNAVAILABLE, the call in flight finishes, exit 0", async () => {
    const server = await startServer({
      log: { level: "warn" },
      server: { shutdownGraceMs: 10_000 },
      providers: { slow: { plugin: "echo", options: { tokenDelayMs: 60 } } },
      agents: [{ id: "slow", provider: "slow", model: "m" }],
      plugins: { dirs: [] },
    });
    const client = new TestClient(server.grpcPort);
    try {
      const call = client.stream(AgentService, A.executeStream, { agentId: "slow", task: "one two three four five six seven eight" });
      const events: string[] = [];
      const finished = new Promise<void>((res, rej) => {
        call.on("data", (m) => events.push(m.event.case ?? ""));
        call.on("end", res);
        call.on("error", rej);
      });
      const watched: HealthCheckResponse_ServingStatus[] = [];
      const watch = client.stream(Health, Health.method.watch, {});
      watch.on("data", (m) => watched.push(m.status));
      const watchEnded = statusOf(client.collect(watch));
      const subscription = statusOf(client.collect(client.stream(EventService, EventService.method.subscribe, {})));
      while (!events.includes("delta") || watched.length === 0) await new Promise((r) => setTimeout(r, 10));
      server.child.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 100));

      const health = await client.unary(Health, Health.method.check, {});
      expect(health.status).toBe(HealthCheckResponse_ServingStatus.NOT_SERVING);
      const refused = await statusOf(client.unary(AgentService, A.execute, { agentId: "slow", task: "late" }));
      expect(refused.code).toBe(grpc.status.UNAVAILABLE);

      // Subscriptions end at once, so their clients reconnect to another replica.
      expect((await subscription).code).toBe(grpc.status.UNAVAILABLE);
      await finished;
      expect(events.at(-1)).toBe("completed");
      // A health watch reports NOT_SERVING, then ends with the server.
      expect(watched).toEqual([HealthCheckResponse_ServingStatus.SERVING, HealthCheckResponse_ServingStatus.NOT_SERVING]);
      expect((await watchEnded).code).toBe(grpc.status.UNAVAILABLE);
      expect(events.filter((e) => e === "delta")).toHaveLength(9);
      expect(await server.exited).toBe(0);
    } finally {
      client.close();
      await server.stop("SIGKILL");
    }
  });

  it("cancels calls still running when the grace period ends, then exits 0", async () => {
    const server = await startServer({
      log: { level: "warn" },
      server: { shutdownGraceMs: 300 },
      providers: { slow: { plugin: "echo", options: { tokenDelayMs: 200 } } },
      agents: [{ id: "slow", provider: "slow", model: "m" }],
      plugins: { dirs: [] },
    });
    const client = new TestClient(server.grpcPort);
    try {
      const pending = statusOf(client.unary(AgentService, A.execute, { agentId: "slow", task: "a b c d e f g h i j k l m n o p" }));
      await new Promise((r) => setTimeout(r, 200));
      server.child.kill("SIGTERM");
      expect((await pending).code).toBe(grpc.status.UNAVAILABLE);
      expect(await server.exited).toBe(0);
    } finally {
      client.close();
    }
  });

  // Under Deno a write to a full stdout pipe blocks the whole server (seen: calls stop after
  // ~100 KiB of unread log lines), so there the case is left to the operator: read stdout.
  it.skipIf(runtime === "deno")("exits on SIGTERM even when nobody reads its stdout any more", async () => {
    const server = await startServer({ log: { level: "info" }, agents: [{ id: "echo", provider: "echo", model: "m" }], plugins: { dirs: [] } });
    const client = new TestClient(server.grpcPort);
    try {
      // Stop reading: the pipe and Node's buffer fill with per-call log lines.
      server.child.stdout!.pause();
      server.child.stdout!.removeAllListeners("data");
      const requests = Array.from({ length: 100 }, (_, i) => ({ agentId: "echo", task: `fill the pipe with line ${i} ${"x".repeat(200)}` }));
      for (let i = 0; i < 15; i++) await client.unary(AgentService, A.executeBatch, { requests, maxConcurrency: 16 });
      server.child.kill("SIGTERM");
      const outcome = await Promise.race([server.exited, new Promise((r) => setTimeout(() => r("still running after 5 s"), 5000))]);
      expect(outcome).toBe(0);
    } finally {
      client.close();
      await server.stop("SIGKILL");
    }
  });

  it("loads a user's .ts middleware plugin from a plugin directory, in config order", async () => {
    const dir = pluginDir({
      "shout.ts": `import { definePlugin, type RunEvent } from ${JSON.stringify(publicApi)};
export default definePlugin({
  name: "shout",
  kind: "middleware",
  setup() {
    return {
      name: "shout",
      async *process(ctx, next): AsyncIterable<RunEvent> {
        for await (const e of next()) {
          if (e.type === "completed") yield { type: "delta", text: ctx.header("x-shout-suffix") ?? "" };
          yield e.type === "delta" ? { type: "delta", text: e.text.toUpperCase() } : e;
        }
      },
    };
  },
});
`,
      "notes.txt": "not a plugin, ignored",
    });
    const server = await startServer({
      log: { level: "warn" },
      pipeline: ["logging", "validation", "shout"],
      agents: [{ id: "echo", provider: "echo", model: "m" }],
      plugins: { dirs: [dir] },
    });
    const client = new TestClient(server.grpcPort);
    try {
      const events = await client.collect(
        client.stream(AgentService, A.executeStream, { agentId: "echo", task: "quiet words" }, { metadata: { "x-shout-suffix": "!!" } }),
      );
      const text = events.map((e) => (e.event.case === "delta" ? e.event.value.text : "")).join("");
      // Request metadata reaches middleware through ctx.header.
      expect(text).toBe("[HISTORY=0] QUIET WORDS!!");
    } finally {
      client.close();
      await server.stop();
    }
  });

  it("runs the repository's example plugin when the pipeline names it", async () => {
    const server = await startServer({
      log: { level: "warn" },
      pipeline: ["first-token-timing", "validation"],
      agents: [{ id: "echo", provider: "echo", model: "m" }],
      plugins: { dirs: [resolve(import.meta.dirname, "../../plugins")] },
    });
    const client = new TestClient(server.grpcPort);
    try {
      const res = await client.unary(AgentService, A.execute, { agentId: "echo", task: "hi" });
      expect(Number(res.result?.metadata.first_token_ms)).toBeGreaterThanOrEqual(0);
    } finally {
      client.close();
      await server.stop();
    }
  });

  it.each([
    ["an unknown key", { server: { prot: 1 } }, 'server: unknown key "prot"'],
    ["a bad value", { server: { shutdownGraceMs: -5 } }, "server.shutdownGraceMs"],
    ["an agent on a missing provider", { agents: [{ id: "a", provider: "nope", model: "m" }] }, 'agents.0.provider: no provider named "nope"'],
    ["a middleware that does not exist", { pipeline: ["logging", "nope"] }, 'pipeline.1: no middleware plugin named "nope"'],
    ["bad plugin options", { pipeline: [{ plugin: "validation", options: { maxTaskBytes: "big" } }] }, "pipeline.0.options.maxTaskBytes"],
  ])("refuses to start with %s: exit 2 and a message naming it", async (_name, config, message) => {
    const { code, stderr } = await runCli(["serve", "--config", writeConfig({ plugins: { dirs: [] }, ...config }), "--port", "0", "--http-port", "0"]);
    expect(code).toBe(2);
    expect(stderr).toContain(message);
  });

  it("refuses to start when a plugin file is broken, naming the file", async () => {
    const dir = pluginDir({ "broken.mjs": "export default {{ syntax error" });
    const { code, stderr } = await runCli(["serve", "--config", writeConfig({ plugins: { dirs: [dir] } }), "--port", "0", "--http-port", "0"]);
    expect(code).toBe(2);
    expect(stderr).toContain(join(dir, "broken.mjs"));
  });

  it("rejects a bad --port flag with exit 2", async () => {
    const { code, stderr } = await runCli(["serve", "--port", "banana"]);
    expect(code).toBe(2);
    expect(stderr).toContain("--port");
  });
});
