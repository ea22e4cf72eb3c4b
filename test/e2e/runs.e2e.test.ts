// Durable runs through the real server process (Node, or Deno with QINGYU_E2E_RUNTIME=deno):
// StartRun attached and in the background, dense sequence numbers, WatchRun replay and follow,
// idempotent starts, cancel (interrupt keeps the turn so far, rollback keeps nothing), and a
// session's second run rejected or queued.
import { existsSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { CancelMode, OnDisconnect, RunService, RunStatus, SessionBusy, type RunEvent } from "../../src/gen/qingyu/agent/v1/run_pb.ts";
import { ToolOutcome } from "../../src/gen/qingyu/agent/v1/tool_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { projectDir, publicApi, removeProjectDirs, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { serveFile, type ServerProcess } from "../support/server-process.ts";

const R = RunService.method;
const api = JSON.stringify(publicApi);

function plugins(dir: string): Record<string, string> {
  return {
    "plugins/weather.mjs": `import { definePlugin } from ${api};
export default definePlugin({ name: "weather", kind: "tool", setup: () => ({
  name: "weather", description: "", inputSchema: { type: "object" }, execute: (args) => ({ sky: "clear", ...args }),
}) });
`,
    // Waits until its signal fires, leaving a file that says it did.
    "plugins/waiter.mjs": `import { writeFileSync } from "node:fs";
import { definePlugin } from ${api};
export default definePlugin({ name: "waiter", kind: "tool", setup: () => ({
  name: "waiter", description: "", inputSchema: { type: "object", properties: { tag: { type: "string" } }, required: ["tag"] },
  execute: (args, ctx) => new Promise((_, reject) => {
    writeFileSync(${JSON.stringify(dir)} + "/" + args.tag + ".started", "");
    ctx.signal.addEventListener("abort", () => { writeFileSync(${JSON.stringify(dir)} + "/" + args.tag + ".aborted", ""); reject(ctx.signal.reason); });
  }),
}) });
`,
  };
}

const kinds = (events: RunEvent[]) => events.map((e) => e.event.case);

describe("durable runs through the server", () => {
  let dir: string;
  let server: ServerProcess;
  let client: TestClient;

  beforeAll(async () => {
    dir = projectDir();
    writeFiles(dir, plugins(dir));
    writeFiles(dir, {
      "config.json": JSON.stringify({
        server: { host: "127.0.0.1" },
        log: { level: "warn" },
        tools: { plugins: ["weather", "waiter"] },
        agents: [{ id: "clerk", provider: "echo", model: "echo-1", tools: ["weather", "waiter"] }],
        runs: { renewEveryMs: 100, pollMs: 50 },
      }),
    });
    server = await serveFile(join(dir, "config.json"), ["--port", "0", "--http-port", "0"]);
    client = new TestClient(server.grpcPort);
  });
  afterAll(async () => {
    client?.close();
    await server?.stop();
    removeProjectDirs();
  });

  const start = (task: string, options: Record<string, unknown> = {}, execute: Record<string, unknown> = {}) =>
    client.stream(RunService, R.startRun, { execute: { agentId: "clerk", task, userId: "ann", ...execute }, options });
  const events = async (call: ReturnType<typeof start>) => (await client.collect(call)).map((m) => m.event!);
  const waitStarted = (tag: string) => waitFor(`the ${tag} tool to start`, () => (existsSync(join(dir, `${tag}.started`)) ? true : undefined), 10_000);

  it("streams an attached run's events, numbered densely from 1, accepted first and completed last", async () => {
    const got = await events(start('!call weather {"city":"Oslo"}\nweather?'));
    expect(got.map((e) => Number(e.seq))).toEqual(got.map((_, i) => i + 1));
    expect(kinds(got).slice(0, 4)).toEqual(["accepted", "started", "stepStarted", "toolCallStarted"]);
    expect(kinds(got).at(-1)).toBe("completed");
    expect(kinds(got)).toEqual(expect.arrayContaining(["toolCall", "toolResult", "stepFinished", "delta"]));
    const runId = got[0]!.runId;
    expect(got.every((e) => e.runId === runId)).toBe(true);
    const { run } = await client.unary(RunService, R.getRun, { runId, userId: "ann" });
    expect(run!.status).toBe(RunStatus.COMPLETED);
    expect(run!.result!.output).toBe('[history=0] weather?\n[weather] {"sky":"clear","city":"Oslo"}');
    expect(Number(run!.lastSeq)).toBe(got.length);
  });

  it("a background run answers accepted and ends; WatchRun replays it from any point, each event once", async () => {
    const [accepted] = await events(start('!call weather {"city":"Rome"}\nand?', { background: true }));
    expect(kinds([accepted!])).toEqual(["accepted"]);
    const runId = accepted!.runId;
    const all = (await client.collect(client.stream(RunService, R.watchRun, { runId, userId: "ann" }))).map((m) => m.event!);
    expect(kinds(all).at(-1)).toBe("completed");
    expect(new Set(all.map((e) => e.seq)).size).toBe(all.length);
    const tail = (await client.collect(client.stream(RunService, R.watchRun, { runId, userId: "ann", afterSeq: all[4]!.seq }))).map((m) => m.event!);
    expect(tail.map((e) => e.seq)).toEqual(all.filter((e) => e.seq > all[4]!.seq).map((e) => e.seq));
    // Another user sees no such run.
    expect((await statusOf(client.unary(RunService, R.getRun, { runId, userId: "mallory" }))).code).toBe(5);
  });

  it("a retried StartRun with the same idempotency key gives the same run", async () => {
    const first = await events(start("!answer once\nhi", { background: true, idempotencyKey: "order-17" }));
    const again = await events(start("!answer once\nhi", { background: true, idempotencyKey: "order-17" }));
    expect(again[0]!.runId).toBe(first[0]!.runId);
    const listed = await client.unary(RunService, R.listRuns, { userId: "ann" });
    expect(listed.runs.filter((r) => r.idempotencyKey === "order-17")).toHaveLength(1);
  });

  it("cancel (interrupt) stops a running tool through its signal and keeps the turn so far; rollback keeps nothing", async () => {
    for (const [mode, tag] of [
      [CancelMode.INTERRUPT, "int-1"],
      [CancelMode.ROLLBACK, "rb-1"],
    ] as const) {
      const { session } = await client.unary(SessionService, SessionService.method.createSession, { userId: "ann", agentId: "clerk" });
      const sessionId = session!.sessionId;
      const [accepted] = await events(start(`!call waiter {"tag":"${tag}"}`, { background: true }, { sessionId }));
      await waitStarted(tag);
      const { run } = await client.unary(RunService, R.cancelRun, { runId: accepted!.runId, userId: "ann", mode });
      expect(run!.status).toBe(RunStatus.CANCELLED);
      expect(existsSync(join(dir, `${tag}.aborted`))).toBe(true);
      const all = (await client.collect(client.stream(RunService, R.watchRun, { runId: accepted!.runId, userId: "ann" }))).map((m) => m.event!);
      expect(kinds(all).at(-1)).toBe("cancelled");
      const tool = all.find((e) => e.event.case === "toolResult")!.event.value as { outcome: ToolOutcome };
      expect(tool.outcome).toBe(ToolOutcome.CANCELLED);
      const stored = await client.unary(SessionService, SessionService.method.getSession, { sessionId, userId: "ann" });
      if (mode === CancelMode.INTERRUPT) expect(stored.session!.messages.map((m) => m.role)).toEqual(["user", "assistant", "tool"]);
      else expect(stored.session!.messages).toEqual([]);
    }
  });

  it("a session's second run is refused while the first goes on, or queued behind it", async () => {
    const { session } = await client.unary(SessionService, SessionService.method.createSession, { userId: "ann", agentId: "clerk" });
    const sessionId = session!.sessionId;
    const [first] = await events(start('!call waiter {"tag":"busy-1"}', { background: true }, { sessionId }));
    await waitStarted("busy-1");
    const refused = await statusOf(client.collect(start("second", { background: true }, { sessionId })));
    expect(refused.code).toBe(9); // FAILED_PRECONDITION
    expect(refused.metadata.get("qingyu-reason")).toEqual(["SESSION_BUSY"]);
    const [queued] = await events(start("!answer queued answer\nsecond", { background: true, onSessionBusy: SessionBusy.ENQUEUE }, { sessionId }));
    expect((await client.unary(RunService, R.getRun, { runId: queued!.runId, userId: "ann" })).run!.status).toBe(RunStatus.QUEUED);
    await client.unary(RunService, R.cancelRun, { runId: first!.runId, userId: "ann" });
    const rest = (await client.collect(client.stream(RunService, R.watchRun, { runId: queued!.runId, userId: "ann" }))).map((m) => m.event!);
    expect(kinds(rest).at(-1)).toBe("completed");
    const { run } = await client.unary(RunService, R.getRun, { runId: queued!.runId, userId: "ann" });
    expect(run!.result!.output).toBe("queued answer");
  });

  it("an attached caller that disconnects with on_disconnect cancel cancels its run", async () => {
    const call = start('!call waiter {"tag":"dc-1"}', { onDisconnect: OnDisconnect.CANCEL });
    let runId = "";
    call.on("data", (m: { event?: RunEvent }) => (runId ||= m.event!.runId));
    call.on("error", () => undefined);
    await waitStarted("dc-1");
    call.cancel();
    await waitFor("the tool's signal", () => (existsSync(join(dir, "dc-1.aborted")) ? true : undefined), 10_000);
    let status: RunStatus | undefined;
    for (let i = 0; i < 100 && status !== RunStatus.CANCELLED; i++) {
      status = (await client.unary(RunService, R.getRun, { runId, userId: "ann" })).run!.status;
      if (status !== RunStatus.CANCELLED) await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe(RunStatus.CANCELLED);
  });
});
