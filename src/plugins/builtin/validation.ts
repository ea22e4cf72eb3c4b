import { definePlugin, invalidArgument, limitExceeded, type RunEvent } from "@qingyu/plugin-api";
import { z } from "zod";
import { agentRefusal } from "../../agents/registry.ts";

const Options = z
  .strictObject({
    /** Largest task accepted, in UTF-8 bytes (an agent's limits.maxTaskBytes replaces it for that agent). */
    maxTaskBytes: z
      .int()
      .positive()
      .default(64 * 1024),
    /** Largest max_tokens a caller may ask for (an agent's limits.maxOutputTokens replaces it for that agent). */
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
  setup({ options, agents }) {
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
        if (!ctx.agent) throw agentRefusal(agents, ctx.agentId);
        if (ctx.task.trim() === "") throw invalidArgument("task", "must not be empty");
        // An agent's own limits replace the global ones; the message says whose limit it was.
        const limits = ctx.agent.limits;
        const whose = ` for agent "${ctx.agent.id}"`;
        const maxTaskBytes = limits?.maxTaskBytes ?? options.maxTaskBytes;
        const bytes = Buffer.byteLength(ctx.task, "utf8");
        if (bytes > maxTaskBytes) {
          const setting = limits?.maxTaskBytes ? "agents[].limits.maxTaskBytes" : "validation.maxTaskBytes";
          throw limitExceeded("task", `is ${bytes} bytes; the limit${limits?.maxTaskBytes ? whose : ""} is ${maxTaskBytes}`, setting, maxTaskBytes);
        }
        const { temperature, maxTokens } = ctx.options;
        if (temperature !== undefined && !(temperature >= 0 && temperature <= 2)) {
          throw invalidArgument("options.temperature", "must be between 0 and 2");
        }
        const maxOutputTokens = limits?.maxOutputTokens ?? options.maxOutputTokens;
        if (maxTokens !== undefined && maxTokens > maxOutputTokens) {
          const setting = limits?.maxOutputTokens ? "agents[].limits.maxOutputTokens" : "validation.maxOutputTokens";
          throw limitExceeded("options.max_tokens", `must be at most ${maxOutputTokens}${limits?.maxOutputTokens ? whose : ""}`, setting, maxOutputTokens);
        }
        if (Object.keys(ctx.metadata).length > options.maxMetadataEntries) {
          throw limitExceeded("metadata", `has more than ${options.maxMetadataEntries} entries`, "validation.maxMetadataEntries", options.maxMetadataEntries);
        }
        return next();
      },
    };
  },
});
