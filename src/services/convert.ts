import type { AgentRunResult, GenerationOptions } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AgentResultSchema, type AgentResult, type GenerationOptions as ProtoOptions } from "../gen/qingyu/agent/v1/agent_pb.ts";
import { CheckpointSchema, SessionSchema, type Checkpoint, type Session } from "../gen/qingyu/agent/v1/session_pb.ts";
import type { ExecuteInput } from "../executor/context.ts";
import type { CheckpointRecord, SessionRecord } from "../sessions/types.ts";
import { ids } from "./ids.ts";

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
  return {
    agentId: ids.agent(req.agentId, `${field}agent_id`),
    task: req.task,
    sessionId: ids.session(req.sessionId, `${field}session_id`),
    userId: ids.user(req.userId, `${field}user_id`),
    metadata: req.metadata,
    options,
  };
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
    messages: s.messages,
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
