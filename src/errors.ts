import { Code, ConnectError } from "@connectrpc/connect";

// One error type for the whole runtime: connect-es's ConnectError carries a status
// code whose numbers are the gRPC status codes. Both transports map it at the edge.
export { Code, ConnectError };

/** INVALID_ARGUMENT naming the offending field. */
export function invalidArgument(field: string, message: string): ConnectError {
  return new ConnectError(`${field}: ${message}`, Code.InvalidArgument);
}

/** NOT_FOUND for a named kind of thing. */
export function notFound(what: string, id: string): ConnectError {
  return new ConnectError(`${what} "${id}" not found`, Code.NotFound);
}

/**
 * Turns anything thrown into a ConnectError. A ConnectError passes through; an
 * abort carries its reason; anything else we could not name becomes INTERNAL
 * (never UNKNOWN), keeping the original as `cause` for the log.
 */
export function toConnectError(err: unknown): ConnectError {
  if (err instanceof ConnectError) return err;
  if (err instanceof Error && err.name === "AbortError" && err.cause instanceof ConnectError) {
    return err.cause;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ConnectError(`internal error: ${message}`, Code.Internal, undefined, undefined, err);
}

/** The reason an AbortSignal was aborted, as a ConnectError (CANCELLED when unnamed). */
export function abortReason(signal: AbortSignal): ConnectError {
  const reason: unknown = signal.reason;
  if (reason instanceof ConnectError) return reason;
  return new ConnectError("the call was cancelled", Code.Canceled, undefined, undefined, reason);
}

/** A status code's canonical gRPC name, as operators grep for it: INVALID_ARGUMENT, not InvalidArgument. */
export function codeName(code: Code): string {
  if (code === Code.Canceled) return "CANCELLED";
  return (Code[code] ?? "UNKNOWN").replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}
