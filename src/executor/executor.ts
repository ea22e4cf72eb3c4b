import {
  type AgentContext,
  type AgentRunResult,
  Code,
  ConnectError,
  type EventBus,
  type LlmProvider,
  type Middleware,
  observe,
  type RunEvent,
} from "@qingyu/plugin-api";
import type { Logger } from "pino";
import { setImmediate as nextTurn } from "node:timers/promises";
import type { AgentRegistry } from "../agents/registry.ts";
import { abortReason, codeName, toConnectError } from "../errors.ts";
import { eventUser, isAnonymous } from "../pipeline/acting.ts";
import type { Admission } from "../pipeline/admission.ts";
import { compose, type Pipeline, type StageObserver } from "../pipeline/compose.ts";
import type { SessionManager } from "../sessions/manager.ts";
import type { Telemetry } from "../telemetry/setup.ts";
import { spanIterable } from "../telemetry/span-iterable.ts";
import { withInvokeAgentSpan } from "../telemetry/invoke-agent.ts";
import type { ToolCatalog } from "../tools/catalog.ts";
import { agentCall } from "./agent-call.ts";
import { type BatchSlots, unlimitedSlots } from "./batch-gate.ts";
import { createContext, type CallInfo, type ExecuteInput, type ExecutionContext } from "./context.ts";
import type { RetryPolicy } from "./retry.ts";
import { OutputSchemas } from "./structured-output.ts";
import type { ResumeState } from "./resume.ts";
import { TurnRecorder } from "./turn-recorder.ts";

/** What the executor is built from; wired in app.ts. */
export interface ExecutorDeps {
  agents: AgentRegistry;
  providers: ReadonlyMap<string, LlmProvider>;
  middleware: readonly Middleware[];
  sessions: SessionManager;
  events: EventBus;
  retry: RetryPolicy;
  log: Logger;
  /** Whether an auth middleware guards calls (events then carry only users a principal vouched for). */
  authenticated?: boolean;
  /** The generation's admission: a call the transport admitted starts its onion with that principal. */
  admission?: Admission;
  /** Spans and metrics; absent or disabled records nothing. */
  telemetry?: Telemetry;
  /** The generation's tools; absent when no agent has any. */
  tools?: ToolCatalog;
  /** tools.maxOutputBytes and tools.abandonAfterMs (defaults: 64 KiB, 1 s). */
  toolLimits?: { maxOutputBytes: number; abandonAfterMs: number };
  /** Compiles output schemas; one per generation (the agents' were checked at assembly). */
  outputSchemas?: OutputSchemas;
}

/** One batch item's outcome. */
export type BatchOutcome = { result: AgentRunResult; sessionId: string } | { error: ConnectError; sessionId: string };

/**
 * Runs agents. Stream-first: one path through the onion, which `execute` and
 * `batch` collect, so every middleware sees every call the same way. Only the
 * model step differs: a call that reads only the result may have its answer
 * asked for whole (one delta) when no middleware needs it streamed.
 */
export class Executor {
  private readonly pipeline: Pipeline;

  constructor(private readonly deps: ExecutorDeps) {
    // invoke_agent wraps the agent call, not the onion: the parent of its chat and execute_tool spans, and none on a cache hit.
    const terminal = withInvokeAgentSpan(
      deps.telemetry,
      agentCall({
        providers: deps.providers,
        policy: deps.retry,
        log: deps.log,
        telemetry: deps.telemetry,
        tools: deps.tools,
        outputSchemas: deps.outputSchemas ?? new OutputSchemas(),
        middleware: deps.middleware.filter((m) => m.toolCall || m.toolResult || m.stepFinished),
        wholeAnswers: !deps.middleware.some((m) => m.needsStreaming),
        toolLimits: deps.toolLimits ?? { maxOutputBytes: 64 * 1024, abandonAfterMs: 1000 },
      }),
    );
    this.pipeline = compose(deps.middleware, terminal, this.observeStage);
  }

  /**
   * The run's events: one `started`, the deltas, one `completed`. The turn is
   * stored in the session before `completed` is yielded, so a client that has
   * the answer can rely on the next call seeing it in the history.
   */
  stream(input: ExecuteInput, call: CallInfo, resume?: { state: ResumeState; journal: readonly RunEvent[] }): AsyncGenerator<RunEvent> {
    return this.run(input, call, resume, false);
  }

  /** The whole answer of one call; its model steps may be asked for whole (unless a middleware sets needsStreaming). */
  async execute(input: ExecuteInput, call: CallInfo): Promise<AgentRunResult> {
    let result: AgentRunResult | undefined;
    for await (const event of this.run(input, call, undefined, true)) {
      if (event.type === "completed") result = event.result;
    }
    return result!;
  }

  // `whole`: the caller reads only the result, so a model step may be asked for its whole answer at once.
  private async *run(
    input: ExecuteInput,
    call: CallInfo,
    resume: { state: ResumeState; journal: readonly RunEvent[] } | undefined,
    whole: boolean,
  ): AsyncGenerator<RunEvent> {
    const { events } = this.deps;
    let ctx: ExecutionContext | undefined;
    try {
      ctx = await createContext(input, call, this.deps.agents, this.deps.sessions, this.deps.authenticated === true, resume?.state, whole);
      // Admitted on its headers before it was decoded (or, resumed, when it started): the onion's auth need not verify the credential again.
      const admitted = call.principal ? Promise.resolve(call.principal) : this.deps.admission?.admittedWith(call);
      if (admitted) ctx.principal = await admitted;
      let started = false;
      let parked = false;
      let result: AgentRunResult | undefined;
      // Only runs that take steps need their events kept: a plain turn is the task and the output.
      // A resumed run's turn begins with what its journal says the run did before.
      let recorder: TurnRecorder | undefined;
      if (resume) {
        recorder = new TurnRecorder();
        for (const event of resume.journal) recorder.see(event);
      }
      for await (const event of this.pipeline(ctx)) {
        if (result) continue; // nothing belongs after the result
        if (event.type === "completed") {
          result = event.result;
          continue;
        }
        if (event.type === "waiting") parked = true;
        if (event.type !== "delta" && event.type !== "started") {
          (recorder ??= new TurnRecorder()).see(event);
          if (event.type === "tool_call" || event.type === "tool_result") this.publishTool(ctx, event);
        } else if (recorder && event.type === "delta") recorder.see(event);
        // Exactly one started, first, even when a middleware answers without one.
        if (!started) {
          started = true;
          this.publishStarted(ctx);
          yield { type: "started", model: event.type === "started" ? event.model : ctx.options.model || ctx.agent?.model || "", agentId: ctx.agentId };
        }
        if (event.type !== "started") yield event;
      }
      if (!result) {
        // A durable run parked for approval ends here for now: its turn is stored when it completes.
        if (parked) return;
        throw new ConnectError("the pipeline ended without a result", Code.Internal);
      }
      if (!started) {
        this.publishStarted(ctx);
        yield { type: "started", model: result.model, agentId: ctx.agentId };
      }
      if (ctx.sessionId) {
        // Checks ownership even when a middleware answered without reading the session (a cache hit).
        await ctx.session();
        await this.deps.sessions.appendTurn(
          ctx.sessionId,
          recorder
            ? recorder.messages(ctx.task, result)
            : [
                { role: "user", content: ctx.task },
                { role: "assistant", content: result.output },
              ],
        );
      }
      if (events.hasSubscribers("AGENT_COMPLETED"))
        events.publish({
          type: "AGENT_COMPLETED",
          ...this.ids(ctx),
          data: {
            callId: ctx.callId,
            durationMs: result.durationMs,
            model: result.model,
            inputTokens: result.usage.inputTokens,
            outputTokens: result.usage.outputTokens,
          },
        });
      yield { type: "completed", result };
    } catch (err) {
      const error = call.signal.aborted ? abortReason(call.signal) : toConnectError(err);
      if (error.code === Code.Internal) this.deps.log.error({ err: error.cause ?? error, call: ctx?.callId }, "internal error");
      events.publish({
        type: "ERROR_OCCURRED",
        ...(ctx
          ? this.ids(ctx)
          : this.deps.authenticated
            ? {}
            : { agentId: input.agentId, sessionId: input.sessionId || undefined, userId: input.userId || undefined }),
        data: { callId: ctx?.callId ?? "", code: codeName(error.code), message: error.rawMessage },
      });
      throw error;
    }
  }

  /**
   * Runs the inputs with at most `concurrency` at once, each item holding one
   * of `slots` (the process-wide bound on batch work) while it runs. One
   * failing item is that item's error; the batch fails only when the call
   * itself is cancelled.
   */
  async batch(inputs: readonly ExecuteInput[], concurrency: number, call: CallInfo, slots: BatchSlots = unlimitedSlots): Promise<BatchOutcome[]> {
    const outcomes = new Array<BatchOutcome>(inputs.length);
    let nextIndex = 0;
    const worker = async () => {
      while (nextIndex < inputs.length && !call.signal.aborted) {
        const i = nextIndex++;
        const input = inputs[i]!;
        try {
          await slots.acquire(call.signal);
        } catch (err) {
          if (call.signal.aborted) return; // reported below
          throw err;
        }
        try {
          outcomes[i] = { result: await this.execute(input, call), sessionId: input.sessionId };
        } catch (err) {
          outcomes[i] = { error: toConnectError(err), sessionId: input.sessionId };
        } finally {
          slots.release();
        }
        // With the echo provider and the memory store an item may never wait on I/O: without
        // this turn, a chain of items runs in microtasks and health checks wait behind all of it.
        await nextTurn();
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, inputs.length) }, worker));
    if (call.signal.aborted) throw abortReason(call.signal);
    return outcomes;
  }

  // A span per stage when tracing is on (the pipeline's, so user plugins are traced with no code
  // of their own), and MIDDLEWARE_EXECUTED while someone listens for it; neither costs anything otherwise.
  private readonly observeStage: StageObserver = (mw, ctx, run) => {
    const { events, telemetry } = this.deps;
    const publish = events.hasSubscribers("MIDDLEWARE_EXECUTED");
    const tracing = telemetry?.tracing === true;
    if (!publish && !tracing) return undefined;
    const started = Date.now();
    const finish = (err: unknown) => {
      if (!publish) return;
      events.publish({
        type: "MIDDLEWARE_EXECUTED",
        ...this.ids(ctx),
        data: { middleware: mw.name, status: err === undefined ? "OK" : codeName(toConnectError(err).code), durationMs: Date.now() - started },
      });
    };
    if (tracing) {
      return spanIterable(telemetry!.tracer, `middleware ${mw.name}`, { attributes: { "qingyu.middleware": mw.name, "qingyu.call_id": ctx.callId } }, run, {
        end: (_span, err) => finish(err),
      });
    }
    return observe(run(), { end: ({ error }) => finish(error) });
  };

  /** TOOL_CALLED as a call is dispatched, TOOL_COMPLETED as it ends (or is refused without running). */
  private publishTool(ctx: ExecutionContext, event: RunEvent & { type: "tool_call" | "tool_result" }): void {
    const { events } = this.deps;
    if (event.type === "tool_call") {
      if (events.hasSubscribers("TOOL_CALLED"))
        events.publish({
          type: "TOOL_CALLED",
          ...this.ids(ctx),
          data: { callId: ctx.callId, toolCallId: event.call.id, tool: event.call.name, step: event.step },
        });
      return;
    }
    if (!events.hasSubscribers("TOOL_COMPLETED")) return;
    const { record } = event;
    events.publish({
      type: "TOOL_COMPLETED",
      ...this.ids(ctx),
      data: { callId: ctx.callId, toolCallId: record.id, tool: record.name, step: event.step, outcome: record.outcome, durationMs: record.durationMs },
    });
  }

  // Announced once the onion lets the run through, so auth has set who the user is.
  private publishStarted(ctx: ExecutionContext): void {
    // Events are built only when someone listens: most calls have no subscriber.
    if (this.deps.events.hasSubscribers("AGENT_STARTED")) this.deps.events.publish({ type: "AGENT_STARTED", ...this.ids(ctx), data: { callId: ctx.callId } });
  }

  /**
   * Whom an event is about. With auth configured, a call no principal vouched
   * for (refused, or anonymous) carries nothing its caller chose: no user (a
   * refused caller's claimed user_id must not put events into that user's
   * stream), no session, and its agent only when that names a configured one.
   */
  private ids(ctx: AgentContext) {
    const caller = { guarded: this.deps.authenticated === true, principal: ctx.principal };
    if (isAnonymous(caller)) return { agentId: ctx.agent ? ctx.agentId : undefined, sessionId: undefined, userId: undefined };
    return { agentId: ctx.agentId, sessionId: ctx.sessionId || undefined, userId: eventUser(caller, ctx.userId) };
  }
}
