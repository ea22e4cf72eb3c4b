import { z } from "zod";
import { Code, abortReason, codeName, toConnectError } from "../../errors.ts";
import { observe } from "../../pipeline/stream.ts";
import type { AgentRunResult } from "../../pipeline/types.ts";
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
      process(ctx, next) {
        let result: AgentRunResult | undefined;
        // Observed, not wrapped in a generator: the line needs only the result and how the call ended.
        return observe(next(), {
          event(event) {
            if (event.type === "completed") result = event.result;
          },
          end({ error, abandoned }) {
            const fields = {
              call: ctx.callId,
              agent: ctx.agentId,
              session: ctx.sessionId || undefined,
              user: ctx.userId || undefined,
              durationMs: Date.now() - ctx.startTime,
            };
            if (error !== undefined || (abandoned && !result)) {
              const failure = error !== undefined ? toConnectError(error) : abortReason(ctx.signal);
              const level = failure.code === Code.Internal || failure.code === Code.Unavailable ? "error" : "warn";
              logger[level]({ ...fields, status: codeName(failure.code), error: failure.rawMessage }, "call failed");
              return;
            }
            logger[options.level]({
              ...fields,
              status: "OK",
              model: result?.model,
              inputTokens: result?.usage.inputTokens,
              outputTokens: result?.usage.outputTokens,
              cache: result?.metadata.cache,
            }, "call");
          },
        });
      },
    };
  },
});
