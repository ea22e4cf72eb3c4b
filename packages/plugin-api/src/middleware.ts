import type { AgentDefinition } from "./agents.ts";
import type { Principal } from "./principal.ts";
import type { ChatMessage, TokenUsage } from "./provider.ts";
import type { SessionRecord } from "./sessions.ts";

/** The outcome of one run, as the client receives it. */
export interface AgentRunResult {
  success: boolean;
  output: string;
  model: string;
  finishReason: string;
  usage: TokenUsage;
  durationMs: number;
  metadata: Record<string, string>;
}

/** One event of a run, flowing out through the onion. */
export type RunEvent = { type: "started"; model: string; agentId?: string } | { type: "delta"; text: string } | { type: "completed"; result: AgentRunResult };

/** Per-call generation overrides. */
export interface GenerationOptions {
  model?: string;
  temperature?: number;
  maxTokens?: number;
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
  process(ctx: AgentContext, next: Next): AsyncIterable<RunEvent>;
  /**
   * Runs, in pipeline order, on the headers of every RPC but health checks,
   * before its request body is decoded (agent runs too, whose onion then runs
   * `process` as well), so a refused caller costs no decoding. Throw a
   * ConnectError to refuse the call; set `call.principal` to authenticate it.
   */
  admit?(call: RpcCall): void | Promise<void>;
  /** Releases what setup acquired (timers, queues); called at shutdown and once a reload has replaced it. */
  dispose?(): void | Promise<void>;
}
