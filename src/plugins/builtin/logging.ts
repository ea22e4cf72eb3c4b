import { z } from "zod";
import { Code, codeName, toConnectError } from "../../errors.ts";
import type { AgentRunResult, RunEvent } from "../../pipeline/types.ts";
import { definePlugin } from "../define.ts";

const Options = z
  .strictObject({
    /** Log level of the per-call line for calls that succeed. */
    level: z.enum(["info", "debug"]).default("info"),
  })
  .prefault({});

/** One JSON line per call: agent, session, status, duration, tokens. */
export default definePlugin({
  name: "logging",
  kind: "middleware",
  configSchema: Options,
  setup({ logger, options }) {
    return {
      name: "logging",
      async *process(ctx, next): AsyncIterable<RunEvent> {
        let result: AgentRunResult | undefined;
        try {
          for await (const event of next()) {
            if (event.type === "completed") result = event.result;
            yield event;
          }
        } catch (err) {
          const error = toConnectError(err);
          const level = error.code === Code.Internal || error.code === Code.Unavailable ? "error" : "warn";
          logger[level]({
            call: ctx.callId,
            agent: ctx.agentId,
            session: ctx.sessionId || undefined,
            user: ctx.userId || undefined,
            status: codeName(error.code),
            error: error.rawMessage,
            durationMs: Date.now() - ctx.startTime,
          }, "call failed");
          throw err;
        }
        logger[options.level]({
          call: ctx.callId,
          agent: ctx.agentId,
          session: ctx.sessionId || undefined,
          user: ctx.userId || undefined,
          status: "OK",
          durationMs: Date.now() - ctx.startTime,
          model: result?.model,
          inputTokens: result?.usage.inputTokens,
          outputTokens: result?.usage.outputTokens,
          cache: result?.metadata.cache,
        }, "call");
      },
    };
  },
});
