import { ConnectError, Code } from "../errors.ts";

/** One message of a prompt. */
export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

/** What an agent asks of a provider for one run. */
export interface ProviderRequest {
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  maxTokens?: number;
  /** The agent's default options beyond the standard ones, passed through. */
  extra?: Record<string, unknown>;
  /**
   * Trace-context headers (W3C `traceparent`, `tracestate`) of the provider
   * call's span, when tracing is on: send them with the upstream request so
   * the model server's spans join the caller's trace.
   */
  traceHeaders?: Record<string, string>;
}

/** Token counts as the provider reports them. */
export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
}

/** One item of a provider's stream: text as it comes, then at most one `finish`. */
export type ProviderChunk =
  | { type: "delta"; text: string }
  | { type: "finish"; finishReason: string; usage?: TokenUsage; model?: string };

/** The whole answer of a non-streamed call. */
export interface ProviderResult {
  text: string;
  finishReason: string;
  usage?: TokenUsage;
  model?: string;
}

/**
 * An LLM backend. `signal` aborts the upstream request when the client cancels or
 * the deadline passes; implementations must stop generating (and close the
 * connection) when it fires.
 */
export interface LlmProvider {
  stream(req: ProviderRequest, signal: AbortSignal): AsyncIterable<ProviderChunk>;
  generate?(req: ProviderRequest, signal: AbortSignal): Promise<ProviderResult>;
  /** Releases what setup acquired; called at shutdown and once a reload has replaced it. */
  dispose?(): void | Promise<void>;
}

/**
 * A provider failure with what the executor needs to decide on a retry. The
 * code is the one the client sees once retries are exhausted.
 */
export class ProviderError extends ConnectError {
  constructor(
    message: string,
    code: Code,
    /** Whether trying again might succeed (429, 5xx, connection reset). */
    readonly retryable: boolean,
    /** The provider's Retry-After, when it sent one. */
    readonly retryAfterMs?: number,
    cause?: unknown,
  ) {
    // The name stays "ConnectError": connect-es recognises its errors by name or prototype.
    super(message, code, undefined, undefined, cause);
  }

  // ConnectError's own instanceof check would accept any ConnectError as a ProviderError.
  static override [Symbol.hasInstance](value: unknown): boolean {
    return value instanceof Error && ProviderError.prototype.isPrototypeOf(value);
  }
}
