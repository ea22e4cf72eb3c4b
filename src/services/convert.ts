import { type AgentRunResult, type GenerationOptions, type JsonObject, invalidArgument, limitExceeded } from "@qingyu/plugin-api";
import { create, fromJson } from "@bufbuild/protobuf";
import { ValueSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AgentResultSchema, type AgentResult, type GenerationOptions as ProtoOptions } from "../gen/qingyu/agent/v1/agent_pb.ts";
import { CheckpointSchema, SessionSchema, type Checkpoint, type Session } from "../gen/qingyu/agent/v1/session_pb.ts";
import type { ExecuteInput } from "../executor/context.ts";
import type { CheckpointRecord, SessionRecord } from "../sessions/types.ts";
import { isToolName } from "../tools/tool-name.ts";
import { ids } from "./ids.ts";
import { toToolResult } from "./run-events.ts";

/** The fields ExecuteRequest and ExecuteStreamRequest share. */
export interface ExecuteFields {
  agentId: string;
  task: string;
  sessionId: string;
  userId: string;
  metadata: { [key: string]: string };
  options?: ProtoOptions;
}

/**
 * An Execute request as the executor takes it, its ids checked and normalised
 * (see ids.ts); `field` prefixes the names in errors (a batch item's
 * "requests[3].").
 */
export function toExecuteInput(req: ExecuteFields, field = ""): ExecuteInput {
  const options: GenerationOptions = {};
  if (req.options?.model) options.model = ids.model(req.options.model, `${field}options.model`);
  if (req.options?.temperature !== undefined) options.temperature = req.options.temperature;
  if (req.options?.maxTokens) options.maxTokens = req.options.maxTokens;
  if (req.options) toolOptions(req.options, options, field);
  return {
    agentId: ids.agent(req.agentId, `${field}agent_id`),
    task: req.task,
    sessionId: ids.session(req.sessionId, `${field}session_id`),
    userId: ids.user(req.userId, `${field}user_id`),
    metadata: req.metadata,
    options,
  };
}

// A caller's glob list and schema reach ajv and every tool name: bounded like any other input.
const MAX_TOOL_PATTERNS = 64;
const MAX_SCHEMA_BYTES = 64 * 1024;

/** The tool options of a request, checked. */
function toolOptions(o: ProtoOptions, options: GenerationOptions, field: string): void {
  const choice = o.toolChoice.trim();
  if (choice) {
    if (choice === "auto" || choice === "none" || choice === "required") options.toolChoice = choice;
    else if (isToolName(choice)) options.toolChoice = { name: choice };
    else throw invalidArgument(`${field}options.tool_choice`, `must be "auto", "none", "required" or a tool name`);
  }
  if (o.parallelToolCalls !== undefined) options.parallelToolCalls = o.parallelToolCalls;
  if (o.maxSteps) options.maxSteps = o.maxSteps;
  if (o.tools.length) {
    if (o.tools.length > MAX_TOOL_PATTERNS) {
      throw limitExceeded(`${field}options.tools`, `has ${o.tools.length} patterns; the limit is ${MAX_TOOL_PATTERNS}`, "options.tools", MAX_TOOL_PATTERNS);
    }
    for (const [i, p] of o.tools.entries()) {
      if (!/^[A-Za-z0-9_*?-]{1,64}$/.test(p)) throw invalidArgument(`${field}options.tools[${i}]`, "must be a tool name or glob ([A-Za-z0-9_-], * and ?)");
    }
    options.tools = o.tools;
  }
  if (o.outputSchema) {
    const schema = o.outputSchema as JsonObject;
    if (JSON.stringify(schema).length > MAX_SCHEMA_BYTES) throw invalidArgument(`${field}options.output_schema`, `is larger than ${MAX_SCHEMA_BYTES} bytes`);
    options.outputSchema = schema;
  }
}

export function toAgentResult(r: AgentRunResult): AgentResult {
  return create(AgentResultSchema, {
    success: r.success,
    output: r.output,
    model: r.model,
    finishReason: r.finishReason,
    usage: { inputTokens: r.usage.inputTokens, outputTokens: r.usage.outputTokens },
    durationMs: BigInt(r.durationMs),
    metadata: r.metadata,
    toolCalls: r.toolCalls?.map(toToolResult) ?? [],
    steps: r.steps ?? 0,
    structuredOutput: r.structuredOutput === undefined ? undefined : fromJson(ValueSchema, r.structuredOutput),
    validationErrors: r.validationErrors ?? [],
  });
}

export function toSession(s: SessionRecord): Session {
  return create(SessionSchema, {
    sessionId: s.id,
    userId: s.userId,
    agentId: s.agentId,
    createTime: timestampFromDate(s.createTime),
    updateTime: timestampFromDate(s.updateTime),
    expireTime: timestampFromDate(s.expireTime),
    metadata: s.metadata,
    version: BigInt(s.version),
    messages: s.messages.map((m) => ({
      role: m.role,
      content: m.content,
      toolCalls: m.toolCalls?.map((c) => ({ toolCallId: c.id, name: c.name, arguments: c.arguments })) ?? [],
      toolCallId: m.toolCallId ?? "",
    })),
    messageCount: BigInt(s.messageCount),
  });
}

export function toCheckpoint(c: CheckpointRecord): Checkpoint {
  return create(CheckpointSchema, {
    checkpointId: c.id,
    sessionId: c.sessionId,
    data: c.data,
    createTime: timestampFromDate(c.createTime),
    parentCheckpointId: c.parentId,
    version: BigInt(c.version),
  });
}
