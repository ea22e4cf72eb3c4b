import type { JsonObject } from "./sessions.ts";

/** A call of a tool that the model asked for. */
export interface ToolCall {
  /** The provider's id for the call; a tool message answers it by this id. */
  id: string;
  name: string;
  /** The arguments as the model wrote them: JSON text (not yet checked). */
  arguments: string;
}

/** One message of a prompt. */
export interface ChatMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  /** Assistant only: the tools the model called in this message. */
  toolCalls?: ToolCall[];
  /** Tool only: the call this message answers. */
  toolCallId?: string;
}

/** A tool as a provider offers it to the model. */
export interface ToolDefinition {
  name: string;
  description: string;
  /** JSON Schema (draft-07) of the arguments object. */
  parameters: JsonObject;
}

/** Whether the model may, must or must not call tools, or must call one named tool. */
export type ToolChoice = "auto" | "none" | "required" | { name: string };

/** Asks for an answer that is one JSON value matching `schema`. */
export interface ResponseFormat {
  /** Names the schema for providers that want a name ([A-Za-z0-9_-], at most 64). */
  name: string;
  schema: JsonObject;
}

/** What an agent asks of a provider for one step. */
export interface ProviderRequest {
  model: string;
  messages: ChatMessage[];
  temperature?: number;
  maxTokens?: number;
  /** Tools the model may call this step; absent or empty: none. */
  tools?: ToolDefinition[];
  toolChoice?: ToolChoice;
  /** Whether the model may ask for several calls in one step (absent: the provider's default). */
  parallelToolCalls?: boolean;
  /** A JSON Schema the answer must match (structured output). */
  responseFormat?: ResponseFormat;
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

/**
 * One item of a provider's stream: text as it comes; for each tool call the
 * model makes, optional `tool_call_delta`s (for clients that show arguments as
 * they are written) and then exactly one complete `tool_call`; then at most one
 * `finish`. Tool calls, not the finish reason, are what make the runtime run
 * tools and take another step.
 */
export type ProviderChunk =
  | { type: "delta"; text: string }
  | {
      type: "tool_call_delta";
      /** The call's position in this answer (0-based); fragments of one call share it. */
      index: number;
      /** In the call's first fragment. */
      id?: string;
      /** In the call's first fragment. */
      name?: string;
      argumentsDelta: string;
    }
  | { type: "tool_call"; index: number; call: ToolCall }
  | { type: "finish"; finishReason: string; usage?: TokenUsage; model?: string };

/** The whole answer of a non-streamed call. */
export interface ProviderResult {
  text: string;
  /** The tools the model called, in order. */
  toolCalls?: ToolCall[];
  finishReason: string;
  usage?: TokenUsage;
  model?: string;
}

/** What a provider can do beyond streaming text; absent means no. */
export interface ProviderCapabilities {
  /** Sends `tools`, `toolChoice` and `parallelToolCalls` and reports the model's tool calls. */
  tools?: boolean;
  /** Sends `responseFormat` (otherwise the runtime asks for the JSON in the prompt and validates the answer). */
  structuredOutput?: boolean;
}

/**
 * An LLM backend. `signal` aborts the upstream request when the client cancels or
 * the deadline passes; implementations must stop generating (and close the
 * connection) when it fires. Throw ProviderError for upstream failures.
 */
export interface LlmProvider {
  /** What it supports; an agent with tools on a provider without `tools` stops start-up. */
  readonly capabilities?: ProviderCapabilities;
  stream(req: ProviderRequest, signal: AbortSignal): AsyncIterable<ProviderChunk>;
  generate?(req: ProviderRequest, signal: AbortSignal): Promise<ProviderResult>;
  /** Releases what setup acquired; called at shutdown and once a reload has replaced it. */
  dispose?(): void | Promise<void>;
}
