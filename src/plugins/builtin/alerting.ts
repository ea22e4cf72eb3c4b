import { definePlugin } from "@qingyu/plugin-api";
import { z } from "zod";

const Options = z
  .strictObject({
    /** Log level of the alert line. */
    level: z.enum(["fatal", "error", "warn"]).default("error"),
    /** Only these status codes (e.g. ["INTERNAL", "UNAVAILABLE"]); empty means every failure. */
    codes: z.array(z.string().regex(/^[A-Z_]+$/)).default([]),
  })
  .prefault({});

/**
 * Logs every failed agent call (ERROR_OCCURRED) with agent, session and error:
 * a model for handlers that page someone or post to a chat instead.
 */
export default definePlugin({
  name: "alerting",
  kind: "event-handler",
  configSchema: Options,
  setup({ options, logger }) {
    const codes = new Set(options.codes);
    return {
      types: ["ERROR_OCCURRED"],
      handle(event) {
        const code = typeof event.data.code === "string" ? event.data.code : "UNKNOWN";
        if (codes.size && !codes.has(code)) return;
        logger[options.level](
          {
            alert: "agent call failed",
            agent: event.agentId,
            session: event.sessionId,
            user: event.userId,
            call: event.data.callId,
            code,
            error: event.data.message,
            eventId: event.id,
            time: event.time.toISOString(),
          },
          `agent call failed: ${code}`,
        );
      },
    };
  },
});
