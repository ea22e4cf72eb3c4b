// The provider of the token-latency phase (bench/token-latency.ts), loaded from
// this directory by the bench's server config: for the task "tick <ms> <count>"
// it yields stamped tokens on the schedule in bench/tick.ts, as
// bench/bare-server.ts writes them. Its own cost is a timer per token, as the
// echo provider's is with tokenDelayMs.
import { definePlugin, type ProviderChunk, type ProviderRequest } from "../../src/index.ts";
import { dueAt, parseTick, stamp, untilDue } from "../tick.ts";

export default definePlugin({
  name: "bench-clock",
  kind: "llm-provider",
  setup() {
    return {
      async *stream(req: ProviderRequest, signal: AbortSignal): AsyncIterable<ProviderChunk> {
        const { intervalMs, count } = parseTick(req.messages.at(-1)?.content ?? "");
        const start = process.hrtime.bigint();
        for (let i = 1; i <= count; i++) {
          const due = dueAt(start, intervalMs, i);
          await untilDue(due, signal);
          signal.throwIfAborted();
          yield { type: "delta", text: stamp(due) };
        }
        yield { type: "finish", finishReason: "stop", usage: { inputTokens: 3, outputTokens: count }, model: req.model };
      },
    };
  },
});
