// Example middleware (docs/plugins.md): refuses tasks that contain blocked
// words (pre-processing) and masks them in the answer as it streams
// (post-processing), including a word the provider split across two chunks.
import { z } from "zod";
import { Code, ConnectError, definePlugin, transformText, type TextTransformOptions } from "@qingyu/plugin-api";

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
    const blocked = new RegExp(pattern.source, "i");
    // Text is released only after a non-word character, so a word is never cut in two
    // ("pass" + "word" is masked as "password" would be). Made once, shared by every call.
    const masking: TextTransformOptions = {
      transform: (text) => text.replace(pattern, options.mask),
      boundary: /\W/,
    };
    return {
      name: "word-filter",
      process(ctx, next) {
        // Before next(): refuse without spending a token.
        if (blocked.test(ctx.task)) {
          logger.info({ call: ctx.callId, user: ctx.userId }, "task refused by word filter");
          throw new ConnectError("the task contains a blocked word", Code.InvalidArgument);
        }
        // After next(): the answer, masked as it streams; completed's output is what was streamed.
        return transformText(next(), masking);
      },
    };
  },
});
