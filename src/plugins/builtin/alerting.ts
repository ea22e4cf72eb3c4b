import { definePlugin } from "@qingyu/plugin-api";
import { z } from "zod";

const MINUTE_MS = 60_000;

const Options = z
  .strictObject({
    /** Log level of the alert line. */
    level: z.enum(["fatal", "error", "warn"]).default("error"),
    /** Only these status codes (e.g. ["INTERNAL", "UNAVAILABLE"]); empty means every failure. */
    codes: z.array(z.string().regex(/^[A-Z_]+$/)).default([]),
    /** Alert lines logged per minute at most; past it, failures are counted and one summary line (by code) ends the minute. */
    maxPerMinute: z.int().positive().default(60),
  })
  .prefault({});

/**
 * Logs failed agent calls (ERROR_OCCURRED) with agent, session and error: a
 * model for handlers that page someone or post to a chat instead. At most
 * `maxPerMinute` lines a minute: failures are cheap for a caller to cause (one
 * batch is a hundred of them), and a log flood hides the alert that matters
 * and fills the disk. What is held back is summed up by code, once, when the
 * minute ends.
 */
export default definePlugin({
  name: "alerting",
  kind: "event-handler",
  configSchema: Options,
  setup({ options, logger }) {
    const codes = new Set(options.codes);
    let logged = 0;
    let suppressed = new Map<string, number>();
    let minute: ReturnType<typeof setTimeout> | undefined;

    const summarise = () => {
      minute = undefined;
      logged = 0;
      if (suppressed.size === 0) return;
      const byCode = Object.fromEntries(suppressed);
      const total = [...suppressed.values()].reduce((a, b) => a + b, 0);
      suppressed = new Map();
      logger[options.level](
        { alert: "agent call failures suppressed", suppressed: total, codes: byCode, limitPerMinute: options.maxPerMinute },
        `${total} more agent call failures in the last minute, not logged one by one (${Object.entries(byCode)
          .map(([c, n]) => `${c}: ${n}`)
          .join(", ")})`,
      );
    };

    return {
      types: ["ERROR_OCCURRED"],
      handle(event) {
        const code = typeof event.data.code === "string" ? event.data.code : "UNKNOWN";
        if (codes.size && !codes.has(code)) return;
        if (!minute) {
          minute = setTimeout(summarise, MINUTE_MS);
          // A quiet server may exit with a minute still open; dispose() sums it up.
          minute.unref?.();
        }
        if (logged >= options.maxPerMinute) {
          suppressed.set(code, (suppressed.get(code) ?? 0) + 1);
          return;
        }
        logged++;
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
      dispose() {
        if (minute) clearTimeout(minute);
        summarise();
      },
    };
  },
});
