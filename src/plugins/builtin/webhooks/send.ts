import type { EventType, RuntimeEvent } from "@qingyu/plugin-api";
import { linkSignals } from "../../../abort.ts";
import { retryAfterMs as readRetryAfter } from "../../../http/retry-after.ts";
import { SIGNATURE_HEADER, TIMESTAMP_HEADER, signWebhook } from "./signature.ts";

/** The JSON body of every webhook; a stable, documented shape (absent ids are null). */
export interface WebhookPayload {
  id: string;
  type: EventType;
  /** ISO 8601, UTC. */
  time: string;
  agentId: string | null;
  sessionId: string | null;
  userId: string | null;
  data: Record<string, unknown>;
}

/** One event ready to send: its payload, serialized once for every endpoint and attempt. */
export interface WebhookMessage {
  payload: WebhookPayload;
  body: string;
  traceparent?: string;
}

/** Where and how one endpoint is called. */
export interface WebhookTarget {
  url: string;
  secret: string;
  /** Config's extra headers; the plugin's own are set after them. */
  headers: Readonly<Record<string, string>>;
  /** Event types this endpoint takes; all when undefined. */
  types?: ReadonlySet<EventType>;
}

/** How one POST ended. */
export type AttemptOutcome = { ok: true; status: number } | { ok: false; retry: boolean; status?: number; error: string; retryAfterMs?: number };

/** Builds the message for an event; traceparent travels as a header, `remote` not at all. */
export function webhookMessage(event: RuntimeEvent): WebhookMessage {
  const payload: WebhookPayload = {
    id: event.id,
    type: event.type,
    time: event.time.toISOString(),
    agentId: event.agentId || null,
    sessionId: event.sessionId || null,
    userId: event.userId || null,
    data: event.data,
  };
  return { payload, body: JSON.stringify(payload), traceparent: event.traceparent };
}

/**
 * POSTs one message, signed now (so every retry carries a fresh timestamp).
 * `cancel` is aborted at shutdown. Never rejects.
 */
export async function postWebhook(target: WebhookTarget, message: WebhookMessage, timeoutMs: number, cancel: AbortSignal): Promise<AttemptOutcome> {
  const timestamp = Math.floor(Date.now() / 1000);
  const headers: Record<string, string> = {
    ...target.headers,
    "content-type": "application/json",
    "user-agent": "qingyu-webhooks/1",
    "x-qingyu-event-id": message.payload.id,
    "x-qingyu-event-type": message.payload.type,
    [TIMESTAMP_HEADER]: String(timestamp),
    [SIGNATURE_HEADER]: signWebhook(target.secret, timestamp, message.body),
  };
  if (message.traceparent) headers.traceparent = message.traceparent;
  const timeout = AbortSignal.timeout(timeoutMs);
  const linked = linkSignals(timeout, cancel);
  let response: Response;
  try {
    // A redirect is an answer, not a success: following it would re-POST a signed event somewhere config did not name.
    response = await fetch(target.url, { method: "POST", headers, body: message.body, redirect: "manual", signal: linked.signal });
    // Only the status matters; dropping the body frees the connection for reuse.
    await response.body?.cancel().catch(() => undefined);
  } catch (err) {
    const error = timeout.aborted ? `timed out after ${timeoutMs} ms` : cancel.aborted ? "cancelled at shutdown" : describe(err);
    return { ok: false, retry: true, error };
  } finally {
    linked.unlink();
  }
  const status = response.status;
  if (status >= 200 && status < 300) return { ok: true, status };
  // Other 4xx say the request itself is wrong; sending it again would not help.
  const retry = !(status >= 400 && status < 500 && status !== 408 && status !== 429);
  const retryAfterMs = status === 429 || status === 503 ? readRetryAfter(response.headers) : undefined;
  return { ok: false, retry, status, error: `HTTP ${status}`, retryAfterMs };
}

/** Delay before the next attempt: Retry-After when given, else full jitter over an exponential ceiling; capped at maxDelayMs. */
export function retryDelay(attemptsMade: number, settings: { baseDelayMs: number; maxDelayMs: number }, retryAfterMs?: number): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, settings.maxDelayMs);
  const ceiling = Math.min(settings.maxDelayMs, settings.baseDelayMs * 2 ** (attemptsMade - 1));
  return Math.random() * ceiling;
}

// fetch's "fetch failed" hides the useful part (ECONNREFUSED, a TLS error) in its cause.
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? err.cause.message : undefined;
  return cause && cause !== err.message ? `${err.message}: ${cause}` : err.message;
}
