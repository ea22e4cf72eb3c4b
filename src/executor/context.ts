import {
  type AgentContext,
  type AgentDefinition,
  type ChatMessage,
  type GenerationOptions,
  invalidArgument,
  type Principal,
  type ToolSpec,
} from "@qingyu/plugin-api";
import { randomUUID } from "node:crypto";
import type { AgentRegistry } from "../agents/registry.ts";
import { anonymousSessions, isAnonymous, turnUser } from "../pipeline/acting.ts";
import type { SessionManager } from "../sessions/manager.ts";
import type { SessionRecord } from "../sessions/types.ts";
import type { ResumeState } from "./resume.ts";

/** One call's input, whichever RPC it came from. */
export interface ExecuteInput {
  agentId: string;
  task: string;
  sessionId: string;
  userId: string;
  metadata: Record<string, string>;
  options: GenerationOptions;
  /** Tools the caller runs itself (a durable run's RunOptions.caller_tools): the model may call them; their results come from the caller. */
  callerTools?: ToolSpec[];
}

/** What the transport knows about the call. */
export interface CallInfo {
  /** Aborted on client cancel, deadline or shutdown; the reason is a ConnectError. */
  signal: AbortSignal;
  /** Epoch ms, when the client set a deadline. */
  deadline?: number;
  /** A request header (gRPC metadata) by lower-case name. */
  header(name: string): string | undefined;
  /**
   * Who is calling, already established: a durable run resumed on another
   * replica starts its onion with the principal its start was admitted with
   * (its headers are gone with the replica that had them).
   */
  principal?: Principal;
  /** The durable run this call is (RunService): its id names the run to tools and keys their calls, the same on every replica. */
  runId?: string;
}

/** An AgentContext with the deadline the executor's retries respect. */
export interface ExecutionContext extends AgentContext {
  readonly deadline: number | undefined;
  /** The run tools see (ToolContext.runId) and key their calls by: the durable run's id, else the call's. */
  readonly runId: string;
  /** The caller's own tools for this run. */
  readonly callerTools: readonly ToolSpec[];
  /** Set when the run goes on from a journal (a durable run taken over after its replica died). */
  readonly resume?: ResumeState;
  /** This generation's agents (their refusal names an unavailable agent's missing variable). */
  readonly agents: AgentRegistry;
  /** The caller reads only the result (Execute, a batch item), not the deltas as they stream: a step may be answered whole. */
  readonly whole: boolean;
}

/**
 * Builds the context of one call. When only a session is named, its agent is
 * the call's agent, so the session is read first; otherwise it is read lazily,
 * once, by whoever needs it first (a cache, the agent call).
 */
export async function createContext(
  input: ExecuteInput,
  call: CallInfo,
  agents: AgentRegistry,
  sessions: SessionManager,
  guarded = false,
  resume?: ResumeState,
  whole = false,
): Promise<ExecutionContext> {
  const ctx = new CallAgentContext(input, call, agents, sessions, guarded, resume, whole);
  // A session that cannot be read (missing, another user's) is not reported here: auth in the
  // onion must answer first, and whoever next asks for the session gets the error.
  if (!ctx.agentId && input.sessionId) await ctx.adoptSessionAgent().catch(() => undefined);
  return ctx;
}

// A class, not an object of closures: one is built for every call.
class CallAgentContext implements ExecutionContext {
  readonly callId = randomUUID();
  readonly runId: string;
  readonly callerTools: readonly ToolSpec[];
  agentId: string;
  agent: AgentDefinition | undefined;
  userId: string;
  readonly requestedUserId: string;
  principal: Principal | undefined = undefined;
  readonly sessionId: string;
  task: string;
  readonly metadata: Record<string, string>;
  options: GenerationOptions;
  readonly signal: AbortSignal;
  readonly deadline: number | undefined;
  readonly startTime = Date.now();
  readonly state = new Map<string | symbol, unknown>();
  private loaded: Promise<SessionRecord | undefined> | undefined;
  private recent: Promise<ChatMessage[]> | undefined;

  constructor(
    input: ExecuteInput,
    private readonly call: CallInfo,
    readonly agents: AgentRegistry,
    private readonly sessions: SessionManager,
    /** Auth is configured: a call no principal vouched for owns no session. */
    readonly guarded: boolean,
    readonly resume: ResumeState | undefined,
    readonly whole: boolean,
  ) {
    this.agentId = input.agentId;
    this.agent = input.agentId ? agents.get(input.agentId) : undefined;
    this.userId = input.userId;
    this.requestedUserId = input.userId;
    this.sessionId = input.sessionId;
    this.task = input.task;
    this.metadata = input.metadata;
    this.options = { ...input.options };
    this.signal = call.signal;
    this.deadline = call.deadline;
    this.runId = call.runId ?? this.callId;
    this.callerTools = input.callerTools ?? [];
  }

  header(name: string): string | undefined {
    return this.call.header(name);
  }

  // Read once, but the owner is checked on every use: auth may set the user after an early read.
  session(): Promise<SessionRecord | undefined> {
    // Before the read, so whether the session exists is no answer to a caller without credentials.
    if (this.sessionId && isAnonymous(this)) return Promise.reject(anonymousSessions());
    this.loaded ??= this.sessionId ? this.sessions.forTurn(this.sessionId) : Promise.resolve(undefined);
    return this.loaded.then((s) => s && this.check(s));
  }

  history(): Promise<ChatMessage[]> {
    return (this.recent ??= this.session().then((s) => (s ? this.sessions.recent(s) : [])));
  }

  /** A call that names only a session runs that session's agent. */
  async adoptSessionAgent(): Promise<void> {
    // Read before auth has run, so not checked (nor the user taken from it) here: session() checks on use.
    this.loaded ??= this.sessionId ? this.sessions.forTurn(this.sessionId) : Promise.resolve(undefined);
    const session = await this.loaded;
    this.agentId = session?.agentId ?? "";
    this.agent = this.agentId ? this.agents.get(this.agentId) : undefined;
  }

  private check(session: SessionRecord): SessionRecord {
    this.userId = turnUser(this, this.userId, this.requestedUserId, session);
    if (this.agentId && session.agentId && session.agentId !== this.agentId) {
      throw invalidArgument("agent_id", `session "${session.id}" is bound to agent "${session.agentId}", not "${this.agentId}"`);
    }
    return session;
  }
}
