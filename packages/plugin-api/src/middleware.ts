import type { AgentDefinition } from "./agents.ts";
import type { Principal } from "./principal.ts";
import type { ChatMessage, TokenUsage, ToolCall, ToolChoice } from "./provider.ts";
import type { JsonObject, JsonValue, SessionRecord } from "./sessions.ts";

/** The outcome of one run, as the client receives it. */
export interface AgentRunResult {
  success: boolean;
  output: string;
  model: string;
  finishReason: string;
  usage: TokenUsage;
  durationMs: number;
  metadata: Record<string, string>;
  /** Every tool call the run made, in the order they were asked for. */
  toolCalls?: ToolCallRecord[];
  /** Model steps taken (1 for a run without tools). */
  steps?: number;
  /** The answer parsed and validated against the output schema, when one was asked for and it matched. */
  structuredOutput?: JsonValue;
  /** Why the answer did not match the output schema (success is then false). */
  validationErrors?: string[];
}

/** How a tool call ended. */
export type ToolOutcome =
  /** It returned. */
  | "ok"
  /** It threw: the model saw the error. */
  | "error"
  /** Its arguments did not match its schema: it did not run; the model saw why. */
  | "invalid_arguments"
  /** A middleware refused it, or the agent may not use it: it did not run. */
  | "denied"
  /** Its timeout passed: its signal fired. */
  | "timeout"
  /** The run was cancelled or hit its deadline while it ran: its signal fired. */
  | "cancelled"
  /** It did not stop within the grace period after its signal fired; its result, if any comes, is dropped. */
  | "abandoned"
  /** A limit ended the run before it could run. */
  | "skipped"
  /** A durable run's replica died while it ran and it is not idempotent: it was not run again, and whether it finished is unknown. */
  | "unknown";

/** One tool call of a run and what came of it. */
export interface ToolCallRecord {
  /** The model's id for the call. */
  id: string;
  name: string;
  /** The arguments as the tool received them (JSON text). */
  arguments: string;
  step: number;
  outcome: ToolOutcome;
  /** What the model was given back: the tool's output (JSON text unless it returned a string) or the error. */
  output: string;
  durationMs: number;
  /** The tool is marked idempotent (a cache may keep runs whose every call is). */
  idempotent?: boolean;
}

/** One event of a run, flowing out through the onion. */
export type RunEvent =
  | { type: "started"; model: string; agentId?: string }
  | { type: "delta"; text: string }
  /** A model step begins (1-based). */
  | { type: "step_started"; step: number }
  /** The model began writing a tool call. */
  | { type: "tool_call_started"; step: number; toolCallId: string; name: string; index: number }
  /** A piece of a tool call's arguments as the model writes them. */
  | { type: "tool_call_delta"; step: number; toolCallId: string; argumentsDelta: string }
  /** A tool call the runtime is about to run, with its checked arguments. */
  | { type: "tool_call"; step: number; call: ToolCall }
  /** A tool call's outcome. */
  | { type: "tool_result"; step: number; record: ToolCallRecord }
  /** A model step ended. */
  | {
      type: "step_finished";
      step: number;
      finishReason: string;
      usage: TokenUsage;
      toolCalls: number;
      /** The step's text as streamed; set in a durable run's journal, which keeps no text deltas. */
      text?: string;
    }
  /**
   * A durable run parks: tools of this step need a person's approval, or are the caller's own. No
   * process holds it; the run goes on (from the journal) once they are decided.
   */
  | { type: "waiting"; step: number; calls: ToolCall[]; pending: PendingToolCall[] }
  | { type: "completed"; result: AgentRunResult };

/** Per-call generation overrides. */
export interface GenerationOptions {
  model?: string;
  temperature?: number;
  maxTokens?: number;
  toolChoice?: ToolChoice;
  parallelToolCalls?: boolean;
  /** At most this many model steps (capped by the agent's limit). */
  maxSteps?: number;
  /** JSON Schema the final answer must match. */
  outputSchema?: JsonObject;
  /** Narrows the agent's tools to those matching these names or globs; never widens them. */
  tools?: string[];
}

/** A call a parked durable run waits on: a person's approval, or the caller's answer. */
export interface PendingToolCall {
  toolCallId: string;
  reason: "approval" | "caller";
  /** Why a person is asked, beyond the tool's own needsApproval: a middleware's reason, the agent's config, an unknown outcome. */
  note?: string;
  /** Epoch ms after which an undecided approval is refused (set when a durable run parks). */
  expireAt?: number;
}

/** What a middleware's toolCall hook decides: refuse the call, rewrite its arguments, or have a person approve it first (the reason is shown to the approver). */
export type ToolCallDecision = void | undefined | { deny: string } | { arguments: string } | { approval: string };

/** A tool call as a middleware's hook sees it. */
export interface ToolCallInfo {
  readonly step: number;
  readonly call: ToolCall;
  /** The arguments parsed. */
  readonly args: unknown;
}

/** Everything a middleware knows about one call. */
export interface AgentContext {
  /** Unique per call; appears in logs and events. */
  readonly callId: string;
  readonly agentId: string;
  /** The configured agent, or undefined when agent_id names none (validation rejects it). */
  readonly agent: AgentDefinition | undefined;
  /**
   * The user the call acts as: the request's user_id until an auth middleware
   * sets it from the principal (see actingUser).
   */
  userId: string;
  /** The user_id the request named ("" when none). */
  readonly requestedUserId: string;
  /**
   * Who is calling, once established: by the host before the onion when the
   * call's `admit` hooks ran on its headers (an auth middleware then need not
   * verify the credential again), or by an auth middleware's `process`.
   */
  principal: Principal | undefined;
  readonly sessionId: string;
  task: string;
  /** The request's metadata map. */
  readonly metadata: Record<string, string>;
  options: GenerationOptions;
  /** Aborted on client cancel, deadline or shutdown; its reason is a ConnectError. */
  readonly signal: AbortSignal;
  /** Epoch ms at which the call started. */
  readonly startTime: number;
  /** A request header (gRPC metadata), lower-case name. */
  header(name: string): string | undefined;
  /** The call's session, loaded once on first use; undefined without session_id. */
  session(): Promise<SessionRecord | undefined>;
  /** The prompt history the agent will see (the session's last messages). */
  history(): Promise<ChatMessage[]>;
  /** Scratch space shared by middleware of this call. */
  readonly state: Map<string | symbol, unknown>;
}

/** Calls the rest of the onion. */
export type Next = () => AsyncIterable<RunEvent>;

/** An RPC as `admit` sees it: its name and headers, before its request is decoded. */
export interface RpcCall {
  /** Fully-qualified service, e.g. "qingyu.agent.v1.SessionService". */
  readonly service: string;
  /** Method name, e.g. "GetSession". */
  readonly method: string;
  /** A request header (gRPC metadata), lower-case name. */
  header(name: string): string | undefined;
  /** Who is calling; an auth middleware sets it. */
  principal: Principal | undefined;
  readonly signal: AbortSignal;
}

/** One layer of the onion: code before `next()` pre-processes, after it post-processes. */
export interface Middleware {
  readonly name: string;
  /** Set when this middleware must see a unary call's answer as the model streams it (e.g. to stop a long answer early); otherwise a unary Execute may get the whole answer as one delta. */
  readonly needsStreaming?: boolean;
  process(ctx: AgentContext, next: Next): AsyncIterable<RunEvent>;
  /**
   * Runs, in pipeline order, on the headers of every RPC but health checks,
   * before its request body is decoded (agent runs too, whose onion then runs
   * `process` as well), so a refused caller costs no decoding. Throw a
   * ConnectError to refuse the call; set `call.principal` to authenticate it.
   */
  admit?(call: RpcCall): void | Promise<void>;
  /**
   * Runs, in pipeline order, before each tool call with checked arguments:
   * return `{ deny: reason }` to refuse it (the model sees the reason),
   * `{ arguments }` (JSON text) to run it with other arguments (checked again),
   * or `{ approval: reason }` to have a person approve it first (a durable run
   * parks; Execute, which cannot wait, refuses it). A later hook still runs and
   * may deny it. Asked again when the run goes on: the decision made stands.
   */
  toolCall?(ctx: AgentContext, call: ToolCallInfo): ToolCallDecision | Promise<ToolCallDecision>;
  /** Runs after each tool call (observation only; a throw is logged). */
  toolResult?(ctx: AgentContext, record: ToolCallRecord): void | Promise<void>;
  /** Runs after each model step (observation only; a throw is logged). */
  stepFinished?(ctx: AgentContext, step: { step: number; finishReason: string; usage: TokenUsage; toolCalls: number }): void | Promise<void>;
  /** Releases what setup acquired (timers, queues); called at shutdown and once a reload has replaced it. */
  dispose?(): void | Promise<void>;
}
