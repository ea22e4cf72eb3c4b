// A ToolContext as the step loop makes one, for tests that call a tool source's tools directly.
import type { ToolContext } from "@qingyu/plugin-api";
import pino from "pino";

/** What a test's tool call reported: its progress, in order. */
export type ProgressReports = [message: string, progress: number | undefined, total: number | undefined][];

/** A context with `overrides` applied; `onProgress` runs after each report is kept. */
export function toolContext(overrides: Partial<Omit<ToolContext, "progress">> = {}, onProgress?: () => void): { ctx: ToolContext; progress: ProgressReports } {
  const progress: ProgressReports = [];
  const ctx: ToolContext = {
    runId: "run-1",
    toolCallId: "call-1",
    idempotencyKey: "run-1:call-1",
    attempt: 1,
    signal: new AbortController().signal,
    deadline: undefined,
    agentId: "agent",
    userId: "user",
    principal: undefined,
    sessionId: "",
    logger: pino({ level: "silent" }),
    ...overrides,
    progress(message, done, total) {
      progress.push([message, done, total]);
      onProgress?.();
    },
  };
  return { ctx, progress };
}
