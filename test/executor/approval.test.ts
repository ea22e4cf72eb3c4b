// Calls a person decides: the tool's needsApproval, the agent's config (agents[].approval) and a
// middleware's { approval } park a durable run's step (prepare()), a decision made stands, an
// expired one is a refusal; and a call a dead replica left unfinished, per runs.unknownOutcome
// (settleUnfinished), through the executor as a taken-over run goes on from its journal.
import {
  type AgentContext,
  type AgentDefinition,
  type LlmProvider,
  type Middleware,
  type ProviderChunk,
  type ProviderRequest,
  type RunEvent,
  type Tool,
  type ToolCall,
  type ToolCallRecord,
  type ToolContext,
} from "@qingyu/plugin-api";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import type { Decision } from "../../src/executor/resume.ts";
import { runStepTools, ToolRunState } from "../../src/executor/tool-step.ts";
import { expiredDecision } from "../../src/runs/parked.ts";
import { resumeFromJournal } from "../../src/runs/resume-state.ts";
import type { PendingCall, RunLogEvent, SequencedEvent } from "../../src/runs/types.ts";
import type { SessionStore } from "../../src/sessions/types.ts";
import { ToolCatalog } from "../../src/tools/catalog.ts";
import { testExecutor } from "../support/executor.ts";

const log = pino({ level: "silent" });

/** A tool that records each run of it (its arguments and context). */
function tool(name: string, spec: Partial<Tool> = {}) {
  const runs: { args: unknown; ctx: ToolContext }[] = [];
  const t: Tool & { runs: typeof runs } = {
    name,
    description: "",
    inputSchema: { type: "object", properties: { amount: { type: "number" } } },
    ...spec,
    runs,
    execute: (args, ctx) => {
      runs.push({ args, ctx });
      return `${name} done`;
    },
  };
  return t;
}

function agent(overrides: Partial<AgentDefinition> = {}): AgentDefinition {
  return { id: "clerk", description: "", provider: "model", model: "m", systemPrompt: "", defaults: {}, tools: ["*"], ...overrides };
}

const call = (id: string, name: string, args = '{"amount":5}'): ToolCall => ({ id, name, arguments: args });

/** One step's calls through runStepTools: the events it yields and what it returns. */
async function step(
  calls: ToolCall[],
  tools: Tool[],
  options: { durable?: boolean; decisions?: [string, Decision][]; middleware?: Middleware[]; approval?: string[] } = {},
) {
  const catalog = new ToolCatalog(
    tools.map((t) => ({ tool: t, source: "test" })),
    new Map(options.approval ? [["clerk", options.approval]] : []),
  );
  const state = new ToolRunState(10, 4, options.durable ?? true);
  state.decisions = new Map(options.decisions ?? []);
  const scope = {
    runId: "run-1",
    agentId: "clerk",
    userId: "ann",
    principal: undefined,
    sessionId: "",
    signal: new AbortController().signal,
    deadline: undefined,
    log,
    defaultTimeoutMs: 5_000,
    abandonAfterMs: 100,
    maxOutputBytes: 4096,
  };
  // The hooks below read nothing of the context.
  const hooks = { ctx: {} as AgentContext, middleware: options.middleware ?? [] };
  const events: RunEvent[] = [];
  const gen = runStepTools(calls, 1, catalog.forAgent(agent()), state, scope, hooks, undefined);
  for (;;) {
    const next = await gen.next();
    if (next.done) return { events, returned: next.value };
    events.push(next.value);
  }
}

const records = (events: RunEvent[]) => events.flatMap((e) => (e.type === "tool_result" ? [e.record] : []));

const asking = (name: string, reason: string): Middleware => ({
  name,
  process: (_ctx, next) => next(),
  toolCall: (_ctx, info) => (info.call.name === "refund" ? { approval: reason } : undefined),
});

describe("prepare(): calls that need a person", () => {
  it("agents[].approval parks a durable run's step, naming the config to the approver; none of the step runs yet", async () => {
    const refund = tool("refund");
    const lookup = tool("lookup");
    const { events, returned } = await step([call("c1", "lookup"), call("c2", "refund")], [refund, lookup], { approval: ["ref*"] });
    expect(returned).toBe("parked");
    expect(events).toEqual([
      {
        type: "waiting",
        step: 1,
        calls: [call("c1", "lookup"), call("c2", "refund")],
        pending: [{ toolCallId: "c2", reason: "approval", note: 'agents[].approval of agent "clerk"' }],
      },
    ]);
    expect([refund.runs, lookup.runs]).toEqual([[], []]);
  });

  it("approved, the agent's call runs with the approver's arguments; outside a durable run it is refused, saying who asked", async () => {
    const refund = tool("refund");
    const decided = await step([call("c2", "refund")], [refund], { approval: ["refund"], decisions: [["c2", { approved: true, arguments: '{"amount":3}' }]] });
    expect(records(decided.events)).toEqual([expect.objectContaining({ id: "c2", outcome: "ok", arguments: '{"amount":3}', output: "refund done" })]);
    expect(refund.runs.map((r) => r.args)).toEqual([{ amount: 3 }]);

    const plain = await step([call("c2", "refund")], [refund], { approval: ["refund"], durable: false });
    expect(records(plain.events)).toEqual([
      expect.objectContaining({
        outcome: "denied",
        output:
          'not run: it needs a person\'s approval, which only a durable run (RunService.StartRun) can wait for (asked by agents[].approval of agent "clerk")',
      }),
    ]);
    expect(refund.runs).toHaveLength(1);
  });

  it("a middleware's { approval } parks the call with its reason; a later middleware's deny still refuses it", async () => {
    const refund = tool("refund");
    const parked = await step([call("c2", "refund")], [refund], { middleware: [asking("limits", "over 100"), asking("audit", "second opinion")] });
    expect(parked.events).toEqual([
      expect.objectContaining({ type: "waiting", pending: [{ toolCallId: "c2", reason: "approval", note: 'middleware "limits": over 100' }] }),
    ]);
    const denier: Middleware = { name: "freeze", process: (_c, next) => next(), toolCall: () => ({ deny: "refunds are frozen" }) };
    const denied = await step([call("c2", "refund")], [refund], { middleware: [asking("limits", "over 100"), denier] });
    expect(records(denied.events)).toEqual([expect.objectContaining({ outcome: "denied", output: "refused by freeze: refunds are frozen" })]);
    const plain = await step([call("c2", "refund")], [refund], { middleware: [asking("limits", "over 100")], durable: false });
    expect(records(plain.events)[0]!.output).toMatch(/only a durable run \(RunService.StartRun\) can wait for \(asked by middleware "limits": over 100\)$/);
    expect(refund.runs).toEqual([]);
  });

  it("a decision made stands when nothing asks again after a takeover: a refusal is not run", async () => {
    const refund = tool("refund");
    const { events } = await step([call("c2", "refund")], [refund], { decisions: [["c2", { approved: false, message: "no" }]] });
    expect(records(events)).toEqual([expect.objectContaining({ outcome: "denied", output: "refused by the person asked to approve it: no" })]);
    expect(refund.runs).toEqual([]);
  });

  it("an approval that expired is refused, and the model reads that it expired", async () => {
    const refund = tool("refund", { needsApproval: true });
    const expireAt = Date.UTC(2030, 0, 1);
    const { events } = await step([call("c2", "refund")], [refund], { decisions: [["c2", expiredDecision(expireAt)]] });
    expect(records(events)).toEqual([
      expect.objectContaining({ outcome: "denied", output: "not run: the approval expired: nobody decided by 2030-01-01T00:00:00.000Z" }),
    ]);
    expect(refund.runs).toEqual([]);
  });
});

/** A model that answers "done" at every step, and counts them. */
function doneModel() {
  const requests: ProviderRequest[] = [];
  const provider: LlmProvider & { requests: ProviderRequest[] } = {
    requests,
    capabilities: { tools: true },
    async *stream(req): AsyncIterable<ProviderChunk> {
      requests.push(structuredClone(req));
      yield { type: "delta", text: "done" };
      yield { type: "finish", finishReason: "stop", usage: { inputTokens: 1, outputTokens: 1 } };
    },
  };
  return provider;
}

/** The journal of a run whose replica died while `calls` ran (dispatched, no result), then what came after. */
function journal(calls: ToolCall[], after: RunLogEvent[] = []): SequencedEvent[] {
  const events: RunLogEvent[] = [
    { type: "accepted" },
    { type: "started", model: "m" },
    { type: "step_started", step: 1 },
    { type: "step_finished", step: 1, finishReason: "tool_calls", usage: { inputTokens: 1, outputTokens: 1 }, toolCalls: calls.length, text: "" },
    ...calls.map((c): RunLogEvent => ({ type: "tool_call", step: 1, call: c })),
    ...after,
  ];
  return events.map((event, i) => ({ seq: i + 1, time: 1_700_000_000_000 + i, event }));
}

const stores: SessionStore[] = [];
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

/** The run going on from `entries` on a fresh executor, as a replica taking it over does. */
async function goOn(tools: Tool[], entries: SequencedEvent[], pending: PendingCall[], mode?: "model" | "approval") {
  const model = doneModel();
  const built = testExecutor({ agents: [agent()], providers: { model }, tools, toolLimits: { maxOutputBytes: 4096, abandonAfterMs: 100 } });
  stores.push(built.store);
  const resume = resumeFromJournal(entries, pending);
  if (mode) resume.state.unknownOutcome = mode;
  const events: RunEvent[] = [];
  const input = { agentId: "clerk", task: "refund", sessionId: "", userId: "ann", metadata: {}, options: {} };
  const info = { signal: new AbortController().signal, header: () => undefined, runId: "run-1" };
  for await (const e of built.executor.stream(input, info, { state: resume.state, journal: resume.events })) events.push(e);
  return { events, model, resume: resume.state };
}

const completed = (events: RunEvent[]) => (events.at(-1) as Extract<RunEvent, { type: "completed" }>).result;
const unknownWaiting = (calls: ToolCall[]): RunLogEvent => ({
  type: "waiting",
  step: 1,
  calls,
  pending: calls.map((c) => ({ toolCallId: c.id, reason: "approval" as const, note: "…" })),
});
const decided = (c: ToolCall, decision: Decision): PendingCall => ({ step: 1, call: c, reason: "approval", decision });

describe("settleUnfinished: a call a dead replica left unfinished", () => {
  const charge = call("c1", "charge");
  const lookup = call("c2", "lookup");

  it('runs.unknownOutcome "model" (the default): recorded unknown and the model told; an idempotent one is sent again', async () => {
    const tools = [tool("charge"), tool("lookup", { idempotent: true })];
    const { events, model } = await goOn(tools, journal([charge, lookup]), []);
    expect(completed(events).toolCalls!.map((r) => [r.id, r.outcome])).toEqual([
      ["c1", "unknown"],
      ["c2", "ok"],
    ]);
    expect(completed(events).toolCalls![0]!.output).toBe(
      "the server running this call stopped before it finished; it was not run again, and whether it took effect is unknown",
    );
    expect(tools[0]!.runs).toEqual([]);
    expect(tools[1]!.runs.map((r) => r.ctx.attempt)).toEqual([2]);
    expect(model.requests).toHaveLength(1);
  });

  it('"approval": the run parks on the calls that are not idempotent, saying why; nothing runs, not even the idempotent one', async () => {
    const tools = [tool("charge"), tool("lookup", { idempotent: true })];
    const { events, model } = await goOn(tools, journal([charge, lookup]), [], "approval");
    expect(events.map((e) => e.type)).toEqual(["started", "waiting"]);
    const waiting = events[1] as Extract<RunEvent, { type: "waiting" }>;
    expect(waiting).toMatchObject({ step: 1, calls: [charge], pending: [{ toolCallId: "c1", reason: "approval" }] });
    expect(waiting.pending[0]!.note).toMatch(
      /^the server running this call stopped before it finished, and whether it took effect is unknown: approve to run it again/,
    );
    expect([tools[0]!.runs, tools[1]!.runs, model.requests]).toEqual([[], [], []]);
  });

  it("approved: sent again with the same idempotency key and attempt 2, once; the step is not prepared a second time", async () => {
    const tools = [tool("charge"), tool("lookup", { idempotent: true })];
    const entries = journal([charge, lookup], [unknownWaiting([charge])]);
    const { events, resume } = await goOn(tools, entries, [decided(charge, { approved: true })], "approval");
    expect(resume.parked).toBeUndefined();
    expect(resume.unfinished.map((u) => [u.call.id, u.decision])).toEqual([
      ["c1", { approved: true }],
      ["c2", undefined],
    ]);
    expect(completed(events).toolCalls!.map((r: ToolCallRecord) => [r.id, r.outcome])).toEqual([
      ["c1", "ok"],
      ["c2", "ok"],
    ]);
    expect(tools[0]!.runs.map((r) => [r.ctx.idempotencyKey, r.ctx.attempt])).toEqual([["run-1:c1", 2]]);
  });

  it("refused: recorded unknown with the approver's message; expired: unknown, saying nobody decided in time", async () => {
    const entries = journal([charge], [unknownWaiting([charge])]);
    const refused = await goOn([tool("charge")], entries, [decided(charge, { approved: false, message: "check the ledger first" })], "approval");
    expect(completed(refused.events).toolCalls).toEqual([
      expect.objectContaining({
        outcome: "unknown",
        output:
          "the server running this call stopped before it finished, and whether it took effect is unknown; the person asked whether to run it again refused: check the ledger first",
      }),
    ]);
    const expired = await goOn([tool("charge")], entries, [decided(charge, expiredDecision(Date.UTC(2030, 0, 1)))], "approval");
    expect(completed(expired.events).toolCalls![0]).toMatchObject({ outcome: "unknown", output: expect.stringMatching(/nobody decided in time/) });
  });

  it("the approval a call ran with is not a decision to run it again: parked after its dispatch, not before", async () => {
    // Approved at step 1's park, dispatched, then its replica died: a person is asked again.
    const before = journal([], [{ type: "waiting", step: 1, calls: [charge], pending: [{ toolCallId: "c1", reason: "approval" }] }]);
    const entries = [...before, { seq: before.length + 1, time: 1_700_000_001_000, event: { type: "tool_call", step: 1, call: charge } as RunLogEvent }];
    const charger = tool("charge", { needsApproval: true });
    const { events, resume } = await goOn([charger], entries, [decided(charge, { approved: true })], "approval");
    expect(resume.unfinished).toEqual([{ step: 1, call: charge }]);
    expect(resume.parked).toBeUndefined();
    expect(events.map((e) => e.type)).toEqual(["started", "waiting"]);
    expect(charger.runs).toEqual([]);
  });
});
