import type { AgentDefinition, Tool, ToolDefinition } from "@qingyu/plugin-api";
import { ArgumentSchemas, type ArgumentCheck } from "./argument-schemas.ts";
import { matchesAny } from "./glob.ts";
import { isToolName } from "./tool-name.ts";

/** A tool ready for the step loop: what it is, where it came from, and its compiled argument check. */
export interface ReadyTool {
  readonly tool: Tool;
  /** For logs and errors: `plugin "weather"`, `mcp server "github"`, `backend "billing"`. */
  readonly source: string;
  /** What the provider is given. */
  readonly definition: ToolDefinition;
  /** A tool the caller runs itself (a durable run's caller_tools): its calls park the run for the caller's answer. */
  readonly caller?: boolean;
  /** The agent's config (agents[].approval) has a person approve its calls, whether or not the tool asks. */
  readonly approval?: boolean;
  /** The argument errors, one line each; empty when the arguments match. */
  check(args: unknown): string[];
}

/** The tools one run may call. */
export interface ToolSet {
  readonly tools: readonly ReadyTool[];
  get(name: string): ReadyTool | undefined;
  /** What the provider is offered, in a stable order. */
  readonly definitions: readonly ToolDefinition[];
}

/** A tool whose name or schema cannot be offered to a model. */
export class ToolCatalogError extends Error {}

/** Every tool of a generation, by name, and each agent's share of them. */
export class ToolCatalog {
  private readonly byName = new Map<string, ReadyTool>();
  private readonly perAgent = new Map<string, ToolSet>();

  /** `approval`: by agent id, the names and globs of its tools whose calls a person approves (agents[].approval). */
  constructor(
    entries: readonly { tool: Tool; source: string }[],
    private readonly approval: ReadonlyMap<string, readonly string[]> = new Map(),
  ) {
    const schemas = new ArgumentSchemas();
    for (const { tool, source } of entries) {
      if (!isToolName(tool.name)) throw new ToolCatalogError(`${source}: tool name ${JSON.stringify(tool.name)} is not [A-Za-z0-9_-], 1 to 64 characters`);
      const other = this.byName.get(tool.name);
      if (other) throw new ToolCatalogError(`tool "${tool.name}" comes from both ${other.source} and ${source}`);
      let check: ArgumentCheck;
      try {
        check = schemas.compile(tool.inputSchema);
      } catch (err) {
        throw new ToolCatalogError(`${source}: tool "${tool.name}" has an input schema that does not compile: ${(err as Error).message}`);
      }
      this.byName.set(tool.name, { tool, source, definition: { name: tool.name, description: tool.description, parameters: tool.inputSchema }, check });
    }
  }

  /** Every tool's name, sorted. */
  names(): string[] {
    return [...this.byName.keys()].sort();
  }

  /** The patterns of an agent's `tools` that match no tool (a typo would otherwise silently give it none). */
  unmatched(patterns: readonly string[]): string[] {
    const names = this.names();
    return patterns.filter((p) => !names.some((n) => matchesAny([p], n)));
  }

  /** The tools `agent` may use, narrowed by a call's `tools` (which can never add one). */
  forAgent(agent: AgentDefinition, narrow?: readonly string[]): ToolSet {
    const patterns = agent.tools ?? [];
    const approval = this.approval.get(agent.id) ?? [];
    if (!narrow?.length) {
      let set = this.perAgent.get(agent.id);
      if (!set) this.perAgent.set(agent.id, (set = this.select((n) => matchesAny(patterns, n), approval)));
      return set;
    }
    return this.select((n) => matchesAny(patterns, n) && matchesAny(narrow, n), approval);
  }

  private select(keep: (name: string) => boolean, approval: readonly string[]): ToolSet {
    const tools = this.names()
      .filter(keep)
      .map((n) => this.byName.get(n)!)
      .map((t) => (matchesAny(approval, t.tool.name) ? { ...t, approval: true } : t));
    const byName = new Map(tools.map((t) => [t.tool.name, t]));
    return { tools, get: (name) => byName.get(name), definitions: tools.map((t) => t.definition) };
  }
}

/** The empty set: runs of agents without tools. */
export const NO_TOOLS: ToolSet = { tools: [], get: () => undefined, definitions: [] };
