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
export type ProviderChunk = { type: "delta"; text: string } | { type: "finish"; finishReason: string; usage?: TokenUsage; model?: string };

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
 * connection) when it fires. Throw ProviderError for upstream failures.
 */
export interface LlmProvider {
  stream(req: ProviderRequest, signal: AbortSignal): AsyncIterable<ProviderChunk>;
  generate?(req: ProviderRequest, signal: AbortSignal): Promise<ProviderResult>;
  /** Releases what setup acquired; called at shutdown and once a reload has replaced it. */
  dispose?(): void | Promise<void>;
}
