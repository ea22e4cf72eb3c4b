import type { WireBatch } from "./span-wire.ts";

/** What the main thread sends the export worker. */
export type ToWorker = { type: "batch"; batch: WireBatch } | { type: "flush"; id: number } | { type: "shutdown"; id: number };

/** What the export worker sends back. */
export type ToMain =
  | { type: "ready" }
  /** A batch's spans are in the worker's processors. */
  | { type: "taken"; count: number }
  /** A flush or shutdown finished (error: it failed). */
  | { type: "done"; id: number; error?: string }
  /** A warning or error from the exporters (diag). */
  | { type: "log"; level: "warn" | "error"; message: string };
