// Example LLM provider (docs/plugins.md): answers from a table of canned
// replies, streaming them word by word. Shows the stream contract: chunks as
// they come, one finish with usage, and stopping when the signal aborts.
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { Code, ProviderError, definePlugin, type ProviderChunk, type ProviderRequest } from "@qingyu/plugin-api";

const Options = z.strictObject({
  /** Keyword (case-insensitive) → reply. The first keyword found in the last user message wins. */
  replies: z.record(z.string(), z.string()),
  /** The reply when no keyword matches; without one, such a request is UNAVAILABLE. */
  fallbackReply: z.string().optional(),
  /** Pause between words, to look like a model. */
  delayMs: z.int().min(0).default(0),
});

export default definePlugin({
  name: "canned",
  kind: "llm-provider",
  configSchema: Options,
  setup({ options }) {
    const entries = Object.entries(options.replies).map(([k, v]) => [k.toLowerCase(), v] as const);
    return {
      async *stream(req: ProviderRequest, signal: AbortSignal): AsyncIterable<ProviderChunk> {
        const question = (req.messages.findLast((m) => m.role === "user")?.content ?? "").toLowerCase();
        const reply = entries.find(([k]) => question.includes(k))?.[1] ?? options.fallbackReply;
        // Not retryable: asking again will not make a reply appear.
        if (reply === undefined) throw new ProviderError("no canned reply matches", Code.Unavailable, false);
        const words = reply.split(/(?<=\s)/);
        for (const word of words) {
          // The signal fires on client cancel and deadline: stop producing at once.
          signal.throwIfAborted();
          if (options.delayMs) await sleep(options.delayMs, undefined, { signal });
          yield { type: "delta", text: word };
        }
        yield { type: "finish", finishReason: "stop", model: req.model, usage: { inputTokens: question.split(/\s+/).length, outputTokens: words.length } };
      },
    };
  },
});
