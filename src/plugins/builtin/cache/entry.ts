import type { AgentRunResult } from "@qingyu/plugin-api";
import { z } from "zod";

/** One cached run: what a hit replays. */
export interface CachedRun {
  /** The model the original `started` event named. */
  model: string;
  /** The original deltas, in order, so a hit streams the same chunks. */
  chunks: string[];
  /** The original result (without the cache marker). */
  result: AgentRunResult;
}

// Entries may come from another process (or version) through Redis: checked, not trusted.
const Entry = z.object({
  v: z.literal(1),
  model: z.string(),
  chunks: z.array(z.string()),
  result: z.object({
    success: z.boolean(),
    output: z.string(),
    model: z.string(),
    finishReason: z.string(),
    usage: z.object({ inputTokens: z.number(), outputTokens: z.number() }),
    durationMs: z.number(),
    metadata: z.record(z.string(), z.string()),
    // A tool run's fields: kept, or a hit would lose the structured answer and the calls it came from.
    toolCalls: z
      .array(
        z.object({
          id: z.string(),
          name: z.string(),
          arguments: z.string(),
          step: z.number(),
          // Only runs whose every call ended ok are stored (see cacheable in middleware.ts).
          outcome: z.literal("ok"),
          output: z.string(),
          durationMs: z.number(),
          idempotent: z.boolean().optional(),
        }),
      )
      .optional(),
    steps: z.number().optional(),
    structuredOutput: z.json().optional(),
    validationErrors: z.array(z.string()).optional(),
  }),
});

/** The stored form of an entry. */
export function encodeEntry(run: CachedRun): string {
  return JSON.stringify({ v: 1, model: run.model, chunks: run.chunks, result: run.result });
}

/** The entry stored as `text`, or undefined when it is not one this version wrote. */
export function decodeEntry(text: string): CachedRun | undefined {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return undefined;
  }
  const parsed = Entry.safeParse(raw);
  if (!parsed.success) return undefined;
  const { model, chunks, result } = parsed.data;
  return { model, chunks, result: result as AgentRunResult };
}

/** Size of a stored entry in UTF-8 bytes (counted without copying: entries reach `maxEntryBytes`). */
export function entryBytes(text: string): number {
  return Buffer.byteLength(text, "utf8");
}
