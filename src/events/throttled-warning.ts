import type { EventType, PluginLogger } from "@qingyu/plugin-api";

/** How many sample event ids a summary line carries. */
const SAMPLE_IDS = 20;

/**
 * A warning about events that repeats at most once per interval: during a
 * Redis outage every event fails the same way, and one line per event would
 * drown the log. The first failure is logged at once with its event; later
 * ones are counted (per type, with a bounded sample of ids) into one summary
 * line per interval, so the log still says how many and which were affected.
 */
export class ThrottledWarning {
  private count = 0;
  private readonly byType: Partial<Record<EventType, number>> = {};
  private sampleIds: string[] = [];
  private lastError = "";
  private timer: ReturnType<typeof setTimeout> | undefined;
  private failing = false;
  private closed = false;

  constructor(
    private readonly log: PluginLogger,
    private readonly message: string,
    private readonly intervalMs: number,
  ) {}

  /** Records one failure about an event. */
  note(err: unknown, event: { id: string; type: EventType }, extra: Record<string, unknown> = {}): void {
    const error = err instanceof Error ? err.message : String(err);
    this.failing = true;
    // After close no timer is started: each (rare, late) failure gets its own line.
    if (!this.timer || this.closed) {
      this.log.warn({ ...extra, eventId: event.id, eventType: event.type, err: error }, this.message);
      if (!this.closed) this.arm();
      return;
    }
    this.count++;
    this.byType[event.type] = (this.byType[event.type] ?? 0) + 1;
    if (this.sampleIds.length < SAMPLE_IDS) this.sampleIds.push(event.id);
    this.lastError = error;
  }

  /** Records a success: ends an episode of failures with its summary and a line saying it is over. */
  ok(recovered: string): void {
    if (!this.failing) return;
    this.flush();
    this.failing = false;
    this.log.info(recovered);
  }

  /** Logs what is counted and not yet logged, and stops the timer for good. */
  close(): void {
    this.closed = true;
    this.flush();
  }

  /** Logs what is counted and not yet logged, and stops the timer (a later failure starts a new window). */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.summarize();
  }

  private arm(): void {
    this.timer = setTimeout(() => {
      // Keep the window open while failures keep coming; close it after a quiet interval.
      if (this.summarize()) this.arm();
      else this.timer = undefined;
    }, this.intervalMs);
    this.timer.unref?.();
  }

  /** Logs the counted failures, if any; says whether there were. */
  private summarize(): boolean {
    if (!this.count) return false;
    this.log.warn(
      { count: this.count, byType: { ...this.byType }, sampleEventIds: this.sampleIds, err: this.lastError },
      `${this.message} (${this.count} more)`,
    );
    this.count = 0;
    for (const key of Object.keys(this.byType) as EventType[]) delete this.byType[key];
    this.sampleIds = [];
    return true;
  }
}
