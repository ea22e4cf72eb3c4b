import { Code, type ProviderChunk, ProviderError, type TokenUsage } from "@qingyu/plugin-api";
import { PREFIX } from "./errors.ts";
import { parseJson } from "./json.ts";
import { SseParser, type SseEvent } from "./sse.ts";
import { ToolCallAssembler, type ToolCallFragment } from "./tool-calls.ts";

/** What a chat-completions stream chunk carries that the provider reads. */
interface StreamChunk {
  model?: string;
  usage?: { prompt_tokens: number; completion_tokens: number } | null;
  choices?: Array<{ delta?: { content?: string | null; tool_calls?: ToolCallFragment[] | null }; finish_reason?: string | null }>;
  error?: { message?: string };
}

/**
 * One streamed chat completion, read as its body arrives: each read gives the
 * chunks it completes, a delta per event, in order. An event the upstream
 * reports an error in ends the answer: the chunks before it in the same read
 * are still given, and `failure` is set for the reader to throw once it has
 * passed them on (the client has seen that much).
 */
export class StreamedAnswer {
  finishReason: string | undefined;
  usage: TokenUsage | undefined;
  model: string | undefined;
  /** The answer's tool calls, made at the first fragment: a text-only answer never has one. */
  private tools: ToolCallAssembler | undefined;
  private readonly parser = new SseParser();
  /** Set by [DONE]: the body is still read to its end, so the connection can serve the next request. */
  private done = false;
  /** Why the answer ended early, once an event said so. */
  failure: unknown;

  /** The chunks a read of the body completes. */
  read(bytes: Uint8Array): ProviderChunk[] {
    return this.take(this.parser.push(bytes));
  }

  /** The chunks the end of the body completes. */
  end(): ProviderChunk[] {
    return this.take(this.parser.end());
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
      throw new ProviderError(`${baseURL} ended its answer without a finish reason: truncated, or not an OpenAI stream`, Code.Unavailable, retryable);
    }
    // The calls, not the finish reason, say the model wants tools run: some servers finish them with "stop".
    const calls: ProviderChunk[] = this.tools ? this.tools.complete(retryable) : [];
    calls.push({ type: "finish", finishReason, usage, model });
    return calls;
  }

  private take(events: SseEvent[]): ProviderChunk[] {
    if (this.failure) throw this.failure;
    const out: ProviderChunk[] = [];
    try {
      for (const event of events) {
        const text = this.event(event);
        if (text) out.push({ type: "delta", text });
        if (this.tools?.hasDeltas) out.push(...this.tools.takeDeltas());
      }
    } catch (err) {
      this.failure = err;
    }
    return out;
  }

  /** Reads one event; returns the text it adds to the answer, if any (its tool-call fragments go to `tools`). */
  private event(message: SseEvent): string | undefined {
    if (this.done || message.data.startsWith("[DONE]")) {
      this.done = true;
      return undefined;
    }
    const chunk = parseJson(message.data, "sent an event that is not JSON") as StreamChunk | null;
    if (message.event === "error" || chunk?.error) {
      const said = chunk?.error?.message ?? (chunk as { message?: unknown } | null)?.message;
      throw new ProviderError(`${PREFIX}: upstream reported an error mid-stream: ${typeof said === "string" ? said : message.data}`, Code.Unavailable, true);
    }
    if (!chunk) return undefined;
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
