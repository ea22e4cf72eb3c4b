/** How long a bucket takes to refill from empty to its capacity: the limits are per minute. */
export const REFILL_PERIOD_MS = 60_000;

/** One bucket a call draws from: its store key, its capacity (the per-minute limit) and the amount. */
export interface BucketDraw {
  readonly key: string;
  readonly capacity: number;
  /** Tokens to take (or, for `adjust`, to take more of; negative gives back). */
  readonly amount: number;
}

/** What `take` decided: everything taken, or nothing and the bucket that waits longest. */
export type TakeOutcome =
  | { readonly ok: true }
  | { readonly ok: false; /** Index into the draws of the bucket that lacks most. */ readonly index: number; readonly retryAfterMs: number };

/**
 * A store of token buckets. Both operations are atomic over all the draws
 * they are given, so concurrent calls (and processes, for a shared store)
 * never see half of another call's draw.
 */
export interface Buckets {
  /** Takes every draw's amount when every bucket holds enough; otherwise takes nothing. */
  take(draws: readonly BucketDraw[]): Promise<TakeOutcome>;
  /** Takes (positive) or gives back (negative) without a check: a bucket may go into debt, never above capacity. */
  adjust(draws: readonly BucketDraw[]): Promise<void>;
  dispose?(): void | Promise<void>;
}

/** A bucket's level at `now`, after continuous refill since `ts`; capped at capacity. */
export function refilled(level: number, ts: number, now: number, capacity: number): number {
  return Math.min(capacity, level + (Math.max(0, now - ts) * capacity) / REFILL_PERIOD_MS);
}

/** Whole milliseconds until a bucket at `level` holds `amount`. */
function waitMs(level: number, amount: number, capacity: number): number {
  return Math.max(1, Math.ceil(((amount - level) * REFILL_PERIOD_MS) / capacity));
}

/**
 * Whether a set of bucket levels can serve a set of draws; when not, which
 * bucket waits longest (the call can only go through once all of them hold enough).
 */
export function decide(levels: readonly number[], draws: readonly BucketDraw[]): TakeOutcome {
  let index = -1;
  let retryAfterMs = 0;
  draws.forEach((draw, i) => {
    const level = levels[i]!;
    if (level >= draw.amount) return;
    const wait = waitMs(level, draw.amount, draw.capacity);
    if (wait > retryAfterMs) {
      index = i;
      retryAfterMs = wait;
    }
  });
  return index < 0 ? { ok: true } : { ok: false, index, retryAfterMs };
}
