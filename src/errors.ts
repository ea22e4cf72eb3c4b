import { Code, codeReason, ConnectError } from "@qingyu/plugin-api";

// One error type for the whole runtime: the plugin contract's ConnectError (a
// status code with the gRPC numbers), which connect-es recognises by its shape.
// Both transports map it at the edge. Import Code and ConnectError from
// @qingyu/plugin-api; this module holds the host's conversions.

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

/**
 * An error's message as a person should read it: a ConnectError's own words
 * (`rawMessage`), without the `[code] ` its `message` begins with.
 */
export function shownMessage(err: unknown): string {
  if (err instanceof ConnectError) return err.rawMessage;
  return err instanceof Error ? err.message : String(err);
}

/** The reason an AbortSignal was aborted, as a ConnectError (CANCELLED when unnamed). */
export function abortReason(signal: AbortSignal): ConnectError {
  const reason: unknown = signal.reason;
  if (reason instanceof ConnectError) return reason;
  return new ConnectError("the call was cancelled", Code.Canceled, undefined, undefined, reason);
}

/** A status code's canonical gRPC name, as operators grep for it: INVALID_ARGUMENT, not InvalidArgument. */
export function codeName(code: Code): string {
  // The same word as an error's reason when it was given none.
  return codeReason(code);
}
