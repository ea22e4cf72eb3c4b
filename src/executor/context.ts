import { randomUUID } from "node:crypto";
import type { AgentRegistry } from "../agents/registry.ts";
import { invalidArgument } from "../errors.ts";
import type { ChatMessage } from "../providers/types.ts";
import type { AgentContext, GenerationOptions } from "../pipeline/types.ts";
import type { SessionManager } from "../sessions/manager.ts";
import type { SessionRecord } from "../sessions/types.ts";

/** One call's input, whichever RPC it came from. */
export interface ExecuteInput {
  agentId: string;
  task: string;
  sessionId: string;
  userId: string;
  metadata: Record<string, string>;
  options: GenerationOptions;
}

/** What the transport knows about the call. */
export interface CallInfo {
  /** Aborted on client cancel, deadline or shutdown; the reason is a ConnectError. */
  signal: AbortSignal;
  /** Epoch ms, when the client set a deadline. */
  deadline?: number;
  /** A request header (gRPC metadata) by lower-case name. */
  header(name: string): string | undefined;
}

/** An AgentContext with the deadline the executor's retries respect. */
export interface ExecutionContext extends AgentContext {
  readonly deadline: number | undefined;
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
): Promise<ExecutionContext> {
  let loaded: Promise<SessionRecord | undefined> | undefined;
  let userId = input.userId;
  const loadSession = (): Promise<SessionRecord | undefined> =>
    (loaded ??= input.sessionId
      ? sessions.get(input.sessionId, userId).then((session) => {
          // A call without user_id acts as the session's owner.
          userId ||= session.userId;
          if (agentId && session.agentId && session.agentId !== agentId) {
            throw invalidArgument("agent_id", `session "${session.id}" is bound to agent "${session.agentId}", not "${agentId}"`);
          }
          return session;
        })
      : Promise.resolve(undefined));

  let agentId = input.agentId;
  if (!agentId && input.sessionId) agentId = (await loadSession())?.agentId ?? "";

  let history: Promise<ChatMessage[]> | undefined;
  return {
    callId: randomUUID(),
    agentId,
    agent: agentId ? agents.get(agentId) : undefined,
    get userId() {
      return userId;
    },
    set userId(value: string) {
      userId = value;
    },
    sessionId: input.sessionId,
    task: input.task,
    metadata: input.metadata,
    options: { ...input.options },
    signal: call.signal,
    deadline: call.deadline,
    startTime: Date.now(),
    header: call.header,
    session: loadSession,
    history: () => (history ??= loadSession().then((s) => (s ? sessions.recent(s) : []))),
    state: new Map(),
  };
}
