import type { ChatMessage, TokenUsage, ToolCall, ToolCallRecord } from "@qingyu/plugin-api";

/** A person's decision on a tool call that needed approval. */
export interface Decision {
  approved: boolean;
  /** Run it with these arguments instead (JSON text; checked against its schema again). */
  arguments?: string;
  /** Told to the model with the decision. */
  message?: string;
  /** A caller's own tool: what the caller answered (the call is not run here). */
  result?: { output: string; isError: boolean };
  /** Nobody decided before the approval expired (runs.approvalTimeoutSeconds): a refusal `message` explains. */
  expired?: boolean;
}

/**
 * Where a run taken over from a replica that died stands, rebuilt from its
 * journal: what the finished steps said and called, what the finished tools
 * returned, and what was in flight. The loop goes on from here; nothing
 * finished is asked or run again.
 */
export interface ResumeState {
  /** What the run added after the user's task: each finished step's assistant message with its calls, and the tool messages. */
  messages: ChatMessage[];
  /** The tool calls that ended, in journal order. */
  records: ToolCallRecord[];
  /** Finished model steps. */
  steps: number;
  usage: TokenUsage;
  /** The finished steps' text, as a stream of the run would have given it. */
  output: string;
  /**
   * Calls dispatched whose end the journal does not have: re-run when idempotent; otherwise as
   * `unknownOutcome` says, with `decision` once a person was asked whether to run it again.
   */
  unfinished: { step: number; call: ToolCall; decision?: Decision }[];
  /** What becomes of an unfinished call that is not idempotent (runs.unknownOutcome): "model" (default) records it unknown; "approval" asks a person first. */
  unknownOutcome?: "model" | "approval";
  /** A step that had started and not finished: it is asked again (step_restarted). */
  restartedStep?: number;
  /** A step parked for approval: its calls are prepared again with the decisions made since. */
  parked?: { step: number; calls: ToolCall[] };
  /** Every decision made on the run's calls that needed approval, by tool call id. */
  decisions?: ReadonlyMap<string, Decision>;
  /** The model had already answered (its last finished step called no tool): the run completes with this, asking nothing again. */
  answered?: string;
}
