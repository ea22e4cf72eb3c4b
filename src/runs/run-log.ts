import type { RunFeed } from "./feed.ts";
import type { RunLogEvent, RunStore, RunUpdate, SequencedEvent } from "./types.ts";

/**
 * Types that are written to the journal before they are passed on: the run goes on only once they are kept.
 * step_started, so a replica that takes the run over knows a step was streaming and says it restarts.
 * Not step_finished: nothing acts on a step's outcome before the next barrier (its first tool_call, or
 * tool_result, completed, waiting), which carries it in the same append: one round trip fewer per step.
 */
const BARRIERS: ReadonlySet<RunLogEvent["type"]> = new Set([
  "step_started",
  "tool_call",
  "tool_result",
  "completed",
  "waiting",
  "failed",
  "cancelled",
  "step_restarted",
]);

/** How many recent events a live run keeps for watchers that attach late, text deltas included. */
const RECENT = 4096;

/** A watcher of a live run: gets each event after it is journaled (deltas at once), then `end`. */
export interface LiveWatcher {
  event(e: SequencedEvent): void;
  end(): void;
}

/**
 * The log of one run on the replica that runs it: numbers every event densely,
 * journals them (the barriers at once, the rest with the next barrier, text
 * deltas only as the sequence number they take), and passes them to the live
 * watchers on this replica and to the run's feed, for watchers on any other.
 * One writer: the run's own loop.
 */
export class RunLog {
  private seq: number;
  private pending: SequencedEvent[] = [];
  private readonly recent: SequencedEvent[] = [];
  private readonly watchers = new Set<LiveWatcher>();
  private ended = false;

  constructor(
    readonly runId: string,
    private readonly owner: string,
    private readonly store: RunStore,
    lastSeq: number,
    /** Events the store already holds (a new run's `accepted`): kept for watchers that attach from the start. */
    written: readonly SequencedEvent[] = [],
    private readonly now: () => number = Date.now,
    /** Where watchers on other replicas see every event, text deltas too. */
    private readonly feed?: RunFeed,
  ) {
    this.seq = lastSeq;
    this.recent.push(...written);
    // Also in the journal, but a feed that starts with them answers a watch from seq 0 alone.
    for (const e of written) feed?.publish(runId, e);
  }

  /** The last sequence number given. */
  get lastSeq(): number {
    return this.seq;
  }

  /** Numbers `event`, journals it when it is a barrier (with `update`), then passes it on; resolves once it is safe to go on. */
  async push(event: RunLogEvent, update?: RunUpdate): Promise<SequencedEvent> {
    const sequenced: SequencedEvent = { seq: ++this.seq, time: this.now(), event };
    this.pending.push(sequenced);
    if (BARRIERS.has(event.type) || update) await this.flush(update);
    this.publish(sequenced);
    return sequenced;
  }

  /** Writes what is buffered (and `update`) in one append. */
  async flush(update?: RunUpdate): Promise<void> {
    if (!this.pending.length && !update) return;
    const batch = this.pending;
    this.pending = [];
    try {
      await this.store.append(this.runId, this.owner, this.seq, batch, update);
    } catch (err) {
      // Not written: kept for the next flush (a queued run's start refused, to be tried again).
      this.pending = [...batch, ...this.pending];
      throw err;
    }
  }

  /** Events after `afterSeq` still held here, or undefined when some of them are not (ask the journal). */
  since(afterSeq: number): SequencedEvent[] | undefined {
    const first = this.recent[0];
    if (afterSeq >= this.seq) return [];
    if (!first || first.seq > afterSeq + 1) return undefined;
    return this.recent.filter((e) => e.seq > afterSeq);
  }

  /** Adds a watcher of what comes next; returns its removal. */
  watch(watcher: LiveWatcher): () => void {
    if (this.ended) {
      watcher.end();
      return () => undefined;
    }
    this.watchers.add(watcher);
    return () => this.watchers.delete(watcher);
  }

  /** No more events: watchers are told. */
  end(): void {
    if (!this.ended) this.feed?.end(this.runId);
    this.ended = true;
    for (const w of this.watchers) w.end();
    this.watchers.clear();
  }

  get isEnded(): boolean {
    return this.ended;
  }

  private publish(e: SequencedEvent): void {
    this.recent.push(e);
    if (this.recent.length > RECENT) this.recent.splice(0, this.recent.length - RECENT);
    for (const w of this.watchers) w.event(e);
    this.feed?.publish(this.runId, e);
  }
}
