import { Code, ConnectError, ErrorReason, invalidArgument, limitExceeded, withReason } from "@qingyu/plugin-api";
import { quote } from "../quote.ts";
import { LISTED_OVERHEAD_BYTES, type SessionRecord } from "./types.ts";

/**
 * What one user may store in sessions (config `sessions`). The defaults are
 * exported for the config schema, so the two cannot drift.
 */
export interface SessionBounds {
  maxMetadataEntries: number;
  maxMetadataKeyBytes: number;
  maxMetadataValueBytes: number;
  maxMetadataBytes: number;
  maxSessionsPerUser: number;
}

export const DEFAULT_SESSION_BOUNDS: SessionBounds = {
  maxMetadataEntries: 64,
  maxMetadataKeyBytes: 128,
  maxMetadataValueBytes: 4096,
  maxMetadataBytes: 16 * 1024,
  maxSessionsPerUser: 1000,
};

/**
 * INVALID_ARGUMENT naming `metadata` unless it fits the bounds. Checked before
 * the store is touched: every listing of the user carries each session's
 * metadata, so an unbounded map makes every later ListSessions unbounded too.
 */
export function checkMetadata(metadata: Record<string, string>, bounds: SessionBounds): void {
  const keys = Object.keys(metadata);
  if (keys.length > bounds.maxMetadataEntries) {
    throw limitExceeded(
      "metadata",
      `has ${keys.length} entries; the limit is ${bounds.maxMetadataEntries}`,
      "sessions.maxMetadataEntries",
      bounds.maxMetadataEntries,
    );
  }
  let total = 0;
  for (const key of keys) {
    // PostgreSQL's jsonb cannot hold NUL: refused the same way on every store.
    if (key.includes("\u0000") || metadata[key]!.includes("\u0000")) {
      throw invalidArgument("metadata", `key ${quote(key)}: must not contain the NUL character (\\u0000)`);
    }
    const keyBytes = Buffer.byteLength(key, "utf8");
    if (keyBytes > bounds.maxMetadataKeyBytes) {
      throw limitExceeded(
        "metadata",
        `key ${quote(key)} is ${keyBytes} bytes; the limit is ${bounds.maxMetadataKeyBytes}`,
        "sessions.maxMetadataKeyBytes",
        bounds.maxMetadataKeyBytes,
      );
    }
    const valueBytes = Buffer.byteLength(metadata[key]!, "utf8");
    if (valueBytes > bounds.maxMetadataValueBytes) {
      throw limitExceeded(
        "metadata",
        `value of key ${quote(key)} is ${valueBytes} bytes; the limit is ${bounds.maxMetadataValueBytes}`,
        "sessions.maxMetadataValueBytes",
        bounds.maxMetadataValueBytes,
      );
    }
    total += keyBytes + valueBytes;
  }
  if (total > bounds.maxMetadataBytes) {
    throw limitExceeded(
      "metadata",
      `is ${total} bytes of keys and values; the limit is ${bounds.maxMetadataBytes}`,
      "sessions.maxMetadataBytes",
      bounds.maxMetadataBytes,
    );
  }
}

/** RESOURCE_EXHAUSTED (SESSION_LIMIT) for a create past the user's live sessions. */
export function tooManySessions(userId: string, max: number): ConnectError {
  return withReason(
    new ConnectError(
      `user ${quote(userId)} already has ${max} live sessions, the most allowed (sessions.maxSessionsPerUser); delete some or let them expire`,
      Code.ResourceExhausted,
    ),
    ErrorReason.SESSION_LIMIT,
    { limit: "sessions.maxSessionsPerUser", max: String(max) },
  );
}

/** A listed session's weight against the page byte budget (see LISTED_OVERHEAD_BYTES); the Lua and SQL count the same fields. */
export function sessionListedBytes(s: SessionRecord): number {
  return (
    LISTED_OVERHEAD_BYTES + Buffer.byteLength(s.id) + Buffer.byteLength(s.userId) + Buffer.byteLength(s.agentId) + Buffer.byteLength(JSON.stringify(s.metadata))
  );
}

/**
 * How many of `sizes` (in listing order) one page takes: at most `pageSize`,
 * and no more once their total would pass `maxBytes`, but always at least one.
 */
export function pageCut(sizes: readonly number[], pageSize: number, maxBytes: number): number {
  let total = 0;
  let n = 0;
  for (const size of sizes) {
    if (n === pageSize || (n > 0 && total + size > maxBytes)) break;
    total += size;
    n++;
  }
  return n;
}
