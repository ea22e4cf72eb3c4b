import type { StandardSchemaV1 } from "@standard-schema/spec";
import type { PluginLogger } from "./observability.ts";
import type { Principal } from "./principal.ts";
import type { JsonObject } from "./sessions.ts";

/**
 * What describes a tool, whichever source it came from (a tool plugin, an MCP
 * server, a backend's ToolService): the model sees name, description and
 * inputSchema; the runtime uses the rest.
 */
export interface ToolSpec {
  /** Unique among an agent's tools; [A-Za-z0-9_-], at most 64 (what model APIs accept). */
  readonly name: string;
  readonly description: string;
  /** JSON Schema (draft-07) of the arguments object; the runtime validates every call against it. */
  readonly inputSchema: JsonObject;
  /** JSON Schema of the output, when the tool declares one (documentation; not enforced). */
  readonly outputSchema?: JsonObject;
  /** A call waits for a person's approval: a durable run parks until SubmitApproval; Execute, which cannot wait, refuses it. */
  readonly needsApproval?: boolean;
  /** Running it twice with the same arguments and idempotency key has the effect of running it once. */
  readonly idempotent?: boolean;
  /** Its calls in one step run one after another, never alongside each other. */
  readonly sequential?: boolean;
  /** Abandon a call after this long (default: the agent's limits.toolTimeoutMs). */
  readonly timeoutMs?: number;
  /** At most this many of its calls at once in one run (default: no cap but the run's). */
  readonly maxConcurrency?: number;
}

/** What a running tool call knows. */
export interface ToolContext {
  /** The run (the Execute call) this tool call belongs to. */
  readonly runId: string;
  /** The model's id for this tool call. */
  readonly toolCallId: string;
  /** Stable for this tool call, whatever retries or resumes: pass it to a side effect that dedupes. */
  readonly idempotencyKey: string;
  /** 1 on the first dispatch of this call. */
  readonly attempt: number;
  /** Fires on cancel, deadline, the tool's timeout or shutdown; stop work and reject when it does. */
  readonly signal: AbortSignal;
  /** Epoch ms by which the run must end, when the caller set a deadline (pass it on to what the tool calls). */
  readonly deadline: number | undefined;
  readonly agentId: string;
  /** The user the run acts as. */
  readonly userId: string;
  readonly principal: Principal | undefined;
  /** "" when the run has no session. */
  readonly sessionId: string;
  readonly logger: PluginLogger;
  /** Reports progress; a tool with a timeout gets its clock reset by each report. */
  progress(message: string, progress?: number, total?: number): void;
}

/** A tool a plugin runs in-process. */
export interface Tool extends ToolSpec {
  /**
   * Runs one call with arguments already checked against inputSchema. Return
   * any JSON value (a string goes to the model as is); throw to answer the
   * model with an error (the run goes on: the model sees it and may retry).
   */
  execute(args: unknown, ctx: ToolContext): unknown;
}

/** A plugin that lists tools at run time (a registry, a remote catalogue). */
export interface ToolSource {
  /** The tools it offers now; called at start-up, at reload, and when `changed` says so. */
  list(signal: AbortSignal): Promise<readonly Tool[]>;
  /** Releases what setup acquired. */
  dispose?(): void | Promise<void>;
}

/** Thrown by a tool to give the model a specific error text (any throw works; this one is not logged as a fault). */
export class ToolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ToolError";
  }
}

/** A schema that can describe itself as JSON Schema: zod 4, valibot and arktype implement it. */
export type JsonSchemaSource = {
  readonly "~standard": StandardSchemaV1.Props & { readonly jsonSchema: { input(options: { target: string }): Record<string, unknown> } };
};

/** What defineTool takes: a Tool whose input may be a Standard Schema instead of JSON Schema. */
export type ToolInit<Args> = Omit<Tool, "inputSchema" | "execute"> & {
  /** A Standard Schema that converts to JSON Schema (zod 4: `z.object({...})`), or JSON Schema itself. */
  readonly input: JsonSchemaSource | JsonObject;
  execute(args: Args, ctx: ToolContext): unknown;
};

/**
 * Makes a Tool from a schema library's schema: the JSON Schema the model sees
 * is converted from it (draft-07), and each call's arguments go through the
 * schema's own validate, so its defaults and transforms apply.
 */
export function defineTool<Args = unknown>(init: ToolInit<Args>): Tool {
  const { input, execute, ...spec } = init;
  if (!isStandard(input)) return { ...spec, inputSchema: input, execute: (args, ctx) => execute(args as Args, ctx) };
  const json = { ...input["~standard"].jsonSchema.input({ target: "draft-07" }) };
  delete json.$schema;
  const std = input["~standard"];
  return {
    ...spec,
    inputSchema: json as JsonObject,
    async execute(args, ctx) {
      let result = std.validate(args);
      if (result instanceof Promise) result = await result;
      if (result.issues) throw new ToolError(result.issues.map((i) => i.message).join("; "));
      return execute(result.value as Args, ctx);
    },
  };
}

function isStandard(input: unknown): input is JsonSchemaSource {
  const std = (input as { "~standard"?: { jsonSchema?: unknown } })["~standard"];
  return typeof std === "object" && std !== null && typeof std.jsonSchema === "object";
}
