import type { LlmProvider, ProviderChunk, ProviderRequest, RunEvent, ToolCall } from "@qingyu/plugin-api";
import { SpanKind, context, propagation } from "@opentelemetry/api";
import type { Logger } from "pino";
import { abortReason } from "../errors.ts";
import type { Telemetry } from "../telemetry/setup.ts";
import { spanIterable } from "../telemetry/span-iterable.ts";
import { retryDelay, sleep, type RetryPolicy } from "./retry.ts";

/** What one model step answered. */
export interface StepAnswer {
  text: string;
  /** The complete tool calls, in the model's order. */
  toolCalls: ToolCall[];
  finish: Extract<ProviderChunk, { type: "finish" }> | undefined;
}

/** Everything one step needs besides its request. */
export interface StepDeps {
  provider: LlmProvider;
  providerName: string;
  policy: RetryPolicy;
  log: Logger;
  telemetry: Telemetry | undefined;
  callId: string;
  agentId: string;
  /** Epoch ms of the call's deadline, for retries. */
  deadline: number | undefined;
  /** Called at the step's first text (time to first token). */
  firstText?(): void;
}

/**
 * One model call, streamed out as run events. A failure before the step's
 * first output (text or tool call) is retried when the provider says it may
 * be; after it, never, because the client has seen part of this step. Earlier
 * steps and their tools are never redone: a retry repeats this request only.
 */
export async function* modelStep(req: ProviderRequest, step: number, signal: AbortSignal, deps: StepDeps): AsyncGenerator<RunEvent, StepAnswer> {
  for (let attempt = 1; ; attempt++) {
    let text = "";
    const toolCalls: ToolCall[] = [];
    // The model's index of a call → the id clients know it by.
    const started = new Map<number, string>();
    let finish: StepAnswer["finish"];
    let streamed = false;
    try {
      const chunks = deps.telemetry?.tracing
        ? tracedProviderCall(deps.telemetry, deps.providerName, req, attempt, signal, deps.provider)
        : deps.provider.stream(req, signal);
      for await (const chunk of chunks) {
        if (signal.aborted) throw abortReason(signal);
        switch (chunk.type) {
          case "finish":
            finish = chunk;
            break;
          case "delta":
            if (!chunk.text) break;
            if (!text) deps.firstText?.();
            streamed = true;
            text += chunk.text;
            yield { type: "delta", text: chunk.text };
            break;
          case "tool_call_delta": {
            streamed = true;
            let id = started.get(chunk.index);
            if (id === undefined) {
              id = chunk.id || `call_${step}_${chunk.index}`;
              started.set(chunk.index, id);
              yield { type: "tool_call_started", step, toolCallId: id, name: chunk.name ?? "", index: chunk.index };
            }
            if (chunk.argumentsDelta) yield { type: "tool_call_delta", step, toolCallId: id, argumentsDelta: chunk.argumentsDelta };
            break;
          }
          case "tool_call":
            streamed = true;
            toolCalls.push(chunk.call.id ? chunk.call : { ...chunk.call, id: started.get(chunk.index) ?? `call_${step}_${chunk.index}` });
            break;
        }
      }
      return { text, toolCalls, finish };
    } catch (err) {
      if (signal.aborted) throw abortReason(signal);
      const delay = streamed ? undefined : retryDelay(err, attempt, deps.policy, deps.deadline, Date.now());
      if (delay === undefined) throw err;
      deps.log.debug({ call: deps.callId, agent: deps.agentId, step, attempt, delayMs: Math.round(delay), err }, "retrying provider");
      await sleep(delay, signal);
    }
  }
}

/**
 * One attempt of the provider call inside a CLIENT span with the GenAI
 * semantic conventions, an event at the first token, and the span's trace
 * context handed to the provider to send upstream.
 */
function tracedProviderCall(
  telemetry: Telemetry,
  providerName: string,
  req: ProviderRequest,
  attempt: number,
  signal: AbortSignal,
  provider: LlmProvider,
): AsyncIterable<ProviderChunk> {
  let first = true;
  return spanIterable<ProviderChunk>(
    telemetry.tracer,
    `chat ${req.model}`,
    {
      kind: SpanKind.CLIENT,
      attributes: {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": providerName,
        "gen_ai.request.model": req.model,
        ...(req.temperature !== undefined ? { "gen_ai.request.temperature": req.temperature } : {}),
        ...(req.maxTokens !== undefined ? { "gen_ai.request.max_tokens": req.maxTokens } : {}),
        "qingyu.attempt": attempt,
      },
    },
    () => {
      const traceHeaders: Record<string, string> = {};
      propagation.inject(context.active(), traceHeaders);
      return provider.stream({ ...req, traceHeaders }, signal);
    },
    {
      item(span, chunk) {
        if (chunk.type === "delta" && chunk.text && first) {
          first = false;
          span.addEvent("gen_ai.first_token");
        } else if (chunk.type === "finish") {
          span.setAttribute("gen_ai.response.finish_reasons", [chunk.finishReason]);
          if (chunk.model) span.setAttribute("gen_ai.response.model", chunk.model);
          if (chunk.usage) {
            span.setAttribute("gen_ai.usage.input_tokens", chunk.usage.inputTokens);
            span.setAttribute("gen_ai.usage.output_tokens", chunk.usage.outputTokens);
          }
        }
      },
    },
  );
}
