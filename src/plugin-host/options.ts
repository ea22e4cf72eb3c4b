import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { PluginDefinition } from "@qingyu/plugin-api";

/** Options that did not validate: one line per issue, each naming its key under `where`. */
export class OptionsInvalid extends Error {
  constructor(readonly lines: readonly string[]) {
    super(lines.join("\n"));
    this.name = "OptionsInvalid";
  }
}

/**
 * A config entry's options as the plugin will see them: `{}` when config gives
 * none (a plugin named bare in `pipeline`), then through the plugin's own
 * Standard Schema (its zod 3 or 4, valibot, arktype: whichever copy it brought).
 * Throws OptionsInvalid naming each bad key as `${where}.options.<key>`.
 */
export async function validateOptions(definition: PluginDefinition, raw: unknown, where: string): Promise<unknown> {
  const given = raw ?? {};
  const schema = definition.configSchema as StandardSchemaV1 | undefined;
  if (!schema) return given;
  let result = schema["~standard"].validate(given);
  if (result instanceof Promise) result = await result;
  if (!result.issues) return result.value;
  throw new OptionsInvalid(result.issues.map((issue) => formatIssue(issue, `${where}.options`)));
}

/** One issue as `  path: message`, the way config errors are written. */
export function formatIssue(issue: StandardSchemaV1.Issue, prefix: string): string {
  const keys = (issue.path ?? []).map((p) => String(typeof p === "object" && p !== null ? p.key : p));
  const path = [prefix, ...keys].filter(Boolean).join(".") || "(top level)";
  // zod (3 and 4) names the unknown keys of a strict object on the issue; say which.
  const z = issue as { code?: unknown; keys?: unknown };
  if (z.code === "unrecognized_keys" && Array.isArray(z.keys)) {
    return `  ${path}: unknown key${z.keys.length > 1 ? "s" : ""} ${z.keys.map((k) => `"${String(k)}"`).join(", ")}`;
  }
  return `  ${path}: ${issue.message}`;
}
