import { definePlugin, type ProviderChunk, type ProviderRequest } from "@qingyu/plugin-api";
import { setTimeout as sleep } from "node:timers/promises";
import { z } from "zod";
import { abortReason } from "../../errors.ts";

const Options = z
  .strictObject({
    /** Pause before each token, for demos, cancellation tests and benchmarks. */
    tokenDelayMs: z.int().min(0).default(0),
  })
  .prefault({});

// Whitespace-delimited words stand in for tokens: deterministic and cheap.
const countWords = (text: string): number => (text.match(/\S+/g) ?? []).length;

/** The reply for a request: the task, prefixed with how much history came with it. */
function echoReply(req: ProviderRequest): string {
  const history = req.messages.filter((m) => m.role !== "system").length - 1;
  const task = req.messages.at(-1)?.content ?? "";
  return `[history=${history}] ${task}`;
}

/** Deterministic provider: streams the task back word by word. */
export default definePlugin({
  name: "echo",
  kind: "llm-provider",
  configSchema: Options,
  setup({ options }) {
    const { tokenDelayMs } = options;
    return {
      async *stream(req: ProviderRequest, signal: AbortSignal): AsyncIterable<ProviderChunk> {
        const words = echoReply(req).split(/(?<=\s)/);
        const limit = req.maxTokens ?? Infinity;
        let sent = 0;
        for (const word of words) {
          if (sent >= limit) break;
          if (signal.aborted) throw abortReason(signal);
          if (tokenDelayMs > 0) {
            try {
              await sleep(tokenDelayMs, undefined, { signal });
            } catch {
              throw abortReason(signal);
            }
          }
          sent++;
          yield { type: "delta", text: word };
        }
        const input = req.messages.reduce((n, m) => n + countWords(m.content), 0);
        yield {
          type: "finish",
          finishReason: sent < words.length ? "length" : "stop",
          usage: { inputTokens: input, outputTokens: sent },
          model: req.model,
        };
      },
    };
  },
});
