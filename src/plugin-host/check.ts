import type { AgentDefinition, PluginKind } from "@qingyu/plugin-api";
import { toolSectionProblems } from "./tools.ts";
import { unavailableMessage } from "../agents/registry.ts";
import { shownMessage } from "../errors.ts";
import type { Config } from "../config/schema.ts";
import { configuredAgents, missingProvider } from "./agents.ts";
import { prepareEntry, refEnabled, refName, type PluginRef } from "./instantiate.ts";
import type { CatalogEntry } from "./loader.ts";

/** What `qingyu check` found: errors stop `serve`; warnings would not. */
export interface CheckReport {
  /** Each as `serve` would print it; serve stops at the first. */
  errors: string[];
  warnings: string[];
  /** Config entries that passed, for the summary line. */
  checked: number;
}

/**
 * Everything `serve` checks before it sets a plugin up, without setting any
 * up (so nothing connects, listens or reads a secret): enabled agents and their
 * providers, each provider they use and each provider those name, every enabled
 * `pipeline` and `eventHandlers` entry — the plugin exists, is of the right kind,
 * is not turned off, and its options pass its schema. Unlike serve it goes on
 * after a problem, so one run lists them all.
 */
export async function checkConfig(
  config: Config,
  catalog: ReadonlyMap<string, CatalogEntry>,
  env: Readonly<Record<string, string | undefined>>,
): Promise<CheckReport> {
  const report: CheckReport = { errors: [], warnings: [], checked: 0 };
  const check = async (ref: PluginRef, kind: PluginKind, where: string, asWarning = false): Promise<unknown> => {
    try {
      const { options } = await prepareEntry(catalog, ref, kind, where);
      report.checked++;
      return options;
    } catch (err) {
      const message = shownMessage(err);
      if (asWarning) report.warnings.push(`${message}\n  (not used by an enabled agent: serve does not set it up)`);
      else report.errors.push(message);
      return undefined;
    }
  };

  let agents: AgentDefinition[] = [];
  try {
    const configured = configuredAgents(config, env);
    agents = configured.available;
    for (const agent of configured.unavailable) report.warnings.push(`${unavailableMessage(agent)}; its callers get FAILED_PRECONDITION`);
  } catch (err) {
    report.errors.push(shownMessage(err));
  }
  // Providers used: those agents name, then (transitively) those a used provider's options name, as fallback does.
  const used = new Set<string>();
  const queue: string[] = [];
  for (const agent of agents) {
    const missing = missingProvider(config, agent);
    if (missing) report.errors.push(missing.message);
    else if (!used.has(agent.provider)) (used.add(agent.provider), queue.push(agent.provider));
  }
  for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
    const options = await check(config.providers[name]!, "llm-provider", `providers.${name}`);
    for (const other of namedIn(options, config)) if (!used.has(other)) (used.add(other), queue.push(other));
  }
  for (const [name, ref] of Object.entries(config.providers)) if (!used.has(name)) await check(ref, "llm-provider", `providers.${name}`, true);
  for (const [i, ref] of config.pipeline.entries()) if (refEnabled(ref)) await check(ref, "middleware", `pipeline.${i}`);
  for (const [i, ref] of config.eventHandlers.entries()) if (refEnabled(ref)) await check(ref, "event-handler", `eventHandlers.${i}`);
  for (const [i, ref] of config.tools.plugins.entries()) {
    if (refEnabled(ref)) await check(ref, catalog.get(refName(ref))?.definition.kind === "tool-source" ? "tool-source" : "tool", `tools.plugins.${i}`);
  }
  // MCP servers and backends are not started or called here: only their config sections are checked.
  for (const problem of toolSectionProblems(config)) report.errors.push(problem);
  return report;
}

// Provider names that appear as string values in validated options (a fallback's `providers`).
function namedIn(options: unknown, config: Config): string[] {
  const names: string[] = [];
  const walk = (value: unknown, depth: number): void => {
    if (depth > 8) return;
    if (typeof value === "string" && Object.hasOwn(config.providers, value)) names.push(value);
    else if (Array.isArray(value)) for (const v of value) walk(v, depth + 1);
    else if (value !== null && typeof value === "object") for (const v of Object.values(value)) walk(v, depth + 1);
  };
  walk(options, 0);
  return names;
}
