// User plugins that fail at call time: a middleware that throws, rejects, throws mid-stream or
// never resolves; a provider that throws; event handlers that throw or reject. (plugins.e2e
// covers plugins that fail at load or setup.) Each: the caller gets a status, other calls are
// unaffected, and nothing reaches the server's stderr as an unhandled rejection.
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { logged, projectDir, publicApi, removeProjectDirs, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { startServer, type ServerProcess } from "../support/server-process.ts";
import { crashLines, expectServing } from "./support.ts";

const A = AgentService.method;
const api = JSON.stringify(publicApi);

// One middleware per failure, each acting only when the x-fault header names it, so one
// server serves the faulty calls and the healthy ones side by side.
const faulty = (name: string, body: string) => `import { definePlugin, type RunEvent } from ${api};
export default definePlugin({
  name: ${JSON.stringify(name)},
  kind: "middleware",
  setup() {
    return {
      name: ${JSON.stringify(name)},
      ${body}
    };
  },
});
`;

const fixtures = {
  // Not a generator: the throw happens when the pipeline calls process().
  "throws.ts": faulty("throws", `process(ctx, next) { if (ctx.header("x-fault") === "throws") throw new Error("plugin bug: sync throw"); return next(); },`),
  "throws-string.ts": faulty("throws-string", `process(ctx, next) { if (ctx.header("x-fault") === "throws-string") throw "a bare string"; return next(); },`),
  "rejects.ts": faulty(
    "rejects",
    `async *process(ctx, next): AsyncIterable<RunEvent> {
        if (ctx.header("x-fault") === "rejects") { await new Promise((r) => setTimeout(r, 5)); throw new Error("plugin bug: async rejection"); }
        yield* next();
      },`,
  ),
  "throws-mid-stream.ts": faulty(
    "throws-mid-stream",
    `async *process(ctx, next): AsyncIterable<RunEvent> {
        for await (const e of next()) {
          yield e;
          if (e.type === "delta" && ctx.header("x-fault") === "throws-mid-stream") throw new Error("plugin bug: after a delta");
        }
      },`,
  ),
  // Never resolves and ignores ctx.signal: only the caller's deadline ends the call.
  // Its dispose() logs, so a test can see when its generation was let go.
  "hangs.ts": faulty(
    "hangs",
    `async *process(ctx, next): AsyncIterable<RunEvent> {
        if (ctx.header("x-fault") === "hangs") await new Promise(() => {});
        yield* next();
      },
      dispose() { console.log(JSON.stringify({ msg: "hangs disposed" })); },`,
  ),
  // Leaves a rejected promise nobody awaits: a plugin bug that would end a default Node process.
  "forgets.ts": faulty(
    "forgets",
    `process(ctx, next) { if (ctx.header("x-fault") === "forgets") void Promise.reject(new Error("plugin bug: forgotten promise")); return next(); },`,
  ),
  "broken-provider.ts": `import { definePlugin } from ${api};
export default definePlugin({ name: "broken-provider", kind: "llm-provider", setup() { return { stream() { throw new TypeError("provider bug"); } }; } });
`,
  "bad-handlers.ts": `import { definePlugin } from ${api};
export default definePlugin({
  name: "bad-handlers",
  kind: "event-handler",
  setup() {
    return { types: "any", handle(event) { if (event.type === "AGENT_STARTED") throw new Error("handler bug: sync"); return Promise.reject(new Error("handler bug: async")); } };
  },
});
`,
};

describe("plugins that fail at call time", () => {
  let server: ServerProcess;
  let client: TestClient;
  const as = (fault: string, timeoutMs = 10_000) => ({ metadata: { "x-fault": fault }, timeoutMs });

  beforeAll(async () => {
    const dir = projectDir();
    writeFiles(dir, Object.fromEntries(Object.entries(fixtures).map(([file, text]) => [`plugins/${file}`, text])));
    server = await startServer({
      log: { level: "warn" },
      server: { shutdownGraceMs: 2000 },
      pipeline: ["logging", "validation", "throws", "throws-string", "rejects", "throws-mid-stream", "hangs", "forgets"],
      eventHandlers: ["bad-handlers"],
      providers: { echo: { plugin: "echo" }, broken: { plugin: "broken-provider" } },
      agents: [
        { id: "echo", provider: "echo", model: "echo-1" },
        { id: "broken", provider: "broken", model: "b" },
      ],
      plugins: { dirs: [`${dir}/plugins`] },
    });
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop("SIGKILL");
    removeProjectDirs();
  });

  it.each(["throws", "throws-string", "rejects"])("a middleware that %s: INTERNAL on Execute and ExecuteStream, logged, other calls fine", async (fault) => {
    const unary = await statusOf(client.unary(AgentService, A.execute, { agentId: "echo", task: "hi" }, as(fault)));
    const stream = await statusOf(client.collect(client.stream(AgentService, A.executeStream, { agentId: "echo", task: "hi" }, as(fault))));
    for (const s of [unary, stream]) {
      expect(grpc.status[s.code], s.details).toBe("INTERNAL");
      // The caller learns nothing of the plugin's internals beyond the message.
      expect(s.details).toMatch(/^internal error: /);
    }
    // Log lines go out in batches (at most 200 ms late).
    await waitFor("the internal error log line", () => (logged(server, "internal error").length > 0 ? true : undefined), 2000);
    await expectServing(server);
  });

  it("a middleware that throws after the first delta: the client keeps what came, then INTERNAL", async () => {
    const kinds: string[] = [];
    const call = client.stream(AgentService, A.executeStream, { agentId: "echo", task: "one two three" }, as("throws-mid-stream"));
    call.on("data", (m) => kinds.push(m.event.case ?? ""));
    const s = await statusOf(client.collect(call));
    expect(grpc.status[s.code]).toBe("INTERNAL");
    expect(kinds).toEqual(["started", "delta"]);
    await expectServing(server);
  });

  it("a middleware that leaves a rejected promise unhandled: the call succeeds, the rejection is logged, the process keeps serving", async () => {
    const res = await client.unary(AgentService, A.execute, { agentId: "echo", task: "hi" }, as("forgets"));
    expect(res.result?.output).toBe("[history=0] hi");
    await waitFor(
      "the unhandled-rejection log line",
      () => (logged(server, "unhandled promise rejection (a plugin bug?); the server keeps serving").length > 0 ? true : undefined),
      2000,
    );
    expect(server.child.exitCode).toBeNull();
    await expectServing(server);
  });

  it("a provider whose stream() throws: INTERNAL, and the echo agent next to it answers", async () => {
    const s = await statusOf(client.unary(AgentService, A.execute, { agentId: "broken", task: "hi" }));
    expect(grpc.status[s.code]).toBe("INTERNAL");
    expect(s.details).toContain("provider bug");
    await expectServing(server);
  });

  it("a middleware that never resolves is cut by the client's deadline (DEADLINE_EXCEEDED); calls beside it are served meanwhile", async () => {
    const started = Date.now();
    const hung = statusOf(client.unary(AgentService, A.execute, { agentId: "echo", task: "hi" }, as("hangs", 500)));
    const hungStream = statusOf(client.collect(client.stream(AgentService, A.executeStream, { agentId: "echo", task: "hi" }, as("hangs", 500))));
    await expectServing(server);
    for (const s of await Promise.all([hung, hungStream])) expect(grpc.status[s.code]).toBe("DEADLINE_EXCEEDED");
    expect(Date.now() - started).toBeLessThan(2000);
    await expectServing(server);
  });

  it("a hung stream does not keep its generation alive past its deadline: a reload disposes the old plugins at once", async () => {
    const hung = await statusOf(client.collect(client.stream(AgentService, A.executeStream, { agentId: "echo", task: "hi" }, as("hangs", 300))));
    expect(grpc.status[hung.code]).toBe("DEADLINE_EXCEEDED");
    const before = logged(server, "hangs disposed").length;
    server.child.kill("SIGHUP");
    // The old generation goes once no call holds it; the hung stream's generator is still parked.
    await waitFor("the old generation's dispose", () => (logged(server, "hangs disposed").length > before ? true : undefined), 3000);
    await expectServing(server);
  });

  it("event handlers that throw and reject affect no call; no unhandled rejection anywhere; SIGTERM still exits 0", async () => {
    // Every call above published AGENT_STARTED (sync throw) and other events (rejections).
    const res = await client.unary(AgentService, A.execute, { agentId: "echo", task: "after all that" });
    expect(res.result?.output).toBe("[history=0] after all that");
    const failures = logged(server, "event handler failed").map((l) => (l.err as { message?: string })?.message);
    expect(new Set(failures)).toEqual(new Set(["handler bug: sync", "handler bug: async"]));
    expect(crashLines(server)).toEqual([]);
    expect(server.child.exitCode).toBeNull();
    const signalled = Date.now();
    expect(await server.stop(), server.stderr()).toBe(0);
    // Prompt even though the hung middleware never returns: its calls stopped counting as in
    // flight when their deadlines passed, so there is nothing to wait the grace period (2 s) for.
    expect(Date.now() - signalled).toBeLessThan(1500);
    expect(crashLines(server)).toEqual([]);
  });
});
