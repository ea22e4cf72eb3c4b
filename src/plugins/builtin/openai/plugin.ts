import { Code, definePlugin, type ProviderChunk, ProviderError, type ProviderRequest, type ProviderResult, type TokenUsage } from "@qingyu/plugin-api";
import OpenAI from "openai";
import { z } from "zod";
import { linkSignals } from "../../../abort.ts";
import { runtimeName } from "../../../runtime/process.ts";
import { PREFIX, toProviderError } from "./errors.ts";
import { IdleWatchdog } from "./idle-watchdog.ts";
import { NodeFetch } from "./node-fetch.ts";
import { requestParams } from "./request.ts";
import { SseParser, type SseEvent } from "./sse.ts";
import { messageToolCalls, ToolCallAssembler, type ToolCallFragment } from "./tool-calls.ts";

const configSchema = z.strictObject({
  /** API root, e.g. a local OpenAI-compatible server; defaults to OPENAI_BASE_URL, then api.openai.com. */
  baseUrl: z.url().optional(),
  /** Secret key; defaults to OPENAI_API_KEY. */
  apiKey: z.string().min(1).optional(),
  /** How long to wait for the upstream's response headers, in milliseconds. */
  timeoutMs: z.number().int().positive().default(60_000),
  /**
   * Once the headers are in, how long the body may go without a byte, in
   * milliseconds: the gap between two streamed chunks (the time the runtime
   * spends passing a chunk on is not counted), or the whole body of a
   * non-streamed answer. timeoutMs stops covering a request once its headers
   * arrive, so without this a stalled stream would hang until the call's deadline.
   */
  idleTimeoutMs: z.number().int().positive().default(30_000),
  /** Sent as OpenAI-Organization. */
  organization: z.string().min(1).optional(),
  /** Extra headers sent with every request (gateways, proxies). */
  headers: z.record(z.string(), z.string()).optional(),
});

/** What a chat-completions stream chunk carries that the provider reads. */
interface StreamChunk {
  model?: string;
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  choices?: Array<{ delta?: { content?: string | null; tool_calls?: ToolCallFragment[] | null }; finish_reason?: string | null }>;
  error?: { message?: string };
}

/** What the chunks of one streamed answer have said so far. */
class AnswerState {
  finishReason: string | undefined;
  usage: TokenUsage | undefined;
  model: string | undefined;
  /** The answer's tool calls, made at the first fragment: a text-only answer never has one. */
  tools: ToolCallAssembler | undefined;
  /** Set by [DONE]: the body is still read to its end, so the connection can serve the next request. */
  private done = false;

  /** Reads one event; returns the text it adds to the answer, if any (its tool-call fragments go to `tools`). */
  take(message: SseEvent): string | undefined {
    if (this.done || message.data.startsWith("[DONE]")) {
      this.done = true;
      return undefined;
    }
    const chunk = JSON.parse(message.data) as StreamChunk;
    if (message.event === "error" || chunk?.error) {
      const said = chunk?.error?.message ?? (chunk as { message?: unknown })?.message;
      throw new ProviderError(`${PREFIX}: upstream reported an error mid-stream: ${typeof said === "string" ? said : message.data}`, Code.Unavailable, true);
    }
    this.model = chunk.model || this.model;
    if (chunk.usage) this.usage = { inputTokens: chunk.usage.prompt_tokens, outputTokens: chunk.usage.completion_tokens };
    const choice = chunk.choices?.[0];
    if (choice?.finish_reason) this.finishReason = choice.finish_reason;
    const delta = choice?.delta;
    if (delta?.tool_calls) {
      const tools = (this.tools ??= new ToolCallAssembler());
      for (const fragment of delta.tool_calls) tools.add(fragment);
    }
    return delta?.content || undefined;
  }
}

const noBody: AsyncIterable<Uint8Array> = { [Symbol.asyncIterator]: () => ({ next: async () => ({ done: true as const, value: undefined }) }) };

export default definePlugin({
  name: "openai",
  kind: "llm-provider",
  configSchema,
  setup(host) {
    const { options, env } = host;
    const apiKey = options.apiKey ?? env.OPENAI_API_KEY;
    if (!apiKey) {
      throw new Error(`${PREFIX}: no API key; set the apiKey option or the OPENAI_API_KEY environment variable`);
    }
    const baseURL = options.baseUrl ?? env.OPENAI_BASE_URL ?? "https://api.openai.com/v1";
    // On Node, fetch (undici) and its web streams cost more CPU than the rest of a call; Deno's fetch is
    // native and fast, and its node:http did not always close an aborted request's connection at once.
    const upstreamFetch = runtimeName === "node" ? new NodeFetch() : undefined;
    const client = new OpenAI({
      ...(upstreamFetch ? { fetch: upstreamFetch.fetch } : {}),
      apiKey,
      baseURL,
      organization: options.organization ?? null,
      defaultHeaders: options.headers,
      // The runtime's executor retries (with backoff, within the call's deadline); retrying here too would multiply attempts.
      maxRetries: 0,
      timeout: options.timeoutMs,
    });

    return {
      capabilities: { tools: true, structuredOutput: true },

      async *stream(req: ProviderRequest, signal: AbortSignal): AsyncGenerator<ProviderChunk> {
        const idle = new IdleWatchdog(options.idleTimeoutMs, baseURL);
        // Aborting `upstream` (the caller went, or the body stalled) closes the connection.
        const upstream = linkSignals(signal, idle.signal);
        try {
          signal.throwIfAborted();
          // The client builds and sends the request and turns an error answer into its APIError;
          // the event stream itself is read here, from the socket (see NodeFetch).
          const response = await client.chat.completions
            .create({ ...requestParams(req), stream: true, stream_options: { include_usage: true } }, { signal: upstream.signal, headers: req.traceHeaders })
            .asResponse();
          const body = upstreamFetch?.bodyOf(response) ?? response.body ?? noBody;
          const answer = new AnswerState();
          const parser = new SseParser();
          // The clock runs only while waiting on the upstream, never while a consumer holds a chunk.
          idle.arm();
          for await (const bytes of body) {
            idle.disarm();
            for (const message of parser.push(bytes)) {
              const text = answer.take(message);
              if (text) {
                idle.yielded = true;
                yield { type: "delta", text };
              }
              if (answer.tools?.hasDeltas) {
                idle.yielded = true;
                yield* answer.tools.takeDeltas();
              }
            }
            idle.arm();
          }
          for (const message of parser.end()) {
            const text = answer.take(message);
            if (text) {
              idle.yielded = true;
              yield { type: "delta", text };
            }
            if (answer.tools?.hasDeltas) {
              idle.yielded = true;
              yield* answer.tools.takeDeltas();
            }
          }
          idle.disarm();
          // A body cut by an abort may end quietly: the abort, not a short answer, is the outcome.
          signal.throwIfAborted();
          idle.signal.throwIfAborted();
          // Every complete OpenAI answer names why it finished: without one the answer was cut short
          // (or was not an OpenAI stream at all, e.g. a gateway's HTML page) and is not a success.
          const { finishReason, usage, model } = answer;
          if (finishReason === undefined) {
            throw new ProviderError(`${baseURL} ended its answer without a finish reason: truncated, or not an OpenAI stream`, Code.Unavailable, !idle.yielded);
          }
          // The calls, not the finish reason, say the model wants tools run: some servers finish them with "stop".
          if (answer.tools) yield* answer.tools.complete(!idle.yielded);
          yield { type: "finish", finishReason, usage, model };
        } catch (err) {
          throw toProviderError(err, signal, idle.signal, req.model, baseURL);
        } finally {
          idle.close();
          upstream.unlink();
        }
      },

      async generate(req: ProviderRequest, signal: AbortSignal): Promise<ProviderResult> {
        const idle = new IdleWatchdog(options.idleTimeoutMs, baseURL);
        const upstream = linkSignals(signal, idle.signal);
        try {
          signal.throwIfAborted();
          const pending = client.chat.completions.create({ ...requestParams(req), stream: false }, { signal: upstream.signal, headers: req.traceHeaders });
          // timeoutMs covers the wait for the headers; from then on the body has idleTimeoutMs to arrive.
          pending.asResponse().then(
            () => idle.arm(),
            () => undefined,
          );
          const res = await pending;
          const choice = res.choices[0];
          const toolCalls = messageToolCalls(choice?.message?.tool_calls as ToolCallFragment[] | undefined);
          return {
            text: choice?.message?.content ?? "",
            ...(toolCalls ? { toolCalls } : {}),
            finishReason: choice?.finish_reason ?? "stop",
            usage: res.usage ? { inputTokens: res.usage.prompt_tokens, outputTokens: res.usage.completion_tokens } : undefined,
            model: res.model,
          };
        } catch (err) {
          throw toProviderError(err, signal, idle.signal, req.model, baseURL);
        } finally {
          idle.close();
          upstream.unlink();
        }
      },

      dispose: () => upstreamFetch?.close(),
    };
  },
});
