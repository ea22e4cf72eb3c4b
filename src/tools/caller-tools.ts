import { invalidArgument, type ToolSpec } from "@qingyu/plugin-api";
import { ArgumentSchemas } from "./argument-schemas.ts";
import type { ReadyTool, ToolSet } from "./catalog.ts";

/**
 * A run's tools with the caller's own added: described by the caller, checked
 * here like any tool's arguments, never run here (their results come from the
 * caller). Compiled once per run that declares them.
 */
export function withCallerTools(base: ToolSet, specs: readonly ToolSpec[]): ToolSet {
  if (!specs.length) return base;
  const schemas = new ArgumentSchemas();
  const byName = new Map(base.tools.map((t) => [t.tool.name, t]));
  for (const [i, spec] of specs.entries()) {
    if (byName.has(spec.name)) throw invalidArgument(`options.caller_tools[${i}].name`, `"${spec.name}" is the name of one of the agent's tools`);
    let check;
    try {
      check = schemas.compile(spec.inputSchema);
    } catch (err) {
      throw invalidArgument(`options.caller_tools[${i}].input_schema`, `does not compile: ${(err as Error).message}`);
    }
    const ready: ReadyTool = {
      tool: { ...spec, execute: () => Promise.reject(new Error("a caller's tool runs at the caller")) },
      source: "the caller",
      caller: true,
      definition: { name: spec.name, description: spec.description, parameters: spec.inputSchema },
      check,
    };
    byName.set(spec.name, ready);
  }
  const tools = [...byName.values()];
  return { tools, get: (name) => byName.get(name), definitions: tools.map((t) => t.definition) };
}
