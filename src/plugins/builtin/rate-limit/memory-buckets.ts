import { type BucketDraw, type Buckets, decide, REFILL_PERIOD_MS, refilled, type TakeOutcome } from "./buckets.ts";

interface Bucket {
  level: number;
  ts: number;
  capacity: number;
}

/** Sweep on insert once the map reaches this many buckets (then at twice the survivors). */
const MIN_SWEEP_SIZE = 1024;

/**
 * Token buckets in this process's memory: one limit per process, not per
 * deployment. Memory stays bounded because a bucket that has refilled to its
 * capacity is indistinguishable from a missing one, so it is dropped: on
 * write when it is full, by a sweep every refill period (idle buckets are
 * full after at most that, plus any debt), and by a sweep whenever the map
 * has doubled since the last one (a flood of new keys within one period).
 */
export class MemoryBuckets implements Buckets {
  private readonly buckets = new Map<string, Bucket>();
  private sweepAt = MIN_SWEEP_SIZE;
  private readonly timer: ReturnType<typeof setInterval>;

  /** `now` is injectable so tests can move time. */
  constructor(private readonly now: () => number = Date.now) {
    this.timer = setInterval(() => this.sweep(), REFILL_PERIOD_MS);
    this.timer.unref?.();
  }

  /** How many buckets are held (not full); for tests and diagnostics. */
  get size(): number {
    return this.buckets.size;
  }

  async take(draws: readonly BucketDraw[]): Promise<TakeOutcome> {
    const now = this.now();
    const levels = draws.map((d) => this.level(d, now));
    const outcome = decide(levels, draws);
    if (outcome.ok) draws.forEach((d, i) => this.write(d, levels[i]! - d.amount, now));
    return outcome;
  }

  async adjust(draws: readonly BucketDraw[]): Promise<void> {
    const now = this.now();
    for (const d of draws) this.write(d, Math.min(d.capacity, this.level(d, now) - d.amount), now);
  }

  /** Drops every bucket that has refilled to capacity. */
  sweep(): void {
    const now = this.now();
    for (const [key, b] of this.buckets) {
      if (refilled(b.level, b.ts, now, b.capacity) >= b.capacity) this.buckets.delete(key);
    }
    this.sweepAt = Math.max(MIN_SWEEP_SIZE, this.buckets.size * 2);
  }

  dispose(): void {
    clearInterval(this.timer);
    this.buckets.clear();
  }

  private level(draw: BucketDraw, now: number): number {
    const b = this.buckets.get(draw.key);
    return b ? refilled(b.level, b.ts, now, draw.capacity) : draw.capacity;
  }

  private write(draw: BucketDraw, level: number, now: number): void {
    if (level >= draw.capacity) {
      this.buckets.delete(draw.key);
      return;
    }
    if (!this.buckets.has(draw.key) && this.buckets.size >= this.sweepAt) this.sweep();
    this.buckets.set(draw.key, { level, ts: now, capacity: draw.capacity });
  }
}
