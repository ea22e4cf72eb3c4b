import { Code, type ProviderChunk, ProviderError, type TokenUsage } from "@qingyu/plugin-api";
import { PREFIX } from "./errors.ts";
import { parseJson } from "./json.ts";
import { RepeatedChunks } from "./repeated-chunks.ts";
import { SseParser, type SseEvent } from "./sse.ts";
import { ToolCallAssembler, type ToolCallFragment } from "./tool-calls.ts";

/** What a chat-completions stream chunk carries that the provider reads. */
interface StreamChunk {
  model?: string;
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  choices?: Array<{ delta?: { content?: string | null; tool_calls?: ToolCallFragment[] | null }; finish_reason?: string | null }>;
  error?: { message?: string };
}

const NOTHING: readonly ProviderChunk[] = [];

/**
 * One streamed chat completion, read as its body arrives: each read of the
 * body gives its events (cheap: the text split at blank lines), and each event
 * is read when the reader gets to it, so the first token of a read that holds
 * a whole answer goes on before the rest of it is parsed.
 */
export class StreamedAnswer {
  finishReason: string | undefined;
  usage: TokenUsage | undefined;
  model: string | undefined;
  /** The answer's tool calls, made at the first fragment: a text-only answer never has one. */
  private tools: ToolCallAssembler | undefined;
  private readonly parser = new SseParser();
  private readonly repeats = new RepeatedChunks();
  /** Set by [DONE]: the body is still read to its end, so the connection can serve the next request. */
  private done = false;

  /** The events a read of the body completes. */
  events(text: string): SseEvent[] {
    return this.parser.push(text);
  }

  /** The events the end of the body completes. */
  end(): SseEvent[] {
    return this.parser.end();
  }

  /** The chunks one event gives: its text, then its tool-call fragments; throws what an error event reports. */
  take(event: SseEvent): readonly ProviderChunk[] {
    const text = this.event(event);
    const tools = this.tools?.hasDeltas ? this.tools.takeDeltas() : undefined;
    if (!tools) return text ? [{ type: "delta", text }] : NOTHING;
    return text ? [{ type: "delta", text }, ...tools] : tools;
  }

  /** One event's text, for a reader of the whole answer: tool-call fragments go only to `complete`'s calls. */
  text(event: SseEvent): string | undefined {
    const text = this.event(event);
    if (this.tools?.hasDeltas) this.tools.takeDeltas();
    return text;
  }

  /**
   * The answer's last chunks: its complete tool calls, then its finish. Every
   * complete OpenAI answer names why it finished: without one the answer was
   * cut short (or was not an OpenAI stream at all, e.g. a gateway's HTML page)
   * and is not a success.
   */
  complete(baseURL: string, retryable: boolean): ProviderChunk[] {
    const { finishReason, usage, model } = this;
    if (finishReason === undefined) {
      throw new ProviderError(
        `${PREFIX}: ${baseURL} ended its answer without a finish reason: truncated, or not an OpenAI stream`,
        Code.Unavailable,
        retryable,
      );
    }
    // The calls, not the finish reason, say the model wants tools run: some servers finish them with "stop".
    const calls: ProviderChunk[] = this.tools ? this.tools.complete(retryable) : [];
    calls.push({ type: "finish", finishReason, usage, model });
    return calls;
  }

  /** Reads one event; returns the text it adds to the answer, if any (its tool-call fragments go to `tools`). */
  private event(message: SseEvent): string | undefined {
    if (this.done || message.data.startsWith("[DONE]")) {
      this.done = true;
      return undefined;
    }
    if (message.event === null) {
      const text = this.repeats.text(message.data);
      if (text !== undefined) return text || undefined;
    }
    const chunk = parseJson(message.data, "sent an event that is not JSON") as StreamChunk | null;
    if (message.event === "error" || chunk?.error) {
      const said = chunk?.error?.message ?? (chunk as { message?: unknown } | null)?.message;
      throw new ProviderError(`${PREFIX}: upstream reported an error mid-stream: ${typeof said === "string" ? said : message.data}`, Code.Unavailable, true);
    }
    if (!chunk) return undefined;
    if (message.event === null) this.repeats.learn(message.data, chunk);
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
