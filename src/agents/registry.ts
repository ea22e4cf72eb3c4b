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
