// Durable runs across replicas: three server processes on one PostgreSQL (sessions and the runs
// journal), the openai provider against one fake upstream that counts model calls, and tools
// that log every execution. kill -9 of the replica running a run (a) during a model step,
// (b) between a tool's dispatch and its result: another replica takes the run over after its
// lease and completes it, asking no finished step again and running no finished tool again;
// the non-idempotent tool in flight is reported UNKNOWN, the idempotent one is re-sent with the
// same key. A replica shut down gracefully hands its run over at once. A watcher on a third
// replica follows a run through its owner's kill -9 (Redis feed: every event, densely numbered); a
// run taken over is cancelled from another replica; with runs.unknownOutcome: approval the call in
// flight waits for a person, who has it sent again or recorded UNKNOWN.
import { randomUUID } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunService, RunStatus, SessionBusy, type RunEvent } from "../../src/gen/qingyu/agent/v1/run_pb.ts";
import { SessionService } from "../../src/gen/qingyu/agent/v1/session_pb.ts";
import { ToolOutcome } from "../../src/gen/qingyu/agent/v1/tool_pb.ts";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.ts";
import { TestClient } from "../support/grpc-client.ts";
import { projectDir, publicApi, removeProjectDirs, waitFor, writeFiles } from "../support/plugin-fixtures.ts";
import { signalGroup } from "../support/process-groups.ts";
import { serveFile, type ServerProcess } from "../support/server-process.ts";
import { databaseUrl, redisUrl } from "../support/services.ts";

const R = RunService.method;
const DATABASE = databaseUrl();
const schema = `faults_runs_${randomUUID().replaceAll("-", "").slice(0, 12)}`;
const api = JSON.stringify(publicApi);

/** Tools that append one JSON line per execution to `log`: what ran, with which key and attempt. */
function tools(log: string): Record<string, string> {
  const tool = (name: string, idempotent: boolean, body: string) => `import { appendFileSync } from "node:fs";
import { definePlugin } from ${api};
export default definePlugin({ name: ${JSON.stringify(name)}, kind: "tool", setup: () => ({
  name: ${JSON.stringify(name)}, description: "", inputSchema: { type: "object" }, idempotent: ${idempotent},
  execute: (args, ctx) => {
    appendFileSync(${JSON.stringify(log)}, JSON.stringify({ tool: ${JSON.stringify(name)}, key: ctx.idempotencyKey, attempt: ctx.attempt, pid: process.pid }) + "\\n");
    ${body}
  },
}) });
`;
  const holds = `if (ctx.attempt > 1) return "done on attempt " + ctx.attempt;
    return new Promise((_, reject) => ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason)));`;
  return {
    "plugins/counter.mjs": tool("counter", false, `return "counted";`),
    "plugins/hold.mjs": tool("hold", false, holds),
    "plugins/hold-idem.mjs": tool("hold_idem", true, holds),
    "plugins/approve.mjs": tool("approve", false, `return "approved and done";`).replace("idempotent: false,", "idempotent: false, needsApproval: true,"),
  };
}

describe("durable runs across three replicas, kill -9 of the owner", () => {
  let fake: FakeOpenAI;
  let dir: string;
  let toolLog: string;
  const replicas: ServerProcess[] = [];
  const clients: TestClient[] = [];
  const pool = new pg.Pool({ connectionString: DATABASE, max: 1 });

  const start = async (i: number) => {
    replicas[i] = await serveFile(join(dir, "config.json"), ["--port", "0", "--http-port", "0"]);
    clients[i] = new TestClient(replicas[i]!.grpcPort);
  };

  beforeAll(async () => {
    await pool.query(`create schema ${schema}`);
    fake = await startFakeOpenAI();
    dir = projectDir();
    toolLog = join(dir, "tools.jsonl");
    writeFiles(dir, tools(toolLog));
    writeFiles(dir, {
      "config.json": JSON.stringify({
        // A short grace: a replica shut down hands its runs over after it.
        server: { host: "127.0.0.1", shutdownGraceMs: 300 },
        log: { level: "warn" },
        postgres: { url: DATABASE },
        // Redis gives each run its live feed: a watcher on another replica than the run's sees its text deltas.
        redis: { url: redisUrl() },
        sessions: { store: "postgres", postgresSchema: schema, redisKeyPrefix: `${schema}:` },
        providers: { llm: { plugin: "openai", options: { baseUrl: fake.url, apiKey: "sk-test" } } },
        tools: { plugins: ["counter", "hold", "hold_idem", "approve"] },
        agents: [{ id: "clerk", provider: "llm", model: "fake-model", tools: ["counter", "hold", "hold_idem", "approve"] }],
        // A replica that stops renewing loses its runs after a second.
        runs: { leaseMs: 1000, renewEveryMs: 150, pollMs: 50 },
      }),
    });
    await Promise.all([0, 1, 2].map(start));
  });

  afterAll(async () => {
    for (const c of clients) c?.close();
    await Promise.all(replicas.map((s) => s?.stop("SIGKILL")));
    await fake?.close();
    await pool.query(`drop schema ${schema} cascade`).catch(() => undefined);
    await pool.end();
    removeProjectDirs();
  });

  const toolCall = (name: string, id: string) => ({ kind: "json" as const, content: "", toolCalls: [{ id, name, arguments: "{}" }] });
  const executions = () =>
    existsSync(toolLog)
      ? readFileSync(toolLog, "utf8")
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { tool: string; key: string; attempt: number; pid: number })
      : [];

  /** Starts a background run on replica `i`; its id. */
  async function background(i: number, task: string): Promise<string> {
    const [first] = await clients[i]!.collect(
      clients[i]!.stream(RunService, R.startRun, { execute: { agentId: "clerk", task, userId: "ann" }, options: { background: true } }),
    );
    return first!.event!.runId;
  }

  /** Kills replica `i` as a crash would, and starts a fresh one in its place. */
  async function crash(i: number): Promise<void> {
    signalGroup(replicas[i]!.child.pid, "SIGKILL");
    await replicas[i]!.exited;
    clients[i]!.close();
    await start(i);
  }

  /** The run's whole journal, watched from replica `i` until it ends. */
  async function watchToEnd(i: number, runId: string): Promise<RunEvent[]> {
    return (await clients[i]!.collect(clients[i]!.stream(RunService, R.watchRun, { runId, userId: "ann" }, { timeoutMs: 60_000 }))).map((m) => m.event!);
  }

  it("(a) killed during a model step: the step is asked again elsewhere; the finished step and its tool are not", async () => {
    const before = fake.requests.length;
    // Step 1 calls counter; step 2 streams slowly (the kill lands in it); step 2 asked again, fast.
    fake.enqueue(
      toolCall("counter", "call_a1"),
      { kind: "stream", chunks: Array(50).fill("slow "), delayMs: 100 },
      { kind: "stream", chunks: ["after ", "failover"] },
    );
    const runId = await background(0, "count, then talk");
    // Watched live from a replica that neither runs it nor takes it over, through the kill.
    const live: RunEvent[] = [];
    const stream = clients[2]!.stream(RunService, R.watchRun, { runId, userId: "ann" }, { timeoutMs: 60_000 });
    const watched = new Promise<void>((resolve, reject) => {
      stream.on("data", (m: { event: RunEvent }) => live.push(m.event));
      stream.on("end", resolve);
      stream.on("error", reject);
    });
    await waitFor("the watcher to see the slow step's text", () => (live.some((e) => e.event.case === "delta") ? true : undefined), 20_000);
    await crash(0);
    const events = await watchToEnd(1, runId);
    await watched;
    // Every event once, in order, text deltas too — the dead owner's, then the new owner's numbered on after them.
    expect(live.map((e) => Number(e.seq))).toEqual(live.map((_, i) => i + 1));
    const kinds = live.map((e) => e.event.case);
    const restarted = kinds.indexOf("stepRestarted");
    expect(kinds.slice(0, restarted).filter((k) => k === "delta").length).toBeGreaterThan(0);
    const text = live.slice(restarted).flatMap((e) => (e.event.case === "delta" ? [e.event.value.text] : []));
    expect(text.join("")).toBe("after failover");
    expect(Number(live.at(-1)!.seq)).toBe(Number(events.at(-1)!.seq));
    // A watcher that reconnects (to another replica, after the run ended) with the last seq it saw gets the rest, each once.
    const cursor = Math.floor(live.length / 2);
    const rest = await clients[1]!.collect(
      clients[1]!.stream(RunService, R.watchRun, { runId, userId: "ann", afterSeq: BigInt(cursor) }, { timeoutMs: 10_000 }),
    );
    expect(rest.map((m) => [Number(m.event!.seq), m.event!.event.case])).toEqual(live.slice(cursor).map((e) => [Number(e.seq), e.event.case]));
    expect(events.at(-1)!.event.case).toBe("completed");
    const result = events.at(-1)!.event.value as { output: string; steps: number; toolCalls: { outcome: ToolOutcome }[] };
    expect(result.toolCalls.map((c) => c.outcome)).toEqual([ToolOutcome.OK]);
    // Three model calls in all: step 1 once, step 2 twice (the one cut short, and the one asked again).
    expect(fake.requests.length - before).toBe(3);
    expect(events.filter((e) => e.event.case === "stepRestarted").map((e) => (e.event.value as { step: number }).step)).toEqual([2]);
    expect(executions().filter((e) => e.key.startsWith(`${runId}:`))).toHaveLength(1);
    const third = fake.requests[before + 2]!.body as { messages: { role: string; tool_call_id?: string; content: string }[] };
    expect(third.messages.filter((m) => m.role === "tool")).toEqual([{ role: "tool", tool_call_id: "call_a1", content: "counted" }]);
    const { run } = await clients[2]!.unary(RunService, R.getRun, { runId, userId: "ann" });
    expect(run!.status).toBe(RunStatus.COMPLETED);
    expect(run!.result!.output).toContain("after failover");
  });

  it("(b) killed between a tool's dispatch and its result: a non-idempotent tool is reported UNKNOWN, an idempotent one re-sent with its key", async () => {
    for (const [tool, outcome] of [
      ["hold", ToolOutcome.UNKNOWN],
      ["hold_idem", ToolOutcome.OK],
    ] as const) {
      const before = fake.requests.length;
      fake.enqueue(toolCall(tool, `call_${tool}`), { kind: "stream", chunks: ["noted"] });
      const owner = 1;
      const runId = await background(owner, `run ${tool}`);
      await waitFor(`${tool} to start`, () => (executions().some((e) => e.key === `${runId}:call_${tool}`) ? true : undefined), 20_000).catch(
        async (err: unknown) => {
          const { run } = await clients[0]!.unary(RunService, R.getRun, { runId, userId: "ann" });
          throw new Error(
            `${String(err)}: run ${JSON.stringify({ status: run?.status, error: run?.error, executions: executions() })}\n${replicas[owner]!.lines.join("\n")}`,
          );
        },
      );
      await crash(owner);
      const events = await watchToEnd(2, runId);
      expect(events.at(-1)!.event.case).toBe("completed");
      const result = events.at(-1)!.event.value as { toolCalls: { outcome: ToolOutcome; output: string }[] };
      expect(result.toolCalls.map((c) => c.outcome)).toEqual([outcome]);
      const runs = executions().filter((e) => e.key === `${runId}:call_${tool}`);
      // The non-idempotent tool ran once and is not run again; the idempotent one is re-sent, same key, next attempt.
      expect(runs.map((e) => e.attempt)).toEqual(tool === "hold" ? [1] : [1, 2]);
      expect(fake.requests.length - before).toBe(2);
      const second = fake.requests[before + 1]!.body as { messages: { role: string; content: string }[] };
      const told = second.messages.find((m) => m.role === "tool")!.content;
      if (tool === "hold") expect(told).toMatch(/whether it took effect is unknown/);
      else expect(told).toBe("done on attempt 2");
    }
  });

  it("a replica shut down gracefully hands its run over after its grace, without waiting for the lease", async () => {
    const before = fake.requests.length;
    fake.enqueue(toolCall("hold", "call_sd"), { kind: "stream", chunks: ["handed over"] });
    const runId = await background(2, "shutdown");
    await waitFor("hold to start", () => (executions().some((e) => e.key === `${runId}:call_sd`) ? true : undefined), 20_000);
    expect(await replicas[2]!.stop()).toBe(0);
    clients[2]!.close();
    await start(2);
    const events = await watchToEnd(0, runId);
    expect(events.at(-1)!.event.case).toBe("completed");
    // The tool's signal fired at shutdown: it ended (cancelled), recorded; the model was told and answered.
    const result = events.at(-1)!.event.value as { toolCalls: { outcome: ToolOutcome }[]; output: string };
    expect(result.toolCalls.map((c) => c.outcome)).toEqual([ToolOutcome.CANCELLED]);
    expect(result.output).toBe("handed over");
    expect(fake.requests.length - before).toBe(2);
  });

  it("(c) a run waiting for approval holds no process: every replica restarted, approved on one that did not start it, the tool runs once", async () => {
    const before = fake.requests.length;
    fake.enqueue(toolCall("approve", "call_ap"), { kind: "stream", chunks: ["after ", "approval"] });
    const runId = await background(0, "needs a yes");
    let run;
    for (let i = 0; i < 200; i++) {
      run = (await clients[1]!.unary(RunService, R.getRun, { runId, userId: "ann" })).run!;
      if (run.status === RunStatus.WAITING) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(run!.status).toBe(RunStatus.WAITING);
    // Nobody holds it: kill -9 the replica that ran it, restart the others too.
    await crash(0);
    for (const i of [1, 2]) {
      expect(await replicas[i]!.stop()).toBe(0);
      clients[i]!.close();
      await start(i);
    }
    expect(executions().filter((e) => e.key.startsWith(`${runId}:`))).toEqual([]);
    const decided = await clients[2]!.unary(RunService, R.submitApproval, { runId, userId: "ann", toolCallId: "call_ap", approved: true });
    expect(decided.decided).toBe(true);
    const events = await watchToEnd(1, runId);
    expect(events.at(-1)!.event.case).toBe("completed");
    expect((events.at(-1)!.event.value as { output: string }).output).toBe("after approval");
    expect(executions().filter((e) => e.key.startsWith(`${runId}:`))).toHaveLength(1);
    expect(fake.requests.length - before).toBe(2);
  });

  it("a run taken over after kill -9 is cancelled from a third replica: the new owner stops it; interrupt keeps the finished step's turn", async () => {
    const { session } = await clients[0]!.unary(SessionService, SessionService.method.createSession, { userId: "ann", agentId: "clerk" });
    const sessionId = session!.sessionId;
    const before = fake.requests.length;
    // Step 1 calls counter; step 2 is slow on the first owner (killed) and slow again on the next (cancelled).
    const slow = { kind: "stream" as const, chunks: Array(100).fill("slow "), delayMs: 100 };
    fake.enqueue(toolCall("counter", "call_cx"), slow, slow);
    const [first] = await clients[0]!.collect(
      clients[0]!.stream(RunService, R.startRun, {
        execute: { agentId: "clerk", task: "count, then cancel", userId: "ann", sessionId },
        options: { background: true },
      }),
    );
    const runId = first!.event!.runId;
    await waitFor("step 2 to reach the upstream", () => (fake.requests.length >= before + 2 ? true : undefined), 20_000);
    await crash(0);
    await waitFor("step 2 asked again by the new owner", () => (fake.requests.length >= before + 3 ? true : undefined), 20_000);
    // Asked on a replica that does not run it: the owner acts on it at its next renewal.
    await clients[2]!.unary(RunService, R.cancelRun, { runId, userId: "ann", mode: 1 /* interrupt */ });
    const events = await watchToEnd(2, runId);
    expect((await clients[2]!.unary(RunService, R.getRun, { runId, userId: "ann" })).run!.status).toBe(RunStatus.CANCELLED);
    expect(events.at(-1)!.event.case).toBe("cancelled");
    expect(events.filter((e) => e.event.case === "stepRestarted")).toHaveLength(1);
    // The counter ran once; the turn so far (the task, the call and its result) is in the session.
    expect(executions().filter((e) => e.key.startsWith(`${runId}:`))).toHaveLength(1);
    const { session: kept } = await clients[1]!.unary(SessionService, SessionService.method.getSession, { sessionId, userId: "ann" });
    expect(kept!.messages.map((m) => [m.role, m.toolCallId || m.toolCalls.map((c) => c.name).join(",") || m.content])).toEqual([
      ["user", "count, then cancel"],
      ["assistant", "counter"],
      ["tool", "call_cx"],
    ]);
    expect(fake.requests.length - before).toBe(3);
  });

  it("two StartRuns on one session through two replicas at once: reject keeps exactly one; enqueue runs both, one after the other", async () => {
    const { session } = await clients[0]!.unary(SessionService, SessionService.method.createSession, { userId: "ann", agentId: "clerk" });
    const sessionId = session!.sessionId;
    const startOn = (i: number, onSessionBusy: SessionBusy) =>
      clients[i]!.collect(
        clients[i]!.stream(RunService, R.startRun, {
          execute: { agentId: "clerk", task: "hello", userId: "ann", sessionId },
          options: { background: true, onSessionBusy },
        }),
      );
    // Slow answers, so the first run is still going when the second arrives.
    fake.enqueue({ kind: "stream", chunks: Array(10).fill("a "), delayMs: 30 }, { kind: "stream", chunks: Array(10).fill("b "), delayMs: 30 });
    const raced = await Promise.allSettled([startOn(0, SessionBusy.REJECT), startOn(1, SessionBusy.REJECT)]);
    expect(raced.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    const refused = raced.find((r) => r.status === "rejected") as PromiseRejectedResult;
    expect((refused.reason as { code: number }).code).toBe(9);
    const kept = (raced.find((r) => r.status === "fulfilled") as PromiseFulfilledResult<{ event?: RunEvent }[]>).value[0]!.event!.runId;
    await watchToEnd(2, kept);
    fake.enqueue({ kind: "stream", chunks: Array(10).fill("c "), delayMs: 30 }, { kind: "stream", chunks: Array(10).fill("d "), delayMs: 30 });
    const both = await Promise.all([startOn(0, SessionBusy.ENQUEUE), startOn(1, SessionBusy.ENQUEUE)]);
    const ids = both.map((events) => events[0]!.event!.runId);
    const journals = await Promise.all(ids.map((id) => watchToEnd(2, id)));
    expect(journals.map((j) => j.at(-1)!.event.case)).toEqual(["completed", "completed"]);
    // Never both running: one's first step starts after the other completed.
    const span = (j: RunEvent[]) => [
      Number(j.find((e) => e.event.case === "started")!.time!.seconds) * 1000 + j.find((e) => e.event.case === "started")!.time!.nanos / 1e6,
      Number(j.at(-1)!.time!.seconds) * 1000 + j.at(-1)!.time!.nanos / 1e6,
    ];
    const [[s0, e0], [s1, e1]] = journals.map(span) as [[number, number], [number, number]];
    expect(s0 >= e1 || s1 >= e0).toBe(true);
  });
});

describe("runs.unknownOutcome: approval — a call whose replica died mid-call waits for a person", () => {
  const schema2 = `${schema}_uo`;
  let fake: FakeOpenAI;
  let dir: string;
  let toolLog: string;
  const replicas: ServerProcess[] = [];
  const clients: TestClient[] = [];
  const pool = new pg.Pool({ connectionString: DATABASE, max: 1 });
  const start = async (i: number) => {
    replicas[i] = await serveFile(join(dir, "config.json"), ["--port", "0", "--http-port", "0"]);
    clients[i] = new TestClient(replicas[i]!.grpcPort);
  };

  beforeAll(async () => {
    await pool.query(`create schema ${schema2}`);
    fake = await startFakeOpenAI();
    dir = projectDir();
    toolLog = join(dir, "tools.jsonl");
    writeFiles(dir, tools(toolLog));
    writeFiles(dir, {
      "config.json": JSON.stringify({
        server: { host: "127.0.0.1" },
        log: { level: "warn" },
        postgres: { url: DATABASE },
        sessions: { store: "postgres", postgresSchema: schema2 },
        providers: { llm: { plugin: "openai", options: { baseUrl: fake.url, apiKey: "sk-test" } } },
        tools: { plugins: ["hold"] },
        agents: [{ id: "clerk", provider: "llm", model: "fake-model", tools: ["hold"] }],
        runs: { leaseMs: 1000, renewEveryMs: 150, pollMs: 50, unknownOutcome: "approval" },
      }),
    });
    await Promise.all([0, 1].map(start));
  });
  afterAll(async () => {
    for (const c of clients) c?.close();
    await Promise.all(replicas.map((s) => s?.stop("SIGKILL")));
    await fake?.close();
    await pool.query(`drop schema ${schema2} cascade`).catch(() => undefined);
    await pool.end();
    removeProjectDirs();
  });

  it("approved, the call is sent again with its key (attempt 2); refused, it is UNKNOWN and the model reads the approver's message", async () => {
    const executions = () =>
      existsSync(toolLog)
        ? readFileSync(toolLog, "utf8")
            .split("\n")
            .filter(Boolean)
            .map((l) => JSON.parse(l) as { key: string; attempt: number })
        : [];
    for (const approved of [true, false]) {
      const id = `call_uo_${approved}`;
      const before = fake.requests.length;
      fake.enqueue({ kind: "json", content: "", toolCalls: [{ id, name: "hold", arguments: "{}" }] }, { kind: "stream", chunks: ["ok"] });
      const [first] = await clients[0]!.collect(
        clients[0]!.stream(RunService, R.startRun, { execute: { agentId: "clerk", task: `hold ${approved}`, userId: "ann" }, options: { background: true } }),
      );
      const runId = first!.event!.runId;
      await waitFor("hold to start", () => (executions().some((e) => e.key === `${runId}:${id}`) ? true : undefined), 20_000);
      signalGroup(replicas[0]!.child.pid, "SIGKILL");
      await replicas[0]!.exited;
      clients[0]!.close();
      let run;
      for (let i = 0; i < 400 && run?.status !== RunStatus.WAITING; i++) {
        run = (await clients[1]!.unary(RunService, R.getRun, { runId, userId: "ann" })).run!;
        if (run.status !== RunStatus.WAITING) await new Promise((r) => setTimeout(r, 50));
      }
      expect(run!.status).toBe(RunStatus.WAITING);
      expect(run!.pending.map((p) => [p.reason, p.call!.toolCallId])).toEqual([["approval", id]]);
      expect(run!.pending[0]!.note).toMatch(/whether it took effect is unknown/);
      await clients[1]!.unary(RunService, R.submitApproval, { runId, userId: "ann", toolCallId: id, approved, message: approved ? "" : "it went through" });
      const events = (await clients[1]!.collect(clients[1]!.stream(RunService, R.watchRun, { runId, userId: "ann" }, { timeoutMs: 30_000 }))).map(
        (m) => m.event!,
      );
      const result = events.at(-1)!.event.value as { toolCalls: { outcome: ToolOutcome; output: string }[] };
      expect(events.at(-1)!.event.case).toBe("completed");
      const runs = executions().filter((e) => e.key === `${runId}:${id}`);
      if (approved) {
        expect(runs.map((e) => e.attempt)).toEqual([1, 2]);
        expect(result.toolCalls.map((c) => [c.outcome, c.output])).toEqual([[ToolOutcome.OK, "done on attempt 2"]]);
      } else {
        expect(runs.map((e) => e.attempt)).toEqual([1]);
        expect(result.toolCalls[0]!.outcome).toBe(ToolOutcome.UNKNOWN);
        const told = (fake.requests.at(-1)!.body as { messages: { role: string; content: string }[] }).messages.find((m) => m.role === "tool")!.content;
        expect(told).toMatch(/refused: it went through$/);
      }
      expect(fake.requests.length - before).toBe(2);
      await start(0);
    }
  });
});
