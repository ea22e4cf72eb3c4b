import type { AgentDefinition } from "@qingyu/plugin-api";

/** The configured agents, by id. */
export class AgentRegistry {
  private readonly byId: ReadonlyMap<string, AgentDefinition>;

  constructor(agents: readonly AgentDefinition[]) {
    this.byId = new Map(agents.map((a) => [a.id, a]));
  }

  get(id: string): AgentDefinition | undefined {
    return this.byId.get(id);
  }

  list(): AgentDefinition[] {
    return [...this.byId.values()];
  }
}

/**
 * Whether a caller may ask `agent` for `model`: its own, one its `models`
 * lists, or any when that lists "*". The operator pays for upstream models,
 * so a caller never picks one the config did not name.
 */
export function offersModel(agent: AgentDefinition, model: string): boolean {
  return model === agent.model || (agent.models ?? []).some((m) => m === "*" || m === model);
}
