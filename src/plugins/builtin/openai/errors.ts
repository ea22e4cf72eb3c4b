import { Code, ProviderError } from "@qingyu/plugin-api";
import { type HeaderReader, retryAfterMs } from "../../../http/retry-after.ts";
import { UpstreamUnreachable } from "./upstream.ts";

/** How the provider's messages begin. */
export const PREFIX = "openai provider";

/** The path, under the base URL, of every request the provider sends. */
export const CHAT_PATH = "/chat/completions";

/** The most of an error answer's body kept for its message. */
export const MAX_ERROR_BODY = 64 * 1024;

const STATUS_TEXT: Record<number, string> = {
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  408: "Request Timeout",
  409: "Conflict",
  422: "Unprocessable Entity",
  429: "Too Many Requests",
  500: "Internal Server Error",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

// Error codes, anywhere in the cause chain, that mean the connection failed rather than the request.
const CONNECTION_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN",
  "UND_ERR_SOCKET",
  "UND_ERR_CLOSED",
  "UND_ERR_CONNECT_TIMEOUT",
]);

/** Where the request went, for messages. */
export interface Target {
  baseURL: string;
  model: string;
}

/**
 * The error an answer that is not a 2xx stands for: the code the client should
 * see, whether a retry may help (and when), and the upstream's own words.
 */
export function answerError(status: number, headers: HeaderReader, body: string, target: Target): ProviderError {
  const { baseURL, model } = target;
  const upstream = upstreamWords(body);
  const answered = `${PREFIX}: upstream answered ${status}${STATUS_TEXT[status] ? ` ${STATUS_TEXT[status]}` : ""}`;
  const fail = (code: Code, retryable: boolean, retryAfter?: number, extra = "") =>
    new ProviderError(`${answered}${extra}: ${upstream}`, code, retryable, retryAfter);
  if (status === 401) return fail(Code.Unauthenticated, false);
  if (status === 403) return fail(Code.PermissionDenied, false);
  if (status === 404) {
    const url = `${baseURL.replace(/\/+$/, "")}${CHAT_PATH}`;
    return new ProviderError(`${answered} for model "${model}" at POST ${url}: ${upstream}${missingV1(baseURL)}`, Code.NotFound, false);
  }
  if (status === 400 || status === 422) return fail(Code.InvalidArgument, false);
  if (status === 429) return fail(Code.ResourceExhausted, true, retryAfterMs(headers));
  if (status === 408 || status === 409 || status >= 500) return fail(Code.Unavailable, true, retryAfterMs(headers));
  if (status >= 300 && status < 400) {
    // A redirect that was not followed (a POST cannot be): the configured address is not the API's.
    const location = headers.get("location");
    return fail(Code.FailedPrecondition, false, undefined, location ? ` (to ${location}: set baseUrl to the address it names)` : "");
  }
  return fail(Code.Internal, false);
}

/**
 * Names any other failure. An aborted call surfaces its own reason untouched:
 * the runtime put a CANCELLED or DEADLINE_EXCEEDED there, and wrapping it would
 * turn a cancel into a provider failure; a stalled or slow upstream surfaces
 * the watchdog's UNAVAILABLE.
 */
export function toProviderError(err: unknown, signal: AbortSignal, watchdog: AbortSignal, baseURL: string): unknown {
  if (signal.aborted) return signal.reason;
  if (watchdog.aborted) return watchdog.reason;
  if (err instanceof ProviderError) return err;
  const code = connectionCode(err);
  if (err instanceof UpstreamUnreachable || code) {
    const detail = code ? ` (${code})` : `: ${rootMessage(err)}`;
    return new ProviderError(`${PREFIX}: could not reach ${baseURL}${detail}`, Code.Unavailable, true, undefined, err);
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ProviderError(`${PREFIX}: ${message}`, Code.Internal, false, undefined, err);
}

/**
 * The upstream's own words from an error body: OpenAI's `error.message`, the
 * `message` or `detail` other servers use, else the body itself (shortened).
 */
function upstreamWords(body: string): string {
  const text = body.trim();
  if (!text) return "(no body)";
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return shorten(text);
  }
  const said = json as { error?: unknown; message?: unknown; detail?: unknown } | null;
  const error = said?.error;
  if (error && typeof error === "object") {
    const message = (error as { message?: unknown }).message;
    if (typeof message === "string" && message) return message;
    return shorten(JSON.stringify(message ?? error));
  }
  if (typeof error === "string" && error) return error;
  if (typeof said?.message === "string" && said.message) return said.message;
  if (typeof said?.detail === "string" && said.detail) return said.detail;
  return shorten(text);
}

function shorten(text: string): string {
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

/**
 * A hint for a 404 when the base URL has no /v1: a server that speaks OpenAI's
 * API (Ollama, vLLM, llama.cpp) serves it under /v1, and without it every call
 * is a 404 that must not read like an unknown model or agent.
 */
function missingV1(baseURL: string): string {
  let path: string;
  try {
    path = new URL(baseURL).pathname;
  } catch {
    return "";
  }
  if (/\/v1(\/|$)/.test(path)) return "";
  return ` (the base URL ${baseURL} has no /v1, where OpenAI-compatible servers serve the API: set the provider's baseUrl or OPENAI_BASE_URL to ${baseURL.replace(/\/+$/, "")}/v1)`;
}

function connectionCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && typeof e === "object" && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === "string" && CONNECTION_CODES.has(code)) return code;
  }
  return undefined;
}

/** The innermost cause's message (Deno names no error code). */
function rootMessage(err: unknown): string {
  let e = err;
  for (let depth = 0; depth < 8 && e instanceof Error && e.cause instanceof Error; depth++) e = e.cause;
  return e instanceof Error ? e.message : String(e);
}
