import { Code, definePlugin, type ProviderChunk, ProviderError, type ProviderRequest, type ProviderResult, type ToolCall } from "@qingyu/plugin-api";
import { setImmediate as nextTurn } from "node:timers/promises";
import { z } from "zod";
import { runtimeName } from "../../../runtime/process.ts";
import { answerError, CHAT_PATH, MAX_ERROR_BODY, PREFIX, toProviderError } from "./errors.ts";
import { FetchUpstream } from "./fetch-upstream.ts";
import { IdleWatchdog } from "./idle-watchdog.ts";
import { requestParams } from "./request.ts";
import { parseJson } from "./json.ts";
import type { SseEvent } from "./sse.ts";
import { StreamedAnswer } from "./streamed-answer.ts";
import { messageToolCalls, type ToolCallFragment } from "./tool-calls.ts";
import type { Upstream, UpstreamAnswer } from "./upstream.ts";

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
  /**
   * How the whole answer a unary Execute wants is asked of the upstream.
   * "stream" (default): streamed, and read to its end here, so timeoutMs and
   * idleTimeoutMs mean what they mean for a streamed call. "json": one
   * non-streamed answer, which costs the runtime less CPU per call, but the
   * upstream sends nothing until it has generated all of it: timeoutMs must
   * then cover the longest generation, and a stalled upstream is noticed only
   * when it passes.
   */
  wholeAnswers: z.enum(["stream", "json"]).default("stream"),
  /** Sent as OpenAI-Organization. */
  organization: z.string().min(1).optional(),
  /** Extra headers sent with every request (gateways, proxies). */
  headers: z.record(z.string(), z.string()).optional(),
});

/** What a non-streamed chat completion carries that the provider reads. */
interface Completion {
  model?: string;
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  choices?: Array<{ message?: { content?: string | null; tool_calls?: ToolCallFragment[] | null }; finish_reason?: string | null }>;
  error?: { message?: string } | string;
}

// The largest non-streamed answer read: far above any model's output, it bounds what a broken upstream can make the runtime hold.
const MAX_ANSWER_BODY = 32 * 1024 * 1024;

const USER_AGENT = "qingyu-agent-runtime";

/** The body of a streamed request: the answer's usage comes in its last event. */
function streamedBody(req: ProviderRequest): object {
  return { ...requestParams(req), stream: true, stream_options: { include_usage: true } };
}

/** Header names as HTTP/1.1 sends them, lower-case, so an option can replace a default. */
function lowerCased(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers ?? {})) out[name.toLowerCase()] = value;
  return out;
}

export default definePlugin({
  name: "openai",
  kind: "llm-provider",
  configSchema,
  async setup(host) {
    const { options, env } = host;
    const apiKey = options.apiKey ?? env.OPENAI_API_KEY;
    if (!apiKey) {
      throw new Error(`${PREFIX}: no API key; set the apiKey option or the OPENAI_API_KEY environment variable`);
    }
    const baseURL = options.baseUrl ?? env.OPENAI_BASE_URL ?? "https://api.openai.com/v1";
    const url = `${baseURL.replace(/\/+$/, "")}${CHAT_PATH}`;
    const headers: Readonly<Record<string, string>> = {
      "content-type": "application/json",
      accept: "application/json",
      "user-agent": USER_AGENT,
      authorization: `Bearer ${apiKey}`,
      ...(options.organization ? { "openai-organization": options.organization } : {}),
      ...lowerCased(options.headers),
    };
    // On Node, undici's pool: the global fetch and its web streams cost more CPU than the rest of a call.
    // Imported here, not at the top: a server whose config sets up no openai provider never loads undici (~12 MiB).
    const upstream: Upstream = runtimeName === "node" ? new (await import("./node-upstream.ts")).NodeUpstream() : new FetchUpstream();

    /** Posts one request; resolves with a 2xx answer whose body is on the idle clock, else throws what its status means. */
    async function post(req: ProviderRequest, body: object, watchdog: IdleWatchdog): Promise<UpstreamAnswer> {
      const sent = req.traceHeaders ? { ...headers, ...lowerCased(req.traceHeaders) } : headers;
      // timeoutMs covers the wait for the headers; from then on the body has idleTimeoutMs between reads.
      watchdog.awaitHeaders();
      const answer = await upstream.post(url, sent, JSON.stringify(body), watchdog.signal);
      watchdog.arm();
      if (answer.status >= 200 && answer.status < 300) return answer;
      const text = await answer.text(MAX_ERROR_BODY).catch(() => "");
      throw answerError(answer.status, { get: (name) => answer.header(name) }, text, { baseURL, model: req.model });
    }

    /** A non-streamed completion: one JSON body. */
    async function json(req: ProviderRequest, idle: IdleWatchdog): Promise<ProviderResult> {
      const answer = await post(req, { ...requestParams(req), stream: false }, idle);
      // The whole body has idleTimeoutMs to arrive.
      const text = await answer.text(MAX_ANSWER_BODY);
      idle.disarm();
      const res = parseJson(text, "answered with a body that is not JSON") as Completion | null;
      if (res?.error) {
        const said = typeof res.error === "string" ? res.error : (res.error.message ?? JSON.stringify(res.error));
        throw new ProviderError(`${PREFIX}: upstream reported an error: ${said}`, Code.Unavailable, true);
      }
      const choice = res?.choices?.[0];
      if (!choice) throw new ProviderError(`${PREFIX}: ${baseURL} answered without a choice: not an OpenAI chat completion`, Code.Unavailable, true);
      const toolCalls = messageToolCalls(choice.message?.tool_calls);
      return {
        text: choice.message?.content ?? "",
        ...(toolCalls ? { toolCalls } : {}),
        finishReason: choice.finish_reason ?? "stop",
        usage: res.usage ? { inputTokens: res.usage.prompt_tokens, outputTokens: res.usage.completion_tokens } : undefined,
        model: res.model ?? req.model,
      };
    }

    return {
      capabilities: { tools: true, structuredOutput: true },

      async *stream(req: ProviderRequest, signal: AbortSignal): AsyncGenerator<ProviderChunk> {
        // Its signal ends the request when the caller goes or the upstream goes quiet.
        const idle = new IdleWatchdog(signal, options.idleTimeoutMs, options.timeoutMs, baseURL);
        try {
          signal.throwIfAborted();
          const answer = await post(req, streamedBody(req), idle);
          const streamed = new StreamedAnswer();
          // The clock runs only while waiting on the upstream, never while a consumer holds a chunk.
          let turned = false;
          for await (const piece of answer.texts()) {
            idle.disarm();
            const events = streamed.events(piece);
            for (let i = 0; i < events.length; i++) {
              for (const chunk of streamed.take(events[i]!)) {
                idle.yielded = true;
                yield chunk;
              }
              // A read that holds much of the answer: the rest goes on in the next turn, so the first token's write
              // is out before the rest is processed (transports flush once a turn's work is done). Here, not in the
              // model step: there, for every provider, the turn cost a flat-out echo stream 15% of its messages/s.
              if (!turned && idle.yielded && i < events.length - 1) {
                turned = true;
                await nextTurn();
              }
            }
            idle.arm();
          }
          idle.disarm();
          for (const event of streamed.end()) {
            for (const chunk of streamed.take(event)) {
              idle.yielded = true;
              yield chunk;
            }
          }
          // A body cut by an abort may end quietly: the abort, not a short answer, is the outcome.
          idle.signal.throwIfAborted();
          yield* streamed.complete(baseURL, !idle.yielded);
        } catch (err) {
          throw toProviderError(err, signal, idle.signal, baseURL);
        } finally {
          idle.close();
        }
      },

      /**
       * The whole answer, asked for as wholeAnswers says. Streamed, what it
       * saves over stream() is passing each piece on through the runtime.
       */
      async generate(req: ProviderRequest, signal: AbortSignal): Promise<ProviderResult> {
        const idle = new IdleWatchdog(signal, options.idleTimeoutMs, options.timeoutMs, baseURL);
        try {
          signal.throwIfAborted();
          if (options.wholeAnswers === "json") return await json(req, idle);
          const answer = await post(req, streamedBody(req), idle);
          const streamed = new StreamedAnswer();
          let text = "";
          const read = (events: SseEvent[]) => {
            for (const event of events) text += streamed.text(event) ?? "";
          };
          for await (const piece of answer.texts()) {
            idle.disarm();
            read(streamed.events(piece));
            idle.arm();
          }
          idle.disarm();
          read(streamed.end());
          idle.signal.throwIfAborted();
          const toolCalls: ToolCall[] = [];
          let result: ProviderResult | undefined;
          for (const chunk of streamed.complete(baseURL, true)) {
            if (chunk.type === "tool_call") toolCalls.push(chunk.call);
            else if (chunk.type === "finish") result = { text, finishReason: chunk.finishReason, usage: chunk.usage, model: chunk.model ?? req.model };
          }
          return toolCalls.length ? { ...result!, toolCalls } : result!;
        } catch (err) {
          throw toProviderError(err, signal, idle.signal, baseURL);
        } finally {
          idle.close();
        }
      },

      dispose: () => upstream.close(),
    };
  },
});
