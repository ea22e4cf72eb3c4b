import type { Logger } from "pino";
import { Code, ConnectError, abortReason, notFound } from "../errors.ts";
import type { ChatMessage, LlmProvider, ProviderChunk, ProviderRequest } from "../providers/types.ts";
import type { RunEvent, Terminal } from "../pipeline/types.ts";
import type { ExecutionContext } from "./context.ts";
import { retryDelay, sleep, type RetryPolicy } from "./retry.ts";

/**
 * The innermost layer of the onion: builds the prompt, calls the agent's
 * provider and streams its text out. A failure before the first token is
 * retried when the provider says it may be; after it, never, because the
 * client has already seen part of an answer.
 */
export function agentCall(providers: ReadonlyMap<string, LlmProvider>, policy: RetryPolicy, log: Logger): Terminal {
  return async function* (context): AsyncIterable<RunEvent> {
    const ctx = context as ExecutionContext;
    const agent = ctx.agent;
    if (!agent) {
      // Named only a session that could not be read: that is the error to report.
      if (!ctx.agentId && ctx.sessionId) await ctx.session();
      throw ctx.agentId ? notFound("agent", ctx.agentId) : new ConnectError("agent_id is required (or a session_id bound to an agent)", Code.InvalidArgument);
    }
    const provider = providers.get(agent.provider);
    if (!provider) throw new ConnectError(`agent "${agent.id}" names provider "${agent.provider}", which is not configured`, Code.FailedPrecondition);

    const messages: ChatMessage[] = [];
    if (agent.systemPrompt) messages.push({ role: "system", content: agent.systemPrompt });
    messages.push(...(await ctx.history()), { role: "user", content: ctx.task });
    const req: ProviderRequest = {
      model: ctx.options.model || agent.model,
      messages,
      temperature: ctx.options.temperature ?? agent.defaults.temperature,
      maxTokens: ctx.options.maxTokens || agent.defaults.maxTokens,
      extra: agent.defaults.extra,
    };
    yield { type: "started", model: req.model };

    let output = "";
    let finish: Extract<ProviderChunk, { type: "finish" }> | undefined;
    for (let attempt = 1; ; attempt++) {
      let streamed = false;
      try {
        for await (const chunk of provider.stream(req, ctx.signal)) {
          if (ctx.signal.aborted) throw abortReason(ctx.signal);
          if (chunk.type === "finish") {
            finish = chunk;
          } else if (chunk.text) {
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

    yield {
      type: "completed",
      result: {
        success: true,
        output,
        model: finish?.model || req.model,
        finishReason: finish?.finishReason ?? "stop",
        usage: finish?.usage ?? { inputTokens: 0, outputTokens: 0 },
        durationMs: Date.now() - ctx.startTime,
        metadata: {},
      },
    };
  };
}
