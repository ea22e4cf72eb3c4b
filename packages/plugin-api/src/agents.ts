import type { ToolChoice } from "./provider.ts";
import type { JsonObject } from "./sessions.ts";

/** A configured agent. */
export interface AgentDefinition {
  id: string;
  description: string;
  /** Name of a configured provider instance. */
  provider: string;
  model: string;
  /**
   * Models a caller may ask for in `options.model` besides `model` (config
   * `agents[].models`); "*" allows any. Absent: only `model`.
   */
  models?: readonly string[];
  systemPrompt: string;
  defaults: {
    temperature?: number;
    maxTokens?: number;
    /** Provider-specific options passed through untouched. */
    extra?: Record<string, unknown>;
    toolChoice?: ToolChoice;
    parallelToolCalls?: boolean;
  };
  /** The tools it may use: names and globs ("github__*") over every tool source. */
  tools?: readonly string[];
  /** JSON Schema its final answer must match (a call's options.outputSchema replaces it). */
  outputSchema?: JsonObject;
  /** Per-agent caps (config `agents[].limits`); unset ones leave the global limits in force. */
  limits?: AgentLimits;
}

/** Input and output caps of one agent. */
export interface AgentLimits {
  /** Largest task, in UTF-8 bytes (replaces the validation plugin's maxTaskBytes). */
  maxTaskBytes?: number;
  /** Token budget of the prompt history, applied to what the session manager returns. */
  maxHistoryTokens?: number;
  /** Largest max_tokens sent upstream; also what is sent when the caller asks none. */
  maxOutputTokens?: number;
  /** Most model steps in one run (a call may ask fewer). */
  maxSteps?: number;
  /** Most tool calls in one run; calls beyond it are skipped and the run ends. */
  maxToolCalls?: number;
  /** A tool call's timeout when its tool sets none, in ms. */
  toolTimeoutMs?: number;
  /** Most tool calls running at once in one run. */
  maxParallelTools?: number;
}

/** The configured agents, by id. */
export interface AgentCatalog {
  get(id: string): AgentDefinition | undefined;
  list(): AgentDefinition[];
}
