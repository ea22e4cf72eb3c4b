// How big an event is, and how one that is too big is cut to size. Events carry
// caller-sized strings (ids, messages, whatever a plugin puts in `data`); the bus
// bounds each one so that no caller can make an event that overflows a
// subscriber's send limit or fills the Redis stream (maxLen × this bound at most).
import type { EventInit, RuntimeEvent } from "@qingyu/plugin-api";
import { Buffer } from "node:buffer";
import { clip } from "../quote.ts";

/** The default bound of one event, in (estimated) JSON bytes. */
export const DEFAULT_MAX_EVENT_BYTES = 4096;
/** Longest agentId/sessionId/userId/traceparent an event keeps, in UTF-16 units: the edge already refuses longer ids; this is defence. */
export const MAX_ID_CHARS = 256;
/** Longest string value or key kept in a cut event's data. */
const KEEP_CHARS = 256;
/** Nested objects and arrays of a cut event keep this many entries and this depth. */
const KEEP_ENTRIES = 8;
const KEEP_DEPTH = 2;
/** Deeper than this the estimate gives up (and so the event is cut): plugins may publish anything, cycles included. */
const MAX_DEPTH = 16;

const ID_FIELDS = ["agentId", "sessionId", "userId", "traceparent"] as const;
// {"id":"<uuid>","type":"","time":"2026-01-01T00:00:00.000Z","data":} and a little slack.
const ENVELOPE_BYTES = 100;
// ,"agentId":"" and the like.
const ID_FIELD_BYTES = 16;
const TRUNCATED_BYTES = '"truncated":true,'.length;
const NEEDS_ESCAPE = /["\\\u0000-\u001f\u2028\u2029]/;

const sizes = new WeakMap<RuntimeEvent, number>();

/**
 * `init` as the bus may carry it, with its estimated size: unchanged when it fits
 * in `maxBytes`; otherwise its ids cut to MAX_ID_CHARS, its data's long strings
 * cut (small fields kept, in order, while they fit) and `data.truncated` set.
 */
export function boundEvent<T extends EventInit>(init: T, maxBytes: number): { init: T; bytes: number } {
  let out = init;
  for (const key of ID_FIELDS) {
    const value = init[key];
    if (typeof value === "string" && value.length > MAX_ID_CHARS) {
      if (out === init) out = { ...init };
      out[key] = clip(value, MAX_ID_CHARS);
    }
  }
  const envelope = envelopeBytes(out);
  const dataBytes = valueBytes(out.data, 0, maxBytes - envelope);
  if (envelope + dataBytes <= maxBytes) return { init: out, bytes: envelope + dataBytes };
  const data = cutData(out.data, maxBytes - envelope);
  return { init: { ...out, data }, bytes: envelope + valueBytes(data, 0, Infinity) };
}

/** Records the size of a stamped event, so subscribers need not measure it again. */
export function rememberSize(event: RuntimeEvent, bytes: number): void {
  sizes.set(event, bytes);
}

/** The estimated JSON size of an event in bytes: remembered from when the bus stamped it, or measured now. */
export function eventBytes(event: RuntimeEvent): number {
  let bytes = sizes.get(event);
  if (bytes === undefined) {
    bytes = envelopeBytes(event) + valueBytes(event.data, 0, Infinity);
    sizes.set(event, bytes);
  }
  return bytes;
}

function envelopeBytes(init: EventInit): number {
  let bytes = ENVELOPE_BYTES + init.type.length;
  for (const key of ID_FIELDS) {
    const value = init[key];
    if (typeof value === "string") bytes += ID_FIELD_BYTES + stringBytes(value, Infinity);
  }
  return bytes;
}

/**
 * About the bytes of `value` as JSON: exact for strings (UTF-8, escapes), an
 * upper bound for numbers. Stops counting once past `limit` (the answer is then
 * only known to exceed it), so a 4 MB string or a 300,000-key object costs no
 * more than the bound to reject.
 */
function valueBytes(value: unknown, depth: number, limit: number): number {
  switch (typeof value) {
    case "string":
      return stringBytes(value, limit);
    case "number":
      return 24;
    case "boolean":
      return 5;
    case "object": {
      if (value === null) return 4;
      if (depth >= MAX_DEPTH) return Infinity;
      let bytes = 2;
      if (Array.isArray(value)) {
        for (const item of value) {
          bytes += valueBytes(item, depth + 1, limit - bytes) + 1;
          if (bytes > limit) return bytes;
        }
        return bytes;
      }
      for (const key in value) {
        if (!Object.hasOwn(value, key)) continue;
        bytes += stringBytes(key, limit - bytes) + valueBytes((value as Record<string, unknown>)[key], depth + 1, limit - bytes) + 2;
        if (bytes > limit) return bytes;
      }
      return bytes;
    }
    default:
      // undefined, functions and symbols are left out (or null in an array); a BigInt fails to encode anyway.
      return 4;
  }
}

function stringBytes(s: string, limit: number): number {
  // UTF-8 never takes fewer bytes than UTF-16 units: a string this long is over the limit without counting.
  if (s.length > limit) return s.length + 2;
  if (NEEDS_ESCAPE.test(s)) return Buffer.byteLength(JSON.stringify(s), "utf8");
  return Buffer.byteLength(s, "utf8") + 2;
}

/** The data of an event over the bound: entries in order while they fit, long strings cut, nesting flattened. */
function cutData(data: Record<string, unknown>, budget: number): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  let used = 2 + TRUNCATED_BYTES;
  for (const rawKey in data) {
    if (!Object.hasOwn(data, rawKey) || rawKey === "truncated") continue;
    if (budget - used < 16) break;
    const key = rawKey.length > 64 ? clip(rawKey, 64) : rawKey;
    // A third of the room: three UTF-8 bytes per UTF-16 unit at most.
    const keep = Math.max(0, Math.min(KEEP_CHARS, Math.floor((budget - used - stringBytes(key, Infinity)) / 3) - 48));
    const value = cutValue(data[rawKey], keep, 0);
    if (value === undefined) continue;
    const size = stringBytes(key, Infinity) + valueBytes(value, 0, Infinity) + 2;
    if (used + size > budget) continue;
    out[key] = value;
    used += size;
  }
  out.truncated = true;
  return out;
}

function cutValue(value: unknown, keep: number, depth: number): unknown {
  switch (typeof value) {
    case "string":
      return value.length > keep ? clip(value, keep) : value;
    case "number":
    case "boolean":
      return value;
    case "object": {
      if (value === null) return null;
      if (Array.isArray(value)) {
        if (depth >= KEEP_DEPTH) return `[${value.length} items]`;
        return value.slice(0, KEEP_ENTRIES).map((item) => cutValue(item, keep, depth + 1) ?? null);
      }
      if (depth >= KEEP_DEPTH) return "{…}";
      const out: Record<string, unknown> = {};
      let n = 0;
      for (const key in value) {
        if (!Object.hasOwn(value, key)) continue;
        if (n++ >= KEEP_ENTRIES) break;
        const item = cutValue((value as Record<string, unknown>)[key], keep, depth + 1);
        if (item !== undefined) out[key.length > 64 ? clip(key, 64) : key] = item;
      }
      return out;
    }
    default:
      return undefined;
  }
}
