import {
  type ChatMessage,
  Code,
  ConnectError,
  ErrorReason,
  type LlmProvider,
  type ProviderChunk,
  type ProviderRequest,
  type RunEvent,
  withReason,
} from "@qingyu/plugin-api";
import type { Logger } from "pino";
import { abortReason } from "../errors.ts";
import { agentRefusal, offersModel } from "../agents/registry.ts";
import { quote } from "../quote.ts";
import { SpanKind, context, propagation } from "@opentelemetry/api";
import type { Telemetry } from "../telemetry/setup.ts";
import { spanIterable } from "../telemetry/span-iterable.ts";
import type { Terminal } from "../pipeline/types.ts";
import { withinTokenBudget } from "../sessions/manager.ts";
import type { ExecutionContext } from "./context.ts";
import { retryDelay, sleep, type RetryPolicy } from "./retry.ts";

/**
 * The innermost layer of the onion: builds the prompt, calls the agent's
 * provider and streams its text out. A failure before the first token is
 * retried when the provider says it may be; after it, never, because the
 * client has already seen part of an answer.
 */
export function agentCall(providers: ReadonlyMap<string, LlmProvider>, policy: RetryPolicy, log: Logger, telemetry?: Telemetry): Terminal {
  // Metrics only when something records them: the label objects are per call.
  const metrics = telemetry?.recording ? telemetry.instruments : undefined;
  return async function* (context): AsyncIterable<RunEvent> {
    const ctx = context as ExecutionContext;
    const agent = ctx.agent;
    if (!agent) {
      // Named only a session that could not be read: that is the error to report.
      if (!ctx.agentId && ctx.sessionId) await ctx.session();
      throw ctx.agentId
        ? agentRefusal(ctx.agents, ctx.agentId)
        : withReason(new ConnectError("agent_id is required (or a session_id bound to an agent)", Code.InvalidArgument), ErrorReason.INVALID_FIELD, {
            field: "agent_id",
          });
    }
    // Here, not in a plugin: taking the validation plugin out of the pipeline must not let callers choose.
    const askedModel = ctx.options.model;
    if (askedModel && !offersModel(agent, askedModel)) {
      const refusal = new ConnectError(
        `agent "${agent.id}" does not offer model ${quote(askedModel)} (it offers: ${[agent.model, ...(agent.models ?? [])].join(", ")})`,
        Code.PermissionDenied,
      );
      throw withReason(refusal, ErrorReason.MODEL_NOT_ALLOWED, { agent_id: agent.id, model: askedModel });
    }
    const provider = providers.get(agent.provider);
    if (!provider) {
      const missing = new ConnectError(`agent "${agent.id}" names provider "${agent.provider}", which is not configured`, Code.FailedPrecondition);
      throw withReason(missing, ErrorReason.PROVIDER_NOT_CONFIGURED, { agent_id: agent.id });
    }

    const { maxHistoryTokens, maxOutputTokens } = agent.limits ?? {};
    const history = await ctx.history();
    const messages: ChatMessage[] = [];
    if (agent.systemPrompt) messages.push({ role: "system", content: agent.systemPrompt });
    messages.push(...(maxHistoryTokens === undefined ? history : withinTokenBudget(history, maxHistoryTokens)), { role: "user", content: ctx.task });
    // Validation refuses a larger ask; without it in the pipeline the cap still holds, by clamping.
    const asked = ctx.options.maxTokens || agent.defaults.maxTokens;
    const req: ProviderRequest = {
      model: ctx.options.model || agent.model,
      messages,
      temperature: ctx.options.temperature ?? agent.defaults.temperature,
      maxTokens: maxOutputTokens === undefined ? asked : Math.min(asked ?? maxOutputTokens, maxOutputTokens),
      extra: agent.defaults.extra,
    };
    yield { type: "started", model: req.model };
    const agentLabel = agent.id;

    let output = "";
    let finish: Extract<ProviderChunk, { type: "finish" }> | undefined;
    for (let attempt = 1; ; attempt++) {
      let streamed = false;
      try {
        const chunks = telemetry?.tracing
          ? tracedProviderCall(telemetry, agent.provider, req, attempt, ctx.signal, provider)
          : provider.stream(req, ctx.signal);
        for await (const chunk of chunks) {
          if (ctx.signal.aborted) throw abortReason(ctx.signal);
          if (chunk.type === "finish") {
            finish = chunk;
          } else if (chunk.text) {
            if (!output && metrics)
              metrics.timeToFirstToken.record((Date.now() - ctx.startTime) / 1000, { "qingyu.agent": agentLabel, "gen_ai.request.model": req.model });
            streamed = true;
            output += chunk.text;
            yield { type: "delta", text: chunk.text };
          }
        }
        break;
      } catch (err) {
        if (ctx.signal.aborted) throw abortReason(ctx.signal);
        const delay = streamed ? undefined : retryDelay(err, attempt, policy, ctx.deadline, Date.now());
        if (delay === undefined) throw err;
        log.debug({ call: ctx.callId, agent: agent.id, attempt, delayMs: Math.round(delay), err }, "retrying provider");
        await sleep(delay, ctx.signal);
      }
    }

    const usage = finish?.usage ?? { inputTokens: 0, outputTokens: 0 };
    if (metrics) {
      metrics.tokens.add(usage.inputTokens, { "qingyu.agent": agentLabel, "gen_ai.request.model": req.model, "gen_ai.token.type": "input" });
      metrics.tokens.add(usage.outputTokens, { "qingyu.agent": agentLabel, "gen_ai.request.model": req.model, "gen_ai.token.type": "output" });
    }
    yield {
      type: "completed",
      result: {
        success: true,
        output,
        model: finish?.model || req.model,
        finishReason: finish?.finishReason ?? "stop",
        usage,
        durationMs: Date.now() - ctx.startTime,
        metadata: {},
      },
    };
  };
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
