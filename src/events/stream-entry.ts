// How a RuntimeEvent is laid out as a Redis stream entry. Fields:
//   o  the publishing process's origin id (its own reader skips the entry)
//   t  the event type (readers filter on it without parsing the event)
//   e  the event as JSON (time as an ISO string; `remote` is never stored)
import { EVENT_TYPES, type EventType, type RuntimeEvent } from "@qingyu/plugin-api";
import { boundEvent, rememberSize } from "./event-size.ts";

/** An entry's fields, flat as XADD takes them. */
export function entryFields(origin: string, event: RuntimeEvent): string[] {
  const { id, type, time, agentId, sessionId, userId, data, traceparent } = event;
  // JSON.stringify leaves out the undefined ones; it throws on a BigInt or a cycle in data (the caller logs that).
  const json = JSON.stringify({ id, type, time: time.toISOString(), agentId, sessionId, userId, data, traceparent });
  return ["o", origin, "t", type, "e", json];
}

/** A raw entry as XREAD returns it: [streamId, [field, value, ...]]. */
export type RawEntry = [string, string[]];

/** The fields of a raw entry by name. */
export function fieldsOf(entry: RawEntry): Map<string, string> {
  const fields = new Map<string, string>();
  const flat = entry[1];
  for (let i = 0; i + 1 < flat.length; i += 2) fields.set(flat[i]!, flat[i + 1]!);
  return fields;
}

const TYPES = new Set<string>(EVENT_TYPES);
export const isEventType = (t: string | undefined): t is EventType => t !== undefined && TYPES.has(t);

/**
 * The event of an entry's `e` field, marked remote and cut to `maxEventBytes`
 * (a process with a larger bound, or anything else writing to the stream, must
 * not get past this one's); throws on anything that is not an event.
 */
export function decodeEvent(json: string, maxEventBytes: number): RuntimeEvent {
  const v = JSON.parse(json) as Record<string, unknown>;
  const time = typeof v.time === "string" ? new Date(v.time) : undefined;
  if (typeof v.id !== "string" || !isEventType(v.type as string) || !time || Number.isNaN(time.getTime())) {
    throw new Error("not an event: id, type or time missing");
  }
  if (typeof v.data !== "object" || v.data === null || Array.isArray(v.data)) throw new Error("not an event: data is not an object");
  const event: RuntimeEvent = { id: v.id, type: v.type as EventType, time, data: v.data as Record<string, unknown>, remote: true };
  for (const key of ["agentId", "sessionId", "userId", "traceparent"] as const) {
    if (typeof v[key] === "string") event[key] = v[key];
  }
  const { init: bounded, bytes } = boundEvent(event, maxEventBytes);
  rememberSize(bounded, bytes);
  return bounded;
}

/** Compares two stream ids ("ms-seq") numerically. */
export function compareIds(a: string, b: string): number {
  const [am = 0n, as = 0n] = a.split("-").map(BigInt);
  const [bm = 0n, bs = 0n] = b.split("-").map(BigInt);
  if (am !== bm) return am < bm ? -1 : 1;
  return as === bs ? 0 : as < bs ? -1 : 1;
}
