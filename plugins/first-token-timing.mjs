// An example user plugin, loaded from plugins/ like any operator's own: it adds
// the time to first token to each result's metadata. Enable it by naming it in
// `pipeline` (it is discovered either way, and does nothing until named).
// Plain JavaScript: a plugin in TypeScript works as well (plugins/examples/), but
// the server then loads a TypeScript compiler (tsx) too, about 30 MiB at rest.
import { definePlugin } from "@qingyu/plugin-api";

export default definePlugin({
  name: "first-token-timing",
  kind: "middleware",
  setup() {
    return {
      name: "first-token-timing",
      // Times the first piece of text the model writes: a unary call must stream for there to be one.
      needsStreaming: true,
      /** @type {import("@qingyu/plugin-api").Middleware["process"]} */
      async *process(ctx, next) {
        /** @type {number | undefined} */
        let firstTokenMs;
        for await (const event of next()) {
          if (event.type === "delta" && firstTokenMs === undefined) firstTokenMs = Date.now() - ctx.startTime;
          if (event.type === "completed" && firstTokenMs !== undefined) {
            yield { type: "completed", result: { ...event.result, metadata: { ...event.result.metadata, first_token_ms: String(firstTokenMs) } } };
            continue;
          }
          yield event;
        }
      },
    };
  },
});
