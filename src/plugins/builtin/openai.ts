import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError } from "openai";
import { z } from "zod";
import { Code } from "../../errors.ts";
import { definePlugin } from "../define.ts";
import { ProviderError, type ProviderChunk, type ProviderRequest, type ProviderResult, type TokenUsage } from "../../providers/types.ts";

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

export type OpenAIOptions = z.output<typeof configSchema>;

const PREFIX = "openai provider";

const STATUS_TEXT: Record<number, string> = {
  400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
  408: "Request Timeout", 409: "Conflict", 422: "Unprocessable Entity", 429: "Too Many Requests",
  500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
};

// Error codes, anywhere in the cause chain, that mean the connection failed rather than the request.
const CONNECTION_CODES = new Set([
  "ECONNRESET", "ECONNREFUSED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENOTFOUND", "EAI_AGAIN",
  "UND_ERR_SOCKET", "UND_ERR_CLOSED", "UND_ERR_CONNECT_TIMEOUT",
]);

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
    const client = new OpenAI({
      apiKey,
      baseURL,
      organization: options.organization ?? null,
      defaultHeaders: options.headers,
      // The runtime's executor retries (with backoff, within the call's deadline); retrying here too would multiply attempts.
      maxRetries: 0,
      timeout: options.timeoutMs,
    });

    // Extra goes first so that agent defaults can never turn streaming off or swap the model or prompt.
    const params = (req: ProviderRequest) => ({
      ...req.extra,
      model: req.model,
      messages: req.messages,
      ...(req.temperature !== undefined ? { temperature: req.temperature } : {}),
      ...(req.maxTokens !== undefined ? { max_tokens: req.maxTokens } : {}),
    });

    return {
      async *stream(req: ProviderRequest, signal: AbortSignal): AsyncGenerator<ProviderChunk> {
        const idle = new IdleWatchdog(options.idleTimeoutMs, baseURL);
        try {
          signal.throwIfAborted();
          // Aborting `upstream` (the caller went, or the body stalled) closes the connection.
          const upstream = AbortSignal.any([signal, idle.signal]);
          const stream = await client.chat.completions.create(
            { ...params(req), stream: true, stream_options: { include_usage: true } },
            { signal: upstream, headers: req.traceHeaders },
          );
          let finishReason: string | undefined;
          let usage: TokenUsage | undefined;
          let model: string | undefined;
          // The clock runs only while waiting on the upstream, never while a consumer holds a chunk.
          idle.arm();
          for await (const chunk of stream) {
            idle.disarm();
            model = chunk.model || model;
            if (chunk.usage) usage = { inputTokens: chunk.usage.prompt_tokens, outputTokens: chunk.usage.completion_tokens };
            const choice = chunk.choices[0];
            if (choice?.finish_reason) finishReason = choice.finish_reason;
            const text = choice?.delta?.content;
            if (text) {
              idle.yielded = true;
              yield { type: "delta", text };
            }
            idle.arm();
          }
          idle.disarm();
          // The client's stream ends quietly (no throw) when the request is aborted mid-body.
          signal.throwIfAborted();
          idle.signal.throwIfAborted();
          // Every complete OpenAI answer names why it finished: without one the answer was cut short
          // (or was not an OpenAI stream at all, e.g. a gateway's HTML page) and is not a success.
          if (finishReason === undefined) {
            throw new ProviderError(`${baseURL} ended its answer without a finish reason: truncated, or not an OpenAI stream`, Code.Unavailable, !idle.yielded);
          }
          yield { type: "finish", finishReason, usage, model };
        } catch (err) {
          throw toProviderError(err, signal, idle.signal, req.model, baseURL);
        } finally {
          idle.close();
        }
      },

      async generate(req: ProviderRequest, signal: AbortSignal): Promise<ProviderResult> {
        const idle = new IdleWatchdog(options.idleTimeoutMs, baseURL);
        try {
          signal.throwIfAborted();
          const pending = client.chat.completions.create(
            { ...params(req), stream: false },
            { signal: AbortSignal.any([signal, idle.signal]), headers: req.traceHeaders },
          );
          // timeoutMs covers the wait for the headers; from then on the body has idleTimeoutMs to arrive.
          pending.asResponse().then(() => idle.arm(), () => undefined);
          const res = await pending;
          const choice = res.choices[0];
          return {
            text: choice?.message?.content ?? "",
            finishReason: choice?.finish_reason ?? "stop",
            usage: res.usage ? { inputTokens: res.usage.prompt_tokens, outputTokens: res.usage.completion_tokens } : undefined,
            model: res.model,
          };
        } catch (err) {
          throw toProviderError(err, signal, idle.signal, req.model, baseURL);
        } finally {
          idle.close();
        }
      },
    };
  },
});

/**
 * Ends a request whose body stopped coming: aborting its signal closes the
 * upstream connection, and its reason is the UNAVAILABLE the caller sees.
 * Retryable only while nothing was yielded: after that the client has part of
 * an answer (the executor would not retry anyway).
 */
class IdleWatchdog {
  private readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  /** Set once a delta went to the consumer. */
  yielded = false;

  constructor(
    private readonly ms: number,
    private readonly baseURL: string,
  ) {}

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  arm(): void {
    this.disarm();
    // A late arm (generate's header callback) must not leave a timer behind a finished request.
    if (this.closed) return;
    this.timer = setTimeout(() => {
      const message = `${PREFIX}: ${this.baseURL} sent nothing for ${this.ms} ms (idleTimeoutMs); the response stalled`;
      this.controller.abort(new ProviderError(message, Code.Unavailable, !this.yielded));
    }, this.ms);
  }

  disarm(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  close(): void {
    this.closed = true;
    this.disarm();
  }
}

/**
 * Names a failure with the code the client should see and whether a retry may help.
 * An aborted call surfaces its own reason untouched: the runtime put a CANCELLED or
 * DEADLINE_EXCEEDED there, and wrapping it would turn a cancel into a provider failure;
 * a stalled body surfaces the watchdog's UNAVAILABLE.
 */
function toProviderError(err: unknown, signal: AbortSignal, idle: AbortSignal, model: string, baseURL: string): unknown {
  if (signal.aborted) return signal.reason;
  if (idle.aborted) return idle.reason;
  if (err instanceof ProviderError) return err;
  // Timeout before connection errors: it is a subclass.
  if (err instanceof APIConnectionTimeoutError) {
    return new ProviderError(`${PREFIX}: request to ${baseURL} timed out`, Code.Unavailable, true, undefined, err);
  }
  if (err instanceof APIConnectionError || connectionCode(err)) {
    const code = connectionCode(err);
    const detail = code ? ` (${code})` : `: ${rootMessage(err)}`;
    return new ProviderError(`${PREFIX}: could not reach ${baseURL}${detail}`, Code.Unavailable, true, undefined, err);
  }
  if (err instanceof APIError) {
    const status = err.status;
    const upstream = upstreamMessage(err);
    if (status === undefined) {
      // An error event inside an already-started stream; OpenAI sends these for server-side failures.
      return new ProviderError(`${PREFIX}: upstream reported an error mid-stream: ${upstream}`, Code.Unavailable, true, undefined, err);
    }
    const answered = `${PREFIX}: upstream answered ${status}${STATUS_TEXT[status] ? ` ${STATUS_TEXT[status]}` : ""}`;
    const fail = (code: Code, retryable: boolean, retryAfterMs?: number, extra = "") =>
      new ProviderError(`${answered}${extra}: ${upstream}`, code, retryable, retryAfterMs, err);
    if (status === 401) return fail(Code.Unauthenticated, false);
    if (status === 403) return fail(Code.PermissionDenied, false);
    if (status === 404) return fail(Code.NotFound, false, undefined, ` for model "${model}"`);
    if (status === 400 || status === 422) return fail(Code.InvalidArgument, false);
    if (status === 429) return fail(Code.ResourceExhausted, true, retryAfterMs(err.headers));
    if (status === 408 || status === 409 || status >= 500) return fail(Code.Unavailable, true, retryAfterMs(err.headers));
    return fail(Code.Internal, false);
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ProviderError(`${PREFIX}: ${message}`, Code.Internal, false, undefined, err);
}

/** The upstream's own words, without the status the client library prefixes. */
function upstreamMessage(err: APIError): string {
  const body = err.error as { message?: unknown } | undefined;
  if (body && typeof body.message === "string" && body.message) return body.message;
  const prefix = `${err.status} `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}

/** Retry-After as milliseconds: OpenAI's retry-after-ms first, then the standard header (seconds or HTTP date). */
export function retryAfterMs(headers: Headers | undefined, now = Date.now()): number | undefined {
  const ms = Number.parseFloat(headers?.get("retry-after-ms") ?? "");
  if (Number.isFinite(ms) && ms >= 0) return Math.round(ms);
  const value = headers?.get("retry-after")?.trim();
  if (!value) return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * 1000);
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function connectionCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && CONNECTION_CODES.has(code)) return code;
  }
  return undefined;
}

/** The innermost cause's message: the client's own says only "Connection error." (Deno names no error code). */
function rootMessage(err: unknown): string {
  let e = err;
  for (let depth = 0; depth < 8 && e instanceof Error && e.cause instanceof Error; depth++) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}
