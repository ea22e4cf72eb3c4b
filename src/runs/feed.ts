import type { SequencedEvent } from "./types.ts";

/**
 * A live copy of each run's events, text deltas included, for watchers on any
 * replica: the owner publishes, watchers read and follow. It may lose events
 * (trimmed, expired, not published during an outage): the journal answers
 * for every event but text deltas, so watchers fill from it.
 */
export interface RunFeed {
  /** Adds `event` to the run's feed without waiting; never throws, never blocks the run (failures are logged once per outage). */
  publish(runId: string, event: SequencedEvent): void;
  /** The run ended here: its feed expires after a while instead of staying forever. */
  end(runId: string): void;
  /** What the feed still holds after `afterSeq`, in order, at most `limit`. */
  read(runId: string, afterSeq: number, limit: number): Promise<SequencedEvent[]>;
  /** The entries after `afterSeq` as they come, until `signal` aborts (then it ends promptly); throws when the feed cannot be read. */
  follow(runId: string, afterSeq: number, signal: AbortSignal): AsyncIterable<SequencedEvent>;
  /** The highest seq the feed holds (0 when none): a new owner after a takeover numbers on from above it. */
  lastSeq(runId: string): Promise<number>;
  /** Stops followers and publishing; the connection it was given stays open. */
  close(): Promise<void>;
}
