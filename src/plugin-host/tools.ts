import type { AgentDefinition, LlmProvider, PluginDefinition, Tool, ToolSource } from "@qingyu/plugin-api";
import type { Logger } from "pino";
import { ConfigError } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import { shownMessage } from "../errors.ts";
import { BackendToolsSchema } from "../tools/backend/config.ts";
import { ToolCatalog, ToolCatalogError } from "../tools/catalog.ts";
import { matchesAny } from "../tools/glob.ts";
import { McpServerSchema } from "../tools/mcp/config.ts";
import type { Disposable } from "./generation.ts";
import { instantiate, refEnabled, type HostBase } from "./instantiate.ts";
import { PluginError, type CatalogEntry } from "./loader.ts";

/** What assembling the tools needs from the generation being built. */
export interface ToolAssembly {
  config: Config;
  baseDir: string;
  catalog: ReadonlyMap<string, CatalogEntry>;
  host: HostBase;
  log: Logger;
  /** Where what is set up is registered, so a failed assembly releases it. */
  disposables: Disposable[];
  definitions: Set<PluginDefinition>;
}

// Listing a source at start-up must not hang it forever on a server that never answers.
const LIST_TIMEOUT_MS = 30_000;

/**
 * Sets up every configured tool source (tool plugins, tool-source plugins,
 * MCP servers, backends' ToolService), lists their tools once, and checks
 * what agents ask for: an agent's tool pattern that matches nothing, or tools
 * on a provider that cannot call them, stop start-up naming both. Returns
 * undefined when no tool is configured.
 */
export async function assembleTools(
  a: ToolAssembly,
  agents: readonly AgentDefinition[],
  providers: ReadonlyMap<string, LlmProvider>,
): Promise<ToolCatalog | undefined> {
  const { config } = a;
  const entries: { tool: Tool; source: string }[] = [];
  const sources: { source: ToolSource; where: string; label: string }[] = [];
  for (const [i, ref] of config.tools.plugins.entries()) {
    if (!refEnabled(ref)) continue;
    const where = `tools.plugins.${i}`;
    const name = typeof ref === "string" ? ref : ref.plugin;
    const kind = a.catalog.get(name)?.definition.kind === "tool-source" ? "tool-source" : "tool";
    const { product, entry } = await instantiate(a.catalog, ref, kind, where, a.host);
    a.definitions.add(entry.definition);
    const label = `${kind} plugin "${entry.definition.name}"`;
    if (kind === "tool-source") sources.push({ source: product as ToolSource, where, label });
    else for (const tool of Array.isArray(product) ? (product as Tool[]) : [product as Tool]) entries.push({ tool, source: label });
  }
  // The MCP client and the backends' gRPC client are imported only when configured: most servers have neither.
  const mcp = Object.keys(config.tools.mcp).length ? await import("../tools/mcp/mcp-source.ts") : undefined;
  const backends = Object.keys(config.tools.backends).length ? await import("../tools/backend/backend-source.ts") : undefined;
  for (const [server, raw] of Object.entries(config.tools.mcp)) {
    const where = `tools.mcp.${server}`;
    const source = new mcp!.McpToolSource(server, parseSection(McpServerSchema, raw, where), { log: a.log.child({ mcp: server }), baseDir: a.baseDir });
    sources.push({ source, where, label: `mcp server "${server}"` });
  }
  for (const [backend, raw] of Object.entries(config.tools.backends)) {
    const where = `tools.backends.${backend}`;
    // Its wire bound (4 MiB) refuses a larger output as a tool error; the loop cuts what the model is given to tools.maxOutputBytes.
    const source = new backends!.BackendToolSource(backend, parseSection(BackendToolsSchema, raw, where), { log: a.log, baseDir: a.baseDir });
    sources.push({ source, where, label: `backend "${backend}"` });
  }
  for (const { source, where } of sources) if (source.dispose) a.disposables.push({ where, dispose: () => source.dispose!() });
  const listed = await Promise.all(sources.map((s) => listSource(s.source, s.label)));
  for (const [i, tools] of listed.entries()) for (const tool of tools) entries.push({ tool, source: sources[i]!.label });

  const wanting = agents.filter((agent) => agent.tools?.length);
  const approval = new Map<string, readonly string[]>();
  for (const agent of agents) {
    const i = entryOf(config, agent);
    const patterns = config.agents[i]?.approval ?? [];
    if (!patterns.length) continue;
    if (!agent.tools?.length)
      throw new ConfigError(`invalid config:\n  agents.${i}.approval: ${noMatch(patterns)} no tool of agent "${agent.id}" (it has none)`);
    approval.set(agent.id, patterns);
  }
  if (!entries.length && !wanting.length) return undefined;
  let catalog: ToolCatalog;
  try {
    catalog = new ToolCatalog(entries, approval);
  } catch (err) {
    if (err instanceof ToolCatalogError) throw new ConfigError(`invalid config:\n  tools: ${err.message}`);
    throw err;
  }
  for (const agent of wanting) {
    const i = entryOf(config, agent);
    const missing = catalog.unmatched(agent.tools!);
    if (missing.length) {
      throw new ConfigError(`invalid config:\n  agents.${i}.tools: ${noMatch(missing)} no configured tool (tools: ${catalog.names().join(", ") || "none"})`);
    }
    // As agents[].tools: a typo would otherwise leave a tool running without the approval the config meant.
    const own = catalog.forAgent(agent).tools.map((t) => t.tool.name);
    const unasked = (approval.get(agent.id) ?? []).filter((p) => !own.some((n) => matchesAny([p], n)));
    if (unasked.length) {
      throw new ConfigError(
        `invalid config:\n  agents.${i}.approval: ${noMatch(unasked)} no tool of agent "${agent.id}" (its tools: ${own.join(", ") || "none"})`,
      );
    }
    if (!providers.get(agent.provider)?.capabilities?.tools) {
      const plugin = config.providers[agent.provider]?.plugin ?? agent.provider;
      throw new ConfigError(
        `invalid config:\n  agents.${i}.tools: agent "${agent.id}" has tools, but its provider "${agent.provider}" (plugin "${plugin}") cannot call tools`,
      );
    }
  }
  return catalog;
}

/** The config entry an agent was built from: among entries sharing its id (requireEnv alternatives), the one with its provider and model. */
function entryOf(config: Config, agent: AgentDefinition): number {
  const same = [...config.agents.entries()].filter(([, c]) => c.id === agent.id);
  return (same.find(([, c]) => c.provider === agent.provider && c.model === agent.model) ?? same[0])?.[0] ?? -1;
}

/** `"a", "b" match` / `"a" matches`. */
function noMatch(patterns: readonly string[]): string {
  return `${patterns.map((p) => `"${p}"`).join(", ")} ${patterns.length > 1 ? "match" : "matches"}`;
}

/** What is wrong with the `tools.mcp` and `tools.backends` sections, one message each (for `qingyu check`). */
export function toolSectionProblems(config: Config): string[] {
  const problems: string[] = [];
  const sections = [
    ...Object.entries(config.tools.mcp).map(([name, raw]) => [McpServerSchema, raw, `tools.mcp.${name}`] as const),
    ...Object.entries(config.tools.backends).map(([name, raw]) => [BackendToolsSchema, raw, `tools.backends.${name}`] as const),
  ];
  for (const [schema, raw, where] of sections) {
    try {
      parseSection(schema as Parameters<typeof parseSection>[0], raw, where);
    } catch (err) {
      problems.push(shownMessage(err));
    }
  }
  return problems;
}

async function listSource(source: ToolSource, label: string): Promise<readonly Tool[]> {
  const signal = AbortSignal.timeout(LIST_TIMEOUT_MS);
  try {
    return await source.list(signal);
  } catch (err) {
    throw new PluginError(`${label}: listing its tools failed: ${signal.aborted ? `no answer in ${LIST_TIMEOUT_MS / 1000} s` : shownMessage(err)}`, {
      cause: err,
    });
  }
}

/** A source's own config section, checked by its schema; a problem names the section's keys. */
function parseSection<T>(
  schema: {
    safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: readonly { path: readonly PropertyKey[]; message: string }[] } };
  },
  raw: unknown,
  where: string,
): T {
  const parsed = schema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const lines = parsed.error.issues.map((i) => `  ${[where, ...i.path.map(String)].join(".")}: ${i.message}`);
  throw new ConfigError(`invalid config:\n${lines.join("\n")}`);
}
