import { Code, ConnectError, ProviderError } from "./errors.ts";

// Machine-readable reasons on errors, so clients branch on a word instead of a
// message. The server sends every error's reason to the client as a
// google.rpc.ErrorInfo in the status details and as a `qingyu-reason` trailer.
// The reason rides on the error under a registry symbol, so one attached by any
// copy of this package (a plugin's own) is read by the server's.

/**
 * The reasons the server gives. Each is stable: a client may branch on it. A
 * plugin may give its own (UPPER_SNAKE_CASE, at most 63 characters); an error
 * given none has the name of its code (INVALID_ARGUMENT, INTERNAL, ...).
 */
export const ErrorReason = {
  /** INVALID_ARGUMENT: a request field is wrong; metadata `field` names it (`requests[3].session_id`). */
  INVALID_FIELD: "INVALID_FIELD",
  /** A size or count over a server limit; metadata `limit` (the setting), `field` when a request field, `max` when known. */
  LIMIT_EXCEEDED: "LIMIT_EXCEEDED",
  /** NOT_FOUND: no such session (or it expired); metadata `session_id`. */
  SESSION_NOT_FOUND: "SESSION_NOT_FOUND",
  /** NOT_FOUND: no such checkpoint in the session; metadata `checkpoint_id` or `session_id`. */
  CHECKPOINT_NOT_FOUND: "CHECKPOINT_NOT_FOUND",
  /** NOT_FOUND: no agent of that id; metadata `agent_id`. */
  AGENT_NOT_FOUND: "AGENT_NOT_FOUND",
  /** FAILED_PRECONDITION: the agent is configured but not served (an environment variable it requires is not set); metadata `agent_id`, `missing`. */
  AGENT_UNAVAILABLE: "AGENT_UNAVAILABLE",
  /** PERMISSION_DENIED: the agent does not offer the model asked for; metadata `agent_id`, `model`. */
  MODEL_NOT_ALLOWED: "MODEL_NOT_ALLOWED",
  /** PERMISSION_DENIED: the session belongs to another user; metadata `session_id`. */
  NOT_SESSION_OWNER: "NOT_SESSION_OWNER",
  /** PERMISSION_DENIED: the principal may not do this (an authorization rule, acting as another user, an admin RPC). */
  PERMISSION_DENIED: "PERMISSION_DENIED",
  /** UNAUTHENTICATED: no credentials, where they are needed. */
  UNAUTHENTICATED: "UNAUTHENTICATED",
  /** UNAUTHENTICATED: credentials that are not accepted (malformed, unknown key, bad signature or claims). */
  TOKEN_INVALID: "TOKEN_INVALID",
  /** UNAUTHENTICATED: a token past its expiry (or its maximum age). */
  TOKEN_EXPIRED: "TOKEN_EXPIRED",
  /** UNAVAILABLE: credentials cannot be checked now (the JWKS cannot be loaded); retry. */
  AUTH_UNAVAILABLE: "AUTH_UNAVAILABLE",
  /** ABORTED: expected_version is not the session's version; metadata `session_id`, `expected_version`, `current_version`. */
  STALE_VERSION: "STALE_VERSION",
  /** RESOURCE_EXHAUSTED: a rate limit refused the call; metadata `retry_after_ms`. */
  RATE_LIMITED: "RATE_LIMITED",
  /** RESOURCE_EXHAUSTED: the user has as many live sessions as allowed; metadata `limit`, `max`. */
  SESSION_LIMIT: "SESSION_LIMIT",
  /** RESOURCE_EXHAUSTED: the server has no room for the work now (batch slots); metadata `retry_after_ms`. */
  SERVER_BUSY: "SERVER_BUSY",
  /** RESOURCE_EXHAUSTED: an event subscriber fell too far behind and was dropped; subscribe again. */
  SUBSCRIBER_TOO_SLOW: "SUBSCRIBER_TOO_SLOW",
  /** UNAVAILABLE: the server is draining; retry on another replica. */
  SHUTTING_DOWN: "SHUTTING_DOWN",
  /** UNAVAILABLE: a store the call needs (sessions, events, rate-limit backend) cannot be reached; retry. */
  STORE_UNAVAILABLE: "STORE_UNAVAILABLE",
  /** UNAVAILABLE: the LLM provider failed or could not be reached, after retries. */
  PROVIDER_UNAVAILABLE: "PROVIDER_UNAVAILABLE",
  /** RESOURCE_EXHAUSTED: the LLM provider rate-limited us, after retries; metadata `retry_after_ms` when it said. */
  PROVIDER_RATE_LIMITED: "PROVIDER_RATE_LIMITED",
  /** The LLM provider refused the request (its 4xx or a redirect): the operator's configuration, or the input. */
  PROVIDER_REJECTED: "PROVIDER_REJECTED",
  /** INTERNAL: the LLM provider answered something unusable. */
  PROVIDER_ERROR: "PROVIDER_ERROR",
  /** FAILED_PRECONDITION: the agent names a provider that is not configured. */
  PROVIDER_NOT_CONFIGURED: "PROVIDER_NOT_CONFIGURED",
  /** FAILED_PRECONDITION: a config reload failed; the running config stays. */
  RELOAD_FAILED: "RELOAD_FAILED",
  /** DEADLINE_EXCEEDED: the call's deadline passed. */
  DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
  /** CANCELLED: the client cancelled the call. */
  CANCELLED: "CANCELLED",
  /** INTERNAL: a bug of ours (logged). */
  INTERNAL: "INTERNAL",
  /** NOT_FOUND: no run with that id (or not the caller's); metadata `run_id`. */
  RUN_NOT_FOUND: "RUN_NOT_FOUND",
  /** FAILED_PRECONDITION: the session already has a run going and the request said reject; metadata `session_id`, `run_id`. */
  SESSION_BUSY: "SESSION_BUSY",
  /** ABORTED: this replica no longer owns the run (its lease ended and another took it over). */
  RUN_NOT_OWNED: "RUN_NOT_OWNED",
  /** FAILED_PRECONDITION: a decision on a tool call the run does not wait on; metadata `run_id`, `tool_call_id`. */
  RUN_NOT_WAITING: "RUN_NOT_WAITING",
  /** FAILED_PRECONDITION: the run has finished; metadata `run_id`, `status`. */
  RUN_FINISHED: "RUN_FINISHED",
} as const;

/** One of the server's reasons. */
export type ErrorReason = (typeof ErrorReason)[keyof typeof ErrorReason];

/** A reason and its metadata, as the client receives them. */
export interface ErrorReasonInfo {
  readonly reason: string;
  readonly metadata: Readonly<Record<string, string>>;
}

const REASON = Symbol.for("qingyu.plugin-api.ErrorReason");

/**
 * Attaches a reason (and string metadata for the client) to `err` and returns
 * it: `throw withReason(new ConnectError(msg, Code.InvalidArgument), "BLOCKED_WORD")`.
 * A later call replaces the reason.
 */
export function withReason<E extends object>(err: E, reason: ErrorReason | (string & {}), metadata: Record<string, string> = {}): E {
  const info: ErrorReasonInfo = { reason, metadata: { ...metadata } };
  Object.defineProperty(err, REASON, { value: info, configurable: true, enumerable: false, writable: false });
  return err;
}

/**
 * The reason `err` carries: the one attached, else for a ProviderError the
 * provider reason of its code, else the name of its code (INTERNAL for
 * anything that is not a ConnectError).
 */
export function reasonOf(err: unknown): ErrorReasonInfo {
  const attached = typeof err === "object" && err !== null ? (err as Record<symbol, unknown>)[REASON] : undefined;
  if (isReasonInfo(attached)) return attached;
  if (err instanceof ProviderError) return providerReason(err);
  if (err instanceof ConnectError) return { reason: codeReason(err.code), metadata: {} };
  return { reason: ErrorReason.INTERNAL, metadata: {} };
}

function isReasonInfo(value: unknown): value is ErrorReasonInfo {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as ErrorReasonInfo).reason === "string" &&
    typeof (value as ErrorReasonInfo).metadata === "object"
  );
}

function providerReason(err: ProviderError): ErrorReasonInfo {
  switch (err.code) {
    case Code.ResourceExhausted:
      return {
        reason: ErrorReason.PROVIDER_RATE_LIMITED,
        metadata: err.retryAfterMs === undefined ? {} : { retry_after_ms: String(Math.ceil(err.retryAfterMs)) },
      };
    case Code.Unavailable:
    case Code.DeadlineExceeded:
      return { reason: ErrorReason.PROVIDER_UNAVAILABLE, metadata: {} };
    case Code.Internal:
    case Code.Unknown:
    case Code.DataLoss:
      return { reason: ErrorReason.PROVIDER_ERROR, metadata: {} };
    default:
      return { reason: ErrorReason.PROVIDER_REJECTED, metadata: {} };
  }
}

/** A code's canonical gRPC name, the reason of an error given none: INVALID_ARGUMENT, CANCELLED. */
export function codeReason(code: Code): string {
  if (code === Code.Canceled) return "CANCELLED";
  const name = Code[code];
  return typeof name === "string" ? name.replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase() : "UNKNOWN";
}

/** INVALID_ARGUMENT naming the offending field; reason INVALID_FIELD with metadata `field`. */
export function invalidArgument(field: string, message: string): ConnectError {
  return withReason(new ConnectError(`${field}: ${message}`, Code.InvalidArgument), ErrorReason.INVALID_FIELD, { field });
}

/**
 * INVALID_ARGUMENT for a request field over a server limit; reason
 * LIMIT_EXCEEDED with metadata `field`, `limit` (the setting that sets it) and
 * `max` when given.
 */
export function limitExceeded(field: string, message: string, limit: string, max?: number): ConnectError {
  const metadata: Record<string, string> = { field, limit };
  if (max !== undefined) metadata.max = String(max);
  return withReason(new ConnectError(`${field}: ${message}`, Code.InvalidArgument), ErrorReason.LIMIT_EXCEEDED, metadata);
}

/**
 * NOT_FOUND for a named kind of thing; reason `<WHAT>_NOT_FOUND`
 * (SESSION_NOT_FOUND for "session") with metadata `<what>_id`.
 */
export function notFound(what: string, id: string): ConnectError {
  const word = what
    .trim()
    .replace(/[^A-Za-z0-9]+/g, "_")
    .replace(/^_|_$/g, "");
  const reason = word ? `${word.toUpperCase()}_NOT_FOUND` : "NOT_FOUND";
  return withReason(new ConnectError(`${what} "${id}" not found`, Code.NotFound), reason, word ? { [`${word.toLowerCase()}_id`]: id } : {});
}
