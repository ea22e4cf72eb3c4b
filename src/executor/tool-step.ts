import type { AgentContext, Middleware, PendingToolCall, RunEvent, ToolCall, ToolCallRecord, ToolOutcome } from "@qingyu/plugin-api";
import { SpanKind, SpanStatusCode, context } from "@opentelemetry/api";
import type { Telemetry } from "../telemetry/setup.ts";
import type { ToolSet } from "../tools/catalog.ts";
import type { Decision } from "./resume.ts";
import { Semaphore } from "./semaphore.ts";
import { boundedOutput, errorText } from "./tool-output.ts";
import { type DispatchedCall, type RunScope, runToolCall } from "./tool-runner.ts";

/** What a run's tool calls share across its steps: the caps and the call budget. */
export class ToolRunState {
  /** Tool calls still allowed (limits.maxToolCalls). */
  remaining: number;
  /** Set once a call was skipped for the budget: the run ends after this step. */
  budgetSpent = false;
  /** Decisions on calls that needed approval (a resumed durable run's). */
  decisions: ReadonlyMap<string, Decision> = new Map();
  private readonly running: Semaphore;
  private readonly perTool = new Map<string, Semaphore>();

  constructor(
    readonly maxToolCalls: number,
    maxParallel: number,
    /** The run is durable (RunService): it can park for a person's approval. */
    readonly durable = false,
  ) {
    this.remaining = maxToolCalls;
    this.running = new Semaphore(maxParallel);
  }

  /** Runs `work` holding a slot of the run's cap and of the tool's own (1 for a sequential tool). */
  async capped<T>(call: DispatchedCall, work: () => Promise<T>): Promise<T> {
    const { tool } = call.ready;
    const cap = tool.sequential ? 1 : tool.maxConcurrency;
    let own: Semaphore | undefined;
    if (cap !== undefined) {
      own = this.perTool.get(tool.name);
      if (!own) this.perTool.set(tool.name, (own = new Semaphore(cap)));
      await own.acquire();
    }
    await this.running.acquire();
    try {
      return await work();
    } finally {
      this.running.release();
      own?.release();
    }
  }
}

/** The middleware that have tool hooks, and the run's context they are given. */
export interface ToolHooks {
  readonly ctx: AgentContext;
  readonly middleware: readonly Middleware[];
}

/**
 * Runs the tool calls of one model step and yields their events: for each
 * call in the model's order, either its `tool_call` (it will run) or at once
 * its `tool_result` (it cannot: unknown tool, bad arguments, refused by a
 * middleware, over the budget); then the `tool_result` of each call that ran,
 * as it finishes. Returns the records in the model's order, which is the
 * order the results go back to the model in.
 */
export async function* runStepTools(
  calls: readonly ToolCall[],
  step: number,
  tools: ToolSet,
  state: ToolRunState,
  scope: RunScope,
  hooks: ToolHooks,
  telemetry: Telemetry | undefined,
  attempt = 1,
): AsyncGenerator<RunEvent, ToolCallRecord[] | "parked"> {
  const records = new Array<ToolCallRecord>(calls.length);
  const dispatched: { index: number; call: DispatchedCall }[] = [];
  // Every call is prepared before any is announced: if one waits for a person, none of the step runs yet.
  const prepared: (DispatchedCall | ToolCallRecord | Parked)[] = [];
  for (const call of calls) prepared.push(await prepare(call, step, tools, state, hooks, scope));
  const waiting = calls.flatMap((c, i): PendingToolCall[] => {
    const p = prepared[i]!;
    return "park" in p ? [{ toolCallId: c.id, reason: p.park, ...(p.note ? { note: p.note } : {}) }] : [];
  });
  if (waiting.length) {
    yield { type: "waiting", step, calls: [...calls], pending: waiting };
    return "parked";
  }
  for (const [index, ready] of prepared.entries()) {
    if ("park" in ready) continue;
    if ("outcome" in ready) {
      records[index] = ready;
      await observeResult(hooks, ready, scope);
      yield { type: "tool_result", step, record: ready };
      continue;
    }
    if (state.remaining <= 0) {
      state.budgetSpent = true;
      const skipped: ToolCallRecord = {
        ...refusal(calls[index]!, step),
        outcome: "skipped",
        output: `not run: the run reached its limit of ${state.maxToolCalls} tool calls (limits.maxToolCalls)`,
      };
      records[index] = skipped;
      await observeResult(hooks, skipped, scope);
      yield { type: "tool_result", step, record: skipped };
      continue;
    }
    state.remaining--;
    dispatched.push({ index, call: attempt === 1 ? ready : { ...ready, attempt } });
    yield { type: "tool_call", step, call: { id: ready.id, name: ready.ready.tool.name, arguments: ready.argumentsJson } };
  }
  // Finished calls queue here; the generator yields them in the order they finish.
  const done: { index: number; record: ToolCallRecord }[] = [];
  let wake: (() => void) | undefined;
  for (const { index, call } of dispatched) {
    void state
      .capped(call, () => traced(call, scope, telemetry))
      .then((record) => {
        done.push({ index, record });
        wake?.();
      });
  }
  for (let left = dispatched.length; left > 0;) {
    if (!done.length) await new Promise<void>((resolve) => (wake = resolve));
    const next = done.shift();
    if (!next) continue;
    left--;
    records[next.index] = next.record;
    await observeResult(hooks, next.record, scope);
    yield { type: "tool_result", step, record: next.record };
  }
  return records;
}

/** A call ready to dispatch, or the record of why it will not run. */
async function prepare(
  call: ToolCall,
  step: number,
  tools: ToolSet,
  state: ToolRunState,
  hooks: ToolHooks,
  scope: RunScope,
): Promise<DispatchedCall | ToolCallRecord | Parked> {
  const refused = (outcome: ToolOutcome, output: string, args = call.arguments): ToolCallRecord => ({ ...refusal(call, step, args), outcome, output });
  const ready = tools.get(call.name);
  if (!ready) {
    const offered = tools.tools.map((t) => t.tool.name).join(", ");
    return refused("denied", `no tool named "${call.name}" is available to this agent (available: ${offered || "none"})`);
  }
  let argumentsJson = call.arguments.trim() || "{}";
  let args = parseArguments(argumentsJson);
  if (args.error) return refused("invalid_arguments", args.error, argumentsJson);
  // Why a person is asked besides the tool's own needsApproval: the first middleware asking, else the agent's config.
  let asked: string | undefined;
  for (const mw of hooks.middleware) {
    if (!mw.toolCall) continue;
    let decision;
    try {
      decision = await mw.toolCall(hooks.ctx, { step, call: { id: call.id, name: call.name, arguments: argumentsJson }, args: args.value });
    } catch (err) {
      scope.log.error({ err, middleware: mw.name, tool: call.name }, "toolCall hook failed; the call is refused");
      return refused("denied", `refused: middleware "${mw.name}" failed to check the call`, argumentsJson);
    }
    if (!decision) continue;
    if ("deny" in decision) return refused("denied", `refused by ${mw.name}: ${decision.deny}`, argumentsJson);
    if ("approval" in decision) {
      asked ??= `middleware "${mw.name}": ${decision.approval}`;
      continue;
    }
    argumentsJson = decision.arguments;
    args = parseArguments(argumentsJson);
    if (args.error) return refused("invalid_arguments", `${mw.name} rewrote the arguments: ${args.error}`, argumentsJson);
  }
  const problems = ready.check(args.value);
  if (problems.length) return refused("invalid_arguments", `arguments do not match the tool's input schema: ${problems.join("; ")}`, argumentsJson);
  if (ready.caller) {
    // The caller runs it: its answer, once given, is the result; until then the run waits for it.
    const answer = state.decisions.get(call.id)?.result;
    if (!answer) return { park: "caller" };
    return refused(answer.isError ? "error" : "ok", boundedOutput(answer.output, scope.maxOutputBytes), argumentsJson);
  }
  if (ready.approval) asked ??= `agents[].approval of agent "${scope.agentId}"`;
  // A decision made stands even if what asked for it does not ask again (a middleware's mind, the config, after a takeover).
  const decision = state.decisions.get(call.id);
  if (ready.tool.needsApproval || asked !== undefined || decision) {
    if (!state.durable) {
      const by = asked === undefined ? "" : ` (asked by ${asked})`;
      return refused("denied", `not run: it needs a person's approval, which only a durable run (RunService.StartRun) can wait for${by}`, argumentsJson);
    }
    if (!decision) return asked === undefined ? { park: "approval" } : { park: "approval", note: asked };
    if (decision.expired) return refused("denied", `not run: ${decision.message ?? "the approval expired before anyone decided"}`, argumentsJson);
    if (!decision.approved)
      return refused("denied", `refused by the person asked to approve it${decision.message ? `: ${decision.message}` : ""}`, argumentsJson);
    if (decision.arguments) {
      // The approver's arguments are checked as the model's are.
      argumentsJson = decision.arguments;
      args = parseArguments(argumentsJson);
      if (args.error) return refused("invalid_arguments", `the approver's arguments: ${args.error}`, argumentsJson);
      const again = ready.check(args.value);
      if (again.length)
        return refused("invalid_arguments", `the approver's arguments do not match the tool's input schema: ${again.join("; ")}`, argumentsJson);
    }
  }
  return { ready, id: call.id, step, argumentsJson, args: args.value };
}

/** Why a call cannot be settled yet: a person must approve it (`note`: why, when the tool does not ask itself), or the caller must answer it. */
interface Parked {
  park: "approval" | "caller";
  note?: string;
}

/** A record of `call` that did not run (its outcome and output filled in by the caller). */
function refusal(call: ToolCall, step: number, args = call.arguments): Omit<ToolCallRecord, "outcome" | "output"> {
  return { id: call.id, name: call.name, arguments: args, step, durationMs: 0 };
}

function parseArguments(json: string): { value?: unknown; error?: string } {
  try {
    const value: unknown = JSON.parse(json);
    if (typeof value !== "object" || value === null || Array.isArray(value)) return { error: "arguments must be a JSON object" };
    return { value };
  } catch (err) {
    return { error: `arguments are not valid JSON: ${errorText(err)}` };
  }
}

/** Runs the middleware's toolResult hooks for one record; a hook that throws is logged. */
export async function observeResult(hooks: ToolHooks, record: ToolCallRecord, scope: RunScope): Promise<void> {
  for (const mw of hooks.middleware) {
    if (!mw.toolResult) continue;
    try {
      await mw.toolResult(hooks.ctx, record);
    } catch (err) {
      scope.log.error({ err, middleware: mw.name, tool: record.name }, "toolResult hook failed");
    }
  }
}

/** The call inside an `execute_tool` span (GenAI semantic conventions) when tracing is on; its duration recorded when metrics are. */
async function traced(call: DispatchedCall, scope: RunScope, telemetry: Telemetry | undefined): Promise<ToolCallRecord> {
  const name = call.ready.tool.name;
  const run = telemetry?.tracing
    ? await telemetry.tracer.startActiveSpan(
        `execute_tool ${name}`,
        {
          kind: SpanKind.INTERNAL,
          attributes: {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": name,
            "gen_ai.tool.call.id": call.id,
            "gen_ai.tool.type": "function",
            "qingyu.tool.source": call.ready.source,
          },
        },
        context.active(),
        async (span) => {
          try {
            const record = await runToolCall(call, scope);
            span.setAttribute("qingyu.tool.outcome", record.outcome);
            if (record.outcome !== "ok") span.setStatus({ code: SpanStatusCode.ERROR, message: record.output.slice(0, 200) });
            return record;
          } finally {
            span.end();
          }
        },
      )
    : await runToolCall(call, scope);
  if (telemetry?.recording) telemetry.instruments.toolDuration.record(run.durationMs, { "gen_ai.tool.name": name, "qingyu.tool.outcome": run.outcome });
  return run;
}
