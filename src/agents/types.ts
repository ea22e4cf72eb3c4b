/** A configured agent. */
export interface AgentDefinition {
  id: string;
  description: string;
  /** Name of a configured provider instance. */
  provider: string;
  model: string;
  systemPrompt: string;
  defaults: {
    temperature?: number;
    maxTokens?: number;
    /** Provider-specific options passed through untouched. */
    extra?: Record<string, unknown>;
  };
}
