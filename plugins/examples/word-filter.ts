// Example middleware (docs/plugins.md): refuses tasks that contain blocked
// words (pre-processing) and masks them in the answer as it streams
// (post-processing). Outside this repository, import from "@qingyu/plugin-api".
import { z } from "zod";
import { Code, ConnectError, definePlugin, type RunEvent } from "../../src/index.ts";

const Options = z.strictObject({
  /** Words (case-insensitive) that may not appear in a task and are masked in answers. */
  words: z.array(z.string().min(1)).min(1),
  /** What replaces a blocked word in the answer. */
  mask: z.string().default("***"),
});

export default definePlugin({
  name: "word-filter",
  kind: "middleware",
  configSchema: Options,
  setup({ options, logger }) {
    const escaped = options.words.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
    const pattern = new RegExp(`\\b(${escaped.join("|")})\\b`, "gi");
    const mask = (text: string) => text.replace(pattern, options.mask);
    return {
      name: "word-filter",
      async *process(ctx, next): AsyncIterable<RunEvent> {
        // Before next(): refuse without spending a token.
        if (new RegExp(pattern.source, "i").test(ctx.task)) {
          logger.info({ call: ctx.callId, user: ctx.userId }, "task refused by word filter");
          throw new ConnectError("the task contains a blocked word", Code.InvalidArgument);
        }
        // After next(): rewrite the answer as it streams. (A word split across two
        // chunks slips through; a production filter would buffer a little.)
        for await (const event of next()) {
          if (event.type === "delta") yield { type: "delta", text: mask(event.text) };
          else if (event.type === "completed") yield { type: "completed", result: { ...event.result, output: mask(event.result.output) } };
          else yield event;
        }
      },
    };
  },
});
