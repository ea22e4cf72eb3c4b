import type { AgentContext, RunEvent } from "@qingyu/plugin-api";
import { SpanKind, type Attributes, type Tracer } from "@opentelemetry/api";
import type { Terminal } from "../pipeline/types.ts";
import type { Telemetry } from "./setup.ts";
import { spanIterable } from "./span-iterable.ts";

/**
 * A run inside an `invoke_agent` span (OpenTelemetry GenAI semantic
 * conventions, the in-process agent: kind INTERNAL), so the `chat` span of
 * each step attempt and the `execute_tool` span of each tool call started
 * while it runs are its children. The response attributes (model, finish
 * reason, usage summed over the steps, steps and tool calls) come from the
 * run's `completed` event.
 */
function invokeAgentSpan(tracer: Tracer, ctx: AgentContext, run: () => AsyncIterable<RunEvent>): AsyncIterable<RunEvent> {
  const agent = ctx.agent;
  const attributes: Attributes = {
    "gen_ai.operation.name": "invoke_agent",
    // Agents are configured by id alone: it is their name too.
    "gen_ai.agent.id": ctx.agentId,
    "gen_ai.agent.name": ctx.agentId,
    "qingyu.call_id": ctx.callId,
  };
  if (agent) {
    attributes["gen_ai.provider.name"] = agent.provider;
    attributes["gen_ai.request.model"] = ctx.options.model || agent.model;
    if (agent.description) attributes["gen_ai.agent.description"] = agent.description;
  }
  if (ctx.sessionId) attributes["gen_ai.conversation.id"] = ctx.sessionId;
  return spanIterable(tracer, `invoke_agent ${ctx.agentId}`, { kind: SpanKind.INTERNAL, attributes }, run, {
    item(span, event) {
      if (event.type !== "completed") return;
      const { result } = event;
      span.setAttributes({
        "gen_ai.response.model": result.model,
        "gen_ai.response.finish_reasons": [result.finishReason],
        "gen_ai.usage.input_tokens": result.usage.inputTokens,
        "gen_ai.usage.output_tokens": result.usage.outputTokens,
        "qingyu.agent.steps": result.steps ?? 1,
        "qingyu.agent.tool_calls": result.toolCalls?.length ?? 0,
      });
    },
  });
}

/**
 * The agent call wrapped in its `invoke_agent` span when tracing is on; the
 * terminal itself otherwise (tracing off costs nothing). Wrapping the
 * terminal rather than the whole onion keeps the middleware spans outside the
 * agent's and makes it the direct parent of the `chat` and `execute_tool`
 * spans; a run a middleware answers alone (a cache hit) invokes no agent and
 * has no such span.
 */
export function withInvokeAgentSpan(telemetry: Telemetry | undefined, terminal: Terminal): Terminal {
  if (!telemetry?.tracing) return terminal;
  const { tracer } = telemetry;
  return (ctx) => invokeAgentSpan(tracer, ctx, () => terminal(ctx));
}
