import { type AgentDefinition, type GenerationOptions, invalidArgument, type LlmProvider, type ToolChoice } from "@qingyu/plugin-api";
import type { ToolSet } from "../tools/catalog.ts";
import type { OutputSchema, OutputSchemas } from "./structured-output.ts";

/** The limits and tool options of one run: the agent's, narrowed by the call's. */
export interface RunOptions {
  maxSteps: number;
  maxToolCalls: number;
  maxParallelTools: number;
  toolTimeoutMs: number;
  toolChoice: ToolChoice | undefined;
  parallelToolCalls: boolean | undefined;
  /** The schema the final answer must match, if any. */
  output: OutputSchema | undefined;
  /** The provider takes the schema as response_format; otherwise the system prompt asks for it. */
  nativeOutput: boolean;
}

// What an agent defined outside config (a test catalog) gets; config's defaults are the same.
const DEFAULTS = { maxSteps: 10, maxToolCalls: 64, maxParallelTools: 8, toolTimeoutMs: 60_000 };

/** A call may ask for fewer steps than its agent allows, never more; its tool choice must name one of its tools. */
export function resolveRunOptions(
  agent: AgentDefinition,
  options: GenerationOptions,
  tools: ToolSet,
  provider: LlmProvider,
  schemas: OutputSchemas,
): RunOptions {
  const limits = agent.limits ?? {};
  const agentSteps = limits.maxSteps ?? DEFAULTS.maxSteps;
  const toolChoice = options.toolChoice ?? agent.defaults.toolChoice;
  if (toolChoice && toolChoice !== "auto" && toolChoice !== "none") {
    if (!tools.tools.length) throw invalidArgument("options.tool_choice", `asks for a tool call, but agent "${agent.id}" has no tools in this call`);
    if (typeof toolChoice === "object" && !tools.get(toolChoice.name)) {
      throw invalidArgument(
        "options.tool_choice",
        `names tool "${toolChoice.name}", which is not among this call's tools (${tools.tools.map((t) => t.tool.name).join(", ")})`,
      );
    }
  }
  const schema = options.outputSchema ?? agent.outputSchema;
  const field = options.outputSchema ? "options.output_schema" : "outputSchema";
  return {
    maxSteps: options.maxSteps ? Math.min(options.maxSteps, agentSteps) : agentSteps,
    maxToolCalls: limits.maxToolCalls ?? DEFAULTS.maxToolCalls,
    maxParallelTools: limits.maxParallelTools ?? DEFAULTS.maxParallelTools,
    toolTimeoutMs: limits.toolTimeoutMs ?? DEFAULTS.toolTimeoutMs,
    toolChoice,
    parallelToolCalls: options.parallelToolCalls ?? agent.defaults.parallelToolCalls,
    output: schema ? schemas.compile(schema, field) : undefined,
    nativeOutput: provider.capabilities?.structuredOutput === true,
  };
}
