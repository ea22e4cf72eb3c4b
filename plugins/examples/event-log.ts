// Example event handler (docs/plugins.md): appends the events it subscribes to
// as JSON lines to a file. Shows options, the types filter, and dispose.
import { createWriteStream } from "node:fs";
import { z } from "zod";
import { definePlugin, type EventType } from "@qingyu/plugin-api";

const Options = z.strictObject({
  /** The file to append to, relative to the config file. */
  path: z.string().min(1),
  /** Event types to record; all when omitted. */
  types: z.array(z.string()).optional(),
});

export default definePlugin({
  name: "event-log",
  kind: "event-handler",
  configSchema: Options,
  setup({ options, resolvePath, logger }) {
    const out = createWriteStream(resolvePath(options.path), { flags: "a" });
    out.on("error", (err) => logger.error({ err }, "event log write failed"));
    return {
      types: (options.types as EventType[] | undefined) ?? "any",
      handle(event) {
        out.write(`${JSON.stringify(event)}\n`);
      },
      // Called at shutdown and after a reload replaced this handler: flush and close.
      dispose: () => new Promise<void>((resolve) => out.end(resolve)),
    };
  },
});
