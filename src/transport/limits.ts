import { Code, ConnectError, ErrorReason, withReason } from "@qingyu/plugin-api";
import type { ServerLimits } from "../config/schema.ts";

/** The limits both transports apply to each call (the rest is connection settings). */
export type CallLimits = Pick<ServerLimits, "defaultDeadlineMs" | "maxDeadlineMs" | "maxMetadataBytes" | "maxMapEntries" | "maxMapBytes">;

/**
 * The deadline a call runs under: the client's, capped at maxDeadlineMs, or
 * defaultDeadlineMs when it sent none. Long-lived streams (event
 * subscriptions, health Watch) are meant to stay open, so they keep the
 * client's deadline, or none.
 */
export function callDeadline(client: number | undefined, limits: CallLimits, longLived: boolean, now = Date.now()): number | undefined {
  if (longLived) return client;
  const cap = now + limits.maxDeadlineMs;
  return client === undefined ? Math.min(now + limits.defaultDeadlineMs, cap) : Math.min(client, cap);
}

/** Size of a header block as HTTP/2 counts it (RFC 9113 §6.5.2): name + value + 32 per field. */
export function headerBlockBytes(fields: Record<string, readonly (string | Uint8Array)[]>): number {
  let total = 0;
  for (const name in fields) {
    for (const value of fields[name]!) total += name.length + value.length + 32;
  }
  return total;
}

/** The refusal of a call whose metadata is over the limit. */
export function metadataTooLarge(bytes: number, limit: number): ConnectError {
  const refusal = new ConnectError(
    `request metadata is ${bytes} bytes, over the server's limit of ${limit} (server.limits.maxMetadataBytes)`,
    Code.ResourceExhausted,
  );
  return withReason(refusal, ErrorReason.LIMIT_EXCEEDED, { limit: "server.limits.maxMetadataBytes", max: String(limit) });
}
