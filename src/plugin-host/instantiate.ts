import { InvalidOptionsError, validateOptions, type PluginHost, type PluginKind, type PluginProducts } from "@qingyu/plugin-api";
import type { Logger } from "pino";
import { shownMessage } from "../errors.ts";
import { PluginError, type CatalogEntry } from "./loader.ts";

/** Shared pieces every plugin instance gets. */
export type HostBase = Omit<PluginHost, "options" | "logger"> & { logger: Logger };

/** A plugin named in config: a bare name, or `{plugin, options, enabled}`. */
export type PluginRef = string | { plugin: string; options?: unknown; enabled?: boolean };

/** The plugin a config entry names. */
export function refName(ref: PluginRef): string {
  return typeof ref === "string" ? ref : ref.plugin;
}

/** Whether a config entry is on (`enabled: false` keeps it in the file, unused). */
export function refEnabled(ref: PluginRef): boolean {
  return typeof ref === "string" || ref.enabled !== false;
}

/** A config entry checked against the catalog, with its validated options; nothing set up yet. */
export interface PreparedEntry {
  entry: CatalogEntry;
  options: unknown;
}

/**
 * Finds the plugin a config entry names, checks its kind and validates its
 * options with its own schema. What `serve` does before setup, and all that
 * `qingyu check` does: the messages are the same.
 */
export async function prepareEntry(catalog: ReadonlyMap<string, CatalogEntry>, ref: PluginRef, kind: PluginKind, where: string): Promise<PreparedEntry> {
  const name = refName(ref);
  const entry = catalog.get(name);
  if (!entry) {
    const known = [...catalog.values()].filter((e) => e.definition.kind === kind).map((e) => e.definition.name);
    throw new PluginError(`${where}: no ${kind} plugin named "${name}" (known: ${known.join(", ") || "none"})`);
  }
  const { definition, source } = entry;
  if (entry.disabled) throw new PluginError(`${where}: plugin "${name}" (${source}) is turned off by plugins.disabled`);
  if (definition.kind !== kind) throw new PluginError(`${where}: plugin "${name}" (${source}) is a ${definition.kind}, not a ${kind}`);
  try {
    // The contract's rule: {} when config gives none, then the plugin's own Standard Schema.
    return { entry, options: await validateOptions(definition, typeof ref === "string" ? undefined : ref.options, `${where}.options`) };
  } catch (err) {
    if (err instanceof InvalidOptionsError) {
      throw new PluginError(`${where}: invalid options for plugin "${name}" (${source}):\n${err.lines.map((line) => `  ${line}`).join("\n")}`);
    }
    throw new PluginError(`${where}: the options schema of plugin "${name}" (${source}) failed: ${shownMessage(err)}`, { cause: err });
  }
}

/**
 * Sets up one configured use of a plugin: prepareEntry, then `setup` with the
 * validated options.
 */
export async function instantiate<K extends PluginKind>(
  catalog: ReadonlyMap<string, CatalogEntry>,
  ref: PluginRef,
  kind: K,
  where: string,
  base: HostBase,
): Promise<{ product: PluginProducts[K]; entry: CatalogEntry }> {
  const { entry, options } = await prepareEntry(catalog, ref, kind, where);
  const name = entry.definition.name;
  try {
    const product = await entry.definition.setup({ ...base, options: options as Record<string, unknown>, logger: base.logger.child({ plugin: name }) });
    return { product: product as PluginProducts[K], entry };
  } catch (cause) {
    throw new PluginError(`${where}: plugin "${name}" (${entry.source}) failed to set up: ${shownMessage(cause)}`, { cause });
  }
}
