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
  /** Ask the provider for the whole answer (`generate`, which it has): the caller reads only the result and no middleware needs the answer streamed. */
  whole: boolean;
  /** Called at the step's first streamed text (time to first token); not for a step answered whole, which has no first token. */
  firstText?(): void;
}

/**
 * One model call, streamed out as run events. A failure before the step's
 * first output (text or tool call) is retried when the provider says it may
 * be; after it, never, because the client has seen part of this step. Earlier
 * steps and their tools are never redone: a retry repeats this request only.
 * A step answered whole gives the events a stream of the same answer gives.
 */
export async function* modelStep(req: ProviderRequest, step: number, signal: AbortSignal, deps: StepDeps): AsyncGenerator<RunEvent, StepAnswer> {
  const { provider, whole } = deps;
  const open = whole ? (r: ProviderRequest) => answerChunks(provider, r, signal) : (r: ProviderRequest) => provider.stream(r, signal);
  for (let attempt = 1; ; attempt++) {
    let text = "";
    const toolCalls: ToolCall[] = [];
    // The model's index of a call → the id clients know it by.
    const started = new Map<number, string>();
    let finish: StepAnswer["finish"];
    let streamed = false;
    try {
      const chunks = deps.telemetry?.tracing ? tracedProviderCall(deps.telemetry, deps.providerName, req, attempt, open, !whole) : open(req);
      for await (const chunk of chunks) {
        if (signal.aborted) throw abortReason(signal);
        switch (chunk.type) {
          case "finish":
            finish = chunk;
            break;
          case "delta":
            if (!chunk.text) break;
            if (!text && !whole) deps.firstText?.();
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
 * A whole answer as the chunks a stream of it gives: its text as one delta,
 * each tool call's arguments as one fragment, the complete calls, the finish.
 */
async function* answerChunks(provider: LlmProvider, req: ProviderRequest, signal: AbortSignal): AsyncGenerator<ProviderChunk> {
  const { text, toolCalls = [], finishReason, usage, model } = await provider.generate!(req, signal);
  if (text) yield { type: "delta", text };
  for (const [index, call] of toolCalls.entries()) yield { type: "tool_call_delta", index, id: call.id, name: call.name, argumentsDelta: call.arguments };
  for (const [index, call] of toolCalls.entries()) yield { type: "tool_call", index, call };
  yield { type: "finish", finishReason, usage, model };
}

/**
 * One attempt of the provider call (`open`: its chunks, streamed or of the
 * whole answer) inside a CLIENT span with the GenAI semantic conventions, an
 * event at the first token of a streamed answer, and the span's trace context
 * handed to the provider to send upstream.
 */
function tracedProviderCall(
  telemetry: Telemetry,
  providerName: string,
  req: ProviderRequest,
  attempt: number,
  open: (req: ProviderRequest) => AsyncIterable<ProviderChunk>,
  streamed: boolean,
): AsyncIterable<ProviderChunk> {
  // A whole answer has no first token: its one delta comes with everything else.
  let first = streamed;
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
      return open({ ...req, traceHeaders });
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
