import type { AgentDefinition, JsonObject } from "@qingyu/plugin-api";
import type { UnavailableAgent } from "../agents/registry.ts";
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";

/**
 * The configured agents: `available`, those whose `requireEnv` variables are
 * all set, and `unavailable`, the others with what they miss (their callers
 * get FAILED_PRECONDITION naming it, not NOT_FOUND). A duplicate id among the
 * available ones is a ConfigError.
 */
export function configuredAgents(
  config: Config,
  env: Readonly<Record<string, string | undefined>>,
): { available: AgentDefinition[]; unavailable: UnavailableAgent[] } {
  const available: AgentDefinition[] = [];
  const unavailable: UnavailableAgent[] = [];
  for (const a of config.agents) {
    const missing = a.requireEnv.filter((name) => !env[name]);
    if (missing.length) {
      unavailable.push({ id: a.id, provider: a.provider, missing });
      continue;
    }
    if (available.some((b) => b.id === a.id)) throw new ConfigError(`invalid config:\n  agents: agent id "${a.id}" appears twice`);
    available.push({
      id: a.id,
      description: a.description,
      provider: a.provider,
      model: a.model,
      models: a.models,
      systemPrompt: a.systemPrompt,
      defaults: a.defaults,
      limits: a.limits,
      tools: a.tools,
      ...(a.outputSchema ? { outputSchema: a.outputSchema as JsonObject } : {}),
    });
  }
  // An id another entry serves is not unavailable (an agent on openai when its key is set, else on echo).
  return { available, unavailable: unavailable.filter((u) => !available.some((a) => a.id === u.id)) };
}

/** The ConfigError for an agent whose provider is not configured, or undefined. */
export function missingProvider(config: Config, agent: AgentDefinition): ConfigError | undefined {
  if (config.providers[agent.provider]) return undefined;
  const i = config.agents.findIndex((a) => a.id === agent.id);
  return new ConfigError(
    `invalid config:\n  agents.${i}.provider: no provider named "${agent.provider}" (configured: ${Object.keys(config.providers).join(", ") || "none"})`,
  );
}
