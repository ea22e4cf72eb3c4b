import type { AgentDefinition } from "@qingyu/plugin-api";
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";

/**
 * The configured agents that are on: those whose `requireEnv` variables are
 * all set. `leftOut` hears about the others. A duplicate id is a ConfigError.
 */
export function enabledAgents(
  config: Config,
  env: Readonly<Record<string, string | undefined>>,
  leftOut: (agent: string, missing: string[]) => void = () => undefined,
): AgentDefinition[] {
  const agents: AgentDefinition[] = [];
  for (const a of config.agents) {
    const missing = a.requireEnv.filter((name) => !env[name]);
    if (missing.length) {
      leftOut(a.id, missing);
      continue;
    }
    if (agents.some((b) => b.id === a.id)) throw new ConfigError(`invalid config:\n  agents: agent id "${a.id}" appears twice`);
    agents.push({
      id: a.id,
      description: a.description,
      provider: a.provider,
      model: a.model,
      models: a.models,
      systemPrompt: a.systemPrompt,
      defaults: a.defaults,
      limits: a.limits,
    });
  }
  return agents;
}

/** The ConfigError for an agent whose provider is not configured, or undefined. */
export function missingProvider(config: Config, agent: AgentDefinition): ConfigError | undefined {
  if (config.providers[agent.provider]) return undefined;
  const i = config.agents.findIndex((a) => a.id === agent.id);
  return new ConfigError(
    `invalid config:\n  agents.${i}.provider: no provider named "${agent.provider}" (configured: ${Object.keys(config.providers).join(", ") || "none"})`,
  );
}
