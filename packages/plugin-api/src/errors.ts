// Errors a plugin throws. They are recognised by shape, not by identity, so a
// plugin's own copy of this package (an npm plugin with its own node_modules)
// throws errors the host treats exactly like its own, as connect-es does for
// its ConnectError.

/** gRPC status codes, with connect-es's names and the gRPC numbers (Code.NotFound === 5). */
export enum Code {
  Canceled = 1,
  Unknown = 2,
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  NotFound = 5,
  AlreadyExists = 6,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Aborted = 10,
  OutOfRange = 11,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  DataLoss = 15,
  Unauthenticated = 16,
}

/** Response metadata for an error: reaches the client as trailers (Connect: headers). */
export type ErrorMetadata = Headers | Record<string, string> | [string, string][];

/**
 * An error with the status code the client should see. Shaped like connect-es's
 * ConnectError (name, code, rawMessage, metadata, details, cause), which is how
 * the host and connect-es recognise it, whichever copy of either made it.
 */
export class ConnectError extends Error {
  /** The status code the client sees. */
  readonly code: Code;
  /** The message without the "[code]" prefix. */
  readonly rawMessage: string;
  /** Sent to the client with the status (e.g. retry-after-ms). */
  readonly metadata: Headers;
  /** Error details; always empty from plugins (the field exists for connect-es). */
  readonly details: unknown[] = [];
  override readonly cause: unknown;

  constructor(message: string, code: Code = Code.Unknown, metadata?: ErrorMetadata, details?: unknown[], cause?: unknown) {
    super(message ? `[${codeString(code)}] ${message}` : `[${codeString(code)}]`);
    this.name = "ConnectError";
    Object.setPrototypeOf(this, new.target.prototype);
    this.code = code;
    this.rawMessage = message;
    this.metadata = new Headers(metadata ?? {});
    if (details) this.details = details;
    this.cause = cause;
  }

  /** Any ConnectError-shaped error: this package's (any copy) or connect-es's. */
  static [Symbol.hasInstance](value: unknown): boolean {
    return isConnectErrorShape(value);
  }
}

const PROVIDER_ERROR = Symbol.for("qingyu.plugin-api.ProviderError");

/**
 * A provider failure with what the host needs to decide on a retry. The code is
 * the one the client sees once retries are exhausted.
 */
export class ProviderError extends ConnectError {
  /** Whether trying again might succeed (429, 5xx, connection reset). */
  readonly retryable: boolean;
  /** The upstream's Retry-After, when it sent one. */
  readonly retryAfterMs: number | undefined;

  constructor(message: string, code: Code, retryable: boolean, retryAfterMs?: number, cause?: unknown) {
    // The name stays "ConnectError": that is how connect-es recognises the error.
    super(message, code, undefined, undefined, cause);
    this.retryable = retryable;
    this.retryAfterMs = retryAfterMs;
    Object.defineProperty(this, PROVIDER_ERROR, { value: true });
  }

  /** A ProviderError from any copy of this package; not every ConnectError. */
  static override [Symbol.hasInstance](value: unknown): boolean {
    return (
      isConnectErrorShape(value) &&
      (value as unknown as Record<symbol, unknown>)[PROVIDER_ERROR] === true &&
      typeof (value as { retryable?: unknown }).retryable === "boolean"
    );
  }
}

function isConnectErrorShape(value: unknown): value is ConnectError {
  if (!(value instanceof Error) || value.name !== "ConnectError") return false;
  const v = value as unknown as Record<string, unknown>;
  return typeof v.code === "number" && "metadata" in v && Array.isArray(v.details) && typeof v.rawMessage === "string" && "cause" in v;
}

/** Connect's lower-case code string, as connect-es writes it in the message prefix. */
function codeString(code: Code): string {
  const name = Code[code];
  if (typeof name !== "string") return String(code);
  return name.replace(/[A-Z]/g, (c, i: number) => (i ? "_" : "") + c.toLowerCase());
}
