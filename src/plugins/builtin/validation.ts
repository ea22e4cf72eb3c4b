import { z } from "zod";
import { Code, ConnectError, invalidArgument } from "../../errors.ts";
import type { RunEvent } from "../../pipeline/types.ts";
import { definePlugin } from "../define.ts";

const Options = z
  .strictObject({
    /** Largest task accepted, in UTF-8 bytes. */
    maxTaskBytes: z.int().positive().default(64 * 1024),
    /** Largest max_tokens a caller may ask for. */
    maxOutputTokens: z.int().positive().default(32_768),
    /** Most metadata entries per request. */
    maxMetadataEntries: z.int().min(0).default(64),
  })
  .prefault({});

/** Rejects calls that cannot succeed, before they cost anything. */
export default definePlugin({
  name: "validation",
  kind: "middleware",
  configSchema: Options,
  setup({ options }) {
    return {
      name: "validation",
      process(ctx, next): AsyncIterable<RunEvent> {
        if (!ctx.agentId) {
          if (!ctx.sessionId) throw invalidArgument("agent_id", "is required (or give a session_id bound to an agent)");
          // The session's agent could not be adopted: its own error (NOT_FOUND, PERMISSION_DENIED) says why.
          return (async function* (): AsyncIterable<RunEvent> {
            await ctx.session();
            throw invalidArgument("agent_id", `is required: session "${ctx.sessionId}" is bound to no agent`);
          })();
        }
        if (!ctx.agent) throw new ConnectError(`agent "${ctx.agentId}" not found`, Code.NotFound);
        if (ctx.task.trim() === "") throw invalidArgument("task", "must not be empty");
        const bytes = Buffer.byteLength(ctx.task, "utf8");
        if (bytes > options.maxTaskBytes) {
          throw invalidArgument("task", `is ${bytes} bytes; the limit is ${options.maxTaskBytes}`);
        }
        const { temperature, maxTokens } = ctx.options;
        if (temperature !== undefined && !(temperature >= 0 && temperature <= 2)) {
          throw invalidArgument("options.temperature", "must be between 0 and 2");
        }
        if (maxTokens !== undefined && maxTokens > options.maxOutputTokens) {
          throw invalidArgument("options.max_tokens", `must be at most ${options.maxOutputTokens}`);
        }
        if (Object.keys(ctx.metadata).length > options.maxMetadataEntries) {
          throw invalidArgument("metadata", `has more than ${options.maxMetadataEntries} entries`);
        }
        return next();
      },
    };
  },
});
