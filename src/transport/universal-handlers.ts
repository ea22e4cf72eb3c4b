import type { UniversalHandler, UniversalServerRequest, UniversalServerResponse } from "@connectrpc/connect/protocol";

// What the HTTP port's wrappers of connect-node's handlers share: how a handler is
// replaced, and the envelope that frames messages in Connect streaming, gRPC and gRPC-Web.

/** Envelope flag: the message is compressed. */
export const COMPRESSED = 0x01;
/** Envelope flag (Connect streaming): the end-of-stream message, not a request or response. */
export const END_STREAM = 0x02;
/** Envelope flag (gRPC-Web): the trailer frame. */
export const GRPC_WEB_TRAILER = 0x80;

/** The length the envelope starting at `at` declares: a flags byte, then 4 bytes big-endian. */
export function envelopeLength(bytes: Uint8Array, at = 0): number {
  return ((bytes[at + 1]! << 24) >>> 0) + (bytes[at + 2]! << 16) + (bytes[at + 3]! << 8) + bytes[at + 4]!;
}

/** A message in its 5-byte envelope: the flags, then the length, big-endian. */
export function envelope(flags: number, data: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(5 + data.byteLength);
  out[0] = flags;
  out.writeUInt32BE(data.byteLength, 1);
  out.set(data, 5);
  return out;
}

/**
 * Replaces each handler with `wrap(inner)`, keeping the properties connect-node's
 * adapter routes requests by (path, protocols, methods, content types, service, method).
 */
export function wrapHandlers(
  handlers: UniversalHandler[],
  wrap: (inner: UniversalHandler) => (req: UniversalServerRequest) => Promise<UniversalServerResponse>,
): void {
  for (let i = 0; i < handlers.length; i++) {
    const inner = handlers[i]!;
    handlers[i] = Object.assign(wrap(inner), {
      requestPath: inner.requestPath,
      protocolNames: inner.protocolNames,
      allowedMethods: inner.allowedMethods,
      supportedContentType: inner.supportedContentType,
      service: inner.service,
      method: inner.method,
    });
  }
}
