import {
  type ChatMessage,
  Code,
  ConnectError,
  ErrorReason,
  type LlmProvider,
  type Middleware,
  type ProviderRequest,
  type RunEvent,
  type TokenUsage,
  type ToolCall,
  type ToolCallRecord,
  withReason,
} from "@qingyu/plugin-api";
import type { Logger } from "pino";
import { abortReason } from "../errors.ts";
import { agentRefusal, offersModel } from "../agents/registry.ts";
import { quote } from "../quote.ts";
import type { Telemetry } from "../telemetry/setup.ts";
import type { Terminal } from "../pipeline/types.ts";
import { withinTokenBudget } from "../sessions/manager.ts";
import { NO_TOOLS, type ToolCatalog, type ToolSet } from "../tools/catalog.ts";
import { withCallerTools } from "../tools/caller-tools.ts";
import type { ExecutionContext } from "./context.ts";
import { modelStep } from "./model-step.ts";
import type { Decision, ResumeState } from "./resume.ts";
import type { RetryPolicy } from "./retry.ts";
import { resolveRunOptions } from "./run-options.ts";
import { checkAnswer, type OutputSchemas, repairPrompt, schemaInstruction } from "./structured-output.ts";
import { observeResult, runStepTools, type ToolHooks, ToolRunState } from "./tool-step.ts";
import type { RunScope } from "./tool-runner.ts";

/** What the agent call is built from; wired by the executor. */
export interface AgentCallDeps {
  providers: ReadonlyMap<string, LlmProvider>;
  policy: RetryPolicy;
  log: Logger;
  telemetry?: Telemetry;
  /** The generation's tools; absent: no agent has any. */
  tools?: ToolCatalog;
  outputSchemas: OutputSchemas;
  /** The middleware whose tool hooks run around each call, in pipeline order. */
  middleware: readonly Middleware[];
  /** tools.maxOutputBytes and tools.abandonAfterMs. */
  toolLimits: { maxOutputBytes: number; abandonAfterMs: number };
  /** No middleware needs a call streamed (Middleware.needsStreaming): a call that reads only the result may be answered whole (absent: every step streams). */
  wholeAnswers?: boolean;
}

/**
 * The innermost layer of the onion: the step loop. Builds the prompt, calls
 * the agent's provider, and while the model answers with tool calls, runs
 * them and calls it again with their results. A limit (steps, tool calls,
 * the call's deadline) ends the run with a result holding what it has.
 */
export function agentCall(deps: AgentCallDeps): Terminal {
  const { providers, log, telemetry } = deps;
  // Metrics only when something records them: the label objects are per call.
  const metrics = telemetry?.recording ? telemetry.instruments : undefined;
  return async function* (context): AsyncIterable<RunEvent> {
    const ctx = context as ExecutionContext;
    const agent = ctx.agent;
    if (!agent) {
      // Named only a session that could not be read: that is the error to report.
      if (!ctx.agentId && ctx.sessionId) await ctx.session();
      throw ctx.agentId
        ? agentRefusal(ctx.agents, ctx.agentId)
        : withReason(new ConnectError("agent_id is required (or a session_id bound to an agent)", Code.InvalidArgument), ErrorReason.INVALID_FIELD, {
            field: "agent_id",
          });
    }
    // Here, not in a plugin: taking the validation plugin out of the pipeline must not let callers choose.
    const askedModel = ctx.options.model;
    if (askedModel && !offersModel(agent, askedModel)) {
      const refusal = new ConnectError(
        `agent "${agent.id}" does not offer model ${quote(askedModel)} (it offers: ${[agent.model, ...(agent.models ?? [])].join(", ")})`,
        Code.PermissionDenied,
      );
      throw withReason(refusal, ErrorReason.MODEL_NOT_ALLOWED, { agent_id: agent.id, model: askedModel });
    }
    const provider = providers.get(agent.provider);
    if (!provider) {
      const missing = new ConnectError(`agent "${agent.id}" names provider "${agent.provider}", which is not configured`, Code.FailedPrecondition);
      throw withReason(missing, ErrorReason.PROVIDER_NOT_CONFIGURED, { agent_id: agent.id });
    }
    const toolset = withCallerTools(agent.tools?.length && deps.tools ? deps.tools.forAgent(agent, ctx.options.tools) : NO_TOOLS, ctx.callerTools);
    const run = resolveRunOptions(agent, ctx.options, toolset, provider, deps.outputSchemas);

    const { maxHistoryTokens, maxOutputTokens } = agent.limits ?? {};
    const history = await ctx.history();
    const messages: ChatMessage[] = [];
    const system =
      run.output && !run.nativeOutput ? [agent.systemPrompt, schemaInstruction(run.output.schema)].filter(Boolean).join("\n\n") : agent.systemPrompt;
    if (system) messages.push({ role: "system", content: system });
    messages.push(...(maxHistoryTokens === undefined ? history : withinTokenBudget(history, maxHistoryTokens)), { role: "user", content: ctx.task });
    // Validation refuses a larger ask; without it in the pipeline the cap still holds, by clamping.
    const asked = ctx.options.maxTokens || agent.defaults.maxTokens;
    const req: ProviderRequest = {
      model: ctx.options.model || agent.model,
      messages,
      temperature: ctx.options.temperature ?? agent.defaults.temperature,
      maxTokens: maxOutputTokens === undefined ? asked : Math.min(asked ?? maxOutputTokens, maxOutputTokens),
      extra: agent.defaults.extra,
    };
    if (toolset.definitions.length) {
      req.tools = [...toolset.definitions];
      if (run.toolChoice) req.toolChoice = run.toolChoice;
      if (run.parallelToolCalls !== undefined) req.parallelToolCalls = run.parallelToolCalls;
    }
    if (run.output && run.nativeOutput) req.responseFormat = { name: "answer", schema: run.output.schema };
    yield { type: "started", model: req.model };

    const agentLabel = agent.id;
    const stepping = toolset.tools.length > 0 || run.output !== undefined;
    // A tool run stops a little before the call's deadline, so the client gets what it has instead of DEADLINE_EXCEEDED.
    const limit = stepping ? runLimit(ctx.deadline, ctx.signal) : undefined;
    const signal = limit?.signal ?? ctx.signal;
    const stepDeps = {
      provider,
      providerName: agent.provider,
      policy: deps.policy,
      log,
      telemetry,
      callId: ctx.callId,
      agentId: agent.id,
      deadline: ctx.deadline,
      whole: deps.wholeAnswers === true && ctx.whole && typeof provider.generate === "function",
      firstText: metrics
        ? () => {
            if (!output)
              metrics.timeToFirstToken.record((Date.now() - ctx.startTime) / 1000, { "qingyu.agent": agentLabel, "gen_ai.request.model": req.model });
          }
        : undefined,
    };
    const resume = ctx.resume;
    const usage: TokenUsage = resume ? { ...resume.usage } : { inputTokens: 0, outputTokens: 0 };
    const records: ToolCallRecord[] = resume ? [...resume.records] : [];
    const tools = new ToolRunState(run.maxToolCalls, run.maxParallelTools, ctx.runId !== ctx.callId);
    tools.remaining -= records.length;
    if (resume?.decisions) tools.decisions = resume.decisions;
    const scope = {
      runId: ctx.runId,
      agentId: agent.id,
      userId: ctx.userId,
      principal: ctx.principal,
      sessionId: ctx.sessionId,
      signal,
      deadline: limit?.deadline,
      log,
      defaultTimeoutMs: run.toolTimeoutMs,
      abandonAfterMs: deps.toolLimits.abandonAfterMs,
      maxOutputBytes: deps.toolLimits.maxOutputBytes,
    };
    let output = resume?.output ?? "";
    let finishReason = "stop";
    let model = req.model;
    let steps = resume?.steps ?? 0;
    let finalText = "";
    let structured: { value?: unknown; errors?: string[] } | undefined;
    let repaired = false;
    try {
      if (resume) {
        messages.push(...resume.messages);
        if (resume.unfinished.length) {
          const hooks = { ctx, middleware: deps.middleware };
          const settled = yield* settleUnfinished(resume.unfinished, resume.unknownOutcome, toolset, tools, scope, hooks, telemetry);
          if (settled === "parked") return;
          records.push(...settled);
          for (const r of settled) messages.push({ role: "tool", toolCallId: r.id, content: r.output });
        }
        if (resume.parked) {
          // Decided since the run parked: the step's calls are prepared again, the approved ones run.
          const { step, calls } = resume.parked;
          const decided = yield* runStepTools(calls, step, toolset, tools, scope, { ctx, middleware: deps.middleware }, telemetry);
          if (decided === "parked") return;
          records.push(...decided);
          for (const r of decided) messages.push({ role: "tool", toolCallId: r.id, content: r.output });
        }
      }
      // Resumed after the model's last answer: it completes with that answer, asking nothing again.
      for (let answered = resume?.answered; ;) {
        if (answered !== undefined) {
          finalText = answered;
          if (run.output) structured = checkAnswer(answered, run.output);
          break;
        }
        if (steps >= run.maxSteps) {
          finishReason = "max_steps";
          break;
        }
        steps++;
        if (stepping) yield { type: "step_started", step: steps };
        let answer;
        try {
          answer = yield* modelStep(req, steps, signal, stepDeps);
        } catch (err) {
          if (limit?.reached() && !ctx.signal.aborted) {
            finishReason = "deadline";
            break;
          }
          throw err;
        }
        output += answer.text;
        model = answer.finish?.model || model;
        finishReason = answer.finish?.finishReason ?? "stop";
        if (answer.finish?.usage) {
          usage.inputTokens += answer.finish.usage.inputTokens;
          usage.outputTokens += answer.finish.usage.outputTokens;
        }
        if (stepping) {
          const stepUsage = answer.finish?.usage ?? { inputTokens: 0, outputTokens: 0 };
          yield { type: "step_finished", step: steps, finishReason, usage: stepUsage, toolCalls: answer.toolCalls.length };
          metrics?.steps.add(1, { "qingyu.agent": agentLabel, "gen_ai.response.finish_reason": finishReason });
          await stepHooks(deps.middleware, ctx, { step: steps, finishReason, usage: stepUsage, toolCalls: answer.toolCalls.length }, log);
        }
        if (!answer.toolCalls.length) {
          finalText = answer.text;
          if (!run.output) break;
          const checked = checkAnswer(answer.text, run.output);
          if ("value" in checked || repaired || steps >= run.maxSteps) {
            structured = checked;
            break;
          }
          // One repair step: the model sees its answer and why it does not match.
          repaired = true;
          messages.push({ role: "assistant", content: answer.text }, { role: "user", content: repairPrompt(checked.errors) });
          continue;
        }
        messages.push({ role: "assistant", content: answer.text, toolCalls: answer.toolCalls });
        if (steps >= run.maxSteps) {
          // Calls the model will never see the results of are not run.
          for (const call of answer.toolCalls) {
            const record = skipped(call, steps, `not run: the run reached its limit of ${run.maxSteps} steps (limits.maxSteps)`);
            records.push(record);
            await observeResult({ ctx, middleware: deps.middleware }, record, scope);
            yield { type: "tool_result", step: steps, record };
          }
          finishReason = "max_steps";
          break;
        }
        const stepRecords = yield* runStepTools(answer.toolCalls, steps, toolset, tools, scope, { ctx, middleware: deps.middleware }, telemetry);
        // Parked for a person's approval: no process holds the run; it goes on from the journal once decided.
        if (stepRecords === "parked") return;
        records.push(...stepRecords);
        for (const r of stepRecords) messages.push({ role: "tool", toolCallId: r.id, content: r.output });
        if (ctx.signal.aborted) throw abortReason(ctx.signal);
        if (limit?.reached()) {
          finishReason = "deadline";
          break;
        }
        if (tools.budgetSpent) {
          finishReason = "max_tool_calls";
          break;
        }
      }
    } finally {
      limit?.dispose();
    }
    if (ctx.signal.aborted) throw abortReason(ctx.signal);

    if (metrics) {
      metrics.tokens.add(usage.inputTokens, { "qingyu.agent": agentLabel, "gen_ai.request.model": req.model, "gen_ai.token.type": "input" });
      metrics.tokens.add(usage.outputTokens, { "qingyu.agent": agentLabel, "gen_ai.request.model": req.model, "gen_ai.token.type": "output" });
    }
    const result: RunEvent & { type: "completed" } = {
      type: "completed",
      result: {
        success: true,
        // With an output schema the answer is the JSON alone; otherwise everything the client saw streamed.
        output: run.output ? finalText : output,
        model,
        finishReason,
        usage,
        durationMs: Date.now() - ctx.startTime,
        metadata: {},
      },
    };
    if (stepping) {
      result.result.toolCalls = records;
      result.result.steps = steps;
    }
    if (run.output) {
      if (structured && "value" in structured) result.result.structuredOutput = structured.value as never;
      else {
        result.result.success = false;
        result.result.validationErrors = structured?.errors ?? [`the run ended (${finishReason}) before a final answer`];
      }
    }
    yield result;
  };
}

/**
 * The calls a dead replica had dispatched and not finished: an idempotent one
 * is sent again (same idempotency key, attempt 2); any other is not, and the
 * model is told its outcome is unknown — one recorded outcome per call, never
 * a second side effect the runtime caused — unless runs.unknownOutcome asks a
 * person first: the run parks with them pending (nothing runs yet), and an
 * approved one is sent again as an idempotent one is.
 */
async function* settleUnfinished(
  unfinished: ResumeState["unfinished"],
  mode: ResumeState["unknownOutcome"],
  toolset: ToolSet,
  state: ToolRunState,
  scope: RunScope,
  hooks: ToolHooks,
  telemetry: Telemetry | undefined,
): AsyncGenerator<RunEvent, ToolCallRecord[] | "parked"> {
  const idempotent = (call: ToolCall) => toolset.get(call.name)?.tool.idempotent === true;
  if (mode === "approval") {
    const asking = unfinished.filter((u) => !idempotent(u.call) && !u.decision);
    if (asking.length) {
      const note = `${UNKNOWN}: approve to run it again (same idempotency key, attempt 2); refuse to tell the model its outcome is unknown`;
      const pending = asking.map((u) => ({ toolCallId: u.call.id, reason: "approval" as const, note }));
      // Unfinished calls are all of one step: steps run one after another.
      yield { type: "waiting", step: asking[0]!.step, calls: asking.map((u) => u.call), pending };
      return "parked";
    }
  }
  const out: ToolCallRecord[] = [];
  for (const { step, call, decision } of unfinished) {
    if (idempotent(call) || decision?.approved) {
      // Not counted again against maxToolCalls: it was counted when first dispatched.
      state.remaining++;
      const again = yield* runStepTools([call], step, toolset, state, scope, hooks, telemetry, 2);
      if (again === "parked") return again;
      out.push(...again);
      continue;
    }
    const record: ToolCallRecord = {
      id: call.id,
      name: call.name,
      arguments: call.arguments,
      step,
      outcome: "unknown",
      output: unknownText(decision),
      durationMs: 0,
    };
    await observeResult(hooks, record, scope);
    out.push(record);
    yield { type: "tool_result", step, record };
  }
  return out;
}

const UNKNOWN = "the server running this call stopped before it finished, and whether it took effect is unknown";

/** What the model is told of a call whose outcome is unknown, and of the person asked whether to run it again. */
function unknownText(decision: Decision | undefined): string {
  if (!decision) return "the server running this call stopped before it finished; it was not run again, and whether it took effect is unknown";
  if (decision.expired) return `${UNKNOWN}; it was not run again: nobody decided in time whether to (the approval expired)`;
  return `${UNKNOWN}; the person asked whether to run it again refused${decision.message ? `: ${decision.message}` : ""}`;
}

function skipped(call: { id: string; name: string; arguments: string }, step: number, why: string): ToolCallRecord {
  return { id: call.id, name: call.name, arguments: call.arguments, step, outcome: "skipped", output: why, durationMs: 0 };
}

async function stepHooks(middleware: readonly Middleware[], ctx: ExecutionContext, step: Parameters<NonNullable<Middleware["stepFinished"]>>[1], log: Logger) {
  for (const mw of middleware) {
    if (!mw.stepFinished) continue;
    try {
      await mw.stepFinished(ctx, step);
    } catch (err) {
      log.error({ err, middleware: mw.name }, "stepFinished hook failed");
    }
  }
}

/** The run's own stop: the call's signal, and a timer a little before the call's deadline. */
function runLimit(deadline: number | undefined, callSignal: AbortSignal) {
  const controller = new AbortController();
  const onCall = () => controller.abort(callSignal.reason);
  callSignal.addEventListener("abort", onCall, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  let reached = false;
  let own: number | undefined;
  if (deadline !== undefined) {
    const left = deadline - Date.now();
    // Enough to stream the result back: a tenth of the budget, between 50 ms and 1 s.
    const reserve = Math.min(1000, Math.max(50, left / 10));
    own = deadline - reserve;
    timer = setTimeout(
      () => {
        reached = true;
        controller.abort(new ConnectError("the run reached its deadline", Code.DeadlineExceeded));
      },
      Math.max(0, left - reserve),
    );
  }
  return {
    signal: controller.signal,
    deadline: own,
    reached: () => reached,
    dispose() {
      clearTimeout(timer);
      callSignal.removeEventListener("abort", onCall);
    },
  };
}
