import { z } from "zod";

/** A tool or tool-source plugin named in config, with its options. */
const ToolPluginRef = z.union([
  z.string().min(1),
  z.strictObject({ plugin: z.string().min(1), options: z.unknown().optional(), enabled: z.boolean().default(true) }),
]);

// Model APIs accept these names; a source name becomes the prefix of its tools' names ("github__create_issue").
const sourceName = z
  .string()
  .regex(/^[A-Za-z0-9-]+$/, "letters, digits or '-' (it prefixes its tools' names, joined by '__')")
  .max(32);

/** Where agents' tools come from, and the bounds on running them (README: Tools). */
export const ToolsSchema = z
  .strictObject({
    /** Tool and tool-source plugins, by name (with options). Their tools keep their own names. */
    plugins: z.array(ToolPluginRef).default([]),
    /** MCP servers, by name: their tools are `<name>__<tool>`. */
    mcp: z.record(sourceName, z.unknown()).default({}),
    /** Backends implementing qingyu.agent.v1.ToolService, by name: their tools are `<name>__<tool>`. */
    backends: z.record(sourceName, z.unknown()).default({}),
    /** Largest tool output given to the model, in UTF-8 bytes; a longer one is cut and a note says so. */
    maxOutputBytes: z
      .int()
      .positive()
      .default(64 * 1024),
    /** After a tool call's signal fires (cancel, timeout), how long it has to stop before it is abandoned. */
    abandonAfterMs: z.int().positive().default(1000),
  })
  .prefault({});

/** Keys of `defaults.extra` that would bypass the runtime's tool loop or output validation. */
export const RESERVED_EXTRA_KEYS: Readonly<Record<string, string>> = {
  tools: "agents[].tools",
  tool_choice: "agents[].defaults.toolChoice",
  parallel_tool_calls: "agents[].defaults.parallelToolCalls",
  response_format: "agents[].outputSchema",
  functions: "agents[].tools",
  function_call: "agents[].defaults.toolChoice",
};

/** How a model may use tools, as config writes it: auto, none, required, or a tool's name. */
export const ToolChoiceSchema = z.union([z.enum(["auto", "none", "required"]), z.strictObject({ name: z.string().min(1) })]);
