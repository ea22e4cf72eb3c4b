import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { PluginDefinition, PluginKind } from "./plugin.ts";

// The one rule for a plugin's options, shared by the server and the test host:
// `{}` when config gives none, then the plugin's own Standard Schema.

/** Options a plugin's schema refused: one line per issue, `<prefix>.<path>: <message>`. */
export class InvalidOptionsError extends Error {
  /** One line per issue, as the server writes them (without the indent). */
  readonly lines: readonly string[];

  constructor(
    plugin: string,
    readonly issues: readonly StandardSchemaV1.Issue[],
    prefix = "options",
  ) {
    const lines = issues.map((issue) => formatIssue(issue, prefix));
    super(`invalid options for plugin "${plugin}":\n${lines.map((l) => `  ${l}`).join("\n")}`);
    this.name = "InvalidOptionsError";
    this.lines = lines;
  }
}

/**
 * A plugin's options as the server validates them: `{}` when none are given,
 * then through the plugin's own Standard Schema (sync or async; whichever
 * validator and copy the plugin brought). Throws InvalidOptionsError naming
 * each bad key under `prefix` (the server passes `pipeline.1.options`).
 */
export async function validateOptions<O>(plugin: PluginDefinition<PluginKind, O>, raw?: unknown, prefix = "options"): Promise<O> {
  const given = raw ?? {};
  const schema = plugin.configSchema as StandardSchemaV1 | undefined;
  if (!schema) return given as O;
  let result = schema["~standard"].validate(given);
  if (result instanceof Promise) result = await result;
  if (!result.issues) return result.value as O;
  throw new InvalidOptionsError(plugin.name, result.issues, prefix);
}

/** One issue as `options.<path>: <message>` (zod's unknown keys named as the server names them). */
export function formatIssue(issue: StandardSchemaV1.Issue, prefix = "options"): string {
  const keys = (issue.path ?? []).map((p) => String(typeof p === "object" && p !== null ? p.key : p));
  const path = [prefix, ...keys].filter(Boolean).join(".") || "(top level)";
  const z = issue as { code?: unknown; keys?: unknown };
  if (z.code === "unrecognized_keys" && Array.isArray(z.keys)) {
    return `${path}: unknown key${z.keys.length > 1 ? "s" : ""} ${z.keys.map((k) => `"${String(k)}"`).join(", ")}`;
  }
  return `${path}: ${issue.message}`;
}
