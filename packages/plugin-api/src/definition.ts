import { PLUGIN_API_VERSION, PLUGIN_KINDS, type PluginDefinition } from "./plugin.ts";

/**
 * Why a module's default export is not a plugin a host of this major can run,
 * or undefined when it is one. The server checks every plugin it loads with
 * it, and the test host every plugin it sets up. Checked by shape, not identity: a plugin may come
 * with its own copy of @qingyu/plugin-api. A plain object without apiVersion
 * is taken to be written for this host's major.
 */
export function pluginShapeProblem(value: unknown): string | undefined {
  if (value === null || typeof value !== "object") return "default export is not a plugin (use definePlugin from @qingyu/plugin-api)";
  const def = value as Partial<PluginDefinition>;
  if (typeof def.name !== "string" || def.name === "") return "plugin has no name";
  if (def.apiVersion !== undefined && def.apiVersion !== PLUGIN_API_VERSION) {
    return `plugin "${def.name}" was made for plugin API ${String(def.apiVersion)} (@qingyu/plugin-api ${String(def.apiVersion)}.x); this server implements plugin API ${PLUGIN_API_VERSION}: build it against @qingyu/plugin-api ${PLUGIN_API_VERSION}.x, or run a server that implements API ${String(def.apiVersion)}`;
  }
  if (typeof def.kind !== "string" || !(PLUGIN_KINDS as readonly string[]).includes(def.kind)) {
    return `plugin "${def.name}" has kind ${JSON.stringify(def.kind)}; expected one of ${PLUGIN_KINDS.join(", ")}`;
  }
  if (typeof def.setup !== "function") return `plugin "${def.name}" has no setup function`;
  const schema = def.configSchema as unknown;
  if (schema !== undefined && !isStandardSchema(schema)) {
    return `plugin "${def.name}" has a configSchema that is not a Standard Schema (zod 3.24+, valibot, arktype...: an object with "~standard".validate)`;
  }
  return undefined;
}

function isStandardSchema(value: unknown): boolean {
  if ((typeof value !== "object" && typeof value !== "function") || value === null) return false;
  const std = (value as { "~standard"?: { validate?: unknown } })["~standard"];
  return typeof std === "object" && std !== null && typeof std.validate === "function";
}
