import { ProviderError } from "@qingyu/plugin-api";
import { setTimeout as sleepFor } from "node:timers/promises";
import { abortReason } from "../errors.ts";

/** How the executor retries a provider that failed before its first token. */
export interface RetryPolicy {
  /** Attempts in all, the first included. */
  maxAttempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

/**
 * The delay before attempt `attempt + 1`: exponential from baseDelayMs, capped at
 * maxDelayMs, with "equal jitter" (half fixed, half random) so a crowd of
 * clients that failed together do not retry together. A provider's Retry-After
 * is a floor: retrying sooner would only be refused again.
 */
export function backoffDelay(attempt: number, policy: RetryPolicy, retryAfterMs?: number, random: () => number = Math.random): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
  const jittered = ceiling / 2 + random() * (ceiling / 2);
  return retryAfterMs === undefined ? jittered : Math.max(retryAfterMs, jittered);
}

/**
 * Whether to try again after `err` on attempt `attempt`, and after how long;
 * undefined means give up. Never retries past the call's deadline, nor when
 * the provider asks for a longer wait than the policy allows.
 */
export function retryDelay(
  err: unknown,
  attempt: number,
  policy: RetryPolicy,
  deadline: number | undefined,
  now: number,
  random?: () => number,
): number | undefined {
  if (!(err instanceof ProviderError) || !err.retryable || attempt >= policy.maxAttempts) return undefined;
  if (err.retryAfterMs !== undefined && err.retryAfterMs > policy.maxDelayMs) return undefined;
  const delay = backoffDelay(attempt, policy, err.retryAfterMs, random);
  if (deadline !== undefined && now + delay >= deadline) return undefined;
  return delay;
}

/** Waits, or throws the signal's reason as soon as it aborts. */
export async function sleep(ms: number, signal: AbortSignal): Promise<void> {
  try {
    await sleepFor(ms, undefined, { signal });
  } catch {
    throw abortReason(signal);
  }
}
