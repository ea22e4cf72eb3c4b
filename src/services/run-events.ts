import { Code, ConnectError, type RunEvent, type ToolCallRecord, type ToolOutcome as Outcome } from "@qingyu/plugin-api";
import { create } from "@bufbuild/protobuf";
import { ExecuteStreamResponseSchema, type ExecuteStreamResponse, type ToolResult } from "../gen/qingyu/agent/v1/agent_pb.ts";
import { ToolOutcome } from "../gen/qingyu/agent/v1/tool_pb.ts";
import type { ExecuteInput } from "../executor/context.ts";
import { toAgentResult } from "./convert.ts";

const OUTCOMES: Record<Outcome, ToolOutcome> = {
  ok: ToolOutcome.OK,
  error: ToolOutcome.ERROR,
  invalid_arguments: ToolOutcome.INVALID_ARGUMENTS,
  denied: ToolOutcome.DENIED,
  timeout: ToolOutcome.TIMEOUT,
  cancelled: ToolOutcome.CANCELLED,
  abandoned: ToolOutcome.ABANDONED,
  skipped: ToolOutcome.SKIPPED,
  unknown: ToolOutcome.UNKNOWN,
};

/** A tool call's record as the wire's ToolResult. */
export function toToolResult(r: ToolCallRecord): Omit<ToolResult, "$typeName"> {
  return {
    step: r.step,
    toolCallId: r.id,
    name: r.name,
    arguments: r.arguments,
    outcome: OUTCOMES[r.outcome],
    output: r.output,
    durationMs: BigInt(r.durationMs),
  };
}

/** One run event as its ExecuteStreamResponse. */
export function toStreamResponse(event: RunEvent, input: ExecuteInput): ExecuteStreamResponse {
  switch (event.type) {
    case "started":
      return create(ExecuteStreamResponseSchema, {
        event: { case: "started", value: { agentId: event.agentId ?? input.agentId, sessionId: input.sessionId, model: event.model } },
      });
    case "delta":
      return create(ExecuteStreamResponseSchema, { event: { case: "delta", value: { text: event.text } } });
    case "completed":
      return create(ExecuteStreamResponseSchema, { event: { case: "completed", value: toAgentResult(event.result) } });
    case "step_started":
      return create(ExecuteStreamResponseSchema, { event: { case: "stepStarted", value: { step: event.step } } });
    case "tool_call_started":
      return create(ExecuteStreamResponseSchema, {
        event: { case: "toolCallStarted", value: { step: event.step, toolCallId: event.toolCallId, name: event.name, index: event.index } },
      });
    case "tool_call_delta":
      return create(ExecuteStreamResponseSchema, {
        event: { case: "toolCallDelta", value: { step: event.step, toolCallId: event.toolCallId, argumentsDelta: event.argumentsDelta } },
      });
    case "tool_call":
      return create(ExecuteStreamResponseSchema, {
        event: {
          case: "toolCall",
          value: { step: event.step, call: { toolCallId: event.call.id, name: event.call.name, arguments: event.call.arguments } },
        },
      });
    case "tool_result":
      return create(ExecuteStreamResponseSchema, { event: { case: "toolResult", value: toToolResult(event.record) } });
    case "waiting":
      // Only durable runs park (RunService); Execute refuses tools that need approval before any could.
      throw new ConnectError("a run parked outside RunService", Code.Internal);
    case "step_finished":
      return create(ExecuteStreamResponseSchema, {
        event: {
          case: "stepFinished",
          value: { step: event.step, finishReason: event.finishReason, usage: event.usage, toolCalls: event.toolCalls, text: event.text ?? "" },
        },
      });
  }
}
