// The token schedule both servers follow in the token-latency phase
// (bench/token-latency.ts): for the task "tick <ms> <count>", <count> tokens,
// one due every <ms> from the start of the call, each saying when it was due
// and when the server handed it on, as "<dueNs>:<sentNs>" on CLOCK_MONOTONIC
// (process.hrtime), which every process on the machine shares. Nothing of ours
// imported, so the bare server loads none of the runtime.
import { setTimeout as sleep } from "node:timers/promises";

/** The task asking for `count` tokens `intervalMs` apart. */
export const tickTask = (intervalMs: number, count: number): string => `tick ${intervalMs} ${count}`;

/** "tick 10 50" → { intervalMs: 10, count: 50 }; anything else is refused loudly. */
export function parseTick(task: string): { intervalMs: number; count: number } {
  const m = /^tick (\d+) (\d+)$/.exec(task.trim());
  if (!m) throw new Error(`tick: expected a task "tick <intervalMs> <count>", got ${JSON.stringify(task.slice(0, 80))}`);
  return { intervalMs: Number(m[1]), count: Number(m[2]) };
}

/** When token `i` (from 1) of a call that started at `startNs` is due. The schedule is absolute: a late token does not push the next one back. */
export const dueAt = (startNs: bigint, intervalMs: number, i: number): bigint => startNs + BigInt(i) * BigInt(intervalMs) * 1_000_000n;

/**
 * Waits on a timer until `dueNs`. A Node timer can fire up to a millisecond
 * early (its clock is whole milliseconds, read at the start of the loop's turn),
 * so it sleeps again until the time has really come: no token leaves before it is due.
 */
export async function untilDue(dueNs: bigint, signal?: AbortSignal): Promise<void> {
  for (let ms = msUntil(dueNs); ms > 0; ms = msUntil(dueNs)) await sleep(Math.ceil(ms), undefined, { signal });
}

const msUntil = (dueNs: bigint): number => Number(dueNs - process.hrtime.bigint()) / 1e6;

/** A token's text, stamped as it is handed on. */
export const stamp = (dueNs: bigint): string => `${dueNs}:${process.hrtime.bigint()}`;

/** A token's two stamps, from its text. */
export function readStamp(text: string): { dueNs: bigint; sentNs: bigint } {
  const colon = text.indexOf(":");
  if (colon < 0) throw new Error(`tick: not a stamped token: ${JSON.stringify(text.slice(0, 80))}`);
  return { dueNs: BigInt(text.slice(0, colon)), sentNs: BigInt(text.slice(colon + 1)) };
}
