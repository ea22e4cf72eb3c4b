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
  };
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
}

/** The configured agents, by id. */
export interface AgentCatalog {
  get(id: string): AgentDefinition | undefined;
  list(): AgentDefinition[];
}
