import { type AgentCatalog, type AgentDefinition, Code, ConnectError, ErrorReason, notFound, withReason } from "@qingyu/plugin-api";

/** A configured agent the server does not serve, and why: environment variables its `requireEnv` names are not set. */
export interface UnavailableAgent {
  id: string;
  provider: string;
  /** The variables not set, in config order. */
  missing: string[];
}

/** The configured agents, by id, and those configured but not served. */
export class AgentRegistry implements AgentCatalog {
  private readonly byId: ReadonlyMap<string, AgentDefinition>;
  private readonly notServed: ReadonlyMap<string, UnavailableAgent>;

  constructor(agents: readonly AgentDefinition[], unavailable: readonly UnavailableAgent[] = []) {
    this.byId = new Map(agents.map((a) => [a.id, a]));
    this.notServed = new Map(unavailable.map((u) => [u.id, u]));
  }

  get(id: string): AgentDefinition | undefined {
    return this.byId.get(id);
  }

  list(): AgentDefinition[] {
    return [...this.byId.values()];
  }

  /** The configured agents that are not served. */
  unavailable(): UnavailableAgent[] {
    return [...this.notServed.values()];
  }

  /**
   * The error for an id get() does not find: FAILED_PRECONDITION naming what
   * is missing for a configured agent that is not served (a typo and a missing
   * key must not look alike), NOT_FOUND for any other.
   */
  refusal(id: string): ConnectError {
    const agent = this.notServed.get(id);
    if (!agent) return notFound("agent", id);
    const error = new ConnectError(unavailableMessage(agent), Code.FailedPrecondition);
    return withReason(error, ErrorReason.AGENT_UNAVAILABLE, { agent_id: agent.id, missing: agent.missing.join(",") });
  }
}

/** Why an agent is not served, in the words the caller, the start-up log and `qingyu check` use. */
export function unavailableMessage(agent: UnavailableAgent): string {
  const [one, them] = agent.missing.length === 1 ? ["is", "it"] : ["are", "them"];
  return `agent "${agent.id}" is unavailable: ${listed(agent.missing)} ${one} not set (the agent requires ${them} for provider "${agent.provider}")`;
}

/** The error for an agent id `agents` does not serve: the registry's refusal, NOT_FOUND for any other catalog. */
export function agentRefusal(agents: AgentCatalog, id: string): ConnectError {
  return agents instanceof AgentRegistry ? agents.refusal(id) : notFound("agent", id);
}

function listed(names: readonly string[]): string {
  return names.length <= 1 ? (names[0] ?? "") : `${names.slice(0, -1).join(", ")} and ${names.at(-1)}`;
}

/**
 * Whether a caller may ask `agent` for `model`: its own, one its `models`
 * lists, or any when that lists "*". The operator pays for upstream models,
 * so a caller never picks one the config did not name.
 */
export function offersModel(agent: AgentDefinition, model: string): boolean {
  return model === agent.model || (agent.models ?? []).some((m) => m === "*" || m === model);
}
