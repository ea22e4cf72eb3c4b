import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { Config } from "../config/schema.ts";
import { discoverFor } from "../app.ts";
import { checkConfig } from "../plugin-host/check.ts";
import { refEnabled, refName } from "../plugin-host/instantiate.ts";
import { entryDisabled } from "../plugin-host/loader.ts";
import { formatProblems, type CommandOutcome } from "./check-command.ts";

/**
 * `qingyu plugins`: what was discovered, its kind and source, whether it is
 * enabled and used, the pipeline order and the agents (an unavailable one says what it misses) — read from the config and plugin
 * files without setting any plugin up (so it opens no connection). Problems
 * `serve` would stop at go to stderr, with exit status 2.
 */
export async function describePlugins(config: Config, baseDir: string, env: Readonly<Record<string, string | undefined>>): Promise<CommandOutcome> {
  const catalog = await discoverFor(config, baseDir);
  // The same validation as `qingyu check` and `serve`: a listing must not look fine when serve would refuse.
  const report = await checkConfig(config, catalog, env);
  const used = new Set<string>([
    ...config.pipeline.filter(refEnabled).map(refName),
    ...config.eventHandlers.filter(refEnabled).map(refName),
    ...config.agents.map((a) => config.providers[a.provider]?.plugin).filter((p): p is string => !!p),
  ]);
  const rows = [...catalog.values()].map((e) => [
    e.definition.name,
    e.definition.kind,
    e.disabled ? "disabled" : used.has(e.definition.name) ? "in use" : "available",
    e.source,
  ]);
  // Entries turned off by file name were never imported: their plugin name is unknown.
  const off = new Set(config.plugins.disabled);
  for (const dir of config.plugins.dirs.map((d) => resolve(baseDir, d))) {
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir).sort()) {
      if (entryDisabled(entry, off)) rows.push(["(not loaded)", "?", "disabled", join(dir, entry)]);
    }
  }
  const header = ["NAME", "KIND", "STATUS", "SOURCE"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ");
  const pipeline = config.pipeline.map((ref, i) => `  ${i + 1}. ${refName(ref)}${refEnabled(ref) ? "" : " (off)"}`);
  const handlers = config.eventHandlers.map((ref) => `  - ${refName(ref)}${refEnabled(ref) ? "" : " (off)"}`);
  const agents = config.agents.map((a) => {
    const missing = a.requireEnv.filter((name) => !env[name]);
    return `  - ${a.id} (provider ${a.provider}, model ${a.model})${missing.length ? `: unavailable, ${missing.join(", ")} not set` : ""}`;
  });
  const stdout = [
    line(header),
    ...rows.map(line),
    "",
    "pipeline (outermost first):",
    ...(pipeline.length ? pipeline : ["  (empty)"]),
    "event handlers:",
    ...(handlers.length ? handlers : ["  (none)"]),
    "agents:",
    ...(agents.length ? agents : ["  (none)"]),
    "",
  ].join("\n");
  return { stdout, stderr: formatProblems(report), status: report.errors.length ? 2 : 0 };
}
