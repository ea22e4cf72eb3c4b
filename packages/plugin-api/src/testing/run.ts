import type { AgentDefinition } from "../agents.ts";
import { Code, ConnectError } from "../errors.ts";
import type { AgentContext, AgentRunResult, GenerationOptions, Middleware, RunEvent } from "../middleware.ts";
import type { Principal } from "../principal.ts";
import type { ChatMessage, LlmProvider, ProviderChunk, ProviderRequest, ToolCall } from "../provider.ts";
import { ErrorReason, notFound, withReason } from "../reasons.ts";
import type { SessionRecord } from "../sessions.ts";
import { testAgent } from "./host.ts";

/** Every item of a stream. */
export async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) out.push(item);
  return out;
}

/** What a test may set on the AgentContext of one call; everything else has the executor's defaults. */
export interface ContextInit {
  /** "hello world" by default. */
  task?: string;
  /** The agent the call names; testAgent ("echo") by default. */
  agentId?: string;
  /** Its configuration; by default testAgent when agentId is "echo", else none (an unknown agent). */
  agent?: AgentDefinition;
  /** The request's user_id ("" by default); also `requestedUserId`. */
  userId?: string;
  principal?: Principal;
  sessionId?: string;
  /** What `ctx.session()` returns. */
  session?: SessionRecord;
  /** Request headers; names are matched lower-case, as gRPC metadata is. */
  headers?: Record<string, string>;
  metadata?: Record<string, string>;
  /** What `ctx.history()` returns (by default the session's messages, else none). */
  history?: ChatMessage[];
  options?: GenerationOptions;
  /** Abort it to cancel the call; give it a ConnectError reason, as the server does. */
  signal?: AbortSignal;
}

let callCount = 0;

/** An AgentContext as the executor builds one, for calling `process` yourself. */
export function agentContext(init: ContextInit = {}): AgentContext {
  const agentId = init.agentId ?? init.agent?.id ?? testAgent.id;
  const headers = new Map(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
  const userId = init.userId ?? "";
  return {
    callId: `test-call-${++callCount}`,
    agentId,
    agent: init.agent ?? (agentId === testAgent.id ? testAgent : undefined),
    userId,
    requestedUserId: userId,
    principal: init.principal,
    sessionId: init.sessionId ?? init.session?.id ?? "",
    task: init.task ?? "hello world",
    metadata: { ...init.metadata },
    options: { ...init.options },
    signal: init.signal ?? new AbortController().signal,
    startTime: Date.now(),
    header: (name) => headers.get(name.toLowerCase()),
    session: async () => init.session,
    history: async () => [...(init.history ?? init.session?.messages ?? [])],
    state: new Map(),
  };
}

/**
 * The innermost layer a middleware wraps: text chunks to stream, a provider
 * (called with the prompt the server would build), or a function of the
 * context returning the run's events.
 */
export type RunTerminal = readonly string[] | LlmProvider | ((ctx: AgentContext) => AsyncIterable<RunEvent>);

/** What a middleware run produced. */
export interface MiddlewareRun {
  /** Every event that came out of the outermost middleware. */
  events: RunEvent[];
  /** The `completed` event's result (undefined if none came out). */
  result: AgentRunResult | undefined;
  /** The deltas' text, concatenated. */
  text: string;
  /** The call's context, as the middleware left it (task, userId, principal, options, state). */
  context: AgentContext;
  /** How often the terminal ran: 0 when a middleware short-circuited the call. */
  terminalCalls: number;
}

/**
 * Runs one middleware (or several, outermost first) around a terminal, as
 * the server's onion does: `next()` twice is INTERNAL. The default terminal
 * echoes the task back word by word. Rejects with what the run threw.
 */
export async function runMiddleware(middleware: Middleware | readonly Middleware[], init: ContextInit = {}, terminal?: RunTerminal): Promise<MiddlewareRun> {
  const layers: readonly Middleware[] = Array.isArray(middleware) ? middleware : [middleware as Middleware];
  const ctx = agentContext(init);
  const inner = terminalOf(terminal);
  let terminalCalls = 0;
  let reached = -1;
  const dispatch = (i: number): AsyncIterable<RunEvent> => {
    if (i <= reached) throw new ConnectError(`middleware "${layers[i - 1]!.name}" called next() more than once`, Code.Internal);
    reached = i;
    if (i === layers.length) {
      terminalCalls++;
      return inner(ctx);
    }
    const layer = layers[i]!;
    const stage = layer.process(ctx, () => dispatch(i + 1));
    if (stage === null || typeof stage !== "object" || !(Symbol.asyncIterator in stage)) {
      throw new ConnectError(`middleware "${layer.name}" did not return an async iterable`, Code.Internal);
    }
    return stage;
  };
  const events = await collect(dispatch(0));
  let text = "";
  let result: AgentRunResult | undefined;
  for (const event of events) {
    if (event.type === "delta") text += event.text;
    else if (event.type === "completed") result = event.result;
  }
  return { events, result, text, context: ctx, terminalCalls };
}

function terminalOf(terminal: RunTerminal | undefined): (ctx: AgentContext) => AsyncIterable<RunEvent> {
  if (terminal === undefined) return (ctx) => textRun(ctx, () => ctx.task.split(/(?<= )/));
  if (typeof terminal === "function") return terminal;
  if (Array.isArray(terminal)) return (ctx) => textRun(ctx, () => terminal as readonly string[]);
  return (ctx) => providerRun(ctx, terminal as LlmProvider);
}

function agentOf(ctx: AgentContext): AgentDefinition {
  if (ctx.agent) return ctx.agent;
  throw ctx.agentId
    ? notFound("agent", ctx.agentId)
    : withReason(new ConnectError("agent_id is required (or a session_id bound to an agent)", Code.InvalidArgument), ErrorReason.INVALID_FIELD, {
        field: "agent_id",
      });
}

async function* textRun(ctx: AgentContext, chunks: () => readonly string[]): AsyncIterable<RunEvent> {
  const agent = agentOf(ctx);
  const model = ctx.options.model || agent.model;
  yield { type: "started", model };
  let output = "";
  const texts = chunks().filter(Boolean);
  for (const text of texts) {
    if (ctx.signal.aborted) throw abortReason(ctx.signal);
    output += text;
    yield { type: "delta", text };
  }
  const inputTokens = ctx.task.split(/\s+/).filter(Boolean).length;
  yield { type: "completed", result: completed(ctx, output, model, "stop", { inputTokens, outputTokens: texts.length }) };
}

/** The agent call as the server makes it (without retries): the prompt, the provider's stream, the result. */
async function* providerRun(ctx: AgentContext, provider: LlmProvider): AsyncIterable<RunEvent> {
  const agent = agentOf(ctx);
  const messages: ChatMessage[] = [];
  if (agent.systemPrompt) messages.push({ role: "system", content: agent.systemPrompt });
  messages.push(...(await ctx.history()), { role: "user", content: ctx.task });
  const maxOutput = agent.limits?.maxOutputTokens;
  const asked = ctx.options.maxTokens || agent.defaults.maxTokens;
  const req: ProviderRequest = {
    model: ctx.options.model || agent.model,
    messages,
    temperature: ctx.options.temperature ?? agent.defaults.temperature,
    maxTokens: maxOutput === undefined ? asked : Math.min(asked ?? maxOutput, maxOutput),
    extra: agent.defaults.extra,
  };
  yield { type: "started", model: req.model };
  let output = "";
  let finish: Extract<ProviderChunk, { type: "finish" }> | undefined;
  try {
    for await (const chunk of provider.stream(req, ctx.signal)) {
      if (ctx.signal.aborted) throw abortReason(ctx.signal);
      if (chunk.type === "finish") finish = chunk;
      else if (chunk.type === "delta" && chunk.text) {
        output += chunk.text;
        yield { type: "delta", text: chunk.text };
      }
    }
  } catch (err) {
    if (ctx.signal.aborted) throw abortReason(ctx.signal);
    throw err;
  }
  yield {
    type: "completed",
    result: completed(ctx, output, finish?.model || req.model, finish?.finishReason ?? "stop", finish?.usage ?? { inputTokens: 0, outputTokens: 0 }),
  };
}

function completed(ctx: AgentContext, output: string, model: string, finishReason: string, usage: AgentRunResult["usage"]): AgentRunResult {
  return { success: true, output, model, finishReason, usage, durationMs: Date.now() - ctx.startTime, metadata: {} };
}

/** What a provider streamed. */
export interface ProviderRun {
  chunks: ProviderChunk[];
  /** The deltas' text, concatenated. */
  text: string;
  /** The complete tool calls it yielded, in order. */
  toolCalls: ToolCall[];
  /** The finish chunk, when the provider sent one. */
  finish: Extract<ProviderChunk, { type: "finish" }> | undefined;
}

/**
 * Streams one request through a provider and collects what it yields. A
 * string request is one user message to model "test-model". When `signal`
 * aborts, the stream is closed and the call rejects with the signal's reason
 * (CANCELLED when it is not a ConnectError), as on the server. A second
 * finish, or a delta after the finish, breaks the contract and rejects.
 */
export async function runProvider(
  provider: LlmProvider,
  request: ProviderRequest | string,
  signal: AbortSignal = new AbortController().signal,
): Promise<ProviderRun> {
  const req: ProviderRequest = typeof request === "string" ? { model: "test-model", messages: [{ role: "user", content: request }] } : request;
  const chunks: ProviderChunk[] = [];
  let text = "";
  const toolCalls: ToolCall[] = [];
  let finish: ProviderRun["finish"];
  try {
    signal.throwIfAborted();
    for await (const chunk of provider.stream(req, signal)) {
      if (signal.aborted) throw abortReason(signal);
      if (finish) throw new Error(`the provider yielded a ${chunk.type} chunk after its finish chunk (at most one finish, and it comes last)`);
      chunks.push(chunk);
      if (chunk.type === "finish") finish = chunk;
      else if (chunk.type === "delta") text += chunk.text;
      else if (chunk.type === "tool_call") toolCalls.push(chunk.call);
    }
  } catch (err) {
    if (signal.aborted) throw abortReason(signal);
    throw err;
  }
  return { chunks, text, toolCalls, finish };
}

/** The reason a signal aborted, as a ConnectError (CANCELLED when it is not one). */
function abortReason(signal: AbortSignal): ConnectError {
  const reason: unknown = signal.reason;
  if (reason instanceof ConnectError) return reason;
  return new ConnectError("the call was cancelled", Code.Canceled, undefined, undefined, reason);
}
