import { limitExceeded } from "@qingyu/plugin-api";
import type { JsonObject, JsonValue } from "./types.ts";

// Depth counts objects and lists: `data` itself is 1, `{"a":{}}` is 2, `{"a":[[]]}` is 3.
// On the wire every level is several messages — an object is Struct + map entry +
// Value, a list ListValue + Value — and decoders stop at 100 messages, counted
// from the response around the checkpoint (ListCheckpointsResponse → Checkpoint → data).
// Measured with objects to the bottom and a number in the last (the deepest a level can cost):
//   Python grpcio (Debian protobuf 4.21 C++, and protobuf 7 upb)  33
//   protobuf-es binary (grpc-js and Connect/gRPC-Web binary clients; the gRPC port's own decoder)  49
//   protobuf-es JSON (Connect JSON)  97;  Go (protobuf-go, limit 10,000 messages)  beyond 210

/** Deepest `data` every client reads back: Python's C++ and upb decoders read 33 levels of objects, no more. */
export const DEFAULT_MAX_CHECKPOINT_DEPTH = 33;

/** Deepest `data` protobuf-es reads in a response, and the gRPC port's decoder in a request: a higher limit could not be reached there. */
export const MAX_CHECKPOINT_DEPTH = 49;

/**
 * Refuses checkpoint data nested deeper than `limit` levels of objects and
 * lists: a client's decoder would refuse the checkpoint, and every listing
 * of the session holding it, from then on.
 */
export function checkCheckpointDepth(data: JsonObject, limit: number): void {
  if (deeperThan(data, limit)) {
    throw limitExceeded(
      "data",
      `nests objects and lists deeper than the limit of ${limit} levels (sessions.maxCheckpointDepth): clients could not read it back`,
      "sessions.maxCheckpointDepth",
      limit,
    );
  }
}

/** Whether `value` nests more than `levels` objects and lists; looks no further down than that. */
function deeperThan(value: JsonValue, levels: number): boolean {
  if (value === null || typeof value !== "object") return false;
  if (levels === 0) return true;
  const children = Array.isArray(value) ? value : Object.values(value);
  for (const child of children) if (deeperThan(child, levels - 1)) return true;
  return false;
}
