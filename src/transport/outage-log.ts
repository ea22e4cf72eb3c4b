import type { Logger } from "pino";
import { failureDetail } from "../clients/shared.ts";

/**
 * The log of store outages: per store, the first failure is logged at once
 * with its detail, then at most one line per interval counting the failures
 * since, so an outage under load costs a few lines, not one per call.
 */
export class OutageLog {
  private readonly seen = new Map<string, { loggedAt: number; since: number }>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** One failure of `what` (as clients hear of it), on `backend` when several serve it. */
  note(what: string, err: unknown, backend?: string): void {
    const now = this.now();
    const key = backend ? `${what} (${backend})` : what;
    const state = this.seen.get(key);
    if (state && now - state.loggedAt < this.intervalMs) {
      state.since++;
      return;
    }
    const failures = state ? state.since + 1 : 1;
    this.seen.set(key, { loggedAt: now, since: 0 });
    this.log.warn({ store: key, err: failureDetail(err), failures, intervalMs: this.intervalMs }, `${key} unavailable`);
  }
}
