// Durable runs through the real server process (Node, or Deno with QINGYU_E2E_RUNTIME=deno):
// StartRun attached and in the background, dense sequence numbers, WatchRun replay and follow,
// idempotent starts, cancel (interrupt keeps the turn so far, rollback keeps nothing), and a
// session's second run rejected or queued; approvals asked by a tool, the agent's config or a middleware,
// and approvals that expire.
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentService } from "../../src/gen/qingyu/agent/v1/agent_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { CancelMode, OnDisconnect, RunService, RunStatus, SessionBusy, type RunEvent } from "../../src/gen/qingyu/agent/v1/run_pb.ts";
import { ToolOutcome } from "../../src/gen/qingyu/agent/v1/tool_pb.ts";
import { TestClient, statusOf } from "../support/grpc-client.ts";
import { projectDir, publicApi, removeProjectDirs, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { runCli, runProcess, serveFile, type ServerProcess } from "../support/server-process.ts";

const R = RunService.method;
const api = JSON.stringify(publicApi);

function plugins(dir: string): Record<string, string> {
  return {
    "plugins/weather.mjs": `import { definePlugin } from ${api};
export default definePlugin({ name: "weather", kind: "tool", setup: () => ({
  name: "weather", description: "", inputSchema: { type: "object" }, execute: (args) => ({ sky: "clear", ...args }),
}) });
`,
    // Needs a person's approval; leaves a file per run so the test counts its executions.
    "plugins/refund.mjs": `import { appendFileSync } from "node:fs";
import { definePlugin } from ${api};
export default definePlugin({ name: "refund", kind: "tool", setup: () => ({
  name: "refund", description: "", needsApproval: true,
  inputSchema: { type: "object", properties: { amount: { type: "number" } }, required: ["amount"] },
  execute: (args, ctx) => { appendFileSync(${JSON.stringify(dir)} + "/refunds.log", ctx.runId + " " + args.amount + "\\n"); return "refunded " + args.amount; },
}) });
`,
    // Asks for no approval itself (agents[].approval and the guard middleware do); leaves a line per run.
    "plugins/ledger.mjs": `import { appendFileSync } from "node:fs";
import { definePlugin } from ${api};
export default definePlugin({ name: "ledger", kind: "tool", setup: () => ({
  name: "ledger", description: "",
  inputSchema: { type: "object", properties: { amount: { type: "number" } }, required: ["amount"] },
  execute: (args, ctx) => { appendFileSync(${JSON.stringify(dir)} + "/ledger.log", ctx.runId + " " + args.amount + "\\n"); return "booked " + args.amount; },
}) });
`,
    // Has a person approve large ledger entries.
    "plugins/guard.mjs": `import { definePlugin } from ${api};
export default definePlugin({ name: "guard", kind: "middleware", setup: () => ({
  name: "guard",
  process: (ctx, next) => next(),
  toolCall: (ctx, { call, args }) => (call.name === "ledger" && args.amount > 100 ? { approval: "an entry of " + args.amount + " is over 100" } : undefined),
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

/** The lines a tool plugin left in `file` of `dir` for `runId` (each is "<run id> <amount>"). */
function linesOf(dir: string, file: string, runId: string): string[] {
  const path = join(dir, file);
  return existsSync(path)
    ? readFileSync(path, "utf8")
        .split("\n")
        .filter((l) => l.startsWith(`${runId} `))
    : [];
}

/** The run once GetRun says it is `status` (polled). */
async function runOnce(client: TestClient, runId: string, status: RunStatus) {
  let run;
  for (let i = 0; i < 200; i++) {
    run = (await client.unary(RunService, R.getRun, { runId, userId: "ann" })).run!;
    if (run.status === status) return run;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`run ${runId} is ${run?.status}, not ${status}`);
}

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
        pipeline: ["logging", "validation", "guard"],
        tools: { plugins: ["weather", "waiter", "refund", "ledger"] },
        agents: [
          { id: "clerk", provider: "echo", model: "echo-1", tools: ["weather", "waiter", "refund", "ledger"] },
          { id: "strict", provider: "echo", model: "echo-1", tools: ["weather", "ledger"], approval: ["led*"] },
        ],
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

  it("a tool that needs approval parks the run (an inbox lists it); the first decision stands and the run goes on", async () => {
    const refunds = () => (existsSync(join(dir, "refunds.log")) ? readFileSync(join(dir, "refunds.log"), "utf8").trim().split("\n") : []);
    const [accepted] = await events(start('!call refund {"amount":5}\nrefund please', { background: true }));
    const runId = accepted!.runId;
    let run;
    for (let i = 0; i < 100; i++) {
      run = (await client.unary(RunService, R.getRun, { runId, userId: "ann" })).run!;
      if (run.status === RunStatus.WAITING) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(run!.status).toBe(RunStatus.WAITING);
    const call = run!.pending[0]!.call!;
    expect([call.name, call.arguments, run!.pending[0]!.reason]).toEqual(["refund", '{"amount":5}', "approval"]);
    const inbox = await client.unary(RunService, R.listRuns, { userId: "ann", statuses: [RunStatus.WAITING] });
    expect(inbox.runs.map((r) => r.runId)).toContain(runId);
    expect(refunds()).toEqual([]);
    // The approver lowers the amount; a second decision changes nothing.
    const first = await client.unary(RunService, R.submitApproval, {
      runId,
      userId: "ann",
      toolCallId: call.toolCallId,
      approved: true,
      arguments: '{"amount":3}',
    });
    expect(first.decided).toBe(true);
    const again = await client.unary(RunService, R.submitApproval, { runId, userId: "ann", toolCallId: call.toolCallId, approved: false });
    expect(again.decided).toBe(false);
    const all = (await client.collect(client.stream(RunService, R.watchRun, { runId, userId: "ann" }))).map((m) => m.event!);
    expect(kinds(all)).toContain("waiting");
    expect(kinds(all).at(-1)).toBe("completed");
    const result = all.at(-1)!.event.value as { output: string; toolCalls: { outcome: ToolOutcome; arguments: string }[] };
    expect(result.toolCalls.map((c) => [c.outcome, c.arguments])).toEqual([[ToolOutcome.OK, '{"amount":3}']]);
    expect(result.output).toBe("[history=0] refund please\n[refund] refunded 3");
    expect(refunds()).toEqual([`${runId} 3`]);
  });

  it("a refusal goes to the model with the approver's message; Execute, which cannot wait, refuses such tools", async () => {
    const [accepted] = await events(start('!call refund {"amount":500}\nbig refund', { background: true }));
    const runId = accepted!.runId;
    let pending;
    for (let i = 0; i < 100 && !pending; i++) {
      pending = (await client.unary(RunService, R.getRun, { runId, userId: "ann" })).run!.pending[0];
      if (!pending) await new Promise((r) => setTimeout(r, 50));
    }
    await client.unary(RunService, R.submitApproval, {
      runId,
      userId: "ann",
      toolCallId: pending!.call!.toolCallId,
      approved: false,
      message: "over the limit",
    });
    const all = (await client.collect(client.stream(RunService, R.watchRun, { runId, userId: "ann" }))).map((m) => m.event!);
    const result = all.at(-1)!.event.value as { output: string; toolCalls: { outcome: ToolOutcome }[] };
    expect(result.toolCalls.map((c) => c.outcome)).toEqual([ToolOutcome.DENIED]);
    expect(result.output).toBe("[history=0] big refund\n[refund] refused by the person asked to approve it: over the limit");
    const plain = await client.unary(AgentService, AgentService.method.execute, { agentId: "clerk", task: '!call refund {"amount":1}\nnow', userId: "ann" });
    expect(plain.result!.toolCalls[0]).toMatchObject({ outcome: ToolOutcome.DENIED });
    expect(plain.result!.toolCalls[0]!.output).toMatch(/only a durable run \(RunService.StartRun\) can wait for/);
  });

  it("a caller's own tool parks the run until the caller answers it, here over Connect JSON with curl", async () => {
    const callerTools = [
      { name: "user_location", description: "Where the user is", inputSchema: { type: "object", properties: { precise: { type: "boolean" } } } },
    ];
    const [accepted] = await events(start('!call user_location {"precise":true}\nwhere am I?', { background: true, callerTools }));
    const runId = accepted!.runId;
    let pending;
    for (let i = 0; i < 100 && !pending; i++) {
      pending = (await client.unary(RunService, R.getRun, { runId, userId: "ann" })).run!.pending[0];
      if (!pending) await new Promise((r) => setTimeout(r, 50));
    }
    expect([pending!.reason, pending!.call!.name, pending!.call!.arguments]).toEqual(["caller", "user_location", '{"precise":true}']);
    const body = JSON.stringify({ runId, userId: "ann", results: [{ toolCallId: pending!.call!.toolCallId, output: { output: "Lisbon" } }] });
    const url = `http://127.0.0.1:${server.httpPort}/qingyu.agent.v1.RunService/SubmitToolResults`;
    const answered = await runProcess("curl", ["-sS", "-X", "POST", "-H", "content-type: application/json", "--data", body, url]);
    expect(JSON.parse(answered.stdout)).toMatchObject({ accepted: [pending!.call!.toolCallId], run: { runId } });
    const all = (await client.collect(client.stream(RunService, R.watchRun, { runId, userId: "ann" }))).map((m) => m.event!);
    const result = all.at(-1)!.event.value as { output: string };
    expect(result.output).toBe("[history=0] where am I?\n[user_location] Lisbon");
    // Answered again: nothing taken, no error.
    const again = await runProcess("curl", ["-sS", "-X", "POST", "-H", "content-type: application/json", "--data", body, url]);
    expect(JSON.parse(again.stdout).accepted ?? []).toEqual([]);
  });

  it("agents[].approval parks a run on a tool that does not ask itself; approved, it runs once; another agent's call of it does not wait", async () => {
    const [accepted] = await events(start('!call ledger {"amount":5}\nbook it', { background: true }, { agentId: "strict" }));
    const runId = accepted!.runId;
    const run = await runOnce(client, runId, RunStatus.WAITING);
    expect([run.pending[0]!.reason, run.pending[0]!.call!.name, run.pending[0]!.call!.arguments]).toEqual(["approval", "ledger", '{"amount":5}']);
    expect(linesOf(dir, "ledger.log", runId)).toEqual([]);
    const decided = await client.unary(RunService, R.submitApproval, { runId, userId: "ann", toolCallId: run.pending[0]!.call!.toolCallId, approved: true });
    expect(decided.decided).toBe(true);
    const all = (await client.collect(client.stream(RunService, R.watchRun, { runId, userId: "ann" }))).map((m) => m.event!);
    const result = all.at(-1)!.event.value as { output: string; toolCalls: { outcome: ToolOutcome }[] };
    expect(result.toolCalls.map((c) => c.outcome)).toEqual([ToolOutcome.OK]);
    expect(result.output).toBe("[history=0] book it\n[ledger] booked 5");
    expect(linesOf(dir, "ledger.log", runId)).toEqual([`${runId} 5`]);
    // Execute cannot wait, and says what asked; the clerk's own call of the same tool needs nobody.
    const plain = await client.unary(AgentService, AgentService.method.execute, { agentId: "strict", task: '!call ledger {"amount":1}\nnow', userId: "ann" });
    expect(plain.result!.toolCalls[0]).toMatchObject({ outcome: ToolOutcome.DENIED });
    expect(plain.result!.toolCalls[0]!.output).toMatch(/can wait for \(asked by agents\[\]\.approval of agent "strict"\)$/);
    const free = await events(start('!call ledger {"amount":2}\nsmall', {}, { agentId: "clerk" }));
    expect(kinds(free)).not.toContain("waiting");
    expect(linesOf(dir, "ledger.log", free[0]!.runId)).toEqual([`${free[0]!.runId} 2`]);
  });

  it("a middleware's { approval } parks the call it asks about; approved, it runs once", async () => {
    const [accepted] = await events(start('!call ledger {"amount":500}\nbig entry', { background: true }));
    const runId = accepted!.runId;
    const run = await runOnce(client, runId, RunStatus.WAITING);
    const call = run.pending[0]!.call!;
    expect([run.pending[0]!.reason, call.name, call.arguments]).toEqual(["approval", "ledger", '{"amount":500}']);
    // The approver is told why, and until when.
    expect(run.pending[0]!.note).toContain("an entry of 500 is over 100");
    const expires = Number(run.pending[0]!.expireTime!.seconds) * 1000;
    expect(expires).toBeGreaterThan(Date.now() + 3_600_000);
    expect(linesOf(dir, "ledger.log", runId)).toEqual([]);
    expect((await client.unary(RunService, R.submitApproval, { runId, userId: "ann", toolCallId: call.toolCallId, approved: true })).decided).toBe(true);
    const all = (await client.collect(client.stream(RunService, R.watchRun, { runId, userId: "ann" }))).map((m) => m.event!);
    expect((all.at(-1)!.event.value as { output: string }).output).toBe("[history=0] big entry\n[ledger] booked 500");
    // The journaled waiting event says the same as the run did.
    const waiting = all.find((e) => e.event.case === "waiting")!.event.value as { pending: { note: string; expireTime?: { seconds: bigint } }[] };
    expect([waiting.pending[0]!.note, Number(waiting.pending[0]!.expireTime!.seconds) * 1000]).toEqual([run.pending[0]!.note, expires]);
    // Asked again as the run went on, the guard's approval was the decision made: the entry is booked once.
    expect(linesOf(dir, "ledger.log", runId)).toEqual([`${runId} 500`]);
  });

  it("an agents[].approval pattern that matches none of the agent's tools stops start-up, naming it", async () => {
    writeFiles(dir, {
      "bad-approval.json": JSON.stringify({
        server: { host: "127.0.0.1" },
        tools: { plugins: ["weather", "ledger"] },
        agents: [{ id: "strict", provider: "echo", model: "echo-1", tools: ["weather"], approval: ["ledger", "weather"] }],
      }),
    });
    const { code, stderr } = await runCli(["serve", "--config", join(dir, "bad-approval.json"), "--port", "0", "--http-port", "0"]);
    expect(code).toBe(2);
    expect(stderr).toContain('agents.0.approval: "ledger" matches no tool of agent "strict" (its tools: weather)');
  });
});

describe("durable runs whose approvals expire (runs.approvalTimeoutSeconds: 1)", () => {
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
        tools: { plugins: ["refund"] },
        agents: [{ id: "clerk", provider: "echo", model: "echo-1", tools: ["refund"] }],
        runs: { renewEveryMs: 100, pollMs: 50, approvalTimeoutSeconds: 1 },
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

  it("an approval nobody decides is refused when it expires and the run completes with nobody calling; a late SubmitApproval answers decided=false", async () => {
    const startedAt = Date.now();
    const [accepted] = (
      await client.collect(
        client.stream(RunService, R.startRun, {
          execute: { agentId: "clerk", task: '!call refund {"amount":9}\nrefund', userId: "ann" },
          options: { background: true },
        }),
      )
    ).map((m) => m.event!);
    const runId = accepted!.runId;
    const run = await runOnce(client, runId, RunStatus.WAITING);
    const expireMs = Number(run.pending[0]!.expireTime!.seconds) * 1000 + run.pending[0]!.expireTime!.nanos / 1e6;
    expect(expireMs).toBeGreaterThanOrEqual(startedAt + 1000);
    expect(expireMs).toBeLessThanOrEqual(Date.now() + 1000);
    // Nobody decides: the watch ends with the run's completion.
    const all = (await client.collect(client.stream(RunService, R.watchRun, { runId, userId: "ann" }))).map((m) => m.event!);
    expect(kinds(all).at(-1)).toBe("completed");
    const result = all.at(-1)!.event.value as { output: string; toolCalls: { outcome: ToolOutcome; output: string }[] };
    expect(result.toolCalls.map((c) => c.outcome)).toEqual([ToolOutcome.DENIED]);
    expect(result.output).toMatch(/^\[history=0\] refund\n\[refund\] not run: the approval expired: nobody decided by \d{4}-\d\d-\d\dT[\d:.]+Z$/);
    expect(linesOf(dir, "refunds.log", runId)).toEqual([]);
    const late = await client.unary(RunService, R.submitApproval, { runId, userId: "ann", toolCallId: run.pending[0]!.call!.toolCallId, approved: true });
    expect(late.decided).toBe(false);
    expect(late.run!.status).toBe(RunStatus.COMPLETED);
    expect(linesOf(dir, "refunds.log", runId)).toEqual([]);
  });
});
