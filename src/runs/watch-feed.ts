import type { RunFeed } from "./feed.ts";
import { journalBetween, LAST, readJournal, readPages } from "./journal-read.ts";
import { FINISHED_STATUSES, type SequencedEvent } from "./types.ts";
import type { WatchSources } from "./watch.ts";

/** Entries one read of a run's feed asks for. */
const FEED_PAGE = 1000;
/** Followed events held for a watcher slower than the run: past it the follower waits. */
const HELD = 1024;

/** Where a watch goes when the feed fails it: the journal, polled, after `afterSeq`. */
type Fallback = (afterSeq: number) => AsyncIterable<SequencedEvent>;

/**
 * A run going (or gone) elsewhere: what its feed holds after `afterSeq`, then the feed followed, each
 * gap in its seqs filled from the journal (the barriers of what was trimmed or never published). A
 * follower quiet for `pollMs * 20` asks the store whether the run ended, or journaled what the feed
 * never got (its publish failed), and finishes from the journal. Redis failing: the journal, polled.
 */
export async function* fromFeed(
  runId: string,
  afterSeq: number,
  signal: AbortSignal,
  sources: WatchSources,
  feed: RunFeed,
  fallback: Fallback,
): AsyncGenerator<SequencedEvent> {
  const { store } = sources;
  let last = afterSeq;
  /** `e`, after what the journal holds that the feed skipped before it; true once the run said its last. */
  async function* pass(e: SequencedEvent): AsyncGenerator<SequencedEvent, boolean> {
    if (e.seq <= last) return false;
    if (e.seq > last + 1) {
      for (const j of await journalBetween(store, runId, last, e.seq)) {
        last = j.seq;
        yield j;
        if (LAST.has(j.event.type)) return true;
      }
    }
    last = e.seq;
    yield e;
    return LAST.has(e.event.type);
  }
  /**
   * The journal has events after the cursor that the feed does not (or the run ended): they are passed on.
   * `feedMayLag`: the feed is published a few milliseconds after the journal is written (in batches), so
   * while the run goes on, its next events may be in the journal and not yet in the feed; taken from the
   * journal then, the feed's text and tool-call deltas between them would be skipped. Only once the follower
   * has been quiet is the journal ahead of the feed a sign that a publish failed.
   */
  async function* catchUp(feedMayLag: boolean): AsyncGenerator<SequencedEvent, "over" | "going" | "down"> {
    const run = await store.get(runId);
    // Read after the status: a run that ended before it has its last event in the journal.
    const over = !run || FINISHED_STATUSES.includes(run.status);
    if (!over && feedMayLag) return "going";
    if (!(await store.events(runId, last, 1)).length) return over ? "over" : "going";
    const held = await readFeed(feed, runId, last);
    if (!held) return "down";
    // Still going and the feed has more: the follower brings it, and fills what it skips.
    if (held.length && !over) return "going";
    for (const e of held) if (yield* pass(e)) return "over";
    for (const j of await readJournal(store, runId, last)) {
      last = j.seq;
      yield j;
      if (LAST.has(j.event.type)) return "over";
    }
    return over ? "over" : "going";
  }

  const held = await readFeed(feed, runId, last);
  if (!held) return yield* fallback(last);
  for (const e of held) if (yield* pass(e)) return;
  // A feed that holds the run's events is being published to: it brings the rest. One that holds none may never have been.
  const caught = yield* catchUp(held.length > 0);
  if (caught === "over") return;
  if (caught === "down") return yield* fallback(last);
  const follower = new Follower(feed, runId, last, signal);
  const quietMs = sources.pollMs * 20;
  let heard = Date.now();
  try {
    while (!signal.aborted) {
      const e = follower.take();
      if (e) {
        heard = Date.now();
        if (yield* pass(e)) return;
        continue;
      }
      if (follower.done) {
        // Redis failed (or the feed closed) under the follower: on from the journal.
        if (!signal.aborted) yield* fallback(last);
        return;
      }
      if (await follower.wait(quietMs - (Date.now() - heard))) continue;
      heard = Date.now();
      const state = yield* catchUp(false);
      if (state === "over") return;
      if (state === "down") return yield* fallback(last);
    }
  } finally {
    await follower.close();
  }
}

/** A feed's follow read ahead into a bounded queue, so that a watcher can wait on it and a timer at once. */
class Follower {
  /** The follow ended: aborted, the feed closed, or Redis failed. */
  done = false;
  private readonly queue: SequencedEvent[] = [];
  private readonly stop = new AbortController();
  private readonly pump: Promise<void>;
  private wake: (() => void) | undefined;
  private room: (() => void) | undefined;

  constructor(feed: RunFeed, runId: string, afterSeq: number, signal: AbortSignal) {
    const onAbort = () => this.stop.abort();
    signal.addEventListener("abort", onAbort, { once: true });
    this.pump = (async () => {
      try {
        for await (const e of feed.follow(runId, afterSeq, this.stop.signal)) {
          this.queue.push(e);
          this.wake?.();
          if (this.queue.length >= HELD) await new Promise<void>((resolve) => (this.room = resolve));
        }
      } catch {
        // The feed logged it; done says it.
      } finally {
        this.done = true;
        signal.removeEventListener("abort", onAbort);
        this.wake?.();
      }
    })();
  }

  /** The next event read, if one is. */
  take(): SequencedEvent | undefined {
    const e = this.queue.shift();
    if (this.room && this.queue.length < HELD / 2) {
      this.room();
      this.room = undefined;
    }
    return e;
  }

  /** True when an event came or the follow ended, false after `ms` without. */
  wait(ms: number): Promise<boolean> {
    if (this.queue.length || this.done) return Promise.resolve(true);
    if (ms <= 0) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.wake = undefined;
        resolve(false);
      }, ms);
      this.wake = () => {
        clearTimeout(timer);
        this.wake = undefined;
        resolve(true);
      };
    });
  }

  async close(): Promise<void> {
    this.stop.abort();
    this.room?.();
    await this.pump;
  }
}

/** What the feed holds after `afterSeq`, or undefined when Redis fails (the feed logs it). */
async function readFeed(feed: RunFeed, runId: string, afterSeq: number): Promise<SequencedEvent[] | undefined> {
  try {
    return await readPages((after, limit) => feed.read(runId, after, limit), afterSeq, FEED_PAGE);
  } catch {
    return undefined;
  }
}
